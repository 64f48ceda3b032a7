"""Procedural sound events: attributes are audible, types are distinct, rendering is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from compclap.audio.synth import (
    DURATION_RANGE_S,
    EVENT_TYPES,
    render_composition,
    render_event,
    speech,
    speech_available,
)

SR = 16000
TYPES = list(EVENT_TYPES)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def _centroid(x: np.ndarray, sr: int = SR) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    return float((power * freqs).sum() / power.sum())


def _attrs(loudness="loud", pitch="low", duration="long") -> dict:
    return {"loudness": loudness, "pitch": pitch, "duration": duration}


def test_registry():
    assert len(EVENT_TYPES) >= 12
    for name, (gen, phrase) in EVENT_TYPES.items():
        assert callable(gen)
        assert phrase.split()[0] in ("a", "an") and len(phrase.split()) >= 2, name


@pytest.mark.parametrize("name", TYPES)
def test_event_waveform_is_valid_and_deterministic(name):
    x = render_event(name, _attrs(), 7, SR)
    assert x.dtype == np.float32 and x.ndim == 1
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0 and _rms(x) > 1e-3
    assert np.array_equal(x, render_event(name, _attrs(), 7, SR))
    assert not np.array_equal(x[:1000], render_event(name, _attrs(), 8, SR)[:1000])


@pytest.mark.parametrize("name", TYPES)
def test_attributes_are_audible(name):
    loud = render_event(name, _attrs(loudness="loud"), 3, SR)
    soft = render_event(name, _attrs(loudness="soft"), 3, SR)
    assert 20 * np.log10(_rms(loud) / _rms(soft)) > 15.0
    low = render_event(name, _attrs(pitch="low"), 3, SR)
    high = render_event(name, _attrs(pitch="high"), 3, SR)
    assert _centroid(high) > 1.8 * _centroid(low)
    for seed in range(3):
        for duration, (lo, hi) in DURATION_RANGE_S.items():
            n = len(render_event(name, _attrs(duration=duration), seed, SR))
            assert lo - 0.01 <= n / SR <= hi + 0.01


def test_jitter_within_attribute():
    a, b = (render_event("beep", _attrs(pitch="high", duration="short"), s, SR) for s in (1, 2))
    assert len(a) != len(b) or _centroid(a) != pytest.approx(_centroid(b), rel=1e-4)


def _logmel_features(x: np.ndarray, n_fft: int = 512, hop: int = 160, n_mels: int = 40) -> np.ndarray:
    """Mean, spread and frame-to-frame change of a log-mel spectrogram (a crude view of what a model sees)."""
    x = np.pad(x.astype(np.float64), (0, max(0, n_fft - len(x))))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(0, mel(SR / 2), n_mels + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / SR)
    fb = np.stack([np.clip(np.minimum((bins - edges[i]) / (edges[i + 1] - edges[i]),
                                      (edges[i + 2] - bins) / (edges[i + 2] - edges[i + 1])), 0, None)
                   for i in range(n_mels)])
    logmel = np.log(power @ fb.T + 1e-8)
    return np.concatenate([logmel.mean(0), logmel.std(0), np.abs(np.diff(logmel, axis=0)).mean(0)])


def test_types_are_distinct_in_log_mel():
    """A nearest-neighbour classifier on crude log-mel statistics tells the types apart across random attributes."""
    rng = np.random.default_rng(0)
    feats, labels = [], []
    for label, name in enumerate(TYPES):
        for _ in range(12):
            attrs = _attrs(*(str(rng.choice(v)) for v in (("loud", "soft"), ("high", "low"), ("short", "long"))))
            feats.append(_logmel_features(render_event(name, attrs, int(rng.integers(1 << 30)), SR)))
            labels.append(label)
    x, y = np.array(feats), np.array(labels)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    train, test = np.arange(len(x)) % 2 == 0, np.arange(len(x)) % 2 == 1
    dists = ((x[test][:, None] - x[train][None]) ** 2).sum(-1)
    accuracy = (y[train][dists.argmin(1)] == y[test]).mean()
    assert accuracy >= 0.9, accuracy


def test_same_seed_is_same_instance_across_loudness_and_pitch():
    loud = render_event("crackle", _attrs(loudness="loud"), 5, SR)
    soft = render_event("crackle", _attrs(loudness="soft"), 5, SR)
    assert np.corrcoef(loud, soft)[0, 1] > 0.999
    assert len(render_event("knock", _attrs(pitch="high"), 5, SR)) == len(render_event("knock", _attrs(), 5, SR))


def test_unknown_type_and_attribute():
    with pytest.raises(KeyError):
        render_event("trumpet", _attrs(), 0, SR)
    with pytest.raises(ValueError):
        render_event("beep", _attrs(loudness="medium"), 0, SR)


def test_render_composition_keeps_absolute_levels():
    soft = [["beep", _attrs(loudness="soft", duration="short"), 1], ["hum", _attrs(loudness="soft"), 2]]
    seq = render_composition({"relation": "sequence", "events": soft, "gaps_s": [0.1]}, SR)
    single = render_event("beep", _attrs(loudness="soft", duration="short"), 1, SR)
    assert _rms(seq) < 0.05 and np.max(np.abs(seq)) < 0.2  # not normalised up to "loud"
    np.testing.assert_allclose(seq[: len(single) // 2], single[: len(single) // 2])
    padded = render_composition({"relation": "overlay", "events": soft, "offsets_s": [0.0, 0.1]}, SR,
                                max_seconds=4.0, pad_to_seconds=4.0)
    assert len(padded) == 4 * SR and np.all(padded[2 * SR:] == 0)


def test_cached_events_render_the_same_audio_and_cannot_be_altered():
    import compclap.audio.synth as synth

    events = [["knock", _attrs(duration="short"), 4], ["bell", _attrs(pitch="high", duration="short"), 5]]
    plans = [{"relation": "sequence", "events": events, "gaps_s": [0.05]},
             {"relation": "sequence", "events": events[::-1], "gaps_s": [0.05]},  # its swapped twin: all hits
             {"relation": "single", "events": events[:1]}]
    synth._EVENT_CACHE.clear()
    for plan in plans:
        cached = render_composition(plan, SR, cache_events=True)
        np.testing.assert_array_equal(cached, render_composition(plan, SR))
    assert len(synth._EVENT_CACHE) == 2
    with pytest.raises(ValueError):  # read-only: a caller mutating its result can never poison the cache
        render_composition(plans[2], SR, cache_events=True)[:10] *= 2
    np.testing.assert_array_equal(render_composition(plans[2], SR, cache_events=True), render_composition(plans[2], SR))


@pytest.mark.skipif(not speech_available(), reason="espeak-ng not installed")
def test_speech_event():
    x = speech(np.random.default_rng(0), SR, _attrs(duration="short"))
    assert x.dtype == np.float32 and 0 < len(x) <= 1.3 * SR and _rms(x) > 1e-3
