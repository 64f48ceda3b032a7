"""The one registry of classes a model file may name: compclap's model parts and losses, nothing else.

Model files are data. An export folder's `compclap_config.json`, the hyper-parameters a `compclap fit` checkpoint
stores (which `load_model`, `compclap evaluate`, `compclap export`, `--model.init_from` and LightningCLI's
`--ckpt_path` rebuild the model from) and the specs built for converted foreign checkpoints are walked here before
anything is imported: every `class_path` / `_class_path` / `_target_` value, at any depth (init_args that hold
further specs included), must be one of `ALLOWED_CLASSES`. Anything else, compclap functions included, is refused
with `DisallowedClassError` naming the class path, where it sits and the file, so no module is imported and no
constructor runs. A YAML config passed on the command line (`--config`) is the user's own and is not restricted.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Dotted class paths a spec read from a file may name: the dual encoder, its towers and heads, and the losses.
# Uncertainty heads and masking parts are built inside CLAPDualEncoder (`uncertainty=True`), not named in specs.
# Each class is listed under its defining module and, where the package re-exports it, under the package too
# (specs and LightningCLI configs use the short `compclap.models.X` / `compclap.losses.X` form).
ALLOWED_CLASSES: frozenset[str] = frozenset({
    "compclap.models.CLAPDualEncoder",
    "compclap.models.dual_encoder.CLAPDualEncoder",
    "compclap.models.HTSATAudioEncoder",
    "compclap.models.audio.HTSATAudioEncoder",
    "compclap.models.cnn14.CNN14AudioEncoder",
    "compclap.models.HFTextEncoder",
    "compclap.models.text.HFTextEncoder",
    "compclap.models.ProjectionHead",
    "compclap.models.heads.ProjectionHead",
    "compclap.losses.ContrastiveLoss",
    "compclap.losses.contrastive.ContrastiveLoss",
    "compclap.losses.HardNegativeContrastiveLoss",
    "compclap.losses.hard_negative.HardNegativeContrastiveLoss",
    "compclap.losses.ModularContrastiveLoss",
    "compclap.losses.modular.ModularContrastiveLoss",
    "compclap.losses.ProbabilisticContrastiveLoss",
    "compclap.losses.probabilistic.ProbabilisticContrastiveLoss",
})

# Keys whose string value names something to import and call (LightningCLI / jsonargparse, Hydra).
CLASS_KEYS = ("class_path", "_class_path", "_target_")
# The one value LightningCLI stores under `_instantiator` in a checkpoint's hyper-parameters.
INSTANTIATOR_KEY = "_instantiator"
LIGHTNING_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"


class DisallowedClassError(ValueError):
    """A model file names a class (or function) outside ALLOWED_CLASSES; nothing was imported."""


def _refuse(name: Any, where: str, at: str) -> DisallowedClassError:
    return DisallowedClassError(
        f"{where}: refusing to build {name!r} (named at {at or 'the top level'}): a model file may only name "
        "compclap's model and loss classes (compclap.models.registry.ALLOWED_CLASSES), so nothing was imported "
        "or run. If you wrote this file yourself, name one of those classes.")


def check_spec(spec: Any, where: str, _at: str = "") -> None:
    """Raise DisallowedClassError unless every class path anywhere in `spec` is in ALLOWED_CLASSES."""
    if isinstance(spec, Mapping):
        for key, value in spec.items():
            at = f"{_at}.{key}" if _at else str(key)
            if key in CLASS_KEYS and value not in ALLOWED_CLASSES:
                raise _refuse(value, where, at)
            if key == INSTANTIATOR_KEY and value != LIGHTNING_INSTANTIATOR:
                raise _refuse(value, where, at)
            check_spec(value, where, at)
    elif isinstance(spec, (list, tuple)):
        for i, value in enumerate(spec):
            check_spec(value, where, f"{_at}[{i}]")


def check_checkpoint(ckpt: Any, where: str) -> None:
    """Check the hyper-parameters a Lightning checkpoint stores (what LightningCLI rebuilds the model from) and
    the architecture spec compclap embeds next to them (compclap.models.embedded)."""
    if isinstance(ckpt, Mapping):
        check_spec(ckpt.get("hyper_parameters"), where, "hyper_parameters")
        check_spec(ckpt.get("compclap_architecture"), where, "compclap_architecture")


def check_checkpoint_file(path: str | os.PathLike) -> None:
    """Read a checkpoint with `torch.load(weights_only=True)` (memory-mapped when possible) and check it."""
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError):  # not a zip-format file: mmap is unavailable, read it whole
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    check_checkpoint(ckpt, str(path))


def import_allowed(name: str, where: str) -> type:
    """The class a registered dotted path names; any other path is refused before it is imported."""
    if name not in ALLOWED_CLASSES:
        raise _refuse(name, where, "class_path")
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)
