"""Architecture specs: LightningCLI-style `{"class_path", "init_args"}` dicts that rebuild a model without weights.

Converted checkpoints and exported directories describe their model this way, so the same dict can be
instantiated here, written into a `compclap fit --config` fragment, or stored next to safetensors weights.
"""

from __future__ import annotations

from typing import Any

from compclap.models.registry import check_spec, import_allowed

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


def instantiate(spec: Any, where: str = "model spec") -> Any:
    """Build `{"class_path": ..., "init_args": {...}}` recursively; other values pass through.

    The whole spec is checked first: every class path in it must be in
    `compclap.models.registry.ALLOWED_CLASSES`, so a spec read from disk (`where` names the file for the error)
    cannot import or run anything else.
    """
    check_spec(spec, where)
    return _build(spec, where)


def _build(spec: Any, where: str) -> Any:
    if isinstance(spec, dict) and "class_path" in spec:
        cls = import_allowed(spec["class_path"], where)
        return cls(**{k: _build(v, where) for k, v in (spec.get("init_args") or {}).items()})
    return spec
