"""Decode audio files with soundfile, mix to mono and resample with soxr."""

from __future__ import annotations

import io
import math
import os
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from compclap.audio.transforms import crop_start, repeat_pad

# Containers whose frame count libsndfile reports exactly and whose seeks are sample-accurate: a crop can be read
# without decoding the rest. Others (mp3, ogg, opus) are decoded whole.
_SEEKABLE_FORMATS = frozenset({"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF", "AU"})
# Source audio decoded beyond a crop on each side when resampling, so the resampler's filter sees the same
# neighbourhood as when the whole clip is resampled (soxr HQ needs < 4 ms; the result matches to ~1e-6).
_RESAMPLE_MARGIN_SECONDS = 0.01

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


class AudioDecodeError(RuntimeError):
    """Raised when an audio file cannot be read; the message names the file."""


# RIFF/WAVE format tags whose data chunk holds exactly block_align bytes per frame.
_FRAME_EXACT_WAV_TAGS = frozenset({1, 3, 6, 7, 0xFFFE})  # PCM, IEEE float, A-law, mu-law, extensible


def declared_wav_frames(source: AudioSource) -> int | None:
    """Frames the data chunk of a RIFF/WAVE header declares; None for other files and streamed sizes.

    libsndfile silently shortens a WAV cut off before its declared end, so a truncated file would
    otherwise decode as a shorter clip. File objects are read from their current position and left there.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as fh:
                return _wav_data_frames(fh)
        except OSError:
            return None  # the decoder reports an unreadable file
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _wav_data_frames(io.BytesIO(source))
    try:
        pos = source.tell()
    except (AttributeError, OSError):
        return None
    try:
        return _wav_data_frames(source)
    finally:
        source.seek(pos)


def _wav_data_frames(fh: BinaryIO) -> int | None:
    """The body of declared_wav_frames: walk the RIFF chunks up to "data"."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    block_align = None
    while True:
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if cid == b"fmt ":
            fmt = fh.read(size + (size & 1))
            if len(fmt) < 14 or int.from_bytes(fmt[:2], "little") not in _FRAME_EXACT_WAV_TAGS:
                return None
            block_align = int.from_bytes(fmt[12:14], "little")
        elif cid == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):  # 0 / all ones: size unknown (streamed)
                return None
            return size // block_align
        else:
            fh.seek(size + (size & 1), 1)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float waveform with soxr (high quality); a no-op when the rates match."""
    if orig_sr == target_sr:
        return wave
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def resampled_length(num_frames: int, orig_sr: int, target_sr: int) -> int:
    """Length of `resample` output for `num_frames` input frames (soxr rounds half up)."""
    if orig_sr == target_sr:
        return num_frames
    return (2 * num_frames * target_sr + orig_sr) // (2 * orig_sr)


def _mono(data: np.ndarray, label: str) -> np.ndarray:
    """(frames, channels) float32 -> finite mono float32."""
    if data.shape[0] == 0:
        raise AudioDecodeError(f"audio file {label!r} contains no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(wave)):
        raise AudioDecodeError(f"audio file {label!r} contains NaN or infinite samples")
    return wave


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read wav/flac/ogg/mp3 as mono float32 in [-1, 1], resampled to `sample_rate` when given."""
    declared = declared_wav_frames(path)
    try:
        data, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise AudioDecodeError(f"cannot decode audio file {os.fspath(path)!r}: {exc}") from exc
    if declared is not None and data.shape[0] < declared:
        raise AudioDecodeError(f"audio file {os.fspath(path)!r} is truncated: its header declares {declared} "
                               f"frames, it holds {data.shape[0]}")
    wave = _mono(data, os.fspath(path))
    if sample_rate is not None and sr != sample_rate:
        wave, sr = resample(wave, sr, sample_rate), sample_rate
    return np.ascontiguousarray(wave, dtype=np.float32), sr


