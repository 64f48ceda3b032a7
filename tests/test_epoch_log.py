"""Readable logs (compclap.epoch_log): a line per epoch when stdout is redirected, a logging interval that fits an
epoch, no v_num on the bar, and metrics in percent in every log."""

from __future__ import annotations

import csv
import io
import re
from types import SimpleNamespace

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from compclap.cli import main
from compclap.epoch_log import EpochLog, ProgressBar, RichBar, fit_log_interval, install_log_callbacks
from conftest import make_tiny_model, write_tiny_manifest
from test_training_cli import _config

LINE = re.compile(r"^epoch (\d+)/2 \| step (\d+)/4 \| train loss (\d+\.\d+) \| val (.+) \| lr (\S+) \| (\d+\.\d) s$")


def test_redirected_fit_prints_a_line_per_epoch_with_val_metrics_in_percent(tmp_path, tokenizer_dir, capsys):
    train = write_tiny_manifest(tmp_path, "train", 8)  # 2 steps per epoch at batch size 4
    val = write_tiny_manifest(tmp_path, "val", 6, seed=1)
    cfg_path = _config(tmp_path, tokenizer_dir, train, val)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                "init_args": {"save_dir": str(tmp_path / "logs"), "name": "run"}}
    cfg["trainer"]["log_every_n_steps"] = 50  # larger than an epoch: lowered to 2
    cfg["trainer"]["callbacks"].append({"class_path": "lightning.pytorch.callbacks.LearningRateMonitor",
                                        "init_args": {"logging_interval": "step"}})
    cfg_path.write_text(yaml.safe_dump(cfg))
    # capsys's stdout is not a terminal, as under SLURM, nohup or CI.
    main(["fit", "--config", str(cfg_path), "--trainer.max_epochs=2", "--run_dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    lines = [m for m in map(LINE.match, out.splitlines()) if m]
    assert [(m[1], m[2]) for m in lines] == [("1", "2"), ("2", "4")], out
    val_metrics = dict(re.findall(r"(\S+) (\S+)", lines[-1][4]))
    assert {"t2a_R@1", "t2a_R@10", "a2t_R@10", "a2t_mAP@10", "t2a_medR"} <= val_metrics.keys()
    assert val_metrics["t2a_R@10"] == "100.0" and val_metrics["a2t_R@10"] == "100.0"  # 6 clips: all in the top 10

    rows = list(csv.DictReader(next((tmp_path / "logs").rglob("metrics.csv")).open()))
    assert any(r.get("train/loss") for r in rows)  # reached the logger although 50 > 2 steps per epoch
    assert any(r.get(k) for r in rows for k in r if k.startswith("lr-"))
    val_rows = [r for r in rows if r.get("val/t2a_R@10")]
    assert val_rows and all(float(r["val/t2a_R@10"]) == 100.0 for r in val_rows)  # percent, not 1.0
    assert all(0 <= float(r["val/t2a_R@1"]) <= 100 for r in val_rows)


def _fake_trainer(bar: object | None) -> SimpleNamespace:
    return SimpleNamespace(progress_bar_callback=bar)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_epoch_log_decides_by_terminal_and_progress_bar(monkeypatch):
    monkeypatch.delenv("COMPCLAP_EPOCH_LOG", raising=False)
    bar = object()
    assert EpochLog(stream=io.StringIO())._decide(_fake_trainer(bar))  # redirected: on
    assert not EpochLog(stream=_Tty())._decide(_fake_trainer(bar))  # a terminal with a bar: the bar is enough
    assert EpochLog(stream=_Tty())._decide(_fake_trainer(None))  # no bar (make demo): on
    assert not EpochLog(enabled=False, stream=io.StringIO())._decide(_fake_trainer(None))
    assert EpochLog(enabled=True, stream=_Tty())._decide(_fake_trainer(bar))
    monkeypatch.setenv("COMPCLAP_EPOCH_LOG", "0")
    assert not EpochLog(stream=io.StringIO())._decide(_fake_trainer(None))
    monkeypatch.setenv("COMPCLAP_EPOCH_LOG", "1")
    assert EpochLog(stream=_Tty())._decide(_fake_trainer(bar))


def test_progress_bar_has_no_v_num(tmp_path, tokenizer_dir):
    from compclap.lit_module import CompClapModule

    trainer = L.Trainer(logger=CSVLogger(tmp_path), enable_model_summary=False, default_root_dir=tmp_path)
    assert type(trainer.progress_bar_callback) in (TQDMProgressBar, RichProgressBar)
    module = CompClapModule(make_tiny_model(tokenizer_dir))
    assert "v_num" in trainer.progress_bar_callback.get_metrics(trainer, module)
    install_log_callbacks(trainer)
    install_log_callbacks(trainer)  # idempotent
    assert isinstance(trainer.progress_bar_callback, (ProgressBar, RichBar))
    assert "v_num" not in trainer.progress_bar_callback.get_metrics(trainer, module)
    assert sum(isinstance(cb, EpochLog) for cb in trainer.callbacks) == 1
    tqdm = L.Trainer(logger=CSVLogger(tmp_path), callbacks=[TQDMProgressBar(refresh_rate=7)], default_root_dir=tmp_path)
    install_log_callbacks(tqdm)
    assert type(tqdm.progress_bar_callback) is ProgressBar and tqdm.progress_bar_callback.refresh_rate == 7
    assert "v_num" not in tqdm.progress_bar_callback.get_metrics(tqdm, module)


def test_log_interval_is_lowered_to_an_epoch():
    trainer = SimpleNamespace(log_every_n_steps=10, num_training_batches=5, accumulate_grad_batches=1)
    assert fit_log_interval(trainer) == 5 and trainer.log_every_n_steps == 5
    trainer = SimpleNamespace(log_every_n_steps=10, num_training_batches=9, accumulate_grad_batches=2)
    assert fit_log_interval(trainer) == 5  # optimizer steps, not batches
    trainer = SimpleNamespace(log_every_n_steps=10, num_training_batches=40, accumulate_grad_batches=1)
    assert fit_log_interval(trainer) is None and trainer.log_every_n_steps == 10
    assert fit_log_interval(SimpleNamespace(log_every_n_steps=10, num_training_batches=float("inf"))) is None


class _LossWithAccuracy(torch.nn.Module):
    """A loss returning a share (like the audio-negative accuracy) beside its loss term."""

    def forward(self, audio_embeds, text_embeds, logit_scale, **_):
        return {"dummy_loss": (audio_embeds * text_embeds).sum() * 0, "pair_acc": torch.tensor(0.5)}


def test_loss_accuracies_are_logged_in_percent(tokenizer_dir, monkeypatch):
    from compclap.lit_module import CompClapModule

    module = CompClapModule(make_tiny_model(tokenizer_dir), loss=_LossWithAccuracy())
    logged = {}
    monkeypatch.setattr(module, "log",
                        lambda name, value, **kwargs: logged.__setitem__(name, float(torch.as_tensor(value).detach())))
    monkeypatch.setattr(module._nonfinite, "note_batch_start", lambda *a: None)
    monkeypatch.setattr(module._nonfinite, "note_loss", lambda *a: None)
    batch = {"waveforms": torch.randn(3, 8000) * 0.1, "captions": ["a beep", "a hum", "a dog barks"],
             "caption_owner": torch.arange(3)}
    module.training_step(batch, 0)
    assert logged["train/pair_acc"] == 50.0 and logged["train/dummy_loss"] == 0.0
