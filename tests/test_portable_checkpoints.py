"""Self-contained runs (architecture + tokenizer in the checkpoint), command line over checkpoint, --run_dir order."""

from __future__ import annotations

import csv
import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import lightning as L

from compclap.cli import main
from compclap.models.loading import load_model
from conftest import CAPTIONS, write_tiny_manifest
from tests.eval.test_evaluate_cli import _save_tiny_clap

TEXTS = ["a high beep followed by a soft hum", "a loud siren", "rain falls on a roof"]


def _hf_config(tmp: Path, hf_dir: Path, train: Path, run_dir: str | None = None) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"save_last": True, "save_top_k": 1}}]},
        "model": {"model": {"class_path": "compclap.models.CLAPDualEncoder",
                            "init_args": {"audio": None, "text": None, "hf_pretrained": str(hf_dir)}},
                  "lr": 1e-3},
        "data": {"train_manifest": str(train), "test_manifest": str(train), "batch_size": 4, "num_workers": 0},
    }
    if run_dir is not None:
        cfg["run_dir"] = run_dir
    path = tmp / "hf_fit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _compa_csv(tmp: Path) -> Path:
    """A CompA-order CSV over the tiny manifest's clips (paths relative to the CSV's folder)."""
    path = tmp / "compa_order.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file"])
        writer.writerow([CAPTIONS[0], CAPTIONS[3], "audio/train_000.wav", "audio/train_003.wav"])
        writer.writerow([CAPTIONS[1], CAPTIONS[2], "audio/train_001.wav", "audio/train_002.wav"])
    return path


def _waves() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in (5000, 8000, 11000)]


@pytest.fixture()
def spy_test(monkeypatch) -> dict:
    """Record what Trainer.test returned and the hyper-parameters of the module it tested."""
    seen: dict = {}
    original = L.Trainer.test

    @functools.wraps(original)  # LightningCLI builds the `test` options from this signature
    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen["metrics"] = out[0] if out else {}
        seen["hparams"] = dict(self.lightning_module.hparams)
        return out

    monkeypatch.setattr(L.Trainer, "test", spy)
    return seen


def test_hf_run_loads_and_tests_after_the_source_folder_is_gone(tmp_path, tokenizer_dir, spy_test):
    hf_dir = _save_tiny_clap(tmp_path / "clap-src", tokenizer_dir, 0)
    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _hf_config(tmp_path, hf_dir, train)
    run = tmp_path / "run"
    main(["fit", "--config", str(cfg), "--trainer.max_steps=2", "--run_dir", str(run)])
    ckpt = run / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, weights_only=True)
    assert "tokenizer.json" in stored["compclap_architecture"]["tokenizer_files"]
    before = load_model(run)
    text_before, audio_before = before.embed_text(TEXTS), before.embed_audio(_waves())

    shutil.move(str(hf_dir), str(tmp_path / "moved-away"))
    after = load_model(run)
    torch.testing.assert_close(after.embed_text(TEXTS), text_before, atol=0, rtol=0)
    torch.testing.assert_close(after.embed_audio(_waves()), audio_before, atol=0, rtol=0)
    shutil.rmtree(tmp_path / "moved-away")

    # The same config (whose hf_pretrained no longer exists), compa_csvs overridden on the command line: they count.
    csv_path = _compa_csv(tmp_path)
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt), "--run_dir", str(tmp_path / "test_run"),
          "--model.compa_csvs", f"{{order: {csv_path}}}"])
    assert spy_test["hparams"]["compa_csvs"] == {"order": str(csv_path)}
    for metric in ("text", "audio", "group"):
        assert f"test/compa_order_{metric}" in spy_test["metrics"]
    assert "test/t2a_R@1" in spy_test["metrics"]


