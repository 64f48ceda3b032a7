"""Projection heads from a tower's pooled output into the joint embedding space."""

from __future__ import annotations

from torch import nn

PROJECTION_STYLES = ("laion", "msclap")


class ProjectionHead(nn.Module):
    """Two-layer projection head in one of two published layouts.

    - "laion": linear1 -> activation -> linear2 (names match transformers' ClapProjectionLayer).
    - "msclap": e = linear1(x) (no bias); layer_norm(e + dropout(linear2(activation(e)))) (MS-CLAP's Projection).
    """

    def __init__(self, in_dim: int, out_dim: int, activation: str = "relu", style: str = "laion",
                 dropout: float = 0.5) -> None:
        """in_dim: pooled size of the tower; out_dim: joint embedding size; activation: relu or gelu;
        style: "laion" or "msclap"; dropout: dropout after linear2 (msclap style only)."""
        super().__init__()
        acts = {"relu": nn.ReLU, "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        if style not in PROJECTION_STYLES:
            raise ValueError(f"style must be one of {PROJECTION_STYLES}, got {style!r}")
        self.style = style
        bias = style == "laion"
        self.linear1 = nn.Linear(in_dim, out_dim, bias=bias)
        self.activation = acts[activation]()
        self.linear2 = nn.Linear(out_dim, out_dim, bias=bias)
        if style == "msclap":
            self.drop = nn.Dropout(dropout)
            self.layer_norm = nn.LayerNorm(out_dim)

    def forward(self, x):
        """Project pooled features (B, in_dim) to (B, out_dim); not normalised."""
        if self.style == "msclap":
            first = self.linear1(x)
            return self.layer_norm(first + self.drop(self.linear2(self.activation(first))))
        return self.linear2(self.activation(self.linear1(x)))
