"""Small signal helpers shared by audio tests."""

from __future__ import annotations

import numpy as np


def tone(n: int, freq: float, sample_rate: int, level: float = 0.5) -> np.ndarray:
    """A float32 sine of n samples."""
    return (level * np.sin(2 * np.pi * freq * np.arange(n) / sample_rate)).astype(np.float32)


def band_energy(x: np.ndarray, lo: float, hi: float, sample_rate: int) -> float:
    """Spectral energy of x between lo and hi Hz."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sample_rate)
    return float(spec[(f >= lo) & (f < hi)].sum())
