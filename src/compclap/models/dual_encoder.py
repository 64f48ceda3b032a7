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
from compclap.audio.transforms import crop_or_pad
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
        logit_scale_init: float = 1 / 0.07,
        max_logit_scale: float = 100.0,
        hf_pretrained: str | None = None,
        audio_trainable_blocks: int | None = None,
        text_trainable_blocks: int | None = None,
    ) -> None:
        """Build the model.

        Args:
            audio: audio tower (e.g. HTSATAudioEncoder); ignored when `hf_pretrained` is given.
            text: text tower (e.g. HFTextEncoder); ignored when `hf_pretrained` is given.
            embed_dim: size of the joint embedding space.
            projection_activation: activation between the two linear layers of each head (relu or gelu).
            logit_scale_init: initial temperature scale (1/0.07 as in CLIP/CLAP).
            max_logit_scale: the scale is clamped at this value (100).
            hf_pretrained: local Hugging Face ClapModel directory to initialise towers, heads and scale from.
            audio_trainable_blocks: with `hf_pretrained`: None trains all, 0 freezes, N trains the last N stages.
            text_trainable_blocks: with `hf_pretrained`: None trains all, 0 freezes, N trains the last N blocks.
        """
        super().__init__()
        hf_state = None
        if hf_pretrained is not None:
            audio, text, embed_dim, projection_activation, hf_state = _towers_from_hf_clap(
                hf_pretrained, audio_trainable_blocks, text_trainable_blocks)
        if audio is None or text is None:
            raise ValueError("CLAPDualEncoder needs both `audio` and `text` towers, or `hf_pretrained`")
        self.audio = audio
        self.text = text
        self.audio_projection = ProjectionHead(audio.output_dim, embed_dim, projection_activation)
        self.text_projection = ProjectionHead(text.output_dim, embed_dim, projection_activation)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))
        self.max_logit_scale = max_logit_scale
        self.embed_dim = embed_dim
        if hf_state is not None:
            for name in ("audio_projection", "text_projection"):
                getattr(self, name).load_state_dict(hf_state[name])
            with torch.no_grad():
                self.logit_scale.copy_(hf_state["logit_scale"])

    @property
    def frontend_config(self):
        """Preprocessing of the audio tower (sample rate, clip length, mel parameters)."""
        return self.audio.frontend_config

    def scale(self) -> torch.Tensor:
        """Temperature scale exp(logit_scale), clamped at `max_logit_scale`."""
        return self.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    def encode_audio(self, waveforms: torch.Tensor) -> torch.Tensor:
        """L2-normalised audio embeddings (B, D) from waveforms (B, T)."""
        return F.normalize(self.audio_projection(self.audio(waveforms)), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (B, D) from captions."""
        return F.normalize(self.text_projection(self.text(texts)), dim=-1)

    def forward(self, waveforms: torch.Tensor, texts: list[str]) -> dict[str, torch.Tensor]:
        """Embed a batch of clips and captions; returns audio_embeds, text_embeds and logit_scale."""
        return {"audio_embeds": self.encode_audio(waveforms), "text_embeds": self.encode_text(texts),
                "logit_scale": self.scale()}

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return self.logit_scale.device

    @torch.no_grad()
    def embed_audio(self, items: Sequence[str | os.PathLike | np.ndarray | torch.Tensor],
                    sample_rate: int | None = None, batch_size: int = 32) -> torch.Tensor:
        """Embed audio files or 1-D float arrays (at `sample_rate`, default the model's); returns (N, D) on CPU."""
        cfg = self.frontend_config
        was_training = self.training
        self.eval()
        try:
            out = []
            for start in range(0, len(items), batch_size):
                waves = [self._prepare_wave(item, sample_rate) for item in items[start:start + batch_size]]
                batch = torch.from_numpy(np.stack([crop_or_pad(w, cfg.num_samples) for w in waves])).to(self.device)
                out.append(self.encode_audio(batch).float().cpu())
            return torch.cat(out) if out else torch.empty(0, self.embed_dim)
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
        return resample(wave.astype(np.float32), sample_rate or target, target)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Embed captions; returns L2-normalised (N, D) on CPU."""
        was_training = self.training
        self.eval()
        try:
            out = [self.encode_text(list(texts[i:i + batch_size])).float().cpu()
                   for i in range(0, len(texts), batch_size)]
            return torch.cat(out) if out else torch.empty(0, self.embed_dim)
        finally:
            self.train(was_training)


def _towers_from_hf_clap(path: str, audio_trainable_blocks: int | None, text_trainable_blocks: int | None):
    """Towers, joint size, activation and head/scale weights from a local Hugging Face ClapModel directory."""
    from transformers import ClapModel

    if not Path(path, "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a Hugging Face ClapModel directory (no config.json)")
    clap = ClapModel.from_pretrained(path, local_files_only=True)
    frontend = _frontend_from_preprocessor(Path(path))
    audio = HTSATAudioEncoder(backbone=clap.audio_model, trainable_blocks=audio_trainable_blocks, **frontend)
    text = HFTextEncoder(tokenizer=path, backbone=clap.text_model, pooling="pooler",
                         trainable_blocks=text_trainable_blocks)
    state = {"audio_projection": clap.audio_projection.state_dict(),
             "text_projection": clap.text_projection.state_dict(),
             # LAION trains with logit_scale_a alone; logit_scale_t is unused by its loss.
             "logit_scale": clap.logit_scale_a.detach().clone()}
    return audio, text, clap.config.projection_dim, clap.config.projection_hidden_act, state


def _frontend_from_preprocessor(path: Path) -> dict:
    """Front-end keyword arguments from a saved ClapFeatureExtractor config (defaults when absent)."""
    pre = path / "preprocessor_config.json"
    if not pre.is_file():
        return {}
    cfg = json.loads(pre.read_text())
    truncation = cfg.get("truncation", "rand_trunc")
    if truncation == "fusion":
        raise NotImplementedError(f"{path} uses fusion truncation, which this front end does not support yet")
    return {"sample_rate": cfg.get("sampling_rate", 48_000), "clip_seconds": float(cfg.get("max_length_s", 10)),
            "n_fft": cfg.get("fft_window_size", 1024), "hop_length": cfg.get("hop_length", 480),
            "f_min": float(cfg.get("frequency_min", 50)), "f_max": float(cfg.get("frequency_max", 14_000)),
            "mel_scale": "slaney"}
