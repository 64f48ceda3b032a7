"""Fusion front end (4 mel channels + is_longer) vs transformers' ClapFeatureExtractor(truncation="fusion")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compclap.audio.features import FrontendConfig, LogMelSpectrogram, quantize_int16
from compclap.audio.fusion import fit_length, fusion_batch

# 64 mel bins: transformers' fusion shrinks the whole-clip spectrogram to 64 bins whatever feature_size says.
CFG = FrontendConfig(sample_rate=16_000, clip_seconds=2.0, n_fft=512, hop_length=160, n_mels=64, f_min=50.0,
                     f_max=8_000.0, mel_scale="htk")


def _waves():
    rng = np.random.default_rng(0)
    sr, n = CFG.sample_rate, CFG.num_samples
    t = np.arange(int(5.3 * sr)) / sr
    long_chirp = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.01 * rng.standard_normal(len(t))
    return [w.astype(np.float32) for w in (
        long_chirp,                                   # 5.3 s: fusion
        0.2 * rng.standard_normal(int(0.7 * sr)),     # short: repeat-padded, 4 copies
        0.2 * rng.standard_normal(n + 50),            # longer by less than a hop: one chunk, not "longer"
        0.1 * rng.standard_normal(n),                 # exactly the clip length
        0.2 * rng.standard_normal(3 * n + 999),       # 6 s: fusion
    )]


def test_fusion_features_match_clap_feature_extractor():
    from transformers import ClapFeatureExtractor

    waves = _waves()
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=CFG.sample_rate, hop_length=CFG.hop_length,
                              max_length_s=int(CFG.clip_seconds), fft_window_size=CFG.n_fft,
                              frequency_min=CFG.f_min, frequency_max=CFG.f_max, truncation="fusion",
                              padding="repeatpad")
    np.random.seed(123)
    ref = fe(waves, sampling_rate=CFG.sample_rate, return_tensors="np")
    np.random.seed(123)  # replay the extractor's random chunk starts, in the same order
    ours, longer = fusion_batch([torch.from_numpy(w) for w in waves], LogMelSpectrogram(CFG), CFG.num_samples,
                                CFG.num_frames, "repeatpad", choose=lambda r: int(np.random.choice(r)))
    assert ours.shape == ref["input_features"].shape == (len(waves), 4, CFG.num_frames, 64)
    assert longer.tolist() == ref["is_longer"].flatten().tolist() == [True, False, False, False, True]
    diff = np.abs(ours.numpy() - ref["input_features"])
    assert diff.mean() < 1e-3 and diff.max() < 1e-2, (diff.mean(), diff.max())


def test_fusion_encoder_is_deterministic_in_eval_and_flags_one_clip_in_training():
    from compclap.models import HTSATAudioEncoder

    audio = HTSATAudioEncoder(config=dict(spec_size=64, num_mel_bins=16, depths=[1, 1], num_attention_heads=[1, 2],
                                          patch_embeds_hidden_size=8, window_size=4, enable_fusion=True),
                              sample_rate=8000, clip_seconds=1.0, n_fft=256, hop_length=80, f_min=0.0, f_max=4000.0,
                              mel_scale="htk").eval()
    long = torch.randn(8000 * 3) * 0.1
    short = torch.randn(3000) * 0.1
    feats, longer = audio.fusion_features([long, short])
    assert feats.shape == (2, 4, 101, 16) and longer.tolist() == [True, False]
    torch.testing.assert_close(feats, audio.fusion_features([long, short])[0])  # middle chunks, no randomness
    torch.testing.assert_close(feats[1, 0], feats[1, 3])  # a short clip repeats its spectrogram
    with torch.no_grad():
        out = audio([long, short])
        assert out.shape == (2, audio.output_dim)
        torch.testing.assert_close(audio([long, short]), out)
        # a batch of clip-length waveforms works too, and nothing is flagged in evaluation
        assert audio.fusion_features(torch.randn(3, 8000))[1].tolist() == [False] * 3
    audio.train()
    torch.manual_seed(0)
    flags = audio.fusion_features(torch.randn(3, 8000))[1]
    assert flags.sum() == 1  # LAION/transformers training behaviour keeps the fusion layers in use


def test_fit_length_and_int16_quantisation():
    w = torch.arange(1.0, 4.0)
    assert fit_length(w, 8, "repeatpad").tolist() == [1, 2, 3, 1, 2, 3, 0, 0]
    assert fit_length(w, 8, "repeat").tolist() == [1, 2, 3, 1, 2, 3, 1, 2]  # MS-CLAP
    assert fit_length(torch.arange(10.0), 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="padding"):
        fit_length(w, 8, "pad")
    x = np.random.default_rng(0).uniform(-1.2, 1.2, 1000).astype(np.float32)
    expected = (np.clip(x, -1, 1) * 32767.0).astype(np.int16) / 32767.0  # laion_clap's round trip
    np.testing.assert_allclose(quantize_int16(torch.from_numpy(x)).numpy(), expected, atol=1e-7)


def test_hf_fused_directory_loads_and_matches_clap_model(tmp_path, tokenizer_dir, monkeypatch):
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    from compclap.models.loading import load_model
    from compclap.text.tokenizer import load_tokenizer

    torch.manual_seed(0)
    audio_cfg = dict(spec_size=128, num_mel_bins=64, depths=[1, 1], num_attention_heads=[1, 2],
                     patch_embeds_hidden_size=8, window_size=4, hidden_size=16, num_hidden_layers=2, enable_fusion=True)
    text_cfg = dict(vocab_size=len(load_tokenizer(tokenizer_dir)), hidden_size=16, num_hidden_layers=1,
                    num_attention_heads=2, intermediate_size=32, max_position_embeddings=40)
    ref = ClapModel(ClapConfig(audio_config=audio_cfg, text_config=text_cfg, projection_dim=10)).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref.save_pretrained(tmp_path / "fused")
    load_tokenizer(tokenizer_dir).save_pretrained(tmp_path / "fused")
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=8000, hop_length=80, max_length_s=2, fft_window_size=256,
                              frequency_min=0, frequency_max=4000, truncation="fusion", padding="repeatpad")
    fe.save_pretrained(tmp_path / "fused")  # 2 s at hop 80: 201 frames, under spec_size 128 x 2

    ours = load_model(tmp_path / "fused")
    assert ours.audio.fusion and ours.frontend_config.mel_scale == "htk"
    rng = np.random.default_rng(0)
    waves = [(0.2 * rng.standard_normal(8000 * 7)).astype(np.float32), (0.2 * rng.standard_normal(5000)).astype(np.float32)]
    monkeypatch.setattr(np.random, "choice", lambda r: r[len(r) // 2])
    inputs = fe(waves, sampling_rate=8000, return_tensors="pt")
    with torch.no_grad():
        expected = ref.get_audio_features(input_features=inputs["input_features"].float(),
                                          is_longer=inputs["is_longer"]).pooler_output
    torch.testing.assert_close(ours.embed_audio(waves), expected, atol=1e-4, rtol=1e-4)
    assert F.cosine_similarity(ours.embed_audio(waves[:1]), expected[:1]).item() > 0.9999
