"""The on-device log-mel front end matches transformers' ClapFeatureExtractor (rand_trunc, no fusion)."""

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor

from compclap.audio.features import FrontendConfig, LogMelSpectrogram
from compclap.audio.transforms import crop_or_pad, repeat_pad


def _reference(waves, cfg: FrontendConfig):
    fe = ClapFeatureExtractor(feature_size=cfg.n_mels, sampling_rate=cfg.sample_rate, hop_length=cfg.hop_length,
                              max_length_s=cfg.clip_seconds, fft_window_size=cfg.n_fft, frequency_min=cfg.f_min,
                              frequency_max=cfg.f_max, truncation="rand_trunc", padding="repeatpad")
    return fe(waves, sampling_rate=cfg.sample_rate, max_length=cfg.num_samples,
              return_tensors="np")["input_features"][:, 0]


def _natural_waves(sr: int, seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    noise = 0.1 * rng.standard_normal(n)
    tone_in_noise = 0.4 * np.sin(2 * np.pi * 660 * t) * np.exp(-t) + 0.01 * rng.standard_normal(n)
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 2000 * t / seconds) * t) + 0.005 * rng.standard_normal(n)
    short = 0.2 * rng.standard_normal(int(sr * seconds / 3.7))  # repeat-padded
    quiet = 1e-4 * rng.standard_normal(n)
    return [w.astype(np.float32) for w in (noise, tone_in_noise, chirp, short, quiet)]


@pytest.mark.parametrize("cfg", [FrontendConfig(),  # LAION 48 kHz, 10 s, 64 mels
                                 FrontendConfig(sample_rate=16000, clip_seconds=4.0, n_fft=512, hop_length=160,
                                                n_mels=32, f_max=8000.0)])
def test_logmel_matches_clap_feature_extractor(cfg):
    waves = _natural_waves(cfg.sample_rate, cfg.clip_seconds)
    ref = _reference(waves, cfg)
    batch = torch.from_numpy(np.stack([crop_or_pad(w, cfg.num_samples) for w in waves]))
    ours = LogMelSpectrogram(cfg)(batch).numpy()
    assert ours.shape == ref.shape == (len(waves), cfg.num_frames, cfg.n_mels)
    diff = np.abs(ours - ref)
    assert diff.mean() < 1e-3 and diff.max() < 1e-2, (diff.mean(), diff.max())


def test_float64_front_end_matches_pure_tone_far_below_peak():
    cfg = FrontendConfig(sample_rate=16000, clip_seconds=2.0, n_fft=512, hop_length=160, n_mels=32, f_max=8000.0)
    t = np.arange(cfg.num_samples) / cfg.sample_rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ref = _reference([tone], cfg)
    ours = LogMelSpectrogram(cfg, compute_dtype=torch.float64)(torch.from_numpy(tone)[None]).numpy()
    diff = np.abs(ours - ref)
    assert diff.mean() < 1e-3 and diff.max() < 1e-2


def test_front_end_ignores_autocast():
    cfg = FrontendConfig(sample_rate=8000, clip_seconds=1.0, n_fft=256, hop_length=80, n_mels=16, f_max=4000.0)
    x = torch.randn(2, cfg.num_samples) * 0.1
    lm = LogMelSpectrogram(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lm(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, lm(x))


def test_repeat_pad_and_crop():
    w = np.arange(1, 4, dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(w, 8), [1, 2, 3, 1, 2, 3, 0, 0])
    long = np.arange(100, dtype=np.float32)
    np.testing.assert_array_equal(crop_or_pad(long, 10), np.arange(10))  # evaluation: head crop
    crops = {int(crop_or_pad(long, 10, np.random.default_rng(s))[0]) for s in range(20)}
    assert len(crops) > 5 and all(0 <= c <= 90 for c in crops)  # training: random crops
    with pytest.raises(ValueError, match="empty"):
        repeat_pad(np.zeros(0, np.float32), 4)
