"""Loss variants: plain nn.Modules that return {"<name>_loss": tensor, ...}."""

from compclap.losses.contrastive import ContrastiveLoss
from compclap.losses.hard_negative import HardNegativeContrastiveLoss

__all__ = ["ContrastiveLoss", "HardNegativeContrastiveLoss"]
