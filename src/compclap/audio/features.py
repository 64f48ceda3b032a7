"""Log-mel spectrogram computed in torch on the model's device, batched, matching ClapFeatureExtractor."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class FrontendConfig:
    """Preprocessing an audio tower expects: sample rate, clip length and mel parameters."""

    sample_rate: int = 48_000
    clip_seconds: float = 10.0
    n_fft: int = 1024
    hop_length: int = 480
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14_000.0
    mel_scale: str = "slaney"  # "slaney" with slaney norm (LAION rand_trunc) or "htk" without norm (fusion)
    # Rate the mel filterbank is designed for; None: `sample_rate`. MS-CLAP 2023 applies its 32 kHz HTSAT
    # filterbank to 44.1 kHz audio, so its filters sit at 32/44.1 of their nominal frequencies.
    mel_sample_rate: int | None = None
    # LAION-CLAP's inference quantises audio to int16 and back (x -> trunc(clip(x) * 32767) / 32767).
    quantize_int16: bool = False
    # How clips shorter than `clip_seconds` are filled: "repeatpad" (tile whole copies, then zeros; LAION/HF)
    # or "repeat" (tile and cut; MS-CLAP).
    padding: str = "repeatpad"

    def __post_init__(self) -> None:
        """Reject unknown padding modes early (the mel scale is checked when the filterbank is built)."""
        if self.padding not in ("repeatpad", "repeat"):
            raise ValueError(f"padding must be 'repeatpad' or 'repeat', got {self.padding!r}")

    @property
    def num_samples(self) -> int:
        """Clip length in samples."""
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def num_frames(self) -> int:
        """Number of STFT frames of one clip (centred frames)."""
        return self.num_samples // self.hop_length + 1

    def to_dict(self) -> dict:
        """Plain-dict form for configs and checkpoints."""
        return asdict(self)


def mel_filterbank(config: FrontendConfig) -> np.ndarray:
    """Mel filters of shape (n_fft // 2 + 1, n_mels), as transformers' CLAP feature extractor builds them."""
    from transformers.audio_utils import mel_filter_bank

    if config.mel_scale not in ("slaney", "htk"):
        raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {config.mel_scale!r}")
    return mel_filter_bank(
        num_frequency_bins=config.n_fft // 2 + 1,
        num_mel_filters=config.n_mels,
        min_frequency=config.f_min,
        max_frequency=config.f_max,
        sampling_rate=config.mel_sample_rate or config.sample_rate,
        norm="slaney" if config.mel_scale == "slaney" else None,
        mel_scale=config.mel_scale,
    )


def quantize_int16(waveforms: torch.Tensor) -> torch.Tensor:
    """LAION-CLAP's int16 round trip: clip to [-1, 1], scale by 32767, truncate toward zero, scale back."""
    return (waveforms.clamp(-1.0, 1.0) * 32767.0).to(torch.int16).to(waveforms.dtype) / 32767.0


class LogMelSpectrogram(nn.Module):
    """Waveforms (B, T) -> log-mel in dB (B, frames, n_mels); runs wherever the module lives."""

    def __init__(self, config: FrontendConfig, compute_dtype: torch.dtype = torch.float32) -> None:
        """config: the front end's sample rate, STFT and mel parameters; compute_dtype: STFT precision.

        float32 matches the float64 reference to ~1e-5 dB on natural sounds; only bins 130 dB or more below
        a pure tone's peak differ by up to ~0.05 dB. float64 matches everywhere at about twice the CPU cost.
        """
        super().__init__()
        self.config = config
        self.compute_dtype = compute_dtype
        # Buffers are derived from the config, so they stay out of the state dict (non-persistent).
        self.register_buffer("window", torch.hann_window(config.n_fft, periodic=True, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(mel_filterbank(config)), persistent=False)
        # STFT bins that some mel filter covers (the others have zero weight and are never computed with).
        used = torch.nonzero(self.mel_fb.abs().sum(dim=1)).flatten().tolist()
        self._bins = (used[0], used[-1] + 1) if used else (0, self.mel_fb.shape[0])

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Compute the log-mel spectrogram of a batch of equal-length mono waveforms."""
        if waveforms.dim() != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}")
        dtype = self.compute_dtype
        # Autocast would run the mel matmul in bf16/fp16 and cost whole decibels; features stay full precision.
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            wave = waveforms.to(dtype)
            if self.config.quantize_int16:
                wave = quantize_int16(wave.float()).to(dtype)
            lo, hi = self._bins
            window, mel_fb = self.window.to(dtype), self.mel_fb[lo:hi].to(dtype)
            # On CPU a few clips at a time keep the spectrogram in cache (3-4x faster than one batched STFT);
            # accelerators take the batch at once.
            step = (1 << 19) // max(1, wave.shape[1]) if wave.device.type == "cpu" else len(wave)
            mels = []
            for part in wave.split(max(1, step)):
                spec = torch.stft(part, n_fft=self.config.n_fft, hop_length=self.config.hop_length, window=window,
                                  center=True, pad_mode="reflect", return_complex=True)[:, lo:hi]
                squares = torch.view_as_real(spec).square()  # contiguous: ~3x faster than squaring .real and .imag
                power = squares[..., 0] + squares[..., 1]  # (b, bins, frames)
                mels.append(torch.matmul(power.transpose(1, 2), mel_fb))  # (b, frames, n_mels)
            mel = torch.cat(mels) if len(mels) > 1 else mels[0]
            return (10.0 * torch.log10(mel.clamp_min(1e-10))).float()
