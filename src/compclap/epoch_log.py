"""Logs a redirected run can be read from: one plain line per epoch, a logging interval that fits, no v_num.

`compclap fit` installs `EpochLog` (unless the config names one) and swaps Lightning's progress bar for the same
bar without `v_num` (`ProgressBar`, `RichBar`). `fit_log_interval` lowers `trainer.log_every_n_steps` to the steps of
one epoch when it is larger, so loss and learning rate reach TensorBoard on short runs too.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

# Set to 1/0 to force the per-epoch line on or off where the callback decides by itself (enabled=None).
ENV_VAR = "COMPCLAP_EPOCH_LOG"


class EpochLog(L.Callback):
    """Print `epoch E/N | step S/M | train loss L | val <metrics> | lr X | T s` after every training epoch (rank 0).

    By default (enabled=None) the line is printed when stdout is not a terminal (SLURM, nohup, CI, `| tee`) or the
    run has no progress bar, and COMPCLAP_EPOCH_LOG=1/0 forces it on/off; enabled=True/False decides outright.
    """

    def __init__(self, enabled: bool | None = None, metrics: list[str] | None = None, stream: TextIO | None = None
                 ) -> None:
        """enabled: print always (True), never (False) or when stdout is not a terminal or there is no progress bar
        (None; COMPCLAP_EPOCH_LOG=1/0 overrides). metrics: the val/ metrics to print (default all of them).
        stream: where to write (default sys.stdout)."""
        self.enabled = enabled
        self.metrics = metrics
        self.stream = stream
        self._active = False
        self._reset()

    def _reset(self) -> None:
        """Forget the running epoch's loss, validation metrics and start time."""
        self._loss_sum, self._loss_n, self._val, self._t0 = 0.0, 0, None, time.monotonic()

    def _decide(self, trainer: L.Trainer) -> bool:
        """Whether this run prints the line."""
        if self.enabled is not None:
            return bool(self.enabled)
        forced = os.environ.get(ENV_VAR, "").strip().lower()
        if forced in ("1", "true", "yes", "on"):
            return True
        if forced in ("0", "false", "no", "off"):
            return False
        out = self.stream or sys.stdout
        is_tty = bool(getattr(out, "isatty", lambda: False)())
        return not is_tty or trainer.progress_bar_callback is None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Decide once per fit."""
        self._active = self._decide(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the epoch's clock and loss mean."""
        self._reset()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Add the step's loss (Lightning hands it divided by accumulate_grad_batches) to the epoch mean.

        The sum stays a tensor on the loss's device: no host synchronisation per step.
        """
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not self._active or loss is None or not hasattr(loss, "detach"):
            return
        self._loss_sum = self._loss_sum + loss.detach().float() * trainer.accumulate_grad_batches
        self._loss_n += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keep this validation's metrics for the epoch line."""
        if trainer.sanity_checking:
            return
        self._val = {k[len("val/"):]: float(v) for k, v in trainer.callback_metrics.items()
                     if k.startswith("val/") and (self.metrics is None or k in self.metrics or k[4:] in self.metrics)}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the epoch's line."""
        if self._active:
            self._print(format_epoch_line(trainer, float(self._loss_sum) / self._loss_n if self._loss_n else math.nan,
                                          self._val, _current_lr(trainer), time.monotonic() - self._t0))

    @rank_zero_only
    def _print(self, line: str) -> None:
        """Write one line on rank 0 and flush it (a redirected stdout is block-buffered)."""
        out = self.stream or sys.stdout
        out.write(line + "\n")
        out.flush()


def format_epoch_line(trainer: L.Trainer, loss: float, val: dict[str, float] | None, lr: float | None,
                      seconds: float) -> str:
    """`epoch 3/20 | step 120/800 | train loss 1.2345 | val t2a_R@1 12.5 ... | lr 2.00e-04 | 34.1 s`."""
    epochs = f"/{trainer.max_epochs}" if trainer.max_epochs is not None and trainer.max_epochs >= 0 else ""
    steps = float(getattr(trainer, "estimated_stepping_batches", math.inf))
    steps_total = f"/{int(steps)}" if math.isfinite(steps) else ""
    parts = [f"epoch {trainer.current_epoch + 1}{epochs}", f"step {trainer.global_step}{steps_total}",
             f"train loss {loss:.4f}"]
    if val:
        parts.append("val " + " ".join(f"{k} {_fmt(v)}" for k, v in val.items()))
    if lr is not None:
        parts.append(f"lr {lr:.2e}")
    parts.append(f"{seconds:.1f} s")
    return " | ".join(parts)


def _fmt(value: float) -> str:
    """Metrics in percent with one decimal, small values with more."""
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.4g}"


def _current_lr(trainer: L.Trainer) -> float | None:
    """The largest learning rate over the first optimiser's groups (the heads' peak group)."""
    optimizers = getattr(trainer, "optimizers", None) or []
    groups = optimizers[0].param_groups if optimizers else []
    return max((float(g["lr"]) for g in groups), default=None)


def fit_log_interval(trainer: Any) -> int | None:
    """Lower `trainer.log_every_n_steps` to the optimizer steps of one epoch when it is larger (with a note).

    Returns the new interval, or None when nothing changed (or the trainer does not say how long an epoch is).
    """
    interval = getattr(trainer, "log_every_n_steps", None)
    with warnings.catch_warnings():  # Lightning's "set a lower value" warning: lowered here instead
        warnings.filterwarnings("ignore", message=".*is smaller than the logging interval")
        getattr(trainer, "estimated_stepping_batches", None)  # sets up the training data once
    batches = getattr(trainer, "num_training_batches", None)
    if not isinstance(interval, int) or interval <= 1 or not isinstance(batches, (int, float)) \
            or not math.isfinite(batches) or batches <= 0:
        return None
    steps = max(1, math.ceil(int(batches) / max(1, int(getattr(trainer, "accumulate_grad_batches", 1)))))
    if interval <= steps:
        return None
    trainer.log_every_n_steps = steps
    rank_zero_info(f"[compclap] log_every_n_steps={interval} is more than the {steps} optimizer steps of an epoch: "
                   f"logging every {steps} steps, so loss and learning rate reach the logger every epoch")
    return steps


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar without `v_num` (the logger's version number, not a metric)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The bar's items, minus v_num."""
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class RichBar(RichProgressBar):
    """Lightning's Rich bar (its default when `rich` is installed) without `v_num`."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The bar's items, minus v_num."""
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def install_log_callbacks(trainer: L.Trainer) -> None:
    """Add an EpochLog unless one is configured; Lightning's TQDM / Rich bar becomes the same bar without v_num."""
    if not any(isinstance(cb, EpochLog) for cb in trainer.callbacks):
        trainer.callbacks.append(EpochLog())
    for i, cb in enumerate(trainer.callbacks):
        if type(cb) is TQDMProgressBar:
            trainer.callbacks[i] = ProgressBar(refresh_rate=cb.refresh_rate, process_position=cb.process_position,
                                               leave=cb._leave)
        elif type(cb) is RichProgressBar:
            trainer.callbacks[i] = RichBar(refresh_rate=cb.refresh_rate, leave=cb._leave, theme=cb.theme,
                                           console_kwargs=cb._console_kwargs)
