"""Loss variants: plain nn.Modules that return {"<name>_loss": tensor, ...}."""

from compclap.losses.contrastive import ContrastiveLoss
from compclap.losses.hard_negative import HardNegativeContrastiveLoss
from compclap.losses.modular import ModularContrastiveLoss
from compclap.losses.probabilistic import ProbabilisticContrastiveLoss

__all__ = ["ContrastiveLoss", "HardNegativeContrastiveLoss", "ModularContrastiveLoss", "ProbabilisticContrastiveLoss"]
