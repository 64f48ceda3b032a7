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


def crop_start(length: int, num_samples: int, rng: np.random.Generator | None = None) -> int:
    """First sample of the crop that `crop_or_pad` takes from a clip of `length` samples (0 unless it is longer).

    Shared with the decoders that read only the cropped frames, so both draw the same random start.
    """
    if length > num_samples and rng is not None:
        return int(rng.integers(0, length - num_samples + 1))
    return 0


def crop_or_pad(wave: np.ndarray, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Return exactly `num_samples`: a random crop when `rng` is given (training), else the head; short clips repeat-pad."""
    if len(wave) > num_samples:
        start = crop_start(len(wave), num_samples, rng)
        return wave[start:start + num_samples]
    return repeat_pad(wave, num_samples)
