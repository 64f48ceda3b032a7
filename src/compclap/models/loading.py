"""`load_model` and `load_state_into`: one entry point for every checkpoint format compclap reads.

Formats (all local, nothing is downloaded):
- a compclap Lightning `.ckpt`, or a run directory: its best checkpoint, else `last.ckpt` (`RUN_DIR/last`,
  `RUN_DIR/best` pick one; see models/run_dir.py); the architecture comes from the spec and tokenizer files the
  checkpoint carries (models/embedded.py), so the run loads after its source folders moved;
- a compclap export directory (`compclap_config.json` + `model.safetensors` + `tokenizer/`);
- a Hugging Face `ClapModel` directory (`config.json` + weights, unfused or fused);
- a LAION-CLAP `.pt` (`{"state_dict": ...}` or a raw state dict, optional `module.` prefix);
- an MS-CLAP `.pth` (`{"model": ...}`, 2022 CNN14 + BERT or 2023 HTSAT + GPT-2).
Files are read with `torch.load(weights_only=True)`, and every spec or checkpoint config is checked against
`compclap.models.registry.ALLOWED_CLASSES` before anything is built from it. Weights always load strictly: a file
that misses or adds keys is refused with the nearest known layout and the first missing / unexpected keys.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compclap.models.convert_hf import Converted, hf_clap_to_ours
from compclap.models.dual_encoder import CLAPDualEncoder, from_hf_clap_dir
from compclap.models.registry import check_checkpoint, check_spec
from compclap.models.safe_load import (CheckpointLayoutError, mismatch_message, safe_torch_load, strip_prefix,
                                       tensor_state)

EXPORT_CONFIG = "compclap_config.json"
EXPORT_WEIGHTS = "model.safetensors"

# Buffers a model derives from its config: a file may carry them or not (e.g. LAION's position_ids).
DERIVED_BUFFERS = re.compile(r"(embeddings\.(position_ids|token_type_ids)|relative_position_index|"
                             r"num_batches_tracked)$")

# Key groups of each layout compclap knows: (required, optional); a name ending in "." is a prefix.
KNOWN_LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "LAION-CLAP": (("audio_branch.", "text_branch.", "audio_projection.", "text_projection.", "logit_scale_a"),
                   ("logit_scale_t", "audio_transform.", "text_transform.")),
    "MS-CLAP": (("audio_encoder.base.", "audio_encoder.projection.", "caption_encoder.base.",
                 "caption_encoder.projection.", "logit_scale"), ()),
    "Hugging Face ClapModel": (("audio_model.", "text_model.", "audio_projection.", "text_projection.",
                                "logit_scale_a"), ("logit_scale_t",)),
    "compclap CLAPDualEncoder": (("audio.", "text.", "audio_projection.", "text_projection.", "logit_scale"), ()),
}


def load_model(path: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
               map_location: str = "cpu") -> CLAPDualEncoder:
    """Load any supported checkpoint as a CLAPDualEncoder in eval mode.

    `tokenizer` is a local tokenizer directory: required for LAION-CLAP .pt (roberta-base files) and MS-CLAP
    .pth (gpt2 files for 2023, bert-base-uncased for 2022), which carry none; for other formats it replaces
    the tokenizer they record.
    """
    from compclap.models.run_dir import resolve_checkpoint

    path = resolve_checkpoint(path).path
    if path.is_dir():
        if (path / EXPORT_CONFIG).is_file():
            model = _from_export_dir(path, tokenizer)
        elif (path / "config.json").is_file():
            model = from_hf_clap_dir(path, tokenizer=str(tokenizer) if tokenizer is not None else None)
        else:
            raise ValueError(f"{path} is a directory but neither a Hugging Face ClapModel directory (config.json), "
                             f"a compclap export ({EXPORT_CONFIG}) nor a run directory (.ckpt files)")
    elif not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    else:
        obj = safe_torch_load(path)
        if _is_lightning(obj):
            model = _from_lightning_checkpoint(path, obj, tokenizer)
        else:
            converted = convert_foreign(_state_of(obj, path), str(path))
            if tokenizer is None:
                raise ValueError(f"{path} is a {converted.layout} checkpoint, which carries no tokenizer: give a local "
                                 "tokenizer directory (roberta-base files for LAION-CLAP, gpt2 for MS-CLAP 2023, "
                                 "bert-base-uncased for MS-CLAP 2022) as load_model(..., tokenizer=DIR), --tokenizer DIR "
                                 "(compclap export / evaluate) or model.model.init_args.pretrained_tokenizer (configs)")
            from compclap.models.specs import instantiate

            model = instantiate(converted.spec_with_tokenizer(str(tokenizer)), where=str(path))
            load_strict(model, converted.state, str(path), converted.layout, converted.origin)
    return model.to(map_location).eval()


def load_state_into(model: nn.Module, path: str | os.PathLike) -> str:
    """Load weights (strictly, no optimiser state) from any supported checkpoint into an existing model.

    Accepts a run directory or .ckpt (keys under `model.`), a compclap export directory, a Hugging Face
    ClapModel directory, a LAION-CLAP .pt, an MS-CLAP .pth, or a .pt of CLAPDualEncoder weights. The model's
    architecture must match the file's; otherwise CheckpointLayoutError names the missing / unexpected keys
    (and mismatched shapes) and the model is left untouched. Returns a short description of what was loaded.
    """
    from compclap.models.run_dir import resolve_checkpoint

    path = resolve_checkpoint(path).path
    if path.is_dir():
        if (path / EXPORT_CONFIG).is_file():
            from safetensors.torch import load_file

            _read_export_config(path)  # refuses a config naming classes outside the registry
            load_strict(model, load_file(str(path / EXPORT_WEIGHTS)), str(path), "compclap export")
            return f"compclap export {path}"
        if (path / "config.json").is_file():
            from transformers import ClapModel

            clap = ClapModel.from_pretrained(str(path), local_files_only=True)
            state, unknown = hf_clap_to_ours(clap.state_dict())
            state.update({k: v for k, v in clap.state_dict().items() if k in unknown})
            load_strict(model, state, str(path), "Hugging Face ClapModel")
            return f"Hugging Face ClapModel {path}"
        raise FileNotFoundError(f"no checkpoint in run directory {path}")
    obj = safe_torch_load(path)
    if _is_lightning(obj):
        check_checkpoint(obj, str(path))
        state = {k[len("model."):]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        load_strict(model, state, str(path), "compclap Lightning checkpoint")
        return f"compclap checkpoint {path}"
    state = _state_of(obj, path)
    if _layout_scores(state)[0][0] == "compclap CLAPDualEncoder" and not _layout_scores(state)[0][2]:
        load_strict(model, state, str(path), "compclap CLAPDualEncoder")
        return f"CLAPDualEncoder weights {path}"
    converted = convert_foreign(state, str(path))
    load_strict(model, converted.state, str(path), converted.layout, converted.origin)
    return f"{converted.layout} {path}"


def convert_foreign(state: Mapping[str, torch.Tensor], where: str) -> Converted:
    """Recognise a LAION-CLAP or MS-CLAP state dict and convert it; any other layout is a clear error."""
    from compclap.models.convert_laion import convert_laion, looks_like_laion
    from compclap.models.convert_msclap import convert_msclap, looks_like_msclap

    state = strip_prefix(state, "module.")
    if looks_like_laion(state):
        return convert_laion(state, where)
    if looks_like_msclap(state):
        return convert_msclap(state, where)
    name, missing, unexpected = _layout_scores(state)[0]
    hint = ""
    if name == "Hugging Face ClapModel" and not missing and not unexpected:
        hint = " (a bare ClapModel state dict has no config: save the model with save_pretrained and load the directory)"
    elif name == "compclap CLAPDualEncoder" and not missing and not unexpected:
        hint = " (bare CLAPDualEncoder weights carry no architecture: use them with load_state_into or --model.init_from)"
    known = ", ".join(KNOWN_LAYOUTS)
    raise CheckpointLayoutError(mismatch_message(
        where, name, missing, unexpected,
        head=f"{where} matches no known checkpoint layout ({known}); the nearest is {name}{hint}"))


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], where: str, layout: str,
                origin: Mapping[str, str] | None = None) -> None:
    """`load_state_dict(strict=True)` with a readable error; buffers the model derives itself are optional."""
    origin = origin or {}
    target = model.state_dict()
    state = {k: v for k, v in state.items() if k in target or not DERIVED_BUFFERS.search(k)}
    # Parts a model may add to a checkpoint's architecture and initialise itself (ProLAP's uncertainty heads).
    optional = getattr(model, "optional_on_load", None) or (lambda _key: False)
    for key, value in target.items():
        if key not in state and (DERIVED_BUFFERS.search(key) or optional(key)):
            state[key] = value
    missing = [k for k in target if k not in state]
    unexpected = [origin.get(k, k) for k in state if k not in target]
    shapes = [f"{origin.get(k, k)} {tuple(v.shape)} vs model {tuple(target[k].shape)}"
              for k, v in state.items() if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if missing or unexpected or shapes:
        msg = mismatch_message(where, layout, missing, unexpected)
        if shapes:
            msg += f"; shape mismatches ({len(shapes)}): {shapes[:10]}"
        raise CheckpointLayoutError(msg)
    model.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------------------------- helpers
def _is_lightning(obj: Any) -> bool:
    return isinstance(obj, Mapping) and "state_dict" in obj and ("pytorch-lightning_version" in obj
                                                                 or "hyper_parameters" in obj)


def _state_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a foreign checkpoint: `state_dict` (LAION), `model` (MS-CLAP) or the object itself."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return tensor_state(obj[key], f"{path}[{key!r}]")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return tensor_state(obj, str(path))
        raise CheckpointLayoutError(f"{path} holds no state dict: expected a 'state_dict' (LAION-CLAP) or 'model' "
                                    f"(MS-CLAP) entry, or a mapping of names to tensors; top-level keys: "
                                    f"{sorted(map(str, obj))[:10]}")
    raise CheckpointLayoutError(f"{path} holds a {type(obj).__name__}, not a checkpoint dictionary")


def _matches(key: str, pattern: str) -> bool:
    return key.startswith(pattern) if pattern.endswith(".") else key == pattern


def _layout_scores(state: Mapping[str, Any]) -> list[tuple[str, list[str], list[str]]]:
    """Known layouts, nearest first, each with its missing key groups and the file's unexpected keys."""
    scored = []
    for name, (required, optional) in KNOWN_LAYOUTS.items():
        patterns = required + optional
        unexpected = [k for k in state if not any(_matches(k, p) for p in patterns)]
        missing = [p + "*" if p.endswith(".") else p for p in required if not any(_matches(k, p) for k in state)]
        score = (len(state) - len(unexpected)) / max(len(state), 1) - 0.1 * len(missing)
        scored.append((score, name, missing, unexpected))
    scored.sort(key=lambda s: -s[0])
    return [(name, missing, unexpected) for _, name, missing, unexpected in scored]