def load_clip(source: AudioSource, sample_rate: int, num_samples: int, rng: np.random.Generator | None = None,
              name: str | None = None) -> np.ndarray:
    """One model input of exactly `num_samples` at `sample_rate`, decoding only the frames the crop needs.

    Same result as `crop_or_pad(load_audio(source, sample_rate)[0], num_samples, rng)` (the crop start is drawn
    identically from `rng`; None: head crop): bit-exact when the file is at `sample_rate`; when resampling, only
    the crop plus a 10 ms margin on each side (aligned to the rate ratio) is resampled, which matches resampling
    the whole clip to ~1e-6. Short clips are repeat-padded. mp3/ogg/opus are decoded whole.

    Args:
        source: a path, the encoded bytes, or a binary file object.
        sample_rate: output rate.
        num_samples: output length.
        rng: random crop start (training); None takes the head.
        name: how errors name the source (default: the path, or "<bytes>").
    """
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    elif isinstance(source, os.PathLike):
        source = os.fspath(source)
    declared = declared_wav_frames(source)
    try:
        handle = sf.SoundFile(source)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise AudioDecodeError(f"cannot decode audio file {label!r}: {exc}") from exc
    try:
        with handle as f:
            if declared is not None and f.frames < declared:
                raise AudioDecodeError(f"audio file {label!r} is truncated: its header declares {declared} "
                                       f"frames, it holds {f.frames}")
            wave = _read_clip(f, sample_rate, num_samples, rng, label)
    except AudioDecodeError:
        raise
    except Exception as exc:
        raise AudioDecodeError(f"cannot decode audio file {label!r}: {exc}") from exc
    return np.ascontiguousarray(wave, dtype=np.float32)


def _read(f: sf.SoundFile, frames: int, label: str) -> np.ndarray:
    """Read `frames` frames (-1: to the end) as mono; a short read of a known count is an error."""
    data = f.read(frames, dtype="float32", always_2d=True)
    if frames >= 0 and data.shape[0] < frames:
        raise AudioDecodeError(f"audio file {label!r} is truncated: read {data.shape[0]} of {frames} frames")
    return _mono(data, label)


def _read_clip(f: sf.SoundFile, sample_rate: int, num_samples: int, rng: np.random.Generator | None,
               label: str) -> np.ndarray:
    """The body of load_clip on an open file."""
    sr, frames = f.samplerate, f.frames
    if f.format not in _SEEKABLE_FORMATS or not f.seekable() or frames <= 0:
        wave = resample(_read(f, -1, label), sr, sample_rate)
        start = crop_start(len(wave), num_samples, rng)
        return wave[start:start + num_samples] if len(wave) > num_samples else repeat_pad(wave, num_samples)
    length = resampled_length(frames, sr, sample_rate)
    if length <= num_samples:
        return repeat_pad(resample(_read(f, frames, label), sr, sample_rate), num_samples)
    start = crop_start(length, num_samples, rng)
    if sr == sample_rate:
        if start:
            f.seek(start)
        return _read(f, num_samples, label)
    # Resample a window around the crop. `lo` is a multiple of `step` source frames, which is a whole number of
    # output frames, so the window's output samples sit exactly on the whole clip's output grid.
    step = sr // math.gcd(sr, sample_rate)
    margin = math.ceil(_RESAMPLE_MARGIN_SECONDS * sr)
    lo = max(0, (start * sr // sample_rate - margin) // step * step)
    hi = min(frames, -(-(start + num_samples) * sr // sample_rate) + margin)
    if lo:
        f.seek(lo)
    out = resample(_read(f, hi - lo, label), sr, sample_rate)
    offset = start - lo * sample_rate // sr
    clip = out[offset:offset + num_samples]
    if len(clip) != num_samples:  # cannot happen with soxr's rounding; never return a wrong length
        raise AudioDecodeError(f"audio file {label!r}: resampled window has {len(clip)} of {num_samples} samples")
    return clip
