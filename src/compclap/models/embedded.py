"""Self-contained checkpoints: the architecture spec and tokenizer files every `compclap fit` checkpoint carries.

A run fine-tuned from a Hugging Face folder, a LAION-CLAP .pt, an MS-CLAP .pth, a packaged text tower or a
tokenizer directory records those *sources* in its hyper-parameters (`hf_pretrained: /abs/path`, `tokenizer:
demo_world/tokenizer`). The weights are all in the state dict, so rebuilding the network needs only its shape:
on save, `CompClapModule.on_save_checkpoint` adds `checkpoint["compclap_architecture"]`, plain data read back
with `torch.load(weights_only=True)`:

    {"format_version": 1,
     "spec": {"class_path": "compclap.models.CLAPDualEncoder", "init_args": {...}},   # models/specs.py form
     "tokenizer_files": {"tokenizer.json": b"...", "tokenizer_config.json": b"...", ...}}

The spec describes every tower by its transformers config (no `pretrained` path, towers' `trainable_blocks` and
`cache_features` kept) and names the tokenizer `embedded:<sha256 prefix>`, the key under which the files are
registered in this process when the checkpoint is read (`stored_architecture`). `load_model(run_dir or .ckpt)`
and `compclap test|validate|predict|fit --ckpt_path FILE` build the model from this spec, so moving or deleting
the source folder changes nothing. The spec is checked against `compclap.models.registry` like any model file.
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

CKPT_KEY = "compclap_architecture"
FORMAT_VERSION = 1
TOKENIZER_PREFIX = "embedded:"
_MAX_TOKENIZER_BYTES = 64 * 2**20
# Tokenizer files registered by the checkpoints read in this process: "embedded:<digest>" -> {file name: bytes}.
_TOKENIZERS: dict[str, dict[str, bytes]] = {}
_FILES_ATTR = "_compclap_tokenizer_files"


def is_embedded(name: Any) -> bool:
    """True for a tokenizer name of the form `embedded:<digest>` (files carried by a checkpoint)."""
    return isinstance(name, str) and name.startswith(TOKENIZER_PREFIX)


def tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The files `tokenizer.save_pretrained` writes, as {file name: bytes}."""
    with tempfile.TemporaryDirectory(prefix="compclap-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def register_tokenizer(files: Mapping[str, bytes], where: str = "checkpoint") -> str:
    """Validate tokenizer files and register them; returns their `embedded:<digest>` name."""
    if not isinstance(files, Mapping) or not files:
        raise ValueError(f"{where}: {CKPT_KEY}.tokenizer_files is not a non-empty mapping of file names to bytes")
    total, digest = 0, hashlib.sha256()
    for name, data in sorted(files.items()):
        if not isinstance(name, str) or Path(name).name != name or name.startswith(".") or not name:
            raise ValueError(f"{where}: refusing tokenizer file name {name!r} (plain file names only)")
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError(f"{where}: tokenizer file {name!r} is a {type(data).__name__}, not bytes")
        total += len(data)
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    if total > _MAX_TOKENIZER_BYTES:
        raise ValueError(f"{where}: embedded tokenizer files take {total} bytes (limit {_MAX_TOKENIZER_BYTES})")
    key = f"{TOKENIZER_PREFIX}{digest.hexdigest()[:20]}"
    _TOKENIZERS[key] = {name: bytes(data) for name, data in files.items()}
    return key


def load_embedded_tokenizer(name: str) -> Any:
    """The tokenizer registered under `embedded:<digest>` (written to a temporary folder, loaded, removed)."""
    from compclap.text.tokenizer import load_tokenizer

    files = _TOKENIZERS.get(name)
    if files is None:
        raise FileNotFoundError(
            f"tokenizer {name!r} is stored inside a compclap checkpoint and that checkpoint was not read in this "
            "process: load the model with load_model(CKPT or RUN_DIR) or `--ckpt_path CKPT`, or set the tokenizer "
            "to a local tokenizer directory")
    with tempfile.TemporaryDirectory(prefix="compclap-tok-") as tmp:
        for file, data in files.items():
            (Path(tmp) / file).write_bytes(data)
        return load_tokenizer(tmp)


def portable_spec(model: nn.Module, tokenizer_name: str) -> dict[str, Any]:
    """The model's spec (no source paths) with the towers' freezing and feature caching kept."""
    spec = model.spec(tokenizer=tokenizer_name)
    args = spec["init_args"]
    for part in ("audio", "text"):
        tower = getattr(model, part)
        tower_args = args[part].setdefault("init_args", {})
        if getattr(tower, "trainable_blocks", None) is not None:
            tower_args["trainable_blocks"] = tower.trainable_blocks
        if getattr(tower, "cache_features", False):
            tower_args["cache_features"] = True
    return spec


def architecture_entry(model: nn.Module) -> dict[str, Any] | None:
    """The `compclap_architecture` entry for a model (None when it cannot describe itself as a spec)."""
    text = getattr(model, "text", None)
    tokenizer = getattr(text, "tokenizer", None)
    if not hasattr(model, "spec") or tokenizer is None or not hasattr(tokenizer, "save_pretrained"):
        return None
    files = getattr(text, _FILES_ATTR, None)
    if files is None:  # computed once per tower: checkpoints are written every epoch
        files = tokenizer_files(tokenizer)
        setattr(text, _FILES_ATTR, files)
    key = register_tokenizer(files, "model")
    return {"format_version": FORMAT_VERSION, "spec": portable_spec(model, key), "tokenizer_files": files}


def embed_architecture(checkpoint: dict[str, Any], model: nn.Module) -> None:
    """Store the model's architecture spec and tokenizer files in a checkpoint dict being saved."""
    entry = architecture_entry(model)
    if entry is not None:
        checkpoint[CKPT_KEY] = entry


def stored_architecture(ckpt: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """The architecture spec a checkpoint carries (tokenizer registered, classes checked), or None for older files."""
    from compclap.models.registry import check_spec

    entry = ckpt.get(CKPT_KEY) if isinstance(ckpt, Mapping) else None
    if entry is None:
        return None
    if not isinstance(entry, Mapping) or not isinstance(entry.get("spec"), Mapping):
        raise ValueError(f"{where}: {CKPT_KEY} is not a mapping with a 'spec' (a damaged or foreign checkpoint)")
    if entry.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where}: {CKPT_KEY} format_version {entry.get('format_version')!r} is not supported "
                         f"(this compclap reads {FORMAT_VERSION})")
    spec = copy.deepcopy(dict(entry["spec"]))
    check_spec(spec, where, CKPT_KEY)
    key = register_tokenizer(entry.get("tokenizer_files"), where)
    text = spec.get("init_args", {}).get("text")
    if isinstance(text, dict) and isinstance(text.get("init_args"), dict):
        text["init_args"]["tokenizer"] = key
    return spec


def with_tokenizer(spec: dict[str, Any], tokenizer: str) -> dict[str, Any]:
    """A copy of a dual-encoder spec whose text tower reads `tokenizer` (a local directory) instead."""
    spec = copy.deepcopy(spec)
    spec["init_args"]["text"].setdefault("init_args", {})["tokenizer"] = str(tokenizer)
    return spec
