"""Fit waveforms to the model's clip length: repeat-pad short clips, crop long ones."""

from __future__ import annotations

import numpy as np


def repeat_pad(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Tile a short clip as many whole times as fits, then zero-pad (LAION/HF "repeatpad")."""
    if len(wave) == 0:
        raise ValueError("cannot pad an empty waveform")
    if len(wave) >= num_samples:
        return wave[:num_samples]
    repeats = num_samples // len(wave)
    tiled = np.tile(wave, repeats)
    return np.pad(tiled, (0, num_samples - len(tiled)))


def crop_or_pad(wave: np.ndarray, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return exactly `num_samples`: a random crop when `rng` is given (training), else the head; short clips repeat-pad."""
    if len(wave) > num_samples:
        start = int(rng.integers(0, len(wave) - num_samples + 1)) if rng is not None else 0
        return wave[start:start + num_samples]
    return repeat_pad(wave, num_samples)
