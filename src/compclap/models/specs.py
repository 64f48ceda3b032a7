"""Architecture specs: LightningCLI-style `{"class_path", "init_args"}` dicts that rebuild a model without weights.

Converted checkpoints and exported directories describe their model this way, so the same dict can be
instantiated here, written into a `compclap fit --config` fragment, or stored next to safetensors weights.
"""

from __future__ import annotations

import importlib
from typing import Any

# Bookkeeping keys of a transformers config that do not describe the architecture.
HF_CONFIG_META = ("transformers_version", "architectures", "_name_or_path", "model_type", "torch_dtype", "dtype",
                  "output_hidden_states", "output_attentions", "return_dict", "use_return_dict",
                  "_attn_implementation_autoset", "id2label", "label2id", "problem_type", "chunk_size_feed_forward",
                  "is_encoder_decoder", "base_config_key")


def config_kwargs(config: Any) -> dict[str, Any]:
    """A transformers config as plain keyword arguments (architecture fields only, JSON-friendly)."""
    out = {}
    for key, value in config.to_dict().items():
        if key in HF_CONFIG_META:
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def instantiate(spec: Any) -> Any:
    """Build `{"class_path": "compclap....", "init_args": {...}}` recursively; other values pass through.

    Only classes under the `compclap.` package are instantiated, so a spec read from disk cannot name
    arbitrary code.
    """
    if isinstance(spec, dict) and "class_path" in spec:
        path = spec["class_path"]
        if not isinstance(path, str) or not path.startswith("compclap."):
            raise ValueError(f"refusing to instantiate {path!r}: only compclap classes may appear in a model spec")
        module, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: instantiate(v) for k, v in (spec.get("init_args") or {}).items()})
    return spec
