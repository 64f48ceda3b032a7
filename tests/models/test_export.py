"""`compclap export`: Hugging Face ClapModel directories (HTSAT + RoBERTa) and compclap directories, round trips."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compclap.models.export import export_model, main
from compclap.models.loading import load_model, load_state_into
from conftest import make_tiny_model

TEXTS = ["a high beep followed by a soft hum", "a loud siren", "rain falls on a roof"]


def _randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _waves(sr=8000, n=3):
    rng = np.random.default_rng(0)
    return [(0.2 * rng.standard_normal(int(sr * s))).astype(np.float32) for s in (0.6, 1.0, 1.7)[:n]]


def test_tiny_model_exports_to_a_clap_model_directory(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    ours = _randomise(make_tiny_model(tokenizer_dir))
    assert export_model(ours, tmp_path / "hf") == "hf"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"):
        assert (tmp_path / "hf" / name).is_file(), name
    clap = ClapModel.from_pretrained(tmp_path / "hf").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        ref_text = clap.get_text_features(**tok(TEXTS, padding=True, return_tensors="pt")).pooler_output
        feats = ours.audio.features(torch.stack([torch.from_numpy(w[:8000]) for w in _waves()[1:]]))
        ref_audio = clap.get_audio_features(input_features=feats).pooler_output
        same_input = F.normalize(ours.audio_projection(ours.audio.backbone(input_features=feats).pooler_output), dim=-1)
    torch.testing.assert_close(ours.embed_text(TEXTS), ref_text, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(same_input, ref_audio, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(clap.logit_scale_a, ours.logit_scale)
    # Hugging Face's own preprocessing from the exported preprocessor_config.json
    fe = ClapFeatureExtractor.from_pretrained(tmp_path / "hf")
    waves = _waves()
    inputs = fe(waves[:2], sampling_rate=8000, return_tensors="pt")  # clips <= 1 s: no random crop
    with torch.no_grad():
        hf_audio = clap.get_audio_features(input_features=inputs["input_features"].float()).pooler_output
    torch.testing.assert_close(ours.embed_audio(waves[:2]), hf_audio, atol=1e-4, rtol=1e-4)
    # and back into compclap, identically
    back = load_model(tmp_path / "hf")
    assert back.frontend_config == ours.frontend_config
    torch.testing.assert_close(back.embed_text(TEXTS), ours.embed_text(TEXTS), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(back.embed_audio(waves), ours.embed_audio(waves), atol=1e-6, rtol=1e-6)


def test_cli_exports_a_laion_checkpoint_and_keeps_its_front_end(tmp_path, tokenizer_dir, capsys):
    from transformers import ClapModel

    from test_convert_laion import reference_clap, write_laion
    from compclap.text.tokenizer import load_tokenizer

    pt = write_laion(tmp_path / "laion.pt", reference_clap(len(load_tokenizer(tokenizer_dir)), fusion=True))
    with pytest.warns(UserWarning, match="quantize_int16"):
        assert main(["--ckpt", str(pt), "--out", str(tmp_path / "out"), "--tokenizer", str(tokenizer_dir)]) == 0
    assert "Hugging Face ClapModel" in capsys.readouterr().out
    pre = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert pre["truncation"] == "fusion" and pre["compclap_frontend"]["quantize_int16"] is True
    assert ClapModel.from_pretrained(tmp_path / "out").config.audio_config.enable_fusion
    original, exported = load_model(pt, tokenizer=tokenizer_dir), load_model(tmp_path / "out")
    assert exported.frontend_config == original.frontend_config
    waves = [np.random.default_rng(0).standard_normal(48_000 * 12).astype(np.float32) * 0.1]
    torch.testing.assert_close(exported.embed_audio(waves), original.embed_audio(waves), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(exported.embed_text(TEXTS), original.embed_text(TEXTS), atol=1e-6, rtol=1e-6)


def _cnn14_gpt2_model(tokenizer_dir):
    from compclap.models import CLAPDualEncoder, HFTextEncoder
    from compclap.models.cnn14 import CNN14AudioEncoder

    audio = CNN14AudioEncoder(sample_rate=8000, clip_seconds=1.0, n_fft=256, hop_length=80, n_mels=32, f_max=4000.0,
                              channels=(4, 4, 8, 8, 16, 16), embed_dim=12)
    text = HFTextEncoder(str(tokenizer_dir), config={"model_type": "gpt2", "n_embd": 16, "n_layer": 1, "n_head": 2,
                                                     "n_positions": 40, "bos_token_id": 2, "eos_token_id": 2})
    return _randomise(CLAPDualEncoder(audio, text, embed_dim=10, projection_activation="gelu",
                                      projection_style="msclap"), seed=1)


def test_other_architectures_export_a_compclap_directory(tmp_path, tokenizer_dir):
    import yaml

    from compclap.models.specs import instantiate

    ours = _cnn14_gpt2_model(tokenizer_dir)
    with pytest.raises(ValueError, match="CNN14AudioEncoder, not HTSAT"):
        export_model(ours, tmp_path / "x", fmt="hf")
    assert export_model(ours, tmp_path / "out") == "compclap"
    out = tmp_path / "out"
    for name in ("compclap_config.json", "model.safetensors", "tokenizer/tokenizer.json", "model.yaml"):
        assert (out / name).is_file(), name
    back = load_model(out)
    waves = _waves()
    torch.testing.assert_close(back.embed_audio(waves), ours.embed_audio(waves), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(back.embed_text(TEXTS), ours.embed_text(TEXTS), atol=1e-6, rtol=1e-6)
    # model.yaml is a `compclap fit --config` fragment: same architecture, weights through init_from
    fragment = yaml.safe_load((out / "model.yaml").read_text())["model"]
    fresh = instantiate(fragment["model"]).eval()
    load_state_into(fresh, fragment["init_from"])
    torch.testing.assert_close(fresh.embed_text(TEXTS), ours.embed_text(TEXTS), atol=1e-6, rtol=1e-6)
    from compclap.cli import CompClapCLI
    from compclap.data.datamodule import ManifestDataModule
    from compclap.lit_module import CompClapModule

    class ParseOnly(CompClapCLI):
        def instantiate_classes(self) -> None:
            """Parse and validate only."""

    conf = Path(__file__).resolve().parents[2] / "conf" / "fit.yaml"
    cli = ParseOnly(CompClapModule, ManifestDataModule, run=False,
                    args=["--config", str(conf), "--config", str(out / "model.yaml")])
    assert cli.config.model.model.init_args.audio.class_path == "compclap.models.cnn14.CNN14AudioEncoder"
    with pytest.raises(FileExistsError, match="overwrite"):
        export_model(ours, out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert export_model(ours, out, overwrite=True) == "compclap"


def test_export_command_reports_errors(tmp_path, capsys):
    from compclap.cli import main as compclap_main

    assert main(["--ckpt", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        compclap_main(["export", "--ckpt", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 1
