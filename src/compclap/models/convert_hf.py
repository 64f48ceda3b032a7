"""Name mapping between transformers' ClapModel and compclap's CLAPDualEncoder, plus the shared conversion record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

# ClapModel prefix -> CLAPDualEncoder prefix.
_HF_TO_OURS = (("audio_model.", "audio.backbone."), ("text_model.", "text.backbone."),
               ("audio_projection.", "audio_projection."), ("text_projection.", "text_projection."))


@dataclass
class Converted:
    """A foreign checkpoint turned into compclap terms.

    layout: what was recognised, e.g. "LAION-CLAP (HTSAT-tiny, fusion, RoBERTa)".
    spec: CLAPDualEncoder spec (see models/specs.py) with the text tokenizer left as None.
    state: weights under CLAPDualEncoder names.
    origin: for each of those names, the key it came from in the file (for error messages).
    ignored: keys of the file accepted and deliberately not used (STFT weights, classifier heads, legacy buffers).
    """

    layout: str
    spec: dict[str, Any]
    state: dict[str, torch.Tensor]
    origin: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def spec_with_tokenizer(self, tokenizer: str) -> dict[str, Any]:
        """The spec with its text tower pointing at a local tokenizer directory."""
        import copy

        spec = copy.deepcopy(self.spec)
        spec["init_args"]["text"]["init_args"]["tokenizer"] = str(tokenizer)
        return spec


def hf_clap_to_ours(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """ClapModel weights under CLAPDualEncoder names; returns (state, keys that have no counterpart)."""
    out, unknown = {}, []
    for key, value in state.items():
        if key == "logit_scale_a":
            out["logit_scale"] = value
            continue
        if key == "logit_scale_t":  # LAION's loss uses logit_scale_a only; one temperature here
            continue
        for src, dst in _HF_TO_OURS:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            unknown.append(key)
    return out, unknown


def ours_to_hf_clap(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLAPDualEncoder weights under ClapModel names (logit_scale becomes both logit_scale_a and _t)."""
    out = {}
    for key, value in state.items():
        if key == "logit_scale":
            out["logit_scale_a"] = value
            out["logit_scale_t"] = value.clone()
            continue
        for dst, src in _HF_TO_OURS:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            raise KeyError(f"{key} has no Hugging Face ClapModel counterpart")
    return out
