"""Manifests, datasets, collate and LightningDataModules (no model code here).

Names are imported lazily: data-preparation scripts that only need manifests or synthesis do not pay
for importing Lightning.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ManifestDataModule": "compclap.data.datamodule",
    "TooManyBadFilesError": "compclap.data.bad_files",
    "ClipSampler": "compclap.data.datasets",
    "ManifestDataset": "compclap.data.datasets",
    "collate_clips": "compclap.data.datasets",
    "flatten_negatives": "compclap.data.datasets",
    "read_manifest": "compclap.data.manifest",
    "write_manifest": "compclap.data.manifest",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import an exported name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'compclap.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
