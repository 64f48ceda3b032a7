"""Projection heads from a tower's pooled output into the joint embedding space."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Module):
    """LAION-CLAP head: linear -> ReLU -> linear (names match transformers' ClapProjectionLayer)."""

    def __init__(self, in_dim: int, out_dim: int, activation: str = "relu") -> None:
        """in_dim: pooled size of the tower; out_dim: joint embedding size; activation: relu or gelu."""
        super().__init__()
        acts = {"relu": nn.ReLU, "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        self.linear1 = nn.Linear(in_dim, out_dim)
        self.activation = acts[activation]()
        self.linear2 = nn.Linear(out_dim, out_dim)

    def forward(self, x):
        """Project pooled features (B, in_dim) to (B, out_dim); not normalised."""
        return self.linear2(self.activation(self.linear1(x)))
