"""Refusal paths: unsafe pickles, unknown layouts, missing / unexpected keys, architecture mismatches."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from compclap.models.loading import load_model, load_state_into
from compclap.models.safe_load import CheckpointLayoutError, UnsafeCheckpointError
from compclap.models.specs import instantiate
from conftest import make_tiny_model
from test_convert_laion import reference_clap, to_laion_layout


@pytest.fixture(scope="module")
def laion_state(tokenizer_dir):
    from compclap.text.tokenizer import load_tokenizer

    return to_laion_layout(reference_clap(len(load_tokenizer(tokenizer_dir))))


@pytest.mark.parametrize("payload", [argparse.Namespace(lr=1e-4), np.zeros(3)])
def test_pickled_objects_are_refused(tmp_path, payload):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"a.weight": torch.zeros(2)}, "args": payload}, path)
    with pytest.raises(UnsafeCheckpointError, match="weights_only=True"):
        load_model(path)
    with pytest.raises(UnsafeCheckpointError):
        load_state_into(torch.nn.Linear(2, 2), path)


def test_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a"):
        load_model(tmp_path / "notes.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointLayoutError, match="not a checkpoint dictionary"):
        load_model(tmp_path / "list.pt")
    torch.save({"epoch": 3, "note": "x"}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointLayoutError, match="holds no state dict"):
        load_model(tmp_path / "meta.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.pt")


def test_unknown_layout_names_the_nearest_and_the_first_keys(tmp_path):
    state = {f"encoder.block{i}.weight": torch.zeros(1) for i in range(15)}
    state.update({"audio_encoder.base.conv.weight": torch.zeros(1), "logit_scale": torch.zeros(())})
    torch.save(state, tmp_path / "mystery.pt")
    with pytest.raises(CheckpointLayoutError) as info:
        load_model(tmp_path / "mystery.pt", tokenizer="unused")
    msg = str(info.value)
    assert "matches no known checkpoint layout" in msg and "the nearest is MS-CLAP" in msg
    assert "missing keys (3): ['audio_encoder.projection.*', 'caption_encoder.base.*', 'caption_encoder.projection.*']" in msg
    assert "unexpected keys (15)" in msg and msg.count("encoder.block") == 10  # first 10 only


def test_laion_file_with_missing_or_extra_keys_is_refused(tmp_path, tokenizer_dir, laion_state):
    broken = {k: v for k, v in laion_state.items() if k != "text_branch.encoder.layer.1.output.dense.weight"}
    broken["audio_branch.extra_block.weight"] = torch.zeros(3)
    torch.save({"state_dict": broken}, tmp_path / "broken.pt")
    with pytest.raises(CheckpointLayoutError) as info:
        load_model(tmp_path / "broken.pt", tokenizer=tokenizer_dir)
    msg = str(info.value)
    assert "LAION-CLAP (HTSAT" in msg
    assert "missing keys (1): ['text.backbone.encoder.layer.1.output.dense.weight']" in msg
    assert "unexpected keys (1): ['audio_branch.extra_block.weight']" in msg
    assert "never leaves weights randomly initialised" in msg


def test_foreign_file_without_tokenizer_says_which_to_pass(tmp_path, laion_state):
    torch.save({"state_dict": laion_state}, tmp_path / "laion.pt")
    with pytest.raises(ValueError, match="roberta-base"):
        load_model(tmp_path / "laion.pt")


def test_architecture_mismatch_leaves_the_model_untouched(tmp_path, tokenizer_dir, laion_state):
    torch.save({"state_dict": laion_state}, tmp_path / "laion.pt")
    model = make_tiny_model(tokenizer_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointLayoutError, match="shape mismatches|missing keys"):
        load_state_into(model, tmp_path / "laion.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_compclap_weights_lightning_checkpoints_and_bare_state_dicts(tmp_path, tokenizer_dir):
    source = make_tiny_model(tokenizer_dir).eval()
    with torch.no_grad():
        source.logit_scale.fill_(1.5)
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
                "pytorch-lightning_version": "2.6.6", "epoch": 1}, tmp_path / "last.ckpt")
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    for path in (tmp_path / "last.ckpt", tmp_path, tmp_path / "weights.pt"):  # file, run directory, bare weights
        target = make_tiny_model(tokenizer_dir)
        load_state_into(target, path)
        assert target.logit_scale.item() == pytest.approx(1.5)
    with pytest.raises(CheckpointLayoutError, match="carry no architecture"):
        load_model(tmp_path / "weights.pt", tokenizer=tokenizer_dir)


def test_specs_only_build_compclap_classes():
    with pytest.raises(ValueError, match="refusing to build .os.system."):
        instantiate({"class_path": "os.system", "init_args": {"command": "true"}})
