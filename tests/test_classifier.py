"""Fine-tuning a classifier (`compclap classify`): training, checkpoints, exact resume, the probe benchmark's row."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import TINY_AUDIO, TINY_FRONTEND, TINY_TEXT
from test_training_cli import SimulatedCrash

SR = 8000


class LossRecorder(L.Callback):
    """Keeps every training step's loss (class attribute: the CLI builds the instance)."""

    losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Record the step's loss."""
        LossRecorder.losses.append(float(outputs["loss"]))


@pytest.fixture()
def esc50(tmp_path) -> Path:
    """ESC-50 layout: 3 tone classes x 3 folds x 4 clips of 1 s."""
    root = tmp_path / "ESC-50"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for fold in (1, 2, 3):
        for target, (category, freq) in enumerate([("dog", 300.0), ("rain", 900.0), ("church_bells", 2400.0)]):
            for k in range(4):
                name = f"{fold}-{target}{k}-A-{target}.wav"
                t = np.arange(SR) / SR
                wave = 0.4 * np.sin(2 * np.pi * freq * (1 + 0.02 * k) * t) + 0.01 * rng.standard_normal(SR)
                sf.write(root / "audio" / name, wave.astype(np.float32), SR)
                rows.append([name, fold, target, category])
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "fold", "target", "category"])
        writer.writerows(rows)
    return root


def _config(tmp: Path, tokenizer_dir: Path, esc50: Path, callbacks: list[dict] | None = None,
            name: str = "classify.yaml") -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"save_last": True, "save_top_k": 1}}, *(callbacks or [])]},
        "model": {
            "model": {"class_path": "compclap.models.CLAPDualEncoder", "init_args": {
                "embed_dim": 12,
                "audio": {"class_path": "compclap.models.HTSATAudioEncoder",
                          "init_args": {"config": {**TINY_AUDIO, "hidden_dropout_prob": 0.1}, **TINY_FRONTEND}},
                "text": {"class_path": "compclap.models.HFTextEncoder",
                         "init_args": {"tokenizer": str(tokenizer_dir), "config": TINY_TEXT, "max_length": 32}}}},
            "head": "mlp", "hidden_dim": 16, "dropout": 0.1, "lr": 3e-3, "head_lr": 1e-2},
        "data": {"class_path": "compclap.data.labelled.LabelledDataModule",
                 "init_args": {"esc50": str(esc50), "batch_size": 6, "num_workers": 0, "val_fraction": 0.25}},
    }
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


def test_classify_fit_learns_and_its_checkpoint_is_a_compclap_checkpoint(tmp_path, tokenizer_dir, esc50) -> None:
    from compclap.classifier import load_classifier_head, main
    from compclap.data.labelled import classifier_split, read_labelled
    from compclap.models import CLAPDualEncoder
    from compclap.models.loading import load_model

    LossRecorder.losses = []
    cfg = _config(tmp_path, tokenizer_dir, esc50, [{"class_path": "test_classifier.LossRecorder"}])
    run = tmp_path / "run"
    main(["fit", "--config", str(cfg), "--trainer.max_epochs=8", "--run_dir", str(run)])
    losses = LossRecorder.losses
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)  # 18 training clips, batches of 6, 8 epochs
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3, losses

    ckpt = _ckpt(run)
    info = ckpt["compclap_classifier"]
    assert info["classes"] == ["dog", "rain", "church bells"] and info["test_folds"] == ["3"]
    assert ckpt["hyper_parameters"]["classes"] == info["classes"]

    # load_model reads the fine-tuned dual encoder; its embeddings through the stored head = the module's logits.
    model = load_model(run / "checkpoints" / "last.ckpt")
    assert isinstance(model, CLAPDualEncoder)
    head, head_info = load_classifier_head(run)
    data = read_labelled(esc50=esc50)
    test = classifier_split(data, val_fraction=0.25).test
    files = [data.files[i] for i in test]
    logits = head(model.embed_audio(files)).detach()
    from compclap.classifier import AudioClassifier
    from compclap.audio.io import load_audio

    module = AudioClassifier(model, head="mlp", hidden_dim=16, classes=head_info["classes"])
    module.head.load_state_dict(head.state_dict())
    module.eval()
    waves = torch.stack([torch.from_numpy(load_audio(f, SR)[0]) for f in files])
    with torch.no_grad():
        torch.testing.assert_close(module(waves), logits, atol=1e-4, rtol=1e-4)


