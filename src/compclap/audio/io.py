"""Decode audio files with soundfile, mix to mono and resample with soxr."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr


class AudioDecodeError(RuntimeError):
    """Raised when an audio file cannot be read; the message names the file."""


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float waveform with soxr (high quality); a no-op when the rates match."""
    if orig_sr == target_sr:
        return wave
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read wav/flac/ogg/mp3 as mono float32 in [-1, 1], resampled to `sample_rate` when given."""
    try:
        data, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise AudioDecodeError(f"cannot decode audio file {os.fspath(path)!r}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(f"audio file {os.fspath(path)!r} contains no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(wave)):
        raise AudioDecodeError(f"audio file {os.fspath(path)!r} contains NaN or infinite samples")
    if sample_rate is not None and sr != sample_rate:
        wave, sr = resample(wave, sr, sample_rate), sample_rate
    return np.ascontiguousarray(wave, dtype=np.float32), sr
