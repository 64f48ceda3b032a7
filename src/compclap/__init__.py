"""compclap: fine-tune CLAP audio-text dual encoders for compositional reasoning."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_model", "__version__"]


def load_model(path: str, tokenizer: str | None = None, **kwargs: Any):
    """Load a checkpoint (Lightning .ckpt, Hugging Face CLAP directory, ...) as an embedding model."""
    from compclap.models.loading import load_model as _load_model

    return _load_model(path, tokenizer=tokenizer, **kwargs)
