"""Loss variants: plain nn.Modules that return {"<name>_loss": tensor, ...}."""

from compclap.losses.contrastive import ContrastiveLoss

__all__ = ["ContrastiveLoss"]
