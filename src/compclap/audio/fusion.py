"""Clip-length handling on the model's device, and LAION-CLAP's feature-fusion input for long clips.

A fusion model (LAION `*-fusion-*` checkpoints, `laion/clap-htsat-fused`) sees four mel channels per clip:
- a clip no longer than the model's clip length is padded, and its mel spectrogram fills all four channels
  (the model only reads the first one for such clips);
- a longer clip is turned into one mel spectrogram of the whole clip; channel 0 is that spectrogram
  shrunk (bilinear) to the clip length, channels 1-3 are clip-length chunks taken from the front, middle
  and back thirds of the possible start frames, and the clip is flagged `is_longer`.
This mirrors transformers' `ClapFeatureExtractor(truncation="fusion")`, but on the model's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# Picks one start frame out of a range of candidates (a 1-D integer array).
StartChooser = Callable[[np.ndarray], int]


def fit_length(wave: torch.Tensor, num_samples: int, padding: str = "repeatpad") -> torch.Tensor:
    """Return exactly `num_samples` of a 1-D waveform: the head of a long clip, a padded short one.

    padding: "repeatpad" tiles whole copies then zero-pads (LAION, transformers); "repeat" tiles and cuts (MS-CLAP).
    """
    if wave.dim() != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(wave.shape)}")
    n = wave.shape[0]
    if n == 0:
        raise ValueError("cannot pad an empty waveform")
    if n >= num_samples:
        return wave[:num_samples]
    if padding == "repeat":
        return wave.repeat(math.ceil(num_samples / n))[:num_samples]
    if padding != "repeatpad":
        raise ValueError(f"padding must be 'repeatpad' or 'repeat', got {padding!r}")
    tiled = wave.repeat(num_samples // n)
    return F.pad(tiled, (0, num_samples - tiled.shape[0]))


def chunk_start_ranges(total_frames: int, chunk_frames: int) -> list[np.ndarray]:
    """Candidate start frames of the front, middle and back chunks (as transformers splits them)."""
    ranges = np.array_split(np.arange(0, total_frames - chunk_frames + 1), 3)
    return [r if len(r) else np.array([0]) for r in ranges]


def middle_start(candidates: np.ndarray) -> int:
    """Deterministic choice for evaluation: the middle candidate of a range."""
    return int(candidates[len(candidates) // 2])


def random_start(generator: torch.Generator | None = None) -> StartChooser:
    """Random choice for training (torch's RNG, so Lightning's seeding applies)."""
    def choose(candidates: np.ndarray) -> int:
        return int(candidates[int(torch.randint(len(candidates), (1,), generator=generator))])
    return choose


def fusion_mel(mel: torch.Tensor, chunk_frames: int, choose: StartChooser = middle_start) -> tuple[torch.Tensor, bool]:
    """Four-channel fusion input (4, chunk_frames, n_mels) from one clip's whole log-mel (frames, n_mels).

    Returns the stacked channels and whether the clip counts as longer than the model's clip length.
    """
    total_frames, n_mels = mel.shape
    if total_frames <= chunk_frames:
        if total_frames != chunk_frames:
            raise ValueError(f"a short clip must be padded to {chunk_frames} frames first, got {total_frames}")
        return mel.unsqueeze(0).expand(4, -1, -1), False
    starts = [choose(r) for r in chunk_start_ranges(total_frames, chunk_frames)]
    chunks = [mel[s:s + chunk_frames] for s in starts]
    shrunk = F.interpolate(mel[None, None], size=[chunk_frames, n_mels], mode="bilinear", align_corners=False)[0, 0]
    return torch.stack([shrunk, *chunks]), True


def fusion_batch(waves: Sequence[torch.Tensor], logmel: Callable[[torch.Tensor], torch.Tensor], num_samples: int,
                 chunk_frames: int, padding: str = "repeatpad", choose: StartChooser = middle_start,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fusion inputs (B, 4, chunk_frames, n_mels) and `is_longer` (B,) for clips of any length.

    `logmel` maps a (b, samples) batch to (b, frames, n_mels). Clips of at most `num_samples` are padded and
    computed together; each longer clip gets its own whole-clip spectrogram. Order is preserved, and start
    frames are drawn clip by clip in order (front, middle, back), as transformers does.
    """
    short = [i for i, w in enumerate(waves) if w.shape[0] <= num_samples]
    out: list[torch.Tensor | None] = [None] * len(waves)
    longer = [False] * len(waves)
    if short:
        mels = logmel(torch.stack([fit_length(waves[i], num_samples, padding) for i in short]))
        for i, mel in zip(short, mels):
            out[i] = mel.unsqueeze(0).expand(4, -1, -1)
    for i, wave in enumerate(waves):
        if out[i] is None:
            mel = logmel(wave.unsqueeze(0))[0]
            if mel.shape[0] == chunk_frames:  # longer by less than one hop: the whole clip is one chunk
                out[i] = mel.unsqueeze(0).expand(4, -1, -1)
            else:
                out[i], longer[i] = fusion_mel(mel, chunk_frames, choose)
    device = out[0].device if out else None
    return torch.stack(out), torch.tensor(longer, dtype=torch.bool, device=device)
