"""Manifests, datasets, collate and LightningDataModules (no model code here)."""

from compclap.data.datamodule import ManifestDataModule, TooManyBadFilesError
from compclap.data.datasets import ClipSampler, ManifestDataset, collate_clips, flatten_negatives
from compclap.data.manifest import read_manifest, write_manifest

__all__ = ["ClipSampler", "ManifestDataModule", "ManifestDataset", "TooManyBadFilesError", "collate_clips", "flatten_negatives",
           "read_manifest", "write_manifest"]