def test_checkpoint_hparams_fill_in_what_the_command_line_leaves_out(tmp_path, tokenizer_dir, spy_test, capsys):
    hf_dir = _save_tiny_clap(tmp_path / "clap-src", tokenizer_dir, 0)
    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _hf_config(tmp_path, hf_dir, train)
    csv_path = _compa_csv(tmp_path)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=1", "--run_dir", str(tmp_path / "run"),
          "--model.eval_chunk_size", "5", "--model.compa_csvs", f"{{order: {csv_path}}}", "--model.init_from",
          str(hf_dir)])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # No model options on this command line: the checkpoint's are used (the config file says nothing about them),
    # and its init_from is not loaded again (the checkpoint's weights replace it).
    shutil.rmtree(hf_dir)
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt), "--run_dir", str(tmp_path / "t1")])
    assert spy_test["hparams"]["eval_chunk_size"] == 5 and spy_test["hparams"]["init_from"] is None
    assert "test/compa_order_group" in spy_test["metrics"]
    # The command line wins over the checkpoint.
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt), "--run_dir", str(tmp_path / "t2"),
          "--model.eval_chunk_size", "3", "--model.compa_csvs", "null"])
    assert spy_test["hparams"]["eval_chunk_size"] == 3 and not spy_test["hparams"]["compa_csvs"]
    assert "test/compa_order_group" not in spy_test["metrics"]
    # --print_config shows what will run: the checkpoint's values under the command line's.
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt), "--model.eval_chunk_size", "3", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["eval_chunk_size"] == 3 and printed["model"]["compa_csvs"] == {"order": str(csv_path)}


def test_older_checkpoint_takes_the_new_source_path_from_the_command_line(tmp_path, tokenizer_dir, spy_test):
    hf_dir = _save_tiny_clap(tmp_path / "clap-src", tokenizer_dir, 0)
    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _hf_config(tmp_path, hf_dir, train)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=1", "--run_dir", str(tmp_path / "run")])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    old = torch.load(ckpt, weights_only=True)
    del old["compclap_architecture"]  # as written before checkpoints carried their architecture
    torch.save(old, ckpt)
    moved = tmp_path / "moved"
    shutil.move(str(hf_dir), str(moved))
    main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt), "--run_dir", str(tmp_path / "t"),
          "--model.model.init_args.hf_pretrained", str(moved)])
    assert spy_test["hparams"]["model"]["init_args"]["hf_pretrained"] == str(moved)
    assert "test/t2a_R@1" in spy_test["metrics"]


def test_embedded_tokenizer_names_are_checked(tmp_path):
    from compclap.models.embedded import load_embedded_tokenizer, register_tokenizer

    with pytest.raises(ValueError, match="plain file names"):
        register_tokenizer({"../evil.json": b"{}"})
    with pytest.raises(FileNotFoundError, match="stored inside a compclap checkpoint"):
        load_embedded_tokenizer("embedded:0000")


def test_run_dir_on_the_command_line_wins_over_a_later_config(tmp_path, tokenizer_dir):
    hf_dir = _save_tiny_clap(tmp_path / "clap-src", tokenizer_dir, 0)
    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _hf_config(tmp_path, hf_dir, train, run_dir=str(tmp_path / "experiment_run"))
    mine = tmp_path / "my_run"
    main(["fit", "--run_dir", str(mine), "--config", str(cfg), "--trainer.max_steps=1"])
    assert (mine / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "experiment_run").exists()


def test_run_dir_options_move_to_the_end():
    from compclap.cli_ckpt import explicit_option, run_dir_last

    argv = ["fit", "--run_dir", "a", "--config", "x.yaml", "--run_dir=b", "--trainer.max_steps=1"]
    assert run_dir_last(argv) == ["fit", "--config", "x.yaml", "--trainer.max_steps=1", "--run_dir", "a",
                                  "--run_dir=b"]
    assert explicit_option(argv, "run_dir") == "b" and explicit_option(argv, "ckpt_path") is None


def test_pretrained_fragment_reads_a_hf_folder_with_its_own_tokenizer(tmp_path, tokenizer_dir):
    from compclap.models import CLAPDualEncoder

    fragment = yaml.safe_load((Path(__file__).parents[1] / "conf" / "model" / "pretrained.yaml").read_text())
    args = fragment["model"]["model"]["init_args"]
    assert args["pretrained_tokenizer"] is None  # a Hugging Face folder, an export or a run brings its own
    hf_dir = _save_tiny_clap(tmp_path / "clap", tokenizer_dir, 0)
    model = CLAPDualEncoder(**{**args, "pretrained": str(hf_dir)})
    assert model.embed_text(TEXTS).shape == (3, 8)
    with pytest.raises(FileNotFoundError, match=r"set model\.model\.init_args\.pretrained_tokenizer"):
        CLAPDualEncoder(**{**args, "pretrained": str(hf_dir), "pretrained_tokenizer": str(tmp_path / "roberta-base")})
