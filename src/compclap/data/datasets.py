"""Map-style dataset over a manifest: decode, resample, crop/pad; randomness keyed by the sampler."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from compclap.audio.io import AudioDecodeError, load_audio
from compclap.audio.transforms import crop_start, repeat_pad
from compclap.data.sampler import ClipSampler  # noqa: F401  (importable from here, as before)


class ManifestDataset(Dataset):
    """Clips of a manifest at a fixed rate and length; a file that fails to decode yields an error item."""

    def __init__(self, records: list[dict[str, Any]], sample_rate: int, num_samples: int, train: bool,
                 cache_decoded: bool = False) -> None:
        """records: manifest lines (absolute audio paths); sample_rate/num_samples: model input; train: random crop
        and caption; cache_decoded: keep every decoded file (clips and negative audio) in memory, per process."""
        self.records = records
        # Decoding (FLAC, resampling) costs more than a heads-only training step; collate copies out of the cache.
        self._decoded: dict[str, np.ndarray] | None = {} if cache_decoded else None
        # When some clips carry negatives, every item does (empty lists where missing), so every batch has the key.
        self.has_negatives = any("negatives" in r for r in records)
        # Likewise for audio negatives ("negative_waveforms", possibly empty); evaluation never loads them.
        self.has_audio_negatives = train and any("negative_audio" in r for r in records)
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.train = train

    def __len__(self) -> int:
        """Number of clips."""
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """One clip: key is an index, or (index, seed) from ClipSampler for reproducible randomness."""
        index, seed = key if isinstance(key, tuple) else (key, 0)
        rec = self.records[index]
        rng = np.random.default_rng(seed) if self.train else None
        try:
            wave = self._decode(rec["audio"])
        except AudioDecodeError as exc:
            warnings.warn(f"skipping clip: {exc}", stacklevel=2)
            item = {"index": index, "path": rec["audio"], "error": str(exc)}
            if self.has_audio_negatives:  # tells collate_clips the batch key is due even if every clip failed
                item["negative_waveforms"] = []
            return item
        captions = list(rec.get("captions", []))
        if self.has_negatives and "negatives" not in rec:
            rec = {**rec, "negatives": [[] for _ in captions]}
        # The crop start is drawn here (exactly as crop_or_pad draws it) so negative audio can take the same crop.
        start = crop_start(len(wave), self.num_samples, rng)
        item: dict[str, Any] = {"index": index, "path": rec["audio"], "waveform": self._fit(wave, start)}
        if self.train and captions:
            pick = int(rng.integers(len(captions)))
            item["captions"] = [captions[pick]]
            if "negatives" in rec:
                item["negatives"] = [rec["negatives"][pick]]
            if "positives" in rec:  # multi-granular positives of a composed clip (modular loss)
                item["positives"] = list(rec["positives"])
            if self.has_audio_negatives:
                item["negative_waveforms"] = self._negative_waveforms(rec, pick, start)
        else:
            item["captions"] = captions
            if "negatives" in rec:
                item["negatives"] = rec["negatives"]
            if self.has_audio_negatives:
                item["negative_waveforms"] = []
        return item

    def _decode(self, path: str) -> np.ndarray:
        """A file's samples at the model rate, from memory when cache_decoded holds them (failures are not kept)."""
        if self._decoded is None:
            return load_audio(path, self.sample_rate)[0]
        wave = self._decoded.get(path)
        if wave is None:
            wave = self._decoded[path] = load_audio(path, self.sample_rate)[0]
        return wave

    def _fit(self, wave: np.ndarray, start: int) -> np.ndarray:
        """crop_or_pad with a given crop start: a long clip is cut at `start` (clamped), a short one repeat-padded."""
        if len(wave) > self.num_samples:
            start = min(start, len(wave) - self.num_samples)
            return wave[start:start + self.num_samples]
        return repeat_pad(wave, self.num_samples)

    def _negative_waveforms(self, rec: dict[str, Any], pick: int, start: int) -> list[np.ndarray]:
        """The picked caption's negative audio, cropped like the clip; a file that fails to decode is left out."""
        per_caption = rec.get("negative_audio") or []
        out = []
        for neg in per_caption[pick] if pick < len(per_caption) else []:
            try:
                wave = self._decode(neg["audio"])
            except AudioDecodeError as exc:
                warnings.warn(f"dropping a negative audio of {rec['audio']!r}: {exc}", stacklevel=3)
                continue
            out.append(self._fit(wave, start))
        return out


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch decoded clips; failed ones are dropped and listed under "skipped".

    Captions are flattened; caption_owner[i] is the position in the batch of the clip that caption i describes.
    With audio negatives (training): negative_waveforms (B, K, T) float32, row b the audio clip b's caption is
    false of, zero-padded to the batch's largest count K (0 allowed); negative_waveform_mask (B, K) marks real ones.
    """
    good = [it for it in items if "error" not in it]
    batch: dict[str, Any] = {"skipped": [it["path"] for it in items if "error" in it]}
    batch["index"] = torch.tensor([it["index"] for it in good], dtype=torch.long)
    batch["waveforms"] = (torch.from_numpy(np.stack([it["waveform"] for it in good])) if good
                          else torch.empty(0, 0))
    batch["captions"] = [c for it in good for c in it["captions"]]
    batch["caption_owner"] = torch.tensor([pos for pos, it in enumerate(good) for _ in it["captions"]],
                                          dtype=torch.long)
    if any("positives" in it for it in good):
        # Clips without explicit positives contribute their caption(s).
        pos = [it.get("positives") or it["captions"] for it in good]
        batch["positives"] = [p for ps in pos for p in ps]
        batch["positive_owner"] = torch.tensor([i for i, ps in enumerate(pos) for _ in ps], dtype=torch.long)
    if any("negatives" in it for it in good):
        # One list of {"text", "kind"} dicts per caption, parallel to batch["captions"].
        batch["negatives"] = [negs for it in good for negs in it.get("negatives", [[]] * len(it["captions"]))]
    if any("negative_waveforms" in it for it in items):
        negs = [it.get("negative_waveforms", []) for it in good]
        k = max((len(n) for n in negs), default=0)
        t = batch["waveforms"].shape[1] if good else 0
        batch["negative_waveforms"] = torch.zeros(len(good), k, t, dtype=torch.float32)
        batch["negative_waveform_mask"] = torch.zeros(len(good), k, dtype=torch.bool)
        for b, waves in enumerate(negs):
            for j, w in enumerate(waves):
                batch["negative_waveforms"][b, j] = torch.from_numpy(np.asarray(w, dtype=np.float32))
                batch["negative_waveform_mask"][b, j] = True
    return batch


def flatten_negatives(negatives: list[list[dict[str, str]]], max_negatives: int | None = None,
                      kinds: list[str] | None = None) -> tuple[list[str], torch.Tensor]:
    """Per-caption negative lists -> (flat texts in caption order, validity mask (B, K)).

    Row i of the mask has as many leading True slots as caption i keeps negatives (at most max_negatives,
    only of `kinds` when given); the flat texts fill the True slots row by row.
    """
    kept = [[n["text"] for n in negs if kinds is None or n.get("kind") in kinds][:max_negatives]
            for negs in negatives]
    k = max((len(x) for x in kept), default=0)
    mask = torch.zeros(len(kept), k, dtype=torch.bool)
    for i, x in enumerate(kept):
        mask[i, :len(x)] = True
    return [t for x in kept for t in x], mask
