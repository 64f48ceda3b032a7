"""Audio towers: HTSAT through transformers' ClapAudioModel, with the log-mel front end inside the model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compclap.audio.features import FrontendConfig, LogMelSpectrogram
from compclap.models.freezing import freeze_all_but_last, set_frozen_batchnorm_eval

# LAION's HTSAT-tiny (630k checkpoints) and HTSAT-base (music/speech checkpoints) shapes.
HTSAT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(patch_embeds_hidden_size=96, depths=[2, 2, 6, 2], num_attention_heads=[4, 8, 16, 32], hidden_size=768),
    "base": dict(patch_embeds_hidden_size=128, depths=[2, 2, 12, 2], num_attention_heads=[4, 8, 16, 32], hidden_size=1024),
}


class HTSATAudioEncoder(nn.Module):
    """Waveforms (B, T) -> log-mel on the model's device -> HTSAT -> pooled features (B, hidden)."""

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        preset: str | None = None,
        sample_rate: int = 48_000,
        clip_seconds: float = 10.0,
        n_fft: int = 1024,
        hop_length: int = 480,
        f_min: float = 50.0,
        f_max: float = 14_000.0,
        mel_scale: str = "slaney",
        trainable_blocks: int | None = None,
        backbone: nn.Module | None = None,
    ) -> None:
        """Build the tower.

        Args:
            config: keyword arguments of transformers' ClapAudioConfig (overrides the preset).
            preset: "tiny" or "base" for LAION's HTSAT shapes; None for ClapAudioConfig defaults plus `config`.
            sample_rate: audio rate the front end expects (Hz).
            clip_seconds: clip length the model sees; shorter clips are repeat-padded, longer ones cropped.
            n_fft: STFT window and FFT size.
            hop_length: STFT hop in samples.
            f_min: lowest mel frequency (Hz).
            f_max: highest mel frequency (Hz).
            mel_scale: "slaney" (LAION rand_trunc models) or "htk" (fusion models).
            trainable_blocks: None trains everything, 0 freezes the tower, N trains only the last N HTSAT stages.
            backbone: an existing ClapAudioModel to wrap (used when loading checkpoints).
        """
        super().__init__()
        from transformers import ClapAudioConfig, ClapAudioModel

        if backbone is None:
            kwargs: dict[str, Any] = {}
            if preset is not None:
                if preset not in HTSAT_PRESETS:
                    raise ValueError(f"unknown HTSAT preset {preset!r}; known: {sorted(HTSAT_PRESETS)}")
                kwargs.update(HTSAT_PRESETS[preset])
            kwargs.update(config or {})
            if "depths" in kwargs:
                kwargs.setdefault("num_hidden_layers", len(kwargs["depths"]))
                kwargs.setdefault("hidden_size", kwargs.get("patch_embeds_hidden_size", 96) * 2 ** (len(kwargs["depths"]) - 1))
            backbone = ClapAudioModel(ClapAudioConfig(**kwargs))
        self.backbone = backbone
        cfg = backbone.config
        if cfg.enable_fusion:
            raise NotImplementedError("fusion HTSAT models are not supported by this front end yet")
        self.frontend_config = FrontendConfig(sample_rate=sample_rate, clip_seconds=clip_seconds, n_fft=n_fft,
                                              hop_length=hop_length, n_mels=cfg.num_mel_bins, f_min=f_min,
                                              f_max=f_max, mel_scale=mel_scale)
        max_frames = cfg.spec_size * (cfg.spec_size // cfg.num_mel_bins)
        if self.frontend_config.num_frames > max_frames:
            raise ValueError(f"{clip_seconds} s at hop {hop_length} gives {self.frontend_config.num_frames} frames, "
                             f"more than HTSAT spec_size {cfg.spec_size} accepts ({max_frames})")
        self.frontend = LogMelSpectrogram(self.frontend_config)
        self.output_dim = cfg.hidden_size
        self.trainable_blocks = trainable_blocks
        encoder = backbone.audio_encoder
        freeze_all_but_last(backbone, encoder.layers, trainable_blocks, always_trainable=[encoder.norm])

    def train(self, mode: bool = True) -> HTSATAudioEncoder:
        """Switch train/eval mode; frozen BatchNorm layers stay in eval mode."""
        super().train(mode)
        if mode:
            set_frozen_batchnorm_eval(self)
        return self

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Log-mel input for HTSAT, shape (B, 1, frames, n_mels)."""
        return self.frontend(waveforms).unsqueeze(1)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Pooled HTSAT features (B, hidden) from waveforms (B, T) at the front end's sample rate."""
        return self.backbone(input_features=self.features(waveforms)).pooler_output
