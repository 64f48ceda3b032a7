"""Optimiser and learning-rate schedule of CompClapModule: parameter groups, any torch.optim class, warm-up, cosine.

The parameter groups (weight decay on matrices only, `lr_multipliers` per part, `layer_decay` per block) and the
schedule (linear warm-up, then cosine or constant) are applied whatever the optimiser class: `model.optimizer`
names a `torch.optim` class (default AdamW), `model.optimizer_args` gives its other arguments. LightningCLI's own
`--optimizer` / `--lr_scheduler` would replace all of that, so `compclap fit` refuses them (see `cli_optimizer_error`).

Warm-up is `warmup_ratio` x the run's optimizer steps when that is set, else `warmup_steps`, clamped (with a warning
naming both numbers) to MAX_WARMUP_FRACTION of the run so a short run still reaches its peak learning rate.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

# Warm-up given in steps may take at most this share of the run; a longer one is clamped with a warning.
MAX_WARMUP_FRACTION = 0.25
DEFAULT_BETAS = (0.9, 0.999)
# Arguments with their own `model.*` option: the schedule and the parameter groups set them.
_OWN_OPTIONS = {"lr": "model.lr", "weight_decay": "model.weight_decay", "betas": "model.betas"}


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The torch.optim class `name` names ("AdamW", "torch.optim.SGD"); anything else is refused.

    Only torch.optim classes: a checkpoint stores this name and rebuilding it must import no other code.
    """
    short = name[len("torch.optim."):] if name.startswith("torch.optim.") else name
    cls = getattr(torch.optim, short, None) if "." not in short else None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer):
        known = sorted(n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)
                       and issubclass(getattr(torch.optim, n), torch.optim.Optimizer) and n != "Optimizer")
        raise ValueError(f"model.optimizer must name a torch.optim optimizer class, got {name!r}; one of {known}")
    return cls


def check_optimizer_options(name: str, args: dict[str, Any] | None, betas: Sequence[float],
                            weight_decay: float) -> None:
    """Raise ValueError for an unknown class or options that class cannot take (checked when the module is built)."""
    cls = optimizer_class(name)
    params = inspect.signature(cls).parameters
    for key in args or {}:
        if key in _OWN_OPTIONS:
            raise ValueError(f"model.optimizer_args may not set {key!r}: use {_OWN_OPTIONS[key]} (the parameter "
                             "groups and the schedule are built from it)")
        if key not in params:
            raise ValueError(f"{cls.__name__} takes no argument {key!r} (model.optimizer_args)")
    if "betas" not in params and tuple(betas) != DEFAULT_BETAS:
        raise ValueError(f"{cls.__name__} takes no betas, but model.betas is {tuple(betas)}")
    if "weight_decay" not in params and weight_decay:
        raise ValueError(f"{cls.__name__} takes no weight_decay, but model.weight_decay is {weight_decay}")


def param_groups(module: nn.Module, lr: float, weight_decay: float, lr_multipliers: dict[str, float] | None,
                 layer_decay: float | None) -> list[dict[str, Any]]:
    """Groups of a CompClapModule's parameters: decay on matrices only; lr scaled per part and per layer."""
    mult = {"audio": 1.0, "text": 1.0, "heads": 1.0, **(lr_multipliers or {})}
    layer_scale: dict[int, float] = {}
    if layer_decay is not None:
        from compclap.models.training_aids import layer_lr_scales

        for tower in (module.model.audio, module.model.text):
            layer_scale.update(layer_lr_scales(tower, layer_decay))
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        part = "audio" if name.startswith("model.audio.") else "text" if name.startswith("model.text.") else "heads"
        scale = mult[part] * layer_scale.get(id(p), 1.0)
        wd = weight_decay if p.ndim >= 2 else 0.0
        groups.setdefault((scale, wd), []).append(p)
    return [{"params": ps, "lr": lr * scale, "weight_decay": wd}
            for (scale, wd), ps in sorted(groups.items(), key=lambda kv: kv[0])]


def build_optimizer(name: str, groups: list[dict[str, Any]], lr: float, betas: Sequence[float],
                    args: dict[str, Any] | None = None) -> torch.optim.Optimizer:
    """Instantiate the named torch.optim class on `groups` (betas passed where the class takes them)."""
    cls = optimizer_class(name)
    params = inspect.signature(cls).parameters
    kwargs = dict(args or {})
    if "betas" in params:
        kwargs["betas"] = tuple(betas)
    if "weight_decay" not in params:
        groups = [{k: v for k, v in g.items() if k != "weight_decay"} for g in groups]
    return cls(groups, lr=lr, **kwargs)


