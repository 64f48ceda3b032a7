"""Shard lists as users write them: a make_shards folder, a brace pattern that must match what was written,
enough shards for every rank and worker, and page-locked memory only where a GPU reads it."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["check_local_shards", "check_shard_count", "folder_shards", "use_pin_memory"]


def _is_local(spec: str) -> bool:
    return not spec.startswith("pipe:") and "://" not in spec or spec.startswith("file://")


def _local_path(spec: str) -> str:
    return spec[len("file://"):] if spec.startswith("file://") else spec


def folder_shards(spec: str) -> list[str] | None:
    """The shards in a folder `compclap prepare shards --out DIR` wrote (sizes.json order), or None if `spec`
    is not a local folder."""
    if not _is_local(spec) or not os.path.isdir(_local_path(spec)):
        return None
    folder = Path(_local_path(spec))
    sizes = folder / "sizes.json"
    names = sorted(json.loads(sizes.read_text())) if sizes.is_file() else sorted(p.name for p in folder.glob("*.tar"))
    if not names:
        raise ValueError(f"shard folder {folder} holds no .tar shards (write them with `compclap prepare shards "
                         f"--manifest M --out {folder}`)")
    prefix = "file://" if spec.startswith("file://") else ""
    return [prefix + str(folder / name) for name in names]


def _written_pattern(folder: Path) -> str | None:
    """The brace pattern make_shards recorded in a folder's info.json (rebuilt on the folder as it is now)."""
    info = folder / "info.json"
    if not info.is_file():
        return None
    try:
        pattern = json.loads(info.read_text()).get("pattern") or ""
    except (OSError, ValueError):
        return None
    return str(folder / Path(pattern).name) if pattern else None


def check_local_shards(urls: Sequence[str], spec: Any) -> None:
    """Refuse a pattern that names local shards that do not exist, saying what make_shards wrote instead."""
    missing = [u for u in urls if _is_local(u) and not os.path.exists(_local_path(u))]
    if not missing:
        return
    folder = Path(_local_path(missing[0])).parent
    written = _written_pattern(folder)
    hint = (f"; {folder} holds {written!r} (from its info.json): pass that pattern, or the folder "
            f"{str(folder)!r} itself"
            if written else f"; pass the folder {str(folder)!r} to use the shards it holds" if folder.is_dir() else "")
    raise FileNotFoundError(f"{len(missing)} of the {len(urls)} shards of {spec!r} do not exist "
                            f"(first: {missing[0]}){hint}")


def check_shard_count(n_shards: int, world_size: int, num_workers: int) -> bool:
    """Warn when there are fewer training shards than ranks x DataLoader workers; True when there are enough.

    Each rank takes every world_size-th shard and each worker its share of those; with fewer, ranks or workers
    draw from the same shards (samples repeat within an epoch more than the shuffle buffer hides).
    """
    readers = max(1, world_size) * max(1, num_workers)
    if n_shards >= readers:
        return True
    warnings.warn(f"{n_shards} training shard(s) for {world_size} rank(s) x {max(1, num_workers)} DataLoader "
                  f"worker(s) = {readers} readers: several readers stream the same shards. Write at least {readers} "
                  "shards (compclap prepare shards --shard-size CLIPS_PER_SHARD) or lower data.num_workers.",
                  stacklevel=3)
    return False


def use_pin_memory(requested: bool | None, trainer: Any = None) -> bool:
    """Pin batches only when they go to a CUDA device: `requested` None means "when the trainer uses CUDA"."""
    import torch

    if requested is False or not torch.cuda.is_available():
        return False
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None and type(accelerator).__name__ != "CUDAAccelerator":
        return False
    return True
