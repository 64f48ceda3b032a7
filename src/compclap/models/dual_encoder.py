"""The CLAP dual encoder: audio tower + text tower, projection heads, learnable temperature."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compclap.audio.io import load_audio
from compclap.audio.fusion import fit_length
from compclap.models.audio import HTSATAudioEncoder
from compclap.models.heads import ProjectionHead
from compclap.models.text import HFTextEncoder


class CLAPDualEncoder(nn.Module):
    """Audio and text towers projected into one joint space, compared by cosine similarity."""

    def __init__(
        self,
        audio: nn.Module | None = None,
        text: nn.Module | None = None,
        embed_dim: int = 512,
        projection_activation: str = "relu",
        projection_style: str = "laion",
        logit_scale_init: float = 1 / 0.07,
        max_logit_scale: float = 100.0,
        min_logit_scale: float = 1.0,
        hf_pretrained: str | None = None,
        pretrained: str | None = None,
        pretrained_tokenizer: str | None = None,
        audio_trainable_blocks: int | None = None,
        text_trainable_blocks: int | None = None,
        uncertainty: bool = False,
        logvar_init: float = -5.0,
    ) -> None:
        """Build the model.

        Args:
            audio: audio tower (HTSATAudioEncoder, CNN14AudioEncoder); ignored when initialising from a checkpoint.
            text: text tower (e.g. HFTextEncoder); ignored when initialising from a checkpoint.
            embed_dim: size of the joint embedding space.
            projection_activation: activation between the two linear layers of each head (relu or gelu).
            projection_style: "laion" (linear-act-linear) or "msclap" (residual, LayerNorm, no biases).
            logit_scale_init: initial temperature scale (1/0.07 as in CLIP/CLAP).
            max_logit_scale: the scale is clamped at this value (100).
            min_logit_scale: and at this one (1: temperature at most 1); without a floor a diverging run drove
                log-scale to -5520 (lr 1e3). Training also clamps the raw parameter in place after every step.
            hf_pretrained: local Hugging Face ClapModel directory to initialise towers, heads and scale from.
            pretrained: any checkpoint `load_model` reads (compclap .ckpt or export directory, Hugging Face
                directory, LAION-CLAP .pt, MS-CLAP .pth): architecture, front end and weights come from it.
            pretrained_tokenizer: local tokenizer directory for `pretrained` files that carry none (LAION, MS-CLAP);
                None (default) uses the tokenizer a Hugging Face folder, an export or a compclap run brings.
            audio_trainable_blocks: with `hf_pretrained`/`pretrained`: None trains all, 0 freezes, N trains the last N.
            text_trainable_blocks: with `hf_pretrained`/`pretrained`: None trains all, 0 freezes, N trains the last N.
            uncertainty: add ProLAP's uncertainty heads: each input becomes a Gaussian, the normalised mean the
                deterministic model gives plus a diagonal log-variance from a linear head on the tower's pooled
                features (`encode_*_gaussian`, `embed_*(return_uncertainty=True)`); with an HTSAT audio tower also
                a learnable mask token for masked audio views. Off: the model is exactly the deterministic one.
            logvar_init: initial log-variance of every dimension (the heads start with zero weights).
        """
        super().__init__()
        source: CLAPDualEncoder | None = None
        if hf_pretrained is not None and pretrained is not None:
            raise ValueError("give either `hf_pretrained` or `pretrained`, not both")
        from compclap.models.packaged import resolve_local_path

        if pretrained_tokenizer is not None and not Path(resolve_local_path(str(pretrained_tokenizer))).is_dir():
            raise FileNotFoundError(
                f"pretrained_tokenizer {pretrained_tokenizer} is not a directory: set model.model.init_args."
                "pretrained_tokenizer to a local tokenizer folder (roberta-base files for LAION-CLAP .pt, gpt2 for "
                "MS-CLAP 2023, bert-base-uncased for MS-CLAP 2022), or to null for a Hugging Face folder, a compclap "
                "export or run, which bring their own")
        if hf_pretrained is not None:
            source = from_hf_clap_dir(hf_pretrained, tokenizer=pretrained_tokenizer)
        elif pretrained is not None:
            from compclap.models.loading import load_model

            source = load_model(pretrained, tokenizer=pretrained_tokenizer)
        if source is not None:
            audio, text = source.audio, source.text
            embed_dim, projection_activation = source.embed_dim, source.projection_activation
            projection_style, max_logit_scale = source.projection_style, source.max_logit_scale
            min_logit_scale = getattr(source, "min_logit_scale", min_logit_scale)
            audio.set_trainable_blocks(audio_trainable_blocks)
            text.set_trainable_blocks(text_trainable_blocks)
        if audio is None or text is None:
            raise ValueError("CLAPDualEncoder needs both `audio` and `text` towers, or `hf_pretrained` / `pretrained`")
        self.audio = audio
        self.text = text
        self.audio_projection = ProjectionHead(audio.output_dim, embed_dim, projection_activation, projection_style)
        self.text_projection = ProjectionHead(text.output_dim, embed_dim, projection_activation, projection_style)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))
        if not 0 < min_logit_scale <= max_logit_scale:
            raise ValueError(f"need 0 < min_logit_scale <= max_logit_scale, got {min_logit_scale}, {max_logit_scale}")
        self.max_logit_scale = max_logit_scale
        self.min_logit_scale = min_logit_scale
        self.embed_dim = embed_dim
        self.projection_activation = projection_activation
        self.projection_style = projection_style
        self.uncertainty = uncertainty
        self.logvar_init = logvar_init
        if uncertainty:
            self.audio_logvar_head = _logvar_head(audio.output_dim, embed_dim, logvar_init)
            self.text_logvar_head = _logvar_head(text.output_dim, embed_dim, logvar_init)
            patch_embed = getattr(getattr(getattr(audio, "backbone", None), "audio_encoder", None), "patch_embed", None)
            if patch_embed is not None:  # HTSAT: masked audio views replace patch embeddings with this token
                self.audio_mask_token = nn.Parameter(0.02 * torch.randn(patch_embed.proj.out_channels))
        if source is not None:
            for name in ("audio_projection", "text_projection"):
                getattr(self, name).load_state_dict(getattr(source, name).state_dict())
            with torch.no_grad():
                self.logit_scale.copy_(source.logit_scale)
        self.train()

    def spec(self, tokenizer: str | None = None) -> dict:
        """Class path and init arguments that rebuild this architecture (random weights); see models/specs.py."""
        init_args = {"audio": self.audio.spec(), "text": self.text.spec(tokenizer),
                     "embed_dim": self.embed_dim, "projection_activation": self.projection_activation,
                     "projection_style": self.projection_style, "max_logit_scale": self.max_logit_scale}
        if self.min_logit_scale != 1.0:
            init_args["min_logit_scale"] = self.min_logit_scale
        if self.uncertainty:
            init_args.update(uncertainty=True, logvar_init=self.logvar_init)
        return {"class_path": "compclap.models.CLAPDualEncoder", "init_args": init_args}

    def optional_on_load(self, key: str) -> bool:
        """State keys that may be absent from a checkpoint and then keep their fresh initialisation.

        The uncertainty heads and the audio mask token: a ProLAP run can start (`init_from`) from the
        weights of a deterministic model.
        """
        return self.uncertainty and key.split(".")[0] in ("audio_logvar_head", "text_logvar_head", "audio_mask_token")

    @property
    def frontend_config(self):
        """Preprocessing of the audio tower (sample rate, clip length, mel parameters)."""
        return self.audio.frontend_config

    def scale(self) -> torch.Tensor:
        """Temperature scale exp(logit_scale), clamped to [min_logit_scale, max_logit_scale]."""
        return self.logit_scale.clamp(math.log(self.min_logit_scale), math.log(self.max_logit_scale)).exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the raw log-scale parameter into its bounds in place (after an optimiser step)."""
        self.logit_scale.clamp_(math.log(self.min_logit_scale), math.log(self.max_logit_scale))

    def encode_audio(self, waveforms: torch.Tensor) -> torch.Tensor:
        """L2-normalised audio embeddings (B, D) from waveforms (B, T)."""
        return F.normalize(self.audio_projection(self.audio(waveforms)), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (B, D) from captions."""
        return F.normalize(self.text_projection(self.text(texts)), dim=-1)

    def _require_uncertainty(self) -> None:
        if not self.uncertainty:
            raise ValueError("this model has no uncertainty heads (build it with uncertainty=True, "
                             "model.init_args.uncertainty: true in a config)")

    def encode_audio_gaussian(self, waveforms: torch.Tensor, mask_ratio: float = 0.0,
                              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian audio embeddings: L2-normalised means (B, D) and diagonal log-variances (B, D).

        mask_ratio > 0 embeds a masked view: that share of HTSAT's patches is replaced by the learnable mask
        token and pooling averages the visible tokens only (compclap.models.masking).
        """
        self._require_uncertainty()
        if mask_ratio > 0:
            from compclap.models.masking import masked_htsat_pooled

            if not hasattr(self, "audio_mask_token"):
                raise NotImplementedError(f"audio masking needs an HTSAT tower, got {type(self.audio).__name__}")
            pooled = masked_htsat_pooled(self.audio, waveforms, self.audio_mask_token, mask_ratio, generator)
        else:
            pooled = self.audio(waveforms)
        return F.normalize(self.audio_projection(pooled), dim=-1), self.audio_logvar_head(pooled)

    def encode_text_gaussian(self, texts: list[str], mask_ratio: float = 0.0,
                             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian text embeddings: L2-normalised means (B, D) and diagonal log-variances (B, D).

        mask_ratio > 0 embeds a masked view (that share of each caption's words dropped; HFTextEncoder).
        """
        self._require_uncertainty()
        pooled = self.text(texts, mask_ratio=mask_ratio, generator=generator) if mask_ratio > 0 else self.text(texts)
        return F.normalize(self.text_projection(pooled), dim=-1), self.text_logvar_head(pooled)

    def forward(self, waveforms: torch.Tensor, texts: list[str]) -> dict[str, torch.Tensor]:
        """Embed a batch of clips and captions; returns audio_embeds, text_embeds and logit_scale.

        With uncertainty heads also audio_logvar and text_logvar (diagonal log-variances, (B, D)).
        """
        if not self.uncertainty:
            return {"audio_embeds": self.encode_audio(waveforms), "text_embeds": self.encode_text(texts),
                    "logit_scale": self.scale()}
        audio, audio_logvar = self.encode_audio_gaussian(waveforms)
        text, text_logvar = self.encode_text_gaussian(texts)
        return {"audio_embeds": audio, "text_embeds": text, "audio_logvar": audio_logvar,
                "text_logvar": text_logvar, "logit_scale": self.scale()}

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return self.logit_scale.device

    @torch.no_grad()
    def embed_audio(self, items: Sequence[str | os.PathLike | np.ndarray | torch.Tensor],
                    sample_rate: int | None = None, batch_size: int = 32,
                    return_uncertainty: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Embed audio files or 1-D float arrays (at `sample_rate`, default the model's); returns (N, D) on CPU.

        Clips are fitted to the model's clip length (head crop, or the front end's padding); fusion models
        see the whole of a longer clip instead (whole-clip spectrogram plus three chunks).
        return_uncertainty (models with uncertainty heads): return (means, log-variances), both (N, D).
        """
        if return_uncertainty:
            self._require_uncertainty()
        cfg = self.frontend_config
        fusion = bool(getattr(self.audio, "fusion", False))
        was_training = self.training
        self.eval()
        try:
            out, logvars = [], []
            for start in range(0, len(items), batch_size):
                waves = [torch.from_numpy(_finite_wave(self._prepare_wave(item, sample_rate), start + k, item))
                         .to(self.device) for k, item in enumerate(items[start:start + batch_size])]
                batch = waves if fusion else torch.stack([fit_length(w, cfg.num_samples, cfg.padding) for w in waves])
                if return_uncertainty:
                    mean, logvar = self.encode_audio_gaussian(batch)
                    out.append(mean.float().cpu())
                    logvars.append(logvar.float().cpu())
                else:
                    out.append(self.encode_audio(batch).float().cpu())
            means = _finite_embeddings(torch.cat(out) if out else torch.empty(0, self.embed_dim), "audio")
            if return_uncertainty:
                return means, _finite_embeddings(torch.cat(logvars) if logvars else torch.empty(0, self.embed_dim),
                                                 "audio log-variance")
            return means
        finally:
            self.train(was_training)

    def _prepare_wave(self, item: str | os.PathLike | np.ndarray | torch.Tensor, sample_rate: int | None) -> np.ndarray:
        """Decode a path or validate an array, resampled to the model's rate."""
        from compclap.audio.io import resample

        target = self.frontend_config.sample_rate
        if isinstance(item, (str, os.PathLike)):
            return load_audio(item, target)[0]
        wave = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
        if wave.ndim != 1:
            raise ValueError(f"audio arrays must be 1-D (mono), got shape {wave.shape}")
        return np.ascontiguousarray(resample(wave.astype(np.float32), sample_rate or target, target))

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str], batch_size: int = 256,
                   return_uncertainty: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Embed captions; returns L2-normalised (N, D) on CPU.

        return_uncertainty (models with uncertainty heads): return (means, log-variances), both (N, D).
        """
        if return_uncertainty:
            self._require_uncertainty()
        was_training = self.training
        self.eval()
        try:
            if not return_uncertainty:
                out = [self.encode_text(list(texts[i:i + batch_size])).float().cpu()
                       for i in range(0, len(texts), batch_size)]
                return _finite_embeddings(torch.cat(out) if out else torch.empty(0, self.embed_dim), "text")
            pairs = [self.encode_text_gaussian(list(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]
            if not pairs:
                return torch.empty(0, self.embed_dim), torch.empty(0, self.embed_dim)
            return (_finite_embeddings(torch.cat([m.float().cpu() for m, _ in pairs]), "text"),
                    _finite_embeddings(torch.cat([v.float().cpu() for _, v in pairs]), "text log-variance"))
        finally:
            self.train(was_training)


def _finite_wave(wave: np.ndarray, index: int, item: object) -> np.ndarray:
    """`wave`, or a ValueError naming the item if it holds a NaN or an inf."""
    if not np.isfinite(wave).all():
        name = f" ({item})" if isinstance(item, (str, os.PathLike)) else ""
        raise ValueError(f"audio item {index}{name} has non-finite samples (NaN or inf)")
    return wave


def _finite_embeddings(emb: torch.Tensor, kind: str) -> torch.Tensor:
    """`emb`, or a ValueError if the model produced NaN/inf (its weights are then not finite: a diverged run)."""
    if not bool(torch.isfinite(emb).all()):
        rows = (~torch.isfinite(emb)).any(-1).nonzero().flatten().tolist()
        raise ValueError(f"the model produced non-finite {kind} embeddings for {len(rows)} of {emb.shape[0]} inputs "
                         f"(first: {rows[:5]}); its weights are probably NaN/inf (a diverged run)")
    return emb


def _logvar_head(in_dim: int, embed_dim: int, logvar_init: float) -> nn.Linear:
    """Linear log-variance head with zero weights: every input starts at variance exp(logvar_init)."""
    head = nn.Linear(in_dim, embed_dim)
    nn.init.zeros_(head.weight)
    nn.init.constant_(head.bias, logvar_init)
    return head


def from_hf_clap_dir(path: str | os.PathLike, tokenizer: str | None = None) -> CLAPDualEncoder:
    """A dual encoder from a local Hugging Face ClapModel directory (unfused or fused); train mode.

    `tokenizer` overrides the tokenizer files in the directory.
    """
    from transformers import ClapModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a Hugging Face ClapModel directory (no config.json)")
    clap = ClapModel.from_pretrained(str(path), local_files_only=True)
    frontend = frontend_from_preprocessor(path, fusion=bool(clap.config.audio_config.enable_fusion))
    return from_clap_model(clap, tokenizer=str(tokenizer or path), frontend=frontend)


def from_clap_model(clap, tokenizer: str, frontend: dict | None = None, max_length: int = 77) -> CLAPDualEncoder:
    """Wrap an in-memory transformers ClapModel: its towers, heads and logit_scale_a (LAION trains with it alone)."""
    audio = HTSATAudioEncoder(backbone=clap.audio_model, **(frontend or {}))
    text = HFTextEncoder(tokenizer=tokenizer, backbone=clap.text_model, pooling="pooler", max_length=max_length)
    model = CLAPDualEncoder(audio, text, embed_dim=clap.config.projection_dim,
                            projection_activation=clap.config.projection_hidden_act)
    model.audio_projection.load_state_dict(clap.audio_projection.state_dict())
    model.text_projection.load_state_dict(clap.text_projection.state_dict())
    with torch.no_grad():
        model.logit_scale.copy_(clap.logit_scale_a.detach())
    return model


# Extra key compclap writes into preprocessor_config.json: front-end settings ClapFeatureExtractor cannot express.
COMPCLAP_FRONTEND_KEY = "compclap_frontend"


def frontend_from_preprocessor(path: Path, fusion: bool = False) -> dict:
    """Front-end keyword arguments from a saved ClapFeatureExtractor config (defaults when absent).

    The mel filters follow the model, as in LAION-CLAP: HTK without norm for fusion models, slaney otherwise
    (whatever `truncation` the saved extractor names).
    """
    mel_scale = "htk" if fusion else "slaney"
    pre, cfg = Path(path) / "preprocessor_config.json", {}
    if pre.is_file():
        cfg = json.loads(pre.read_text())
    elif (Path(path) / "processor_config.json").is_file():  # transformers 5 nests the parts in one file
        pre = Path(path) / "processor_config.json"
        cfg = json.loads(pre.read_text()).get("feature_extractor") or {}
    if not cfg:
        return {"mel_scale": mel_scale}
    truncation = cfg.get("truncation", "fusion")
    if truncation not in ("fusion", "rand_trunc"):
        raise NotImplementedError(f"{pre}: truncation {truncation!r} is not supported (fusion or rand_trunc)")
    padding = cfg.get("padding", "repeatpad")
    if padding not in ("repeatpad", "repeat"):
        raise NotImplementedError(f"{pre}: padding {padding!r} is not supported (repeatpad or repeat)")
    out = {"sample_rate": cfg.get("sampling_rate", 48_000), "clip_seconds": float(cfg.get("max_length_s", 10)),
           "n_fft": cfg.get("fft_window_size", 1024), "hop_length": cfg.get("hop_length", 480),
           "f_min": float(cfg.get("frequency_min", 0)), "f_max": float(cfg.get("frequency_max", 14_000)),
           "mel_scale": mel_scale, "padding": padding}
    out.update(cfg.get(COMPCLAP_FRONTEND_KEY) or {})
    return out
