"""LAION-CLAP .pt checkpoints: random-weight files in LAION's layout load and match transformers' ClapModel."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compclap.models.convert_laion import htsat_config_from_state, htsat_size_name
from compclap.models.loading import load_model, load_state_into

# LAION's real preprocessing (48 kHz, 10 s, 64 mels) needs spec_size 256; widths stay tiny.
AUDIO = dict(spec_size=256, num_mel_bins=64, depths=[2, 2], num_attention_heads=[1, 2], patch_embeds_hidden_size=8,
             window_size=8, hidden_size=16, num_hidden_layers=2)
TEXT = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=40, layer_norm_eps=1e-5)
TEXTS = ["a dog barks while a man speaks", "a loud siren", "rain falls on a roof"]


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Move every parameter and BatchNorm statistic away from its initial value (zeros, ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def reference_clap(vocab_size: int, fusion: bool = False, seed: int = 0):
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(seed)
    clap = ClapModel(ClapConfig(audio_config={**AUDIO, "enable_fusion": fusion},
                                text_config={**TEXT, "vocab_size": vocab_size}, projection_dim=24)).eval()
    randomise(clap, seed)
    return clap


def to_laion_layout(clap) -> dict[str, torch.Tensor]:
    """Write a ClapModel's weights under LAION-CLAP's names (the inverse of transformers' conversion)."""
    out: dict[str, torch.Tensor] = {}
    state = clap.state_dict()
    for key, value in state.items():
        if key.startswith("audio_model.audio_encoder."):
            rest = key[len("audio_model.audio_encoder."):]
            m = re.match(r"(layers\.\d+\.blocks\.\d+)\.attention\.self\.(query|key|value)\.(weight|bias)$", rest)
            if m:
                if m.group(2) == "query":
                    parts = [state[f"audio_model.audio_encoder.{m.group(1)}.attention.self.{p}.{m.group(3)}"]
                             for p in ("query", "key", "value")]
                    out[f"audio_branch.{m.group(1)}.attn.qkv.{m.group(3)}"] = torch.cat(parts)
                continue
            rest = (rest.replace("attention.self.", "attn.").replace("attention.output.dense", "attn.proj")
                    .replace("intermediate.dense", "mlp.fc1").replace("output.dense", "mlp.fc2")
                    .replace("layernorm_before", "norm1").replace("layernorm_after", "norm2")
                    .replace("batch_norm", "bn0"))
            out[f"audio_branch.{rest}"] = value
        elif key.startswith("text_model."):
            if not key.endswith("token_type_ids"):
                out["text_branch." + key[len("text_model."):]] = value
        elif m := re.match(r"(audio|text)_projection\.linear([12])\.(.*)$", key):
            out[f"{m.group(1)}_projection.{0 if m.group(2) == '1' else 2}.{m.group(3)}"] = value
        else:
            out[key] = value  # logit_scale_a, logit_scale_t
    # Keys LAION files carry that the model does not use.
    g = torch.Generator().manual_seed(1)
    out["audio_branch.spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024, generator=g)
    out["audio_branch.spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(513, 1, 1024, generator=g)
    out["audio_branch.logmel_extractor.melW"] = torch.randn(513, 64, generator=g)
    out["audio_branch.head.weight"], out["audio_branch.head.bias"] = torch.randn(527, 527), torch.randn(527)
    out["audio_branch.tscam_conv.weight"], out["audio_branch.tscam_conv.bias"] = torch.randn(527, 16, 2, 3), torch.randn(527)
    out["audio_branch.layers.0.blocks.1.attn_mask"] = torch.zeros(64, 64, 64)  # (64/8)^2 windows of 8x8
    out["audio_branch.layers.1.blocks.1.attn_mask"] = torch.zeros(16, 64, 64)
    for side in ("audio", "text"):
        for i in (0, 3):
            out[f"{side}_transform.sequential.{i}.weight"] = torch.randn(24, 24, generator=g)
            out[f"{side}_transform.sequential.{i}.bias"] = torch.randn(24, generator=g)
    assert "text_branch.embeddings.position_ids" in out  # released files carry it
    return out


def write_laion(path, clap, wrapped: bool = True, ddp: bool = True):
    state = to_laion_layout(clap)
    if ddp:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"epoch": 45, "name": "630k-audioset-best", "state_dict": state} if wrapped else state, path)
    return path


def quantise(wave: np.ndarray) -> np.ndarray:
    return ((np.clip(wave, -1, 1) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


@pytest.fixture(scope="module")
def vocab(tokenizer_dir):
    from compclap.text.tokenizer import load_tokenizer

    return len(load_tokenizer(tokenizer_dir))


def test_laion_unfused_matches_transformers(tmp_path, tokenizer_dir, vocab):
    from transformers import ClapFeatureExtractor

    from compclap.text.tokenizer import load_tokenizer

    ref = reference_clap(vocab)
    path = write_laion(tmp_path / "630k-audioset-best.pt", ref)  # {"state_dict": {"module.*": ...}}
    ours = load_model(path, tokenizer=tokenizer_dir)
    assert not ours.training and ours.embed_dim == 24
    cfg = ours.frontend_config
    assert (cfg.sample_rate, cfg.clip_seconds, cfg.hop_length, cfg.mel_scale, cfg.quantize_int16) == \
        (48_000, 10.0, 480, "slaney", True)
    assert ours.text.backbone.config.layer_norm_eps == 1e-5  # RoBERTa's, not ClapTextConfig's 1e-12
    assert ours.text.backbone.config.num_attention_heads == 2

    tok = load_tokenizer(tokenizer_dir)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref_text = ref.get_text_features(**tok).pooler_output
    torch.testing.assert_close(ours.embed_text(TEXTS), ref_text, atol=1e-5, rtol=1e-5)

    rng = np.random.default_rng(0)
    waves = [(0.3 * rng.standard_normal(48_000 * 4)).astype(np.float32),          # repeat-padded
             (0.1 * np.sin(np.arange(48_000 * 10) / 7.0)).astype(np.float32)]
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10,
                              fft_window_size=1024, frequency_min=50, frequency_max=14_000, truncation="rand_trunc",
                              padding="repeatpad")
    feats = fe([quantise(w) for w in waves], sampling_rate=48_000, return_tensors="pt")["input_features"].float()
    with torch.no_grad():
        ref_audio = ref.get_audio_features(input_features=feats).pooler_output
        # the weights alone: identical input features through our towers and heads
        same_input = F.normalize(ours.audio_projection(ours.audio.backbone(input_features=feats).pooler_output), dim=-1)
    torch.testing.assert_close(same_input, ref_audio, atol=1e-5, rtol=1e-5)
    # end to end, with our on-device front end (int16 quantisation included)
    torch.testing.assert_close(ours.embed_audio(waves), ref_audio, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(ours.logit_scale.detach(), ref.logit_scale_a.detach())


def test_raw_state_dict_without_module_prefix(tmp_path, tokenizer_dir, vocab):
    from compclap.text.tokenizer import load_tokenizer

    ref = reference_clap(vocab, seed=5)
    ours = load_model(write_laion(tmp_path / "raw.pt", ref, wrapped=False, ddp=False), tokenizer=tokenizer_dir)
    tok = load_tokenizer(tokenizer_dir)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref_text = ref.get_text_features(**tok).pooler_output
    torch.testing.assert_close(ours.embed_text(TEXTS), ref_text, atol=1e-5, rtol=1e-5)


def test_laion_fusion_is_detected_and_matches_transformers(tmp_path, tokenizer_dir, vocab, monkeypatch):
    from transformers import ClapFeatureExtractor

    ref = reference_clap(vocab, fusion=True, seed=3)
    ours = load_model(write_laion(tmp_path / "630k-audioset-fusion-best.pt", ref), tokenizer=tokenizer_dir)
    assert ours.audio.fusion and ours.frontend_config.mel_scale == "htk"
    rng = np.random.default_rng(1)
    waves = [(0.2 * rng.standard_normal(48_000 * 17)).astype(np.float32),   # longer than 10 s: fusion path
             (0.2 * rng.standard_normal(48_000 * 3)).astype(np.float32)]    # shorter: first channel only
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=48_000, hop_length=480, max_length_s=10,
                              fft_window_size=1024, frequency_min=50, frequency_max=14_000, truncation="fusion")
    monkeypatch.setattr(np.random, "choice", lambda r: r[len(r) // 2])  # our evaluation picks the middle start
    inputs = fe([quantise(w) for w in waves], sampling_rate=48_000, return_tensors="pt")
    assert inputs["is_longer"].flatten().tolist() == [True, False]
    with torch.no_grad():
        ref_audio = ref.get_audio_features(input_features=inputs["input_features"].float(),
                                           is_longer=inputs["is_longer"]).pooler_output
    torch.testing.assert_close(ours.embed_audio(waves), ref_audio, atol=2e-4, rtol=1e-4)


def test_laion_weights_into_a_configured_roberta_model(tmp_path, tokenizer_dir, vocab):
    """`--model.init_from 630k.pt` with a config that names HTSAT + a plain RoBERTa tower (as conf/model does)."""
    from compclap.models import CLAPDualEncoder, HFTextEncoder, HTSATAudioEncoder

    ref = reference_clap(vocab)
    path = write_laion(tmp_path / "laion.pt", ref)
    audio = HTSATAudioEncoder(config=AUDIO)
    text = HFTextEncoder(str(tokenizer_dir), config={"model_type": "roberta", **TEXT, "vocab_size": vocab,
                                                     "type_vocab_size": 1, "pad_token_id": 1})
    model = CLAPDualEncoder(audio, text, embed_dim=24)
    assert "LAION-CLAP (HTSAT" in load_state_into(model, path)
    loaded = load_model(path, tokenizer=tokenizer_dir)
    torch.testing.assert_close(model.embed_text(TEXTS), loaded.embed_text(TEXTS), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("preset,width,depths", [("tiny", 96, [2, 2, 6, 2]), ("base", 128, [2, 2, 12, 2])])
def test_htsat_size_is_read_from_shapes(preset, width, depths):
    """HTSAT-tiny (630k checkpoints) vs HTSAT-base (music/speech checkpoints), from the shapes alone."""
    state = {"patch_embed.proj.weight": torch.zeros(width, 1, 4, 4), "patch_embed.norm.weight": torch.zeros(width),
             "bn0.weight": torch.zeros(64), "norm.weight": torch.zeros(width * 8)}
    for i, (depth, heads) in enumerate(zip(depths, [4, 8, 16, 32])):
        dim = width * 2 ** i
        for j in range(depth):
            state[f"layers.{i}.blocks.{j}.attn.relative_position_bias_table"] = torch.zeros(15 * 15, heads)
            state[f"layers.{i}.blocks.{j}.attn.qkv.bias"] = torch.zeros(3 * dim)
            state[f"layers.{i}.blocks.{j}.mlp.fc1.weight"] = torch.zeros(4 * dim, dim)
    state["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 64, 64)
    cfg = htsat_config_from_state(state)
    assert htsat_size_name(cfg) == f"HTSAT-{preset}"
    assert (cfg["depths"], cfg["window_size"], cfg["spec_size"], cfg["hidden_size"]) == (depths, 8, 256, width * 8)
    assert not cfg.get("enable_fusion")


def test_pretrained_argument_builds_the_architecture_from_a_laion_file(tmp_path, tokenizer_dir, vocab):
    """`--model.model.init_args.pretrained 630k.pt --model.model.init_args.pretrained_tokenizer roberta-base/`."""
    from compclap.models import CLAPDualEncoder

    path = write_laion(tmp_path / "laion.pt", reference_clap(vocab))
    model = CLAPDualEncoder(pretrained=str(path), pretrained_tokenizer=str(tokenizer_dir), audio_trainable_blocks=0,
                            text_trainable_blocks=1)
    assert model.training and model.frontend_config.quantize_int16
    assert not any(p.requires_grad for p in model.audio.parameters())
    layers = model.text.backbone.encoder.layer
    assert all(p.requires_grad for p in layers[1].parameters()) and not any(p.requires_grad for p in layers[0].parameters())
    torch.testing.assert_close(model.embed_text(TEXTS), load_model(path, tokenizer=tokenizer_dir).embed_text(TEXTS))
