"""`load_model`: one entry point for every checkpoint format compclap reads."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch

from compclap.models.dual_encoder import CLAPDualEncoder


def load_model(path: str | os.PathLike, tokenizer: str | None = None, map_location: str = "cpu") -> CLAPDualEncoder:
    """Load a compclap Lightning .ckpt or a Hugging Face ClapModel directory; returns the model in eval mode.

    `tokenizer` replaces the tokenizer directory recorded in a .ckpt (e.g. after moving the run).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            model = CLAPDualEncoder(hf_pretrained=str(path))
        else:
            raise ValueError(f"{path} is a directory but not a Hugging Face ClapModel directory (no config.json)")
    elif path.suffix == ".ckpt":
        model = _from_lightning_checkpoint(path, tokenizer, map_location)
    elif not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    else:
        raise ValueError(f"unrecognised checkpoint {path}: expected a compclap .ckpt or a Hugging Face CLAP directory")
    return model.to(map_location).eval()


def _from_lightning_checkpoint(path: Path, tokenizer: str | None, map_location: str) -> CLAPDualEncoder:
    """Rebuild the dual encoder from the config a LightningCLI run stored in the checkpoint, then load weights."""
    from lightning.pytorch.cli import instantiate_module

    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    hparams: dict[str, Any] = copy.deepcopy(ckpt.get("hyper_parameters", {}))
    model_cfg = hparams.get("model")
    if not isinstance(model_cfg, dict) or "class_path" not in model_cfg:
        raise ValueError(f"{path} does not record its model config (it was not written by `compclap fit`)")
    if tokenizer is not None:
        text = model_cfg.get("init_args", {}).get("text")
        if isinstance(text, dict):
            text.setdefault("init_args", {})["tokenizer"] = str(tokenizer)
    model = instantiate_module(CLAPDualEncoder, model_cfg["init_args"])
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{path}: weights do not match the recorded architecture; missing {missing[:10]}, "
                           f"unexpected {unexpected[:10]}")
    return model