def _from_lightning_checkpoint(path: Path, ckpt: Mapping[str, Any], tokenizer: str | os.PathLike | None
                               ) -> CLAPDualEncoder:
    """Rebuild the dual encoder from the architecture the checkpoint carries (models/embedded.py) or, in files
    written before it did, from the config a LightningCLI run stored in its hyper-parameters; then load weights."""
    from compclap.models.embedded import stored_architecture, with_tokenizer

    check_checkpoint(ckpt, str(path))  # before jsonargparse imports anything the hyper-parameters name
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    spec = stored_architecture(ckpt, str(path))
    if spec is not None:
        from compclap.models.specs import instantiate

        model = instantiate(with_tokenizer(spec, str(tokenizer)) if tokenizer is not None else spec, where=str(path))
        load_strict(model, state, str(path), "the architecture recorded in the checkpoint")
        return model
    from lightning.pytorch.cli import instantiate_module

    hparams: dict[str, Any] = copy.deepcopy(dict(ckpt.get("hyper_parameters", {})))
    model_cfg = hparams.get("model")
    if not isinstance(model_cfg, dict) or "class_path" not in model_cfg:
        raise ValueError(f"{path} does not record its model config (it was not written by `compclap fit`)")
    if tokenizer is not None:
        text = model_cfg.get("init_args", {}).get("text")
        if isinstance(text, dict):
            text.setdefault("init_args", {})["tokenizer"] = str(tokenizer)
    model = instantiate_module(CLAPDualEncoder, model_cfg["init_args"])
    load_strict(model, state, str(path), "the architecture recorded in the checkpoint")
    return model


