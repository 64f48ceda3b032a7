"""Mixing operations for compositional audio: sequence with crossfade, overlay at relative levels, peak normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Tiny floor so silent clips never cause a division by zero.
_EPS = 1e-12
# Target when a mix would clip: a hair under full scale so 16-bit encoders never wrap.
_SAFE_PEAK = 0.999


def rms(x: np.ndarray) -> float:
    """Root-mean-square level of a waveform (0.0 for an empty one)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def peak_normalise(x: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale `x` so its largest absolute sample equals `peak`; silent input is returned unchanged (float32)."""
    x = np.asarray(x, dtype=np.float32)
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m < _EPS:
        return x.copy()
    return (x * np.float32(peak / m)).astype(np.float32)


def prevent_clipping(x: np.ndarray) -> np.ndarray:
    """Scale `x` down (never up) so every sample satisfies |x| <= 1 (float32)."""
    x = np.asarray(x, dtype=np.float32)
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m > 1.0:
        # The clip guards against float rounding landing a sample a ulp above 1.
        x = np.clip(x * np.float32(_SAFE_PEAK / m), -1.0, 1.0)
    return x.astype(np.float32, copy=False)


def _as_mono(clip: np.ndarray) -> np.ndarray:
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 1:
        raise ValueError(f"expected a 1-D mono waveform, got shape {clip.shape}")
    return clip


def concat_crossfade(clips: Sequence[np.ndarray], sample_rate: int, crossfade_fraction: float = 0.1,
                     gap_s: float | Sequence[float] = 0.0, peak: float | None = 0.9) -> np.ndarray:
    """Concatenate clips in order with equal-power crossfades (or faded silence gaps), then peak-normalise.

    The fade between two neighbours lasts `crossfade_fraction` of the shorter one. With a gap
    (seconds; one value, or one per junction) the clips do not overlap: each side is faded over the
    same length and silence is inserted. `peak=None` keeps absolute levels and only scales down
    when the result would clip, which preserves loud/soft differences between whole clips.
    """
    if len(clips) == 0:
        raise ValueError("concat_crossfade needs at least one clip")
    if not 0.0 <= crossfade_fraction <= 0.5:
        # Above one half, a middle clip's two fades would overlap each other.
        raise ValueError(f"crossfade_fraction must be in [0, 0.5], got {crossfade_fraction}")
    parts = [_as_mono(c).copy() for c in clips]
    gaps = [float(gap_s)] * (len(parts) - 1) if np.isscalar(gap_s) else [float(g) for g in gap_s]
    if len(gaps) != len(parts) - 1:
        raise ValueError(f"need {len(parts) - 1} gaps for {len(parts)} clips, got {len(gaps)}")

    out = parts[0]
    prev_len = len(parts[0])
    for nxt, gap in zip(parts[1:], gaps):
        fade = int(crossfade_fraction * min(prev_len, len(nxt)))
        gap_n = max(0, int(round(gap * sample_rate)))
        if fade > 0:
            # Equal-power (sin/cos) fades keep the summed energy flat for uncorrelated signals.
            ramp = (np.arange(fade, dtype=np.float64) + 0.5) / fade
            fade_in = np.sin(0.5 * np.pi * ramp).astype(np.float32)
            fade_out = np.cos(0.5 * np.pi * ramp).astype(np.float32)
            out = out.copy()
            out[-fade:] *= fade_out
            nxt = nxt.copy()
            nxt[:fade] *= fade_in
        if gap_n > 0 or fade == 0:
            out = np.concatenate([out, np.zeros(gap_n, dtype=np.float32), nxt])
        else:
            overlap = out[-fade:] + nxt[:fade]
            out = np.concatenate([out[:-fade], overlap, nxt[fade:]])
        prev_len = len(nxt)
    out = out.astype(np.float32, copy=False)
    return peak_normalise(out, peak) if peak is not None else prevent_clipping(out)


def overlay(clips: Sequence[np.ndarray], level_ratios_db: Sequence[float] | None = None,
            offsets: Sequence[int] | None = None) -> np.ndarray:
    """Mix clips on top of each other, each at an RMS level (dB) relative to the first clip, without clipping.

    The result is as long as the longest clip (after `offsets`, in samples, which delay each clip);
    shorter ones are zero-padded. `level_ratios_db=None` keeps every clip at its own level.
    """
    if len(clips) == 0:
        raise ValueError("overlay needs at least one clip")
    parts = [_as_mono(c) for c in clips]
    offs = [0] * len(parts) if offsets is None else [int(o) for o in offsets]
    if len(offs) != len(parts) or min(offs) < 0:
        raise ValueError("offsets must be one non-negative sample count per clip")
    if level_ratios_db is not None:
        if len(level_ratios_db) != len(parts):
            raise ValueError(f"need {len(parts)} level ratios, got {len(level_ratios_db)}")
        ref = rms(parts[0])
        scaled = []
        for clip, db in zip(parts, level_ratios_db):
            level = rms(clip)
            gain = 0.0 if level < _EPS else ref * 10.0 ** (float(db) / 20.0) / level
            scaled.append((clip * np.float32(gain)).astype(np.float32))
        parts = scaled
    length = max(o + len(c) for o, c in zip(offs, parts))
    mix = np.zeros(length, dtype=np.float32)
    for o, c in zip(offs, parts):
        mix[o:o + len(c)] += c
    return prevent_clipping(mix)
