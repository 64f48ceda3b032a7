"""Classification heads on audio embeddings: linear, or a 3-layer MLP (the CLAP 2022 probes)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HEAD_KINDS", "ClassifierHead"]

HEAD_KINDS = ("linear", "mlp")


class ClassifierHead(nn.Module):
    """Logits from embeddings: an optional affine input normalisation, then a linear layer or a 3-layer MLP."""

    def __init__(self, in_dim: int, num_classes: int, kind: str = "linear", hidden_dim: int = 512,
                 dropout: float = 0.0, input_scale: float = 1.0) -> None:
        """Build the head.

        Args:
            in_dim: embedding size.
            num_classes: number of outputs (classes).
            kind: "linear" (one layer) or "mlp" (Linear-ReLU-Dropout, twice, then Linear: 3 layers).
            hidden_dim: width of the MLP's two hidden layers.
            dropout: dropout after each hidden layer of the MLP.
            input_scale: the input is multiplied by this (e.g. sqrt(in_dim) for L2-normalised embeddings, whose
                coordinates are otherwise ~1/sqrt(in_dim)); `set_standardisation` replaces it by per-dimension
                training statistics.
        """
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {kind!r}")
        if in_dim < 1 or num_classes < 1:
            raise ValueError(f"need in_dim >= 1 and num_classes >= 1, got {in_dim}, {num_classes}")
        self.kind, self.in_dim, self.num_classes = kind, in_dim, num_classes
        self.hidden_dim, self.dropout = hidden_dim, dropout
        self.register_buffer("shift", torch.zeros(in_dim))
        self.register_buffer("scale", torch.full((in_dim,), float(input_scale)))
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, num_classes)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden_dim, num_classes))

    def config(self) -> dict:
        """The constructor arguments (without input_scale, which lives in the state dict)."""
        return {"in_dim": self.in_dim, "num_classes": self.num_classes, "kind": self.kind,
                "hidden_dim": self.hidden_dim, "dropout": self.dropout}

    @torch.no_grad()
    def set_standardisation(self, feats: torch.Tensor) -> None:
        """Standardise inputs with these (training) features' per-dimension mean and std (constant dims: std 1)."""
        feats = torch.as_tensor(feats, dtype=self.shift.dtype, device=self.shift.device)
        std = feats.std(dim=0, unbiased=False)
        self.shift.copy_(feats.mean(dim=0))
        self.scale.copy_(1.0 / torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of embeddings (N, in_dim)."""
        return self.net((feats - self.shift) * self.scale)
