"""Mixing ops: sequence with crossfade, overlay at relative RMS levels, peak normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from compclap.audio.mix import concat_crossfade, overlay, peak_normalise, prevent_clipping, rms

from audio_helpers import band_energy, tone  # noqa: E402

SR = 8000


def _noise(n: int, level: float, seed: int) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _tone(n: int, freq: float, level: float = 0.5) -> np.ndarray:
    return tone(n, freq, SR, level)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    return band_energy(x, lo, hi, SR)


def test_peak_normalise_sets_peak_and_keeps_silence():
    x = _noise(1000, 0.1, 0)
    y = peak_normalise(x, 0.9)
    assert y.dtype == np.float32
    assert np.max(np.abs(y)) == pytest.approx(0.9, rel=1e-5)
    z = np.zeros(10, dtype=np.float32)
    assert np.array_equal(peak_normalise(z), z)


def test_prevent_clipping_only_scales_down():
    quiet = _noise(100, 0.01, 1)
    assert np.array_equal(prevent_clipping(quiet), quiet)
    loud = _noise(100, 5.0, 1)
    out = prevent_clipping(loud)
    assert np.max(np.abs(out)) <= 1.0
    np.testing.assert_allclose(out / out[0], loud / loud[0], rtol=1e-4)  # same shape, only a gain


def test_concat_length_and_order():
    a, b = _tone(1000, 300), _tone(600, 2500)
    out = concat_crossfade([a, b], SR, crossfade_fraction=0.1)
    assert out.dtype == np.float32
    assert len(out) == 1000 + 600 - 60  # fade = 10 % of the shorter clip, overlapped once
    assert np.max(np.abs(out)) == pytest.approx(0.9, rel=1e-4)
    first, second = out[:800], out[-500:]
    assert _band_energy(first, 200, 400) > 100 * _band_energy(first, 2000, 3000)
    assert _band_energy(second, 2000, 3000) > 100 * _band_energy(second, 200, 400)
    rev = concat_crossfade([b, a], SR, crossfade_fraction=0.1)
    assert _band_energy(rev[:500], 2000, 3000) > 100 * _band_energy(rev[:500], 200, 400)


def test_concat_energy_of_first_clip_precedes_second():
    loud, soft = _noise(2000, 0.5, 2), _noise(2000, 0.05, 3)
    out = concat_crossfade([loud, soft], SR, 0.1, peak=None)
    assert rms(out[:1500]) > 5 * rms(out[-1500:])
    out = concat_crossfade([soft, loud], SR, 0.1, peak=None)
    assert rms(out[-1500:]) > 5 * rms(out[:1500])


def test_concat_equal_power_crossfade_keeps_level():
    a, b = _noise(4000, 0.2, 4), _noise(4000, 0.2, 5)
    out = concat_crossfade([a, b], SR, 0.25, peak=None)
    middle = out[4000 - 1000:4000]  # the crossfade region
    assert rms(middle) == pytest.approx(rms(a), rel=0.15)


def test_concat_gap_inserts_silence_and_keeps_levels_without_peak():
    a, b, c = _noise(500, 0.1, 6), _noise(300, 0.1, 7), _noise(400, 0.1, 8)
    out = concat_crossfade([a, b, c], SR, 0.1, gap_s=[0.05, 0.0], peak=None)
    gap = int(0.05 * SR)
    assert len(out) == 500 + gap + 300 + 400 - 30
    assert np.all(out[500:500 + gap] == 0)
    assert rms(out) < 0.2  # peak=None does not blow soft material up
    assert np.array_equal(concat_crossfade([a], SR, peak=None), a)


def test_concat_never_clips_and_validates():
    loud = [_noise(800, 3.0, 9), _noise(800, 3.0, 10)]
    assert np.max(np.abs(concat_crossfade(loud, SR, 0.1, peak=None))) <= 1.0
    with pytest.raises(ValueError):
        concat_crossfade([], SR)
    with pytest.raises(ValueError):
        concat_crossfade([loud[0]], SR, crossfade_fraction=0.9)
    with pytest.raises(ValueError):
        concat_crossfade(loud, SR, gap_s=[0.1, 0.1])


def test_overlay_length_is_max_and_pads():
    a, b = _tone(1000, 300, 0.2), _tone(400, 2500, 0.2)
    out = overlay([a, b])
    assert out.dtype == np.float32 and len(out) == 1000
    np.testing.assert_allclose(out[400:], a[400:], atol=1e-7)  # b zero-padded
    np.testing.assert_allclose(out[:400], a[:400] + b, atol=1e-7)
    delayed = overlay([b, a], offsets=[900, 0])
    assert len(delayed) == 1300


def test_overlay_honours_rms_ratio():
    a, b = _noise(3000, 0.05, 11), _tone(2000, 1000, 0.3)
    out = overlay([a, b], level_ratios_db=[0.0, -6.0])
    b_part = out[: len(b)] - a[: len(b)]
    assert 20 * np.log10(rms(b_part) / rms(a)) == pytest.approx(-6.0, abs=0.05)
    out = overlay([a, b], level_ratios_db=[0.0, 10.0])
    assert 20 * np.log10(rms(out[: len(b)] - a[: len(b)]) / rms(a)) == pytest.approx(10.0, abs=0.05)


def test_overlay_never_clips():
    a, b = _tone(1000, 300, 0.9), _tone(1000, 300, 0.9)  # in phase: would peak at 1.8
    out = overlay([a, b])
    assert np.max(np.abs(out)) <= 1.0
    assert np.max(np.abs(out)) > 0.95
    out = overlay([a, b], level_ratios_db=[0.0, 20.0])
    assert np.max(np.abs(out)) <= 1.0
    with pytest.raises(ValueError):
        overlay([])
    with pytest.raises(ValueError):
        overlay([a, b], level_ratios_db=[0.0])
