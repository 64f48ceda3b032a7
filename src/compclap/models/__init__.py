"""Encoders, projection heads and the CLAP dual encoder."""

from compclap.models.audio import HTSATAudioEncoder
from compclap.models.dual_encoder import CLAPDualEncoder
from compclap.models.heads import ProjectionHead
from compclap.models.text import HFTextEncoder

__all__ = ["CLAPDualEncoder", "HFTextEncoder", "HTSATAudioEncoder", "ProjectionHead"]
