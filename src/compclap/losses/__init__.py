"""Loss variants: plain nn.Modules that return {"<name>_loss": tensor, ...}."""

from compclap.losses.contrastive import ContrastiveLoss
from compclap.losses.hard_negative import HardNegativeContrastiveLoss
from compclap.losses.modular import ModularContrastiveLoss

__all__ = ["ContrastiveLoss", "HardNegativeContrastiveLoss", "ModularContrastiveLoss"]
