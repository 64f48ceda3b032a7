"""Audio towers: HTSAT through transformers' ClapAudioModel, with the log-mel front end inside the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from compclap.audio.features import FrontendConfig, LogMelSpectrogram
from compclap.audio.fusion import StartChooser, fit_length, fusion_batch, middle_start, random_start
from compclap.models.feature_cache import read_through, waveform_digests, weights_fingerprint
from compclap.models.freezing import freeze_all_but_last, set_frozen_batchnorm_eval
from compclap.models.specs import config_kwargs

# LAION's HTSAT-tiny (630k checkpoints) and HTSAT-base (music/speech checkpoints) shapes.
HTSAT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(patch_embeds_hidden_size=96, depths=[2, 2, 6, 2], num_attention_heads=[4, 8, 16, 32], hidden_size=768),
    "base": dict(patch_embeds_hidden_size=128, depths=[2, 2, 12, 2], num_attention_heads=[4, 8, 16, 32], hidden_size=1024),
}
_CACHE_LIMIT = 200_000  # cached clips before the feature cache starts over
# Feature caches of frozen towers (cache_features), keyed by what the features depend on: the towers of a run and of
# its evaluation share them when their weights are equal.
_SHARED_CACHES: dict[tuple, dict[bytes, torch.Tensor]] = {}


class HTSATAudioEncoder(nn.Module):
    """Waveforms (B, T) -> log-mel on the model's device -> HTSAT -> pooled features (B, hidden).

    Fusion HTSATs (`enable_fusion` in the config, LAION's *-fusion checkpoints) get the 4-channel fusion input
    (see compclap.audio.fusion) and also accept clips longer than `clip_seconds`, as a list of 1-D tensors.
    """

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
        mel_sample_rate: int | None = None,
        quantize_int16: bool = False,
        padding: str = "repeatpad",
        trainable_blocks: int | None = None,
        temporal_bins: int = 0,
        level_bands: int = 0,
        cache_features: bool = False,
        backbone: nn.Module | None = None,
    ) -> None:
        """Build the tower.

        Args:
            config: keyword arguments of transformers' ClapAudioConfig (overrides the preset).
            preset: "tiny" or "base" for LAION's HTSAT shapes; None for ClapAudioConfig defaults plus `config`.
            sample_rate: audio rate the front end expects (Hz).
            clip_seconds: clip length the model sees; shorter clips are padded (`padding`), longer ones cropped
                (fusion models instead see the whole clip shrunk plus three clip-length chunks).
            n_fft: STFT window and FFT size.
            hop_length: STFT hop in samples.
            f_min: lowest mel frequency (Hz).
            f_max: highest mel frequency (Hz).
            mel_scale: "slaney" (LAION rand_trunc models) or "htk" (fusion models).
            mel_sample_rate: rate the mel filterbank is designed for (None: `sample_rate`; MS-CLAP 2023: 32000).
            quantize_int16: round-trip audio through int16 first, as LAION-CLAP's inference does.
            padding: "repeatpad" (LAION, transformers) or "repeat" (MS-CLAP) for clips shorter than `clip_seconds`.
            trainable_blocks: None trains everything, 0 freezes the tower, N trains only the last N HTSAT stages.
            temporal_bins: 0 pools HTSAT's last feature map over time and frequency (LAION, transformers, MS-CLAP:
                pretrained towers need 0); N > 0 averages it over frequency and into N equal time segments whose
                features are concatenated (output N x hidden), so the pooled vector says *when* each sound is: the
                global mean is nearly blind to order (cos(A+B, B+A) ~ 0.99).
            level_bands: 0 for none; N > 0 (needs `temporal_bins`) also appends the log-mel input averaged into
                temporal_bins x N cells (time segments x mel bands), batch-normalised: how loud each segment is
                in each band. Contrastive training of a from-scratch HTSAT discards per-event level and pitch
                (a "first event is the loud one" probe on its pooled features falls from 68% to chance), which
                CompA's attribute swaps ("a loud A then a soft B") need; this coarse grid keeps them.
            cache_features: keep each clip's pooled features in memory, keyed by its waveform's content, and reuse
                them (only for a frozen tower, trainable_blocks=0, without fusion): a heads-only stage then runs the
                tower once per distinct clip. Features are computed in eval mode without gradients; unfreezing the
                tower later (set_trainable_blocks) turns caching off.
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
        self.fusion = bool(cfg.enable_fusion)
        if self.fusion and cfg.fusion_type not in (None, "aff_2d"):
            raise NotImplementedError(f"HTSAT fusion_type {cfg.fusion_type!r} is not supported (only aff_2d)")
        self.frontend_config = FrontendConfig(sample_rate=sample_rate, clip_seconds=clip_seconds, n_fft=n_fft,
                                              hop_length=hop_length, n_mels=cfg.num_mel_bins, f_min=f_min,
                                              f_max=f_max, mel_scale=mel_scale, mel_sample_rate=mel_sample_rate,
                                              quantize_int16=quantize_int16, padding=padding)
        max_frames = cfg.spec_size * (cfg.spec_size // cfg.num_mel_bins)
        if self.frontend_config.num_frames > max_frames:
            raise ValueError(f"{clip_seconds} s at hop {hop_length} gives {self.frontend_config.num_frames} frames, "
                             f"more than HTSAT spec_size {cfg.spec_size} accepts ({max_frames})")
        self.frontend = LogMelSpectrogram(self.frontend_config)
        if temporal_bins < 0:
            raise ValueError(f"temporal_bins must be >= 0, got {temporal_bins}")
        self.temporal_bins = int(temporal_bins)
        if level_bands < 0 or level_bands > cfg.num_mel_bins:
            raise ValueError(f"level_bands must be in [0, {cfg.num_mel_bins}] (the mel bins), got {level_bands}")
        if level_bands and not self.temporal_bins:
            raise ValueError("level_bands needs temporal_bins > 0: the level grid is per time segment")
        if level_bands and self.fusion:
            raise ValueError("level_bands is not supported with fusion HTSATs (their input is four stacked views)")
        self.level_bands = int(level_bands)
        self.level_features = self.temporal_bins * self.level_bands
        # Log-mel dB levels are far from unit scale and vary by recording; the batch norm's running statistics
        # put the grid on the scale of the HTSAT features beside it (and freeze with the tower).
        self.level_norm = nn.BatchNorm1d(self.level_features) if self.level_features else None
        self.output_dim = cfg.hidden_size * max(1, self.temporal_bins) + self.level_features
        self.trainable_blocks = None
        self.cache_features = False
        self.set_trainable_blocks(trainable_blocks)
        if cache_features and (self.trainable_blocks != 0 or self.fusion):
            raise ValueError("cache_features needs a frozen audio tower (trainable_blocks=0) without fusion: the "
                             "features of a trained tower change every step, fusion crops at random")
        self.cache_features = bool(cache_features)

    def block_structure(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """The HTSAT stages in order, and the modules after them (the final norm)."""
        encoder = self.backbone.audio_encoder
        return list(encoder.layers), [encoder.norm]

    def set_trainable_blocks(self, trainable_blocks: int | None) -> None:
        """None trains everything, 0 freezes the tower, N trains only the last N HTSAT stages (and the final norm)."""
        if trainable_blocks != 0:
            self.cache_features = False  # a tower that trains has no fixed features to keep
        if trainable_blocks is None and self.trainable_blocks is not None:
            self.backbone.requires_grad_(True)
        blocks, tail = self.block_structure()
        freeze_all_but_last(self.backbone, blocks, trainable_blocks, always_trainable=tail)
        if self.level_norm is not None:
            self.level_norm.requires_grad_(trainable_blocks != 0)  # the grid's norm freezes with the tower
        self.trainable_blocks = trainable_blocks

    def spec(self) -> dict[str, Any]:
        """Class path and init arguments that rebuild this tower's architecture and front end (no weights)."""
        config = config_kwargs(self.backbone.config)
        fe = self.frontend_config
        return {"class_path": "compclap.models.audio.HTSATAudioEncoder",
                "init_args": {"config": config, "sample_rate": fe.sample_rate, "clip_seconds": fe.clip_seconds,
                              "n_fft": fe.n_fft, "hop_length": fe.hop_length, "f_min": fe.f_min, "f_max": fe.f_max,
                              "mel_scale": fe.mel_scale, "mel_sample_rate": fe.mel_sample_rate,
                              "quantize_int16": fe.quantize_int16, "padding": fe.padding,
                              "temporal_bins": self.temporal_bins, "level_bands": self.level_bands}}

    def train(self, mode: bool = True) -> HTSATAudioEncoder:
        """Switch train/eval mode; frozen BatchNorm layers stay in eval mode."""
        super().train(mode)
        if mode:
            set_frozen_batchnorm_eval(self)
        return self

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Log-mel input for a non-fusion HTSAT, shape (B, 1, frames, n_mels), from clip-length waveforms (B, T)."""
        return self.frontend(waveforms).unsqueeze(1)

    def fusion_features(self, waveforms: torch.Tensor | Sequence[torch.Tensor],
                        choose: StartChooser | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fusion input (B, 4, frames, n_mels) and is_longer (B,) from waveforms of any length.

        Long clips get three chunks chosen at random in training and the middle candidates in evaluation
        (`choose` overrides). In training, a batch without any long clip has one random clip flagged longer,
        as LAION-CLAP and transformers do, so the fusion layers keep training on clip-length data.
        """
        cfg = self.frontend_config
        waves = list(waveforms.unbind(0)) if isinstance(waveforms, torch.Tensor) else list(waveforms)
        if choose is None:
            choose = random_start() if self.training else middle_start
        feats, is_longer = fusion_batch(waves, self.frontend, cfg.num_samples, cfg.num_frames, cfg.padding, choose)
        if self.training and not bool(is_longer.any()) and len(waves):
            is_longer = is_longer.clone()
            is_longer[int(torch.randint(len(waves), (1,)))] = True
        return feats, is_longer

    def forward(self, waveforms: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Pooled HTSAT features (B, hidden) from waveforms at the front end's sample rate.

        waveforms: a (B, T) batch of clip-length audio; fusion models also take a list of 1-D clips of any length.
        """
        if self.fusion:
            feats, is_longer = self.fusion_features(waveforms)
            return self._pool(self.backbone(input_features=feats, is_longer=is_longer))
        if not isinstance(waveforms, torch.Tensor):
            cfg = self.frontend_config
            waveforms = torch.stack([fit_length(w, cfg.num_samples, cfg.padding) for w in waveforms])
        if self.cache_features:
            return self._cached(waveforms)
        return self._encode(waveforms)

    def _encode(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Pooled features of a (B, T) clip-length batch (no cache)."""
        features = self.features(waveforms)
        return self._pool(self.backbone(input_features=features), features)

    def _cached(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Features from the cache, computing (in eval mode, without gradients) only the clips not seen before."""
        if waveforms.shape[0] == 0:
            return self._encode(waveforms)
        key = (self.temporal_bins, self.level_bands, repr(self.frontend_config), weights_fingerprint(self, self))
        digests = waveform_digests(waveforms)
        first_row: dict[bytes, int] = {}
        for row, digest in enumerate(digests):
            first_row.setdefault(digest, row)

        def encode_eval(chunk: list[bytes]) -> torch.Tensor:
            training = self.training
            self.eval()
            try:
                return self._encode(waveforms[torch.tensor([first_row[d] for d in chunk], device=waveforms.device)])
            finally:
                self.train(training)

        cache = _SHARED_CACHES.setdefault(key, {})
        return read_through(cache, digests, encode_eval, 64, _CACHE_LIMIT).to(waveforms.device)

    def level_grid(self, features: torch.Tensor) -> torch.Tensor:
        """Log-mel input (B, 1, frames, n_mels) averaged into (B, temporal_bins * level_bands), time-major, normalised."""
        grid = torch.nn.functional.adaptive_avg_pool2d(features[:, 0], (self.temporal_bins, self.level_bands))
        return self.level_norm(grid.flatten(1))

    def _pool(self, output: Any, features: torch.Tensor | None = None) -> torch.Tensor:
        """HTSAT's global mean, or with `temporal_bins` the per-segment means in time order, concatenated
        (followed by the level grid of `features` with `level_bands`)."""
        if not self.temporal_bins:
            return output.pooler_output
        # transformers' last_hidden_state is (B, C, freq, time) with the time axis back in clip order.
        per_frame = output.last_hidden_state.mean(dim=2)
        segments = torch.nn.functional.adaptive_avg_pool1d(per_frame, self.temporal_bins).transpose(1, 2).flatten(1)
        if not self.level_bands:
            return segments
        if features is None:
            raise ValueError("level_bands needs the log-mel input to pool its level grid")
        return torch.cat([segments, self.level_grid(features).to(segments.dtype)], dim=1)

