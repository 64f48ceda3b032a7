"""Loading foreign checkpoint files safely, and the errors compclap raises for files it cannot use.

Every checkpoint file is read with `torch.load(..., weights_only=True)`: tensors, numbers, strings and
containers only. A pickle that needs any other class (a model object, a numpy array, a Namespace) is
refused with `UnsafeCheckpointError` instead of being executed.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

_PLAIN = (str, bytes, int, float, bool, complex, type(None), torch.Tensor, torch.dtype, torch.device)


class UnsafeCheckpointError(ValueError):
    """The file holds objects other than tensors and primitives, so it is not unpickled."""


class CheckpointLayoutError(ValueError):
    """The file's keys match no layout compclap knows (or miss / add keys to the nearest one)."""


def safe_torch_load(path: str | os.PathLike) -> Any:
    """`torch.load` with `weights_only=True` onto the CPU, with clear errors; checks the result is plain data."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        found = re.findall(r"GLOBAL ([\w.]+)", msg)
        if found:
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it contains objects other than tensors and plain Python values "
                f"(it needs {found[0]}). compclap reads checkpoints with torch.load(weights_only=True) and never "
                "unpickles code. If you trust the file, re-save only its tensors, e.g. torch.save(torch.load(p, "
                "weights_only=False)['state_dict'], 'clean.pt'), and load that.") from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", msg)
        raise ValueError(f"{path} is not a PyTorch checkpoint compclap can read safely: torch.load(weights_only=True) "
                         f"rejected it ({detail.group(1).strip() if detail else msg.splitlines()[0]})") from None
    except (RuntimeError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {exc}") from None
    check_plain(obj, str(path))
    return obj


def check_plain(obj: Any, where: str, _path: str = "") -> None:
    """Raise UnsafeCheckpointError unless `obj` is tensors, primitives and containers of them."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            check_plain(key, where, _path)
            check_plain(value, where, f"{_path}/{key}")
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(obj):
            check_plain(value, where, f"{_path}[{i}]")
        return
    raise UnsafeCheckpointError(f"refusing {where}: {_path or 'the top level'} is a {type(obj).__module__}."
                                f"{type(obj).__qualname__}, not a tensor or a plain Python value")


def strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop a prefix that every key carries (DistributedDataParallel's `module.`)."""
    keys = list(state)
    if keys and all(k.startswith(prefix) for k in keys):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def tensor_state(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a state dict (non-tensor entries such as metadata are an error)."""
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointLayoutError(f"{where}: expected a non-empty state dict, got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointLayoutError(f"{where}: a state dict maps names to tensors; these entries do not: {bad[:10]}")
    return dict(obj)


def mismatch_message(where: str, layout: str, missing: Iterable[str], unexpected: Iterable[str],
                     note: str = "", head: str | None = None) -> str:
    """One readable message naming the layout and the first 10 missing and unexpected keys (in file order)."""
    missing, unexpected = list(missing), list(unexpected)
    parts = [head or f"{where} does not match the {layout} layout{note}"]
    if missing:
        parts.append(f"missing keys ({len(missing)}): {missing[:10]}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:10]}")
    parts.append("no weights were loaded (compclap never leaves weights randomly initialised)")
    return "; ".join(parts)
