"""Dual encoder: shapes, pooling per architecture, freezing, temperature, HF ClapModel initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compclap.models import CLAPDualEncoder, HFTextEncoder, HTSATAudioEncoder
from conftest import TINY_AUDIO, TINY_FRONTEND, TINY_TEXT, make_tiny_model


def test_shapes_normalisation_and_temperature(tiny_model):
    out = tiny_model(torch.randn(3, 8000) * 0.1, ["a beep", "a hum", "a dog barks"])
    assert out["audio_embeds"].shape == out["text_embeds"].shape == (3, 12)
    torch.testing.assert_close(out["audio_embeds"].norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out["logit_scale"], torch.tensor(1 / 0.07))
    with torch.no_grad():
        tiny_model.logit_scale.fill_(math.log(500.0))
    assert tiny_model.scale().item() == pytest.approx(100.0)


def test_embed_api_accepts_paths_and_arrays_and_resamples(tiny_model, tmp_path):
    import soundfile as sf

    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    sf.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")  # 16 kHz file, model runs at 8 kHz
    tiny_model.train()
    from_path = tiny_model.embed_audio([str(tmp_path / "a.wav")])
    from_array = tiny_model.embed_audio([wave], sample_rate=16000)
    assert tiny_model.training  # mode restored
    assert from_path.shape == (1, 12) and not from_path.requires_grad
    torch.testing.assert_close(from_path, from_array, atol=1e-5, rtol=1e-4)
    text = tiny_model.embed_text(["a beep", "a hum"])
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="1-D"):
        tiny_model.embed_audio([np.zeros((2, 100), np.float32)])


@pytest.mark.parametrize("config,pooling", [
    (TINY_TEXT, "pooler"),
    ({**TINY_TEXT, "model_type": "bert", "max_position_embeddings": 40}, "pooler"),
    ({"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 40}, "eos"),
    ({"model_type": "t5", "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 2, "num_heads": 2}, "mean"),
])
def test_text_tower_pooling_per_architecture(tokenizer_dir, config, pooling):
    tower = HFTextEncoder(str(tokenizer_dir), config=config).eval()
    assert tower.pooling == pooling
    feats = tower(["a beep", "a high beep followed by a soft hum"])
    assert feats.shape == (2, tower.output_dim)
    # padding must not change a caption's features
    alone = tower(["a beep"])
    torch.testing.assert_close(feats[:1], alone, atol=1e-5, rtol=1e-4)


def test_gpt2_uses_end_of_text_hidden_state(tokenizer_dir):
    tower = HFTextEncoder(str(tokenizer_dir), config={"model_type": "gpt2", "n_embd": 16, "n_layer": 1,
                                                      "n_head": 2, "n_positions": 40}).eval()
    enc = tower.tokenize(["a beep", "a low hum then a click"])
    last = enc["attention_mask"].sum(1) - 1
    assert (enc["input_ids"][torch.arange(2), last] == tower.tokenizer.eos_token_id).all()
    hidden = tower.backbone(**enc).last_hidden_state
    torch.testing.assert_close(tower(["a beep", "a low hum then a click"]), hidden[torch.arange(2), last])


def test_t5_mean_pools_over_attention_mask(tokenizer_dir):
    tower = HFTextEncoder(str(tokenizer_dir), config={"model_type": "t5", "d_model": 16, "d_kv": 8, "d_ff": 32,
                                                      "num_layers": 1, "num_heads": 2}).eval()
    enc = tower.tokenize(["a beep", "a low hum then a click"])
    hidden = tower.backbone(**enc).last_hidden_state
    n = int(enc["attention_mask"][0].sum())
    torch.testing.assert_close(tower(["a beep", "a low hum then a click"])[0], hidden[0, :n].mean(0))


def test_freezing_towers_and_last_blocks(tokenizer_dir):
    audio = HTSATAudioEncoder(config=TINY_AUDIO, trainable_blocks=1, **TINY_FRONTEND)
    enc = audio.backbone.audio_encoder
    assert not any(p.requires_grad for p in enc.layers[0].parameters())
    assert all(p.requires_grad for p in enc.layers[1].parameters())
    assert all(p.requires_grad for p in enc.norm.parameters())
    assert not enc.patch_embed.proj.weight.requires_grad
    frozen = HTSATAudioEncoder(config=TINY_AUDIO, trainable_blocks=0, **TINY_FRONTEND)
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.backbone.audio_encoder.batch_norm.training  # frozen BN keeps its statistics
    text = HFTextEncoder(str(tokenizer_dir), config=TINY_TEXT, trainable_blocks=1)
    layers = text.backbone.encoder.layer
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    assert not text.backbone.embeddings.word_embeddings.weight.requires_grad
    model = CLAPDualEncoder(frozen, text, embed_dim=8)
    assert model.audio_projection.linear1.weight.requires_grad  # heads always train
    with pytest.raises(ValueError, match="only 2 blocks"):
        HTSATAudioEncoder(config=TINY_AUDIO, trainable_blocks=3, **TINY_FRONTEND)


def test_clip_too_long_for_htsat_is_a_clear_error():
    with pytest.raises(ValueError, match="spec_size"):
        HTSATAudioEncoder(config=TINY_AUDIO, **{**TINY_FRONTEND, "clip_seconds": 10.0})


def test_init_from_hugging_face_clap_directory(tmp_path, tokenizer_dir):
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    from compclap.text.tokenizer import load_tokenizer

    text_cfg = ClapTextConfig(vocab_size=len(load_tokenizer(tokenizer_dir)), hidden_size=16, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=32, max_position_embeddings=40)
    audio_cfg = ClapAudioConfig(**TINY_AUDIO, hidden_size=16, num_hidden_layers=2)
    torch.manual_seed(0)
    ref = ClapModel(ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(), projection_dim=10))
    ref.eval()
    ref.save_pretrained(tmp_path / "clap")
    load_tokenizer(tokenizer_dir).save_pretrained(tmp_path / "clap")
    fe = ClapFeatureExtractor(feature_size=16, sampling_rate=8000, hop_length=80, max_length_s=1, fft_window_size=256,
                              frequency_min=0, frequency_max=4000, truncation="rand_trunc", padding="repeatpad")
    fe.save_pretrained(tmp_path / "clap")

    ours = CLAPDualEncoder(hf_pretrained=str(tmp_path / "clap")).eval()
    assert ours.frontend_config.sample_rate == 8000 and ours.embed_dim == 10
    wave = (0.2 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    feats = fe([wave], sampling_rate=8000, return_tensors="pt")
    texts = ["a beep", "a high beep followed by a soft hum"]
    tok = load_tokenizer(tmp_path / "clap")(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref_audio = ref.get_audio_features(input_features=feats["input_features"].float()).pooler_output
        ref_text = ref.get_text_features(**tok).pooler_output
    torch.testing.assert_close(ours.embed_audio([wave]), F.normalize(ref_audio, dim=-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.embed_text(texts), F.normalize(ref_text, dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.logit_scale.detach(), ref.logit_scale_a.detach())
