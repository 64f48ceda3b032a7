"""CNN14 (PANNs) audio tower, as MS-CLAP 2022 uses it: log-mel -> BatchNorm over mel bins -> 6 conv blocks.

Module names follow PANNs/MS-CLAP (`bn0`, `conv_block1..6.{conv1,conv2,bn1,bn2}`, `fc1`), so an MS-CLAP
`audio_encoder.base.*` state dict maps onto it by dropping the prefix. The AudioSet classifier (`fc_audioset`)
and the STFT/mel weights of torchlibrosa are not part of the tower: the front end is computed by
`LogMelSpectrogram` on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compclap.audio.features import FrontendConfig, LogMelSpectrogram
from compclap.audio.fusion import fit_length
from compclap.models.freezing import freeze_all_but_last, set_frozen_batchnorm_eval


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        """in_channels / out_channels: feature maps in and out."""
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int] = (2, 2)) -> torch.Tensor:
        """(B, C_in, T, F) -> (B, C_out, T / pool, F / pool)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class CNN14AudioEncoder(nn.Module):
    """Waveforms (B, T) -> log-mel on the model's device -> CNN14 -> embedding (B, embed_dim)."""

    def __init__(
        self,
        sample_rate: int = 44_100,
        clip_seconds: float = 5.0,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        f_min: float = 50.0,
        f_max: float = 14_000.0,
        mel_sample_rate: int | None = None,
        quantize_int16: bool = False,
        padding: str = "repeat",
        channels: Sequence[int] = (64, 128, 256, 512, 1024, 2048),
        embed_dim: int | None = None,
        dropout: float = 0.2,
        trainable_blocks: int | None = None,
    ) -> None:
        """Build the tower.

        Args:
            sample_rate: audio rate the front end expects (Hz); MS-CLAP 2022: 44100.
            clip_seconds: clip length the model sees (MS-CLAP 2022: 5 s).
            n_fft: STFT window and FFT size.
            hop_length: STFT hop in samples.
            n_mels: mel bins (64 in every released CNN14).
            f_min: lowest mel frequency (Hz).
            f_max: highest mel frequency (Hz).
            mel_sample_rate: rate the mel filterbank is designed for (None: `sample_rate`).
            quantize_int16: round-trip audio through int16 before the STFT.
            padding: "repeat" (MS-CLAP) or "repeatpad" for clips shorter than `clip_seconds`.
            channels: output channels of the six conv blocks (CNN14: 64 ... 2048).
            embed_dim: size of `fc1`, the embedding (None: the last block's channels).
            dropout: dropout after each conv block in training (the embedding itself uses 0.5, as PANNs).
            trainable_blocks: None trains everything, 0 freezes the tower, N trains only the last N conv blocks.
        """
        super().__init__()
        channels = list(channels)
        if len(channels) != 6:
            raise ValueError(f"CNN14 has 6 conv blocks, got channels={channels}")
        self.frontend_config = FrontendConfig(sample_rate=sample_rate, clip_seconds=clip_seconds, n_fft=n_fft,
                                              hop_length=hop_length, n_mels=n_mels, f_min=f_min, f_max=f_max,
                                              mel_scale="slaney", mel_sample_rate=mel_sample_rate,
                                              quantize_int16=quantize_int16, padding=padding)
        self.frontend = LogMelSpectrogram(self.frontend_config)
        self.bn0 = nn.BatchNorm2d(n_mels)
        ins = [1, *channels[:-1]]
        for i, (cin, cout) in enumerate(zip(ins, channels), start=1):
            setattr(self, f"conv_block{i}", ConvBlock(cin, cout))
        self.embed_dim = embed_dim or channels[-1]
        self.fc1 = nn.Linear(channels[-1], self.embed_dim)
        self.dropout = dropout
        self.output_dim = self.embed_dim
        self.fusion = False
        self.trainable_blocks = None
        self.set_trainable_blocks(trainable_blocks)

    @property
    def blocks(self) -> list[ConvBlock]:
        """The six conv blocks in order."""
        return [getattr(self, f"conv_block{i}") for i in range(1, 7)]

    def block_structure(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """The conv blocks in order, and the modules after them (fc1)."""
        return self.blocks, [self.fc1]

    def set_trainable_blocks(self, trainable_blocks: int | None) -> None:
        """None trains everything, 0 freezes the tower, N trains only the last N conv blocks (and fc1)."""
        if trainable_blocks is None and self.trainable_blocks is not None:
            self.requires_grad_(True)
        blocks, tail = self.block_structure()
        freeze_all_but_last(self, blocks, trainable_blocks, always_trainable=tail)
        self.trainable_blocks = trainable_blocks

    def spec(self) -> dict[str, Any]:
        """Class path and init arguments that rebuild this tower (random weights)."""
        fe = self.frontend_config
        return {"class_path": "compclap.models.cnn14.CNN14AudioEncoder",
                "init_args": {"sample_rate": fe.sample_rate, "clip_seconds": fe.clip_seconds, "n_fft": fe.n_fft,
                              "hop_length": fe.hop_length, "n_mels": fe.n_mels, "f_min": fe.f_min,
                              "f_max": fe.f_max, "mel_sample_rate": fe.mel_sample_rate,
                              "quantize_int16": fe.quantize_int16, "padding": fe.padding,
                              "channels": [b.conv1.out_channels for b in self.blocks], "embed_dim": self.embed_dim,
                              "dropout": self.dropout}}

    def train(self, mode: bool = True) -> CNN14AudioEncoder:
        """Switch train/eval mode; frozen BatchNorm layers stay in eval mode."""
        super().train(mode)
        if mode:
            set_frozen_batchnorm_eval(self)
        return self

    def forward(self, waveforms: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Embeddings (B, embed_dim) from clip-length waveforms (B, T) (or a list of 1-D clips, fitted here)."""
        cfg = self.frontend_config
        if not isinstance(waveforms, torch.Tensor):
            waveforms = torch.stack([fit_length(w, cfg.num_samples, cfg.padding) for w in waveforms])
        x = self.frontend(waveforms).unsqueeze(1)  # (B, 1, frames, mels)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i, block in enumerate(self.blocks):
            x = block(x, pool_size=(2, 2) if i < 5 else (1, 1))
            x = F.dropout(x, p=self.dropout, training=self.training)
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        return F.dropout(x, p=0.5, training=self.training)