def test_classify_resume_from_last_gives_identical_weights(tmp_path, tokenizer_dir, esc50) -> None:
    from compclap.classifier import main

    cfg = _config(tmp_path, tokenizer_dir, esc50)
    crashing = _config(tmp_path, tokenizer_dir, esc50, [{"class_path": "test_training_cli.CrashAtStep",
                                                         "init_args": {"step": 3}}], name="crash.yaml")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main(["fit", "--config", str(cfg), "--trainer.max_steps=6", "--run_dir", str(straight)])
    with pytest.raises(SimulatedCrash):
        main(["fit", "--config", str(crashing), "--trainer.max_steps=6", "--run_dir", str(resumed)])
    assert _ckpt(resumed)["global_step"] == 3
    main(["fit", "--config", str(cfg), "--trainer.max_steps=6", "--run_dir", str(resumed), "--ckpt_path", "last"])
    a, b = _ckpt(straight), _ckpt(resumed)
    assert b["global_step"] == 6
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    # The held-out fold through `compclap classify test` (the --ckpt_path registry check passes).
    main(["test", "--config", str(cfg), "--run_dir", str(resumed), "--ckpt_path",
          str(resumed / "checkpoints" / "last.ckpt")])


def test_compclap_classify_subcommand_and_the_probe_row(tmp_path, tokenizer_dir, esc50, capsys) -> None:
    from compclap.entry import main as compclap_main  # the `compclap` console script
    from compclap.eval.cli import main as evaluate

    cfg = _config(tmp_path, tokenizer_dir, esc50)
    run = tmp_path / "run"
    assert compclap_main(["classify", "fit", "--config", str(cfg), "--trainer.max_epochs=2", "--run_dir",
                          str(run)]) in (None, 0)
    out = tmp_path / "report"
    assert evaluate(["probe", "--model", f"ft={run / 'checkpoints' / 'last.ckpt'}", "--esc50", str(esc50), "--out",
                     str(out), "--no-cache", "--no-progress", "--hidden-dim", "16", "--max-epochs", "20",
                     "--val-fraction", "0.25"]) == 0
    payload = json.loads((out / "results.json").read_text())
    res = payload["results"]["ft"]["probe_esc50"]
    assert set(res["finetuned"]) >= {"accuracy", "per_class"} and res["finetuned"]["folds"] is None
    assert set(res["linear"]["folds"]) == {"1", "2", "3"}  # the probes run every fold; the classifier only its own
    with (out / res["clips_csv"]).open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["fold"] for r in rows if r["finetuned"]} == {"3"}
    assert "probe_esc50 fine-tuned acc" in (out / "report.md").read_text()


@pytest.mark.slow
def test_shipped_config_fine_tunes_the_demo_stage(tmp_path, monkeypatch) -> None:
    """conf/experiment/finetune_classifier.yaml as shipped: from a `compclap fit` run on a demo world's events."""
    from compclap.classifier import main
    from compclap.cli import main as compclap_main
    from compclap.data.demo_world import DemoWorldConfig, build_demo_world
    from compclap.data.labelled import write_labels_from_jsonl

    repo = Path(__file__).resolve().parents[1]
    build_demo_world(DemoWorldConfig(out=str(tmp_path / "demo_world"), num_train=12, num_val=4, num_test=4,
                                     num_compa=4, num_events=52, workers=1, tokenizer_vocab=0))
    monkeypatch.chdir(tmp_path)  # the configs' paths (demo_world/..., checkpoints/...) are relative
    write_labels_from_jsonl("demo_world/events.jsonl", "demo_world/events_labels.csv")
    compclap_main(["fit", "--config", str(repo / "conf" / "fit.yaml"), "--run_dir", "checkpoints/demo_standard",
                   "--trainer.max_steps=1", "--trainer.limit_val_batches=0", "--data.num_workers=0", "--data.batch_size=4",
                   "--trainer.enable_progress_bar=false"])
    main(["fit", "--config", str(repo / "conf" / "experiment" / "finetune_classifier.yaml"), "--trainer.max_steps=2",
          "--trainer.limit_val_batches=1", "--data.init_args.num_workers=0", "--trainer.enable_progress_bar=false"])
    info = _ckpt(tmp_path / "checkpoints" / "classifier")["compclap_classifier"]
    assert len(info["classes"]) == 13 and info["test_folds"] is None and info["head"]["kind"] == "mlp"
