"""Model files name only registered classes: crafted export configs and checkpoints are refused at every entry point.

Each crafted file would run code if built: a `compclap_config.json` naming `compclap.data.shards.read_sizes` with a
`pipe:` URL (a shell command), and a .ckpt of plain values whose hyper-parameters name `evil_mod.Evil`, a module
beside the checkpoint (on sys.path, as the working directory is) that writes a marker on import and in __init__.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from compclap.cli import main as compclap
from compclap.models.loading import load_model, load_state_into
from compclap.models.registry import (ALLOWED_CLASSES, DisallowedClassError, check_checkpoint, check_spec,
                                      import_allowed)
from compclap.models.specs import instantiate
from conftest import TINY_AUDIO, TINY_FRONTEND, TINY_TEXT, make_tiny_model, write_tiny_manifest

REPO = Path(__file__).resolve().parents[2]
EVIL_MODULE = '''
import pathlib
from torch import nn
MARKER = pathlib.Path({marker!r})
MARKER.write_text("imported")
class Evil(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        MARKER.write_text("constructed")
'''


def _text_spec(tokenizer_dir: Path) -> dict:
    return {"class_path": "compclap.models.HFTextEncoder",
            "init_args": {"tokenizer": str(tokenizer_dir), "config": TINY_TEXT, "max_length": 32}}


@pytest.fixture()
def evil(tmp_path, tokenizer_dir, monkeypatch) -> dict[str, Path]:
    """A JSON-only export folder running `pipe:touch MARKER`, a nested variant, and a .ckpt naming evil_mod.Evil."""
    marker = tmp_path / "MARKER"
    shell = {"class_path": "compclap.data.shards.read_sizes",
             "init_args": {"urls": ["shard-000000.tar"], "sizes": f"pipe:touch {marker}"}}
    export = tmp_path / "evil_export"
    export.mkdir()
    (export / "compclap_config.json").write_text(json.dumps({"format": "compclap", "format_version": 1,
                                                             "model": shell}))
    nested = tmp_path / "evil_nested_export"
    nested.mkdir()
    (nested / "compclap_config.json").write_text(json.dumps({"format": "compclap", "format_version": 1, "model": {
        "class_path": "compclap.models.CLAPDualEncoder",
        "init_args": {"embed_dim": 12, "audio": shell, "text": _text_spec(tokenizer_dir)}}}))
    ckpt_dir = tmp_path / "evil_ckpt"
    ckpt_dir.mkdir()
    (ckpt_dir / "evil_mod.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    ckpt = ckpt_dir / "evil.ckpt"
    torch.save({"pytorch-lightning_version": "2.6.0", "epoch": 0, "global_step": 0,
                "state_dict": {"model.logit_scale": torch.zeros(())},
                "hyper_parameters": {"model": {"class_path": "compclap.models.CLAPDualEncoder", "init_args": {
                    "embed_dim": 12, "audio": {"class_path": "evil_mod.Evil", "init_args": {}},
                    "text": _text_spec(tokenizer_dir)}},
                    "lr": 1e-3, "_instantiator": "lightning.pytorch.cli.instantiate_module"}}, ckpt)
    # The module beside the checkpoint is importable, as it is when compclap runs from that folder.
    monkeypatch.syspath_prepend(str(ckpt_dir))
    monkeypatch.chdir(ckpt_dir)
    monkeypatch.delitem(sys.modules, "evil_mod", raising=False)
    return {"marker": marker, "export": export, "nested": nested, "ckpt": ckpt, "tmp": tmp_path}


def _config(tmp: Path, tokenizer_dir: Path) -> Path:
    train = write_tiny_manifest(tmp, "train", 4)
    cfg = {"seed_everything": 0,
           "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                       "enable_model_summary": False, "num_sanity_val_steps": 0},
           "model": {"model": {"class_path": "compclap.models.CLAPDualEncoder", "init_args": {
               "embed_dim": 12, "audio": {"class_path": "compclap.models.HTSATAudioEncoder",
                                          "init_args": {"config": TINY_AUDIO, **TINY_FRONTEND}},
               "text": _text_spec(tokenizer_dir)}}},
           "data": {"train_manifest": str(train), "val_manifest": str(train), "test_manifest": str(train),
                    "predict_manifest": str(train), "batch_size": 2, "num_workers": 0}}
    path = tmp / "fit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _labels(tmp: Path) -> Path:
    """A two-class zero-shot benchmark of two short clips."""
    import numpy as np
    import soundfile as sf

    for name in ("a", "b"):
        sf.write(tmp / f"{name}.wav", np.zeros(800, dtype=np.float32), 8000)
    labels = tmp / "labels.csv"
    labels.write_text("path,label\na.wav,beep\nb.wav,hum\n")
    return labels


def _assert_nothing_ran(evil: dict[str, Path]) -> None:
    assert not evil["marker"].exists() and "evil_mod" not in sys.modules


SHELL_REFUSAL = "refusing to build 'compclap.data.shards.read_sizes'"
EVIL_REFUSAL = "refusing to build 'evil_mod.Evil' (named at hyper_parameters.model.init_args.audio.class_path)"


# ------------------------------------------------------------------------------- (a) JSON-only export folders
@pytest.mark.parametrize("which, at", [("export", "model.class_path"), ("nested", "model.init_args.audio.class_path")])
def test_load_model_refuses_an_export_config_naming_a_function(evil, which, at):
    with pytest.raises(DisallowedClassError) as err:
        load_model(evil[which])
    msg = str(err.value)
    assert SHELL_REFUSAL in msg and f"(named at {at})" in msg
    assert str(evil[which] / "compclap_config.json") in msg
    _assert_nothing_ran(evil)


def test_evaluate_and_export_refuse_the_export_folder(evil, capsys):
    labels = _labels(evil["tmp"])
    with pytest.raises(SystemExit) as rc:
        compclap(["evaluate", "zeroshot", "--model", f"evil={evil['export']}", "--csv", str(labels),
                  "--audio-root", str(evil["tmp"]), "--out", str(evil["tmp"] / "report"), "--no-cache",
                  "--no-progress", "--no-plots"])
    assert rc.value.code == 2
    err = capsys.readouterr().err
    assert SHELL_REFUSAL in err and str(evil["export"] / "compclap_config.json") in err
    with pytest.raises(SystemExit) as rc:
        compclap(["export", "--ckpt", str(evil["nested"]), "--out", str(evil["tmp"] / "out")])
    assert rc.value.code == 1
    err = capsys.readouterr().err
    assert SHELL_REFUSAL in err and str(evil["nested"] / "compclap_config.json") in err
    _assert_nothing_ran(evil)


# ---------------------------------------------------------------------- (b) a .ckpt naming a class beside it
def test_load_model_and_load_state_into_refuse_the_checkpoint(evil, tokenizer_dir):
    for call in (lambda: load_model(evil["ckpt"]), lambda: load_model(evil["ckpt"], tokenizer=tokenizer_dir),
                 lambda: load_state_into(make_tiny_model(tokenizer_dir), evil["ckpt"])):
        with pytest.raises(DisallowedClassError) as err:
            call()
        assert EVIL_REFUSAL in str(err.value) and str(evil["ckpt"]) in str(err.value)
    _assert_nothing_ran(evil)


def test_evaluate_and_export_refuse_the_checkpoint(evil, capsys):
    labels = _labels(evil["tmp"])
    with pytest.raises(SystemExit) as rc:
        compclap(["evaluate", "zeroshot", "--model", f"evil={evil['ckpt']}", "--csv", str(labels),
                  "--audio-root", str(evil["tmp"]), "--out", str(evil["tmp"] / "report"), "--no-cache",
                  "--no-progress", "--no-plots"])
    assert rc.value.code == 2
    err = capsys.readouterr().err
    assert EVIL_REFUSAL in err and str(evil["ckpt"]) in err
    with pytest.raises(SystemExit) as rc:
        compclap(["export", "--ckpt", str(evil["ckpt"]), "--out", str(evil["tmp"] / "out")])
    assert rc.value.code == 1
    err = capsys.readouterr().err
    assert EVIL_REFUSAL in err and str(evil["ckpt"]) in err
    _assert_nothing_ran(evil)


@pytest.mark.parametrize("subcommand", ["test", "fit", "validate", "predict"])
def test_ckpt_path_is_checked_before_lightning_rebuilds_from_it(evil, tokenizer_dir, subcommand):
    cfg = _config(evil["tmp"], tokenizer_dir)
    with pytest.raises(DisallowedClassError) as err:
        compclap([subcommand, "--config", str(cfg), "--ckpt_path", str(evil["ckpt"]),
                  "--run_dir", str(evil["tmp"] / "run")])
    assert EVIL_REFUSAL in str(err.value) and str(evil["ckpt"]) in str(err.value)
    _assert_nothing_ran(evil)


@pytest.mark.parametrize("which", ["ckpt", "nested"])
def test_init_from_refuses_crafted_files(evil, tokenizer_dir, which):
    cfg = _config(evil["tmp"], tokenizer_dir)
    with pytest.raises(DisallowedClassError) as err:
        compclap(["fit", "--config", str(cfg), "--model.init_from", str(evil[which]), "--trainer.fast_dev_run=true",
                  "--run_dir", str(evil["tmp"] / "run")])
    assert "refusing to build" in str(err.value) and str(evil[which]) in str(err.value)
    _assert_nothing_ran(evil)


# ---------------------------------------------------------------------------------------- the registry itself
def test_registry_entries_are_compclap_model_and_loss_classes():
    from torch import nn

    import compclap.losses
    import compclap.models

    for name in ALLOWED_CLASSES:
        cls = import_allowed(name, "test")
        assert isinstance(cls, type) and issubclass(cls, nn.Module), name
        assert name.startswith(("compclap.models.", "compclap.losses."))
    for package in (compclap.models, compclap.losses):
        for attr in package.__all__:
            assert f"{package.__name__}.{attr}" in ALLOWED_CLASSES


@pytest.mark.parametrize("bad", ["compclap.data.shards.read_sizes", "os.system", "CLAPDualEncoder",
                                 "torch.nn.Linear", "compclap.lit_module.CompClapModule", None, 3])
def test_anything_outside_the_registry_is_refused(bad):
    for spec in ({"class_path": bad}, {"_target_": bad}, [{"a": {"_class_path": bad}}],
                 {"class_path": "compclap.models.CLAPDualEncoder", "init_args": {"text": {"class_path": bad}}}):
        with pytest.raises(DisallowedClassError, match="file.json: refusing to build"):
            instantiate(spec, where="file.json")
    with pytest.raises(DisallowedClassError):
        check_checkpoint({"hyper_parameters": {"_instantiator": "os.system"}}, "x.ckpt")


def test_legitimate_specs_and_configs_pass(tokenizer_dir):
    from compclap.models.cnn14 import CNN14AudioEncoder

    model = make_tiny_model(tokenizer_dir, uncertainty=True)
    check_spec(model.spec(tokenizer=str(tokenizer_dir)), "spec")
    check_spec(CNN14AudioEncoder(channels=(2, 2, 2, 2, 2, 2), sample_rate=8000, clip_seconds=1.0).spec(), "spec")
    rebuilt = instantiate(model.spec(tokenizer=str(tokenizer_dir)), where="spec")
    assert type(rebuilt) is type(model) and rebuilt.uncertainty
    # The model and loss sections of every YAML config in the repository name registered classes only.
    configs = sorted((REPO / "conf").rglob("*.yaml"))
    assert configs
    for path in configs:
        cfg = yaml.safe_load(path.read_text()) or {}
        section = cfg.get("model") if isinstance(cfg, dict) else None
        check_spec({k: v for k, v in (section or {}).items() if k in ("model", "loss")}, str(path))
