"""A run directory means its best checkpoint (else last.ckpt); evaluate says which file it read; reused names refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from compclap.models.run_dir import checkpoint_exists, resolve_checkpoint
from conftest import CAPTIONS, make_tiny_model, write_tiny_manifest

MONITOR_KEY = "ModelCheckpoint{'monitor': 'val/t2a_R@1', 'mode': 'max'}"


def _write_ckpt(path: Path, model, step: int, best: str | None, monitor: str | None = "val/t2a_R@1") -> Path:
    """A compclap Lightning checkpoint (weights, embedded architecture, ModelCheckpoint state) without training."""
    from compclap.models.embedded import architecture_entry

    callbacks = {MONITOR_KEY if monitor else "ModelCheckpoint{'monitor': None}": {
        "monitor": monitor, "best_model_path": best, "best_model_score": torch.tensor(0.25) if monitor else None}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "pytorch-lightning_version": "2.6.6", "global_step": step, "hyper_parameters": {},
                "callbacks": callbacks, "compclap_architecture": architecture_entry(model)}, path)
    return path


@pytest.fixture()
def run_dir(tmp_path, tokenizer_dir) -> Path:
    """A run whose best checkpoint (step 2) and last.ckpt (step 4) hold different weights; written elsewhere first."""
    torch.manual_seed(0)
    best_model, last_model = make_tiny_model(tokenizer_dir), make_tiny_model(tokenizer_dir)
    run = tmp_path / "run"
    # The callback state names the folder the run was written in; the run has moved since.
    _write_ckpt(run / "checkpoints" / "best-epoch000-step000002.ckpt", best_model, 2,
                "/elsewhere/run/checkpoints/best-epoch000-step000002.ckpt")
    _write_ckpt(run / "checkpoints" / "last.ckpt", last_model, 4,
                "/elsewhere/run/checkpoints/best-epoch000-step000002.ckpt")
    return run


def test_run_dir_resolves_to_the_best_checkpoint(run_dir):
    best = run_dir / "checkpoints" / "best-epoch000-step000002.ckpt"
    resolved = resolve_checkpoint(run_dir)
    assert resolved.path == best and "best checkpoint" in resolved.how and "val/t2a_R@1 = 0.25" in resolved.how
    assert resolve_checkpoint(run_dir / "checkpoints").path == best
    assert resolve_checkpoint(run_dir / "last").path == run_dir / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(run_dir / "best").path == best
    assert resolve_checkpoint(best).how == "file"
    assert checkpoint_exists(run_dir / "last") and not checkpoint_exists(run_dir / "nothing")


def test_run_dir_without_a_monitored_best_is_its_last_checkpoint(tmp_path, tokenizer_dir):
    run = tmp_path / "run"
    model = make_tiny_model(tokenizer_dir)
    _write_ckpt(run / "checkpoints" / "epoch=0-step=4.ckpt", model, 4, str(run / "checkpoints/epoch=0-step=4.ckpt"),
                monitor=None)
    _write_ckpt(run / "checkpoints" / "last.ckpt", model, 4, str(run / "checkpoints/epoch=0-step=4.ckpt"), monitor=None)
    assert resolve_checkpoint(run).path == run / "checkpoints" / "last.ckpt"
    with pytest.raises(FileNotFoundError, match="records no best checkpoint"):
        resolve_checkpoint(run / "best")


def test_load_model_reads_the_best_checkpoint(run_dir):
    from compclap.models.loading import load_model

    texts = CAPTIONS[:3]
    best = load_model(run_dir / "checkpoints" / "best-epoch000-step000002.ckpt").embed_text(texts)
    last = load_model(run_dir / "checkpoints" / "last.ckpt").embed_text(texts)
    assert not torch.allclose(best, last)
    torch.testing.assert_close(load_model(run_dir).embed_text(texts), best)
    torch.testing.assert_close(load_model(run_dir / "last").embed_text(texts), last)


def _compa_csv(root: Path) -> Path:
    write_tiny_manifest(root, "clips", 4)
    path = root / "compa_order.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file"])
        writer.writerow([CAPTIONS[0], CAPTIONS[3], "audio/clips_000.wav", "audio/clips_003.wav"])
        writer.writerow([CAPTIONS[1], CAPTIONS[2], "audio/clips_001.wav", "audio/clips_002.wav"])
    return path


def test_evaluate_records_the_file_read_and_refuses_a_reused_name(run_dir, tmp_path, capsys):
    from compclap.eval.cli import main

    csv_path = _compa_csv(tmp_path / "data")
    out = tmp_path / "report"
    common = ["--csv", f"order={csv_path}", "--out", str(out), "--no-cache", "--no-progress", "--n-boot", "10"]
    assert main(["compa", "--model", f"ours={run_dir}", *common]) == 0
    best = (run_dir / "checkpoints" / "best-epoch000-step000002.ckpt").resolve()
    assert f"{best}" in capsys.readouterr().out
    info = json.loads((out / "results.json").read_text())["models"]["ours"]
    assert info["checkpoint"] == str(best) and info["resolved_as"].startswith("best checkpoint of run directory")
    assert best.name in (out / "report.md").read_text()

    # The same name for another checkpoint would silently replace its results: refused, the report is unchanged.
    assert main(["compa", "--model", f"ours={run_dir / 'last'}", *common]) == 2
    err = capsys.readouterr().err
    assert "model name 'ours' already labels" in err and "--replace" in err
    assert json.loads((out / "results.json").read_text())["models"]["ours"]["checkpoint"] == str(best)
    # The same path again is fine (its results are refreshed), and --replace lets the name move.
    assert main(["compa", "--model", f"ours={run_dir}", *common]) == 0
    assert main(["compa", "--model", f"ours={run_dir / 'last'}", "--replace", *common]) == 0
    info = json.loads((out / "results.json").read_text())["models"]["ours"]
    assert info["checkpoint"] == str((run_dir / "checkpoints" / "last.ckpt").resolve())