def resolve_warmup(total: int | None, warmup_steps: int, warmup_ratio: float | None) -> int:
    """Warm-up length in optimizer steps: the ratio of the run when set, else the steps clamped (with a warning)."""
    if warmup_ratio is not None:
        if total is None:
            raise ValueError("model.warmup_ratio needs a run of known length (set trainer.max_epochs or max_steps)")
        return int(round(warmup_ratio * total))
    if total is None or warmup_steps <= 0:
        return max(0, warmup_steps)
    allowed = max(1, int(MAX_WARMUP_FRACTION * total))
    if warmup_steps > allowed:
        warnings.warn(f"warmup_steps={warmup_steps} is more than {MAX_WARMUP_FRACTION:.0%} of this run's {total} "
                      f"optimizer steps: warming up over {_steps(allowed)} instead, so the peak learning rate is "
                      "reached (set model.warmup_ratio for a warm-up that follows the run's length)", UserWarning,
                      stacklevel=2)
        return allowed
    return warmup_steps


def schedule_factor(warmup: int, total: int | None, kind: str, floor: float) -> Callable[[int], float]:
    """Learning-rate factor per optimizer step: linear warm-up, then cosine to `floor` over the run or constant."""
    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if kind == "constant" or total is None:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def total_steps(trainer: Any) -> int | None:
    """The run's optimizer steps (None when it has no end: max_epochs=-1 without max_steps)."""
    total = float(trainer.estimated_stepping_batches)
    return max(1, int(total)) if math.isfinite(total) else None


def configure(module: Any) -> dict[str, Any]:
    """What CompClapModule.configure_optimizers returns: the optimiser on its groups and a per-step LambdaLR."""
    hp = module.hparams
    name = hp.get("optimizer", "AdamW")
    groups = param_groups(module, hp.lr, hp.weight_decay, hp.lr_multipliers, hp.layer_decay)
    opt = build_optimizer(name, groups, hp.lr, hp.betas, hp.get("optimizer_args"))
    total = total_steps(module.trainer)
    warmup = resolve_warmup(total, hp.warmup_steps, hp.get("warmup_ratio"))
    if total is None and hp.scheduler == "cosine":
        warnings.warn("the run has no known length (max_epochs=-1, no max_steps): the cosine schedule stays at its "
                      "peak learning rate", UserWarning, stacklevel=2)
    _note(f"optimizer {optimizer_class(name).__name__} on {len(groups)} parameter group(s), peak lr {hp.lr:g}, "
          f"warm-up {warmup} of {total if total is not None else 'unbounded'} optimizer steps, then {hp.scheduler}")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_factor(warmup, total, hp.scheduler, hp.min_lr_ratio))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _steps(n: int) -> str:
    """"1 step", "2 steps"."""
    return f"{n} step" if n == 1 else f"{n} steps"


def _note(message: str) -> None:
    """An informational line on rank 0 (Lightning's logger)."""
    from lightning.pytorch.utilities import rank_zero_info

    rank_zero_info(f"[compclap] {message}")


def cli_optimizer_error(args: Sequence[str]) -> str | None:
    """The message refusing LightningCLI's --optimizer / --lr_scheduler (on the command line or in a --config)."""
    found = None
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            continue
        for key in ("optimizer", "lr_scheduler"):
            if arg == f"--{key}" or arg.startswith((f"--{key}.", f"--{key}=")):
                found = found or f"--{key}"
        if arg == "--config" and i + 1 < len(args):
            found = found or _config_key(args[i + 1])
        elif arg.startswith("--config="):
            found = found or _config_key(arg.split("=", 1)[1])
    if found is None:
        return None
    return (f"compclap does not take LightningCLI's {found}: it would replace the parameter groups "
            "(weight decay on matrices, model.lr_multipliers, model.layer_decay) and the warm-up/cosine schedule. "
            "Choose the class with --model.optimizer (a torch.optim name, default AdamW) and its other arguments "
            "with --model.optimizer_args, e.g. --model.optimizer SGD --model.optimizer_args '{momentum: 0.9}'; "
            "the schedule is --model.warmup_ratio / --model.warmup_steps / --model.scheduler / --model.min_lr_ratio.")


def _config_key(path: str) -> str | None:
    """`optimizer:` or `lr_scheduler:` at the top level of a YAML config file, if there is one."""
    from pathlib import Path

    try:
        import yaml

        cfg = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if isinstance(cfg, dict):
        for key in ("optimizer", "lr_scheduler"):
            if key in cfg:
                return f"{key}: (in {path})"
    return None
