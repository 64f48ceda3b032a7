"""A model fine-tuned from a LAION-CLAP .pt keeps working after the .pt and its tokenizer folder are deleted."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from compclap.models import CLAPDualEncoder
from compclap.models.embedded import architecture_entry
from compclap.models.loading import load_model
from compclap.text.tokenizer import load_tokenizer
from test_convert_laion import reference_clap, write_laion

TEXTS = ["a dog barks while a man speaks", "a loud siren"]


def test_fused_laion_source_is_not_needed_to_reload(tmp_path, tokenizer_dir):
    tok = tmp_path / "roberta-base"
    shutil.copytree(tokenizer_dir, tok)
    pt = write_laion(tmp_path / "630k-fusion.pt", reference_clap(len(load_tokenizer(tok)), fusion=True))
    model = CLAPDualEncoder(pretrained=str(pt), pretrained_tokenizer=str(tok)).eval()
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "pytorch-lightning_version": "2.6.6", "hyper_parameters": {"model": {
                    "class_path": "compclap.models.CLAPDualEncoder",
                    "init_args": {"pretrained": str(pt), "pretrained_tokenizer": str(tok)}}},
                "compclap_architecture": architecture_entry(model)}, ckpt)
    waves = [np.random.default_rng(0).standard_normal(48_000 * 12).astype(np.float32) * 0.1]
    text, audio = model.embed_text(TEXTS), model.embed_audio(waves)
    pt.unlink()
    shutil.rmtree(tok)
    back = load_model(tmp_path / "run")
    assert back.frontend_config == model.frontend_config and back.audio.fusion
    torch.testing.assert_close(back.embed_text(TEXTS), text, atol=0, rtol=0)
    torch.testing.assert_close(back.embed_audio(waves), audio, atol=0, rtol=0)
