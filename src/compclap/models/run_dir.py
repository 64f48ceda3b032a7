"""Which file a path names: a run directory stands for its best checkpoint when it has one, else its last.ckpt.

Used by `load_model`, `load_state_into` (`--model.init_from`), `compclap export --ckpt`, `compclap evaluate
--model` and the embedding cache, so a run directory means the same file everywhere:

- `RUN_DIR` (or `RUN_DIR/checkpoints`): the best checkpoint of the run's first monitored ModelCheckpoint (fit.yaml:
  highest `val/t2a_R@1`), as recorded in the newest checkpoint's callback state; its `last.ckpt` when no callback
  monitors a metric (or the best file is gone);
- `RUN_DIR/last`, `RUN_DIR/best`: that one explicitly (an error when it does not exist);
- a file, or a Hugging Face / compclap export directory: itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_DIR_MARKERS = ("config.json", "compclap_config.json")
SELECTORS = ("last", "best")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """The path to read and how it was chosen, e.g. "best checkpoint of run directory runs/a (val/t2a_R@1 0.41)"."""

    path: Path
    how: str

    def describe(self) -> str:
        """`path (how)` for messages."""
        return f"{self.path} ({self.how})"


def _checkpoint_folder(path: Path) -> Path | None:
    """The folder holding a run's .ckpt files: RUN_DIR/checkpoints, or the folder itself."""
    for folder in (path / "checkpoints", path):
        if folder.is_dir() and any(folder.glob("*.ckpt")):
            return folder
    return None


def _load_state(path: Path) -> Any:
    """A checkpoint's contents without reading its tensors (memory-mapped), or None when unreadable."""
    import pickle

    import torch

    for mmap in (True, False):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except (pickle.UnpicklingError, RuntimeError, ValueError, OSError, EOFError):
            continue
    return None


def _best_from_state(folder: Path) -> tuple[Path, str] | None:
    """(best file, "metric score") from the newest checkpoint's ModelCheckpoint state, when a callback monitors one.

    The newest checkpoint (highest global step; last.ckpt first among equals) knows the current best file.
    """
    states = []
    for file in folder.glob("*.ckpt"):
        state = _load_state(file)
        if isinstance(state, dict):
            states.append((int(state.get("global_step") or 0), file.name == "last.ckpt", state))
    for _, _, state in sorted(states, key=lambda s: (s[0], s[1]), reverse=True):
        for key, value in (state.get("callbacks") or {}).items():
            if not (str(key).startswith("ModelCheckpoint") and isinstance(value, dict) and value.get("monitor")):
                continue
            best = value.get("best_model_path")
            # The run directory may have moved since: fall back to the same file name in this folder.
            for candidate in ([Path(best), folder / Path(best).name] if best else []):
                if candidate.is_file():
                    score = value.get("best_model_score")
                    score_text = f" = {float(score):.4g}" if score is not None else ""
                    return candidate, f"{value['monitor']}{score_text}"
        return None  # only the newest state counts: an older one may name a file since replaced
    return None


def resolve_checkpoint(path: str | os.PathLike) -> ResolvedCheckpoint:
    """The file (or model directory) `path` stands for; a path that names nothing is returned unchanged."""
    path = Path(path)
    if path.is_file():
        return ResolvedCheckpoint(path, "file")
    if path.is_dir():
        if any((path / marker).is_file() for marker in MODEL_DIR_MARKERS):
            return ResolvedCheckpoint(path, "model directory")
        folder = _checkpoint_folder(path)
        if folder is None:
            return ResolvedCheckpoint(path, "directory")
        best = _best_from_state(folder)
        if best is not None:
            return ResolvedCheckpoint(best[0], f"best checkpoint of run directory {path} by {best[1]}")
        if (folder / "last.ckpt").is_file():
            return ResolvedCheckpoint(folder / "last.ckpt", f"last.ckpt of run directory {path} (no monitored best)")
        files = sorted(folder.glob("*.ckpt"))
        if len(files) == 1:
            return ResolvedCheckpoint(files[0], f"only checkpoint of run directory {path}")
        raise FileNotFoundError(f"run directory {path} has no last.ckpt and no recorded best checkpoint; name one of "
                                f"{[f.name for f in files][:10]} explicitly")
    if path.name in SELECTORS and path.parent.is_dir():
        folder = _checkpoint_folder(path.parent)
        if folder is not None:
            if path.name == "last":
                if (folder / "last.ckpt").is_file():
                    return ResolvedCheckpoint(folder / "last.ckpt", f"last.ckpt of run directory {path.parent}")
                raise FileNotFoundError(f"run directory {path.parent} has no last.ckpt")
            best = _best_from_state(folder)
            if best is None:
                raise FileNotFoundError(f"run directory {path.parent} records no best checkpoint (no ModelCheckpoint "
                                        "monitors a metric, or its best file is gone); use it as is or RUN_DIR/last")
            return ResolvedCheckpoint(best[0], f"best checkpoint of run directory {path.parent} by {best[1]}")
    return ResolvedCheckpoint(path, "as given")


def checkpoint_exists(path: str | os.PathLike) -> bool:
    """True when `path` exists or is a `RUN_DIR/last` / `RUN_DIR/best` selector of an existing run directory."""
    path = Path(path)
    if path.exists():
        return True
    return path.name in SELECTORS and path.parent.is_dir() and _checkpoint_folder(path.parent) is not None
