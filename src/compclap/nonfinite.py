"""Non-finite guard: skip optimiser steps whose loss or gradients are NaN/inf, stop a diverged run, keep NaNs out of
checkpoints.

A skipped step leaves the weights and the optimiser state as they were (every gradient is set to None, which
AdamW skips) and restores the BatchNorm running statistics the batch touched; Lightning still counts it, so
`global_step` and the learning-rate schedule advance. Under DDP the gradients are already averaged (a NaN on one
rank reaches all) and the loss flags are reduced, so every rank skips the same steps. With fp16 mixed precision
the GradScaler handles overflowing gradients itself (skips and lowers its scale); then only a non-finite loss
counts here.
"""

from __future__ import annotations

from typing import Any

import torch


class NonFiniteTrainingError(RuntimeError):
    """Training stopped after too many consecutive steps with a non-finite loss or gradients."""


class NonFiniteCheckpointError(RuntimeError):
    """A checkpoint was refused because the model's weights are not all finite."""


def nonfinite_tensors(named: Any) -> list[str]:
    """Names of the floating-point tensors in `named` ((name, tensor) pairs) that hold a NaN or an inf."""
    pairs = [(n, t) for n, t in named if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return [n for n, t in pairs if not bool(torch.isfinite(t.detach()).all())]


def _grad_sum(grad: torch.Tensor) -> torch.Tensor:
    """Sum of a gradient (float32 at least): NaN/inf iff an element is, or the sum overflows float32 (a divergence
    too); one reduction, ~7x cheaper on CPU than `isfinite(grad).all()`."""
    return grad.sum(dtype=torch.float32) if grad.dtype in (torch.float16, torch.bfloat16) else grad.sum()


def last_checkpoint_path(trainer: Any) -> str | None:
    """The newest checkpoint this run wrote (AtomicCheckpointIO's record, else the checkpoint callbacks')."""
    io = getattr(trainer.strategy, "_checkpoint_io", None)
    io = getattr(io, "checkpoint_io", io)  # a wrapping CheckpointIO (async) keeps the real one inside
    saved = getattr(io, "last_saved", None)
    if saved:
        return saved
    for cb in trainer.checkpoint_callbacks:
        path = getattr(cb, "_last_checkpoint_saved", None) or getattr(cb, "last_model_path", None)
        if path:
            return path
    return None


def _skip_exception_checkpoints(trainer: Any) -> None:
    """Keep ModelCheckpoint(save_on_exception=True) from overwriting the last good checkpoint with this state."""
    for cb in trainer.checkpoint_callbacks:
        if hasattr(cb, "_last_global_step_saved"):
            cb._last_global_step_saved = trainer.global_step


class NonFiniteGuard:
    """Per-run state: non-finite losses seen since the last optimiser step, skipped steps in total and in a row."""

    def __init__(self, max_consecutive: int | None = 3) -> None:
        """max_consecutive: stop after this many skipped steps in a row (None: skip and count, never stop)."""
        if max_consecutive is not None and max_consecutive < 1:
            raise ValueError(f"max_consecutive_nonfinite must be >= 1 or None, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.total = 0
        self.consecutive = 0
        self.first_bad_step: int | None = None
        self._loss_bad: torch.Tensor | None = None
        self._bn_saved: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def note_batch_start(self, module: torch.nn.Module) -> None:
        """Keep a copy of the BatchNorm running statistics before the first forward since the last optimiser step."""
        if self._bn_saved is None:
            self._bn_saved = [(b, b.detach().clone()) for m in module.modules()
                              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                              for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]

    def note_loss(self, loss: torch.Tensor) -> None:
        """Remember whether this (micro-)batch's loss is finite, without a device sync."""
        bad = ~torch.isfinite(loss.detach()).all()
        self._loss_bad = bad if self._loss_bad is None else self._loss_bad | bad

    def before_optimizer_step(self, module: Any, optimizer: torch.optim.Optimizer) -> bool:
        """Skip this step (gradients set to None) if its loss or gradients are non-finite; True when skipped.

        Raises NonFiniteTrainingError after `max_consecutive` skipped steps in a row.
        """
        trainer = module.trainer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        loss_bad, self._loss_bad = self._loss_bad, None
        bn_saved, self._bn_saved = self._bn_saved or [], None
        checks = [] if loss_bad is None else [loss_bad.reshape(())]
        if getattr(trainer.precision_plugin, "scaler", None) is None:  # fp16: the GradScaler owns overflowing grads
            checks += [~torch.isfinite(_grad_sum(p.grad)) for p in params if p.grad is not None]
        bad = bool(torch.stack(checks).any()) if checks else False
        if trainer.world_size > 1:
            bad = bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
        step = trainer.global_step
        if bad:
            for p in params:
                p.grad = None
            with torch.no_grad():
                for live, saved in bn_saved:  # a NaN batch must not leave NaN running statistics behind
                    live.copy_(saved)
            self.total += 1
            self.consecutive += 1
            if self.consecutive == 1:
                self.first_bad_step = step
        else:
            self.consecutive = 0
        module.log("train/nonfinite_steps", float(self.total), on_step=True, on_epoch=False)
        if bad and self.max_consecutive is not None and self.consecutive >= self.max_consecutive:
            _skip_exception_checkpoints(trainer)
            last = last_checkpoint_path(trainer)
            raise NonFiniteTrainingError(
                f"training stopped at step {step}: {self.consecutive} consecutive steps (from step "
                f"{self.first_bad_step}) had a non-finite loss or gradients and were skipped ({self.total} in this "
                f"run); the last good checkpoint is {last or 'none (nothing was saved yet)'}. Lower the learning "
                "rate (or check the data), then resume from it.")
        return bad

    def check_weights(self, module: Any) -> None:
        """Raise NonFiniteCheckpointError (and skip the on-exception save) if any parameter or buffer is non-finite."""
        names = nonfinite_tensors(list(module.named_parameters()) + list(module.named_buffers()))
        if not names:
            return
        trainer = getattr(module, "_trainer", None)
        step, last = None, None
        if trainer is not None:
            _skip_exception_checkpoints(trainer)
            step, last = trainer.global_step, last_checkpoint_path(trainer)
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise NonFiniteCheckpointError(
            f"refusing to write a checkpoint at step {step}: non-finite weights in {', '.join(names[:5])}{more}; "
            f"the last good checkpoint is {last or 'none'}")