def _from_export_dir(path: Path, tokenizer: str | os.PathLike | None) -> CLAPDualEncoder:
    """Rebuild a model written by `compclap export` in compclap format (spec + safetensors + tokenizer)."""
    from safetensors.torch import load_file

    from compclap.models.specs import instantiate

    spec = copy.deepcopy(_read_export_config(path)["model"])
    text = spec.get("init_args", {}).get("text") if isinstance(spec, dict) else None
    text_args = text.get("init_args") if isinstance(text, dict) else None
    if not isinstance(text_args, dict) or not isinstance(text_args.get("tokenizer"), str):
        raise ValueError(f"{path / EXPORT_CONFIG}: 'model' is not a compclap model spec with a text tower "
                         "(model.init_args.text.init_args.tokenizer)")
    if tokenizer is not None:
        text_args["tokenizer"] = str(tokenizer)
    elif not Path(text_args["tokenizer"]).is_absolute():
        text_args["tokenizer"] = str(path / text_args["tokenizer"])
    model = instantiate(spec, where=str(path / EXPORT_CONFIG))
    load_strict(model, load_file(str(path / EXPORT_WEIGHTS)), str(path), "compclap export")
    return model


def _read_export_config(path: Path) -> dict[str, Any]:
    """An export directory's compclap_config.json, checked against the class registry before any use."""
    where = path / EXPORT_CONFIG
    try:
        meta = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where} is not a readable JSON file: {exc}") from None
    check_spec(meta, str(where))
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise ValueError(f"{where} holds no 'model' spec (it was not written by `compclap export`)")
    return meta
