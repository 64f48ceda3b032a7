"""Curriculum over composed training manifests: more events per mix as training goes on (e.g. 2 -> 3 -> 4).

`data_prep/compose.py --curriculum 2,3,4` writes `train_stage1.jsonl`, `train_stage2.jsonl`, ...;
`CurriculumManifests` says which one an epoch trains on, and `CurriculumCallback` makes a Lightning
run switch to it at epoch boundaries:

```yaml
trainer:
  reload_dataloaders_every_n_epochs: 1   # required: the train loader is rebuilt every epoch
  callbacks:
    - class_path: compclap.data.curriculum.CurriculumCallback
      init_args:
        manifests: [data/composed/train_stage1.jsonl, data/composed/train_stage2.jsonl,
                    data/composed/train_stage3.jsonl]
        epochs_per_stage: [2, 2, 1]        # the last stage continues for any further epochs
data:
  init_args:
    train_manifest: data/composed/train_stage1.jsonl   # the DataModule still needs one at setup
```

The callback wraps the DataModule's `train_dataloader`, so the manifest is chosen from
`trainer.current_epoch` at the moment Lightning asks for the loader: at the start of every epoch, and
after a checkpoint has been restored, so a resumed run continues in the right stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


def _stage_lengths(epochs_per_stage: int | Sequence[int], n_stages: int) -> list[int]:
    if isinstance(epochs_per_stage, int):
        lengths = [epochs_per_stage] * n_stages
    else:
        lengths = [int(e) for e in epochs_per_stage]
    if len(lengths) != n_stages:
        raise ValueError(f"epochs_per_stage has {len(lengths)} entries for {n_stages} stages")
    if any(e < 1 for e in lengths):
        raise ValueError(f"every stage needs at least one epoch, got {lengths}")
    return lengths


def stage_for_epoch(epoch: int, epochs_per_stage: int | Sequence[int], n_stages: int) -> int:
    """0-based stage of a 0-based epoch; epochs after the last stage's share stay in the last stage."""
    if n_stages < 1:
        raise ValueError("a curriculum needs at least one stage")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    end = 0
    for stage, length in enumerate(_stage_lengths(epochs_per_stage, n_stages)):
        end += length
        if epoch < end:
            return stage
    return n_stages - 1


def stage_manifests(directory: str | Path, name: str = "train") -> list[str]:
    """The `<name>_stageK.jsonl` files of a folder, in stage order (K = 1, 2, ...)."""
    pattern = re.compile(rf"^{re.escape(name)}_stage(\d+)\.jsonl$")
    found = sorted((int(m.group(1)), p) for p in Path(directory).iterdir() if (m := pattern.match(p.name)))
    if not found:
        raise FileNotFoundError(f"no {name}_stageK.jsonl manifests in {directory}")
    return [str(p) for _, p in found]


@dataclass
class CurriculumManifests:
    """Training manifests of the stages and how many epochs each lasts (the last one lasts for ever)."""

    manifests: list[str]
    epochs_per_stage: int | list[int] = 1

    def __post_init__(self) -> None:
        if not self.manifests:
            raise ValueError("a curriculum needs at least one manifest")
        _stage_lengths(self.epochs_per_stage, len(self.manifests))

    @classmethod
    def from_directory(cls, directory: str | Path, name: str = "train",
                       epochs_per_stage: int | list[int] = 1) -> CurriculumManifests:
        """The stages written by `data_prep/compose.py --curriculum ... --name NAME` into `directory`."""
        return cls(stage_manifests(directory, name), epochs_per_stage)

    def stage(self, epoch: int) -> int:
        """0-based stage of a 0-based epoch."""
        return stage_for_epoch(epoch, self.epochs_per_stage, len(self.manifests))

    def manifest(self, epoch: int) -> str:
        """The manifest to train on in `epoch` (0-based)."""
        return self.manifests[self.stage(epoch)]


def set_train_manifest(datamodule: Any, path: str) -> bool:
    """Point a DataModule's training split at `path`; returns whether it changed.

    Uses `datamodule.set_train_manifest(path)` when it has one; otherwise the attributes of
    compclap's ManifestDataModule (`manifests["fit"]`, and the cached `datasets["fit"]` is dropped).
    """
    if hasattr(datamodule, "set_train_manifest"):
        return bool(datamodule.set_train_manifest(path))
    manifests = getattr(datamodule, "manifests", None)
    datasets = getattr(datamodule, "datasets", None)
    if not isinstance(manifests, dict) or not isinstance(datasets, dict):
        raise TypeError(f"{type(datamodule).__name__} has no set_train_manifest() and no manifests/datasets dicts; "
                        "the curriculum cannot switch its training manifest")
    if manifests.get("fit") == path and "fit" in datasets:
        return False
    manifests["fit"] = path
    datasets.pop("fit", None)
    return True


class CurriculumCallback(L.Callback):
    """Switch the training manifest by epoch (needs `trainer.reload_dataloaders_every_n_epochs=1`)."""

    def __init__(self, manifests: list[str] | None = None, directory: str | None = None, name: str = "train",
                 epochs_per_stage: int | list[int] = 1) -> None:
        """Stages from a list of manifests, or from the `<name>_stageK.jsonl` files of `directory`.

        Args:
            manifests: training manifests of the stages, in order.
            directory: folder written by `data_prep/compose.py --curriculum` (used when manifests is None).
            name: manifest name given to compose.py (`--name`).
            epochs_per_stage: epochs of each stage (one number for all); the last stage continues after its share.
        """
        super().__init__()
        if manifests is None:
            if directory is None:
                raise ValueError("give the stage manifests or the directory compose.py wrote them to")
            self.schedule = CurriculumManifests.from_directory(directory, name, epochs_per_stage)
        else:
            self.schedule = CurriculumManifests(list(manifests), epochs_per_stage)
        self.current: str | None = None
        self._wrapped: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Wrap the DataModule's train_dataloader so it trains on the epoch's manifest."""
        if stage != "fit" or self._wrapped is not None:
            return
        if trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError("CurriculumCallback needs trainer.reload_dataloaders_every_n_epochs=1 (got "
                             f"{trainer.reload_dataloaders_every_n_epochs}): otherwise the training loader is "
                             "built once and never switches stage")
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ValueError("CurriculumCallback needs a LightningDataModule (trainer.fit(model, datamodule=...))")
        original = datamodule.train_dataloader

        def train_dataloader() -> Any:
            epoch = trainer.current_epoch
            path = self.schedule.manifest(epoch)
            if set_train_manifest(datamodule, path) or path != self.current:
                rank_zero_info(f"curriculum: epoch {epoch} trains on stage {self.schedule.stage(epoch) + 1} "
                               f"of {len(self.schedule.manifests)} ({path})")
            self.current = path
            return original()

        datamodule.train_dataloader = train_dataloader
        self._wrapped = (datamodule, original)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Undo the wrapping."""
        if stage == "fit" and self._wrapped is not None:
            datamodule, _ = self._wrapped
            datamodule.__dict__.pop("train_dataloader", None)
            self._wrapped = None
