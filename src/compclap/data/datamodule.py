"""LightningDataModule over JSONL manifests, with bad-file accounting."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from compclap.data.datasets import ClipSampler, ManifestDataset, collate_clips
from compclap.data.manifest import read_manifest


class TooManyBadFilesError(RuntimeError):
    """More files of a split failed to decode than the configured fraction allows."""


class ManifestDataModule(L.LightningDataModule):
    """Train: one random caption per clip per epoch, random crop. Val/test/predict: all captions, head crop."""

    def __init__(
        self,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        predict_manifest: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        sample_rate: int = 48_000,
        clip_seconds: float = 10.0,
        seed: int = 0,
        max_skipped_fraction: float = 0.01,
        drop_last: bool = True,
        persistent_workers: bool = False,
    ) -> None:
        """Configure the splits.

        Args:
            train_manifest: JSONL manifest for training.
            val_manifest: JSONL manifest for validation (retrieval metrics).
            test_manifest: JSONL manifest for testing.
            predict_manifest: JSONL manifest to embed with `predict`.
            batch_size: training clips per batch per device.
            eval_batch_size: clips per batch in val/test/predict (default: batch_size).
            num_workers: DataLoader worker processes.
            sample_rate: audio rate the model expects (the CLI links it from the model).
            clip_seconds: clip length the model expects (the CLI links it from the model).
            seed: base seed for shuffling, crops and caption choice.
            max_skipped_fraction: stop with an error when more than this share of a split fails to decode.
            drop_last: drop the last incomplete training batch (keeps contrastive batches full).
            persistent_workers: keep DataLoader workers alive between epochs.
        """
        super().__init__()
        self.save_hyperparameters()
        self.manifests = {"fit": train_manifest, "validate": val_manifest, "test": test_manifest,
                          "predict": predict_manifest}
        self.datasets: dict[str, ManifestDataset] = {}
        self._bad_files: dict[str, list[str]] = {}

    @property
    def num_samples(self) -> int:
        """Clip length in samples."""
        return int(round(self.hparams.sample_rate * self.hparams.clip_seconds))

    def _dataset(self, split: str) -> ManifestDataset:
        """Load (once) the dataset of a split."""
        if split not in self.datasets:
            path = self.manifests[split]
            if path is None:
                raise ValueError(f"no manifest configured for {split!r} (set data.{ {'fit': 'train', 'validate': 'val'}.get(split, split)}_manifest)")
            self.datasets[split] = ManifestDataset(read_manifest(path), self.hparams.sample_rate, self.num_samples,
                                                   train=split == "fit")
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        """Read the manifests the stage needs."""
        needed = {"fit": ["fit", "validate"], "validate": ["validate"], "test": ["test"], "predict": ["predict"]}[stage]
        for split in needed:
            if self.manifests[split] is not None or split == stage:
                self._dataset(split)

    def _loader(self, split: str) -> DataLoader:
        """DataLoader with the rank-aware ClipSampler."""
        ds = self._dataset(split)
        train = split == "fit"
        sampler = ClipSampler(ds, shuffle=train, seed=self.hparams.seed, drop_last=False)
        bs = self.hparams.batch_size if train else (self.hparams.eval_batch_size or self.hparams.batch_size)
        return DataLoader(ds, batch_size=bs, sampler=sampler, num_workers=self.hparams.num_workers,
                          collate_fn=collate_clips, drop_last=train and self.hparams.drop_last,
                          persistent_workers=self.hparams.persistent_workers and self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Training batches."""
        return self._loader("fit")

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches (none when no val manifest is configured)."""
        return self._loader("validate") if self.manifests["validate"] is not None else []

    def test_dataloader(self) -> DataLoader:
        """Test batches."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Batches to embed."""
        return self._loader("predict")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Account for clips that failed to decode; stop once a split exceeds `max_skipped_fraction`."""
        skipped = batch.get("skipped") if isinstance(batch, dict) else None
        if skipped is None:
            return batch
        split = self._current_split()
        bad = self._bad_files.setdefault(split, [])
        bad.extend(p for p in skipped if p not in bad)
        batch["skipped_total"] = len(bad)
        if bad and split in self.datasets:
            world = self.trainer.world_size if self.trainer is not None else 1
            share = max(1, len(self.datasets[split]) // world)
            if len(bad) / share > self.hparams.max_skipped_fraction:
                raise TooManyBadFilesError(
                    f"{len(bad)} of ~{share} files of the {split} split on this rank failed to decode "
                    f"(more than max_skipped_fraction={self.hparams.max_skipped_fraction}); first bad files: "
                    + ", ".join(bad[:5]))
        return batch

    def _current_split(self) -> str:
        """The split whose batch is being transferred."""
        trainer = self.trainer
        if trainer is None or trainer.training:
            return "fit"
        if trainer.sanity_checking or trainer.validating:
            return "validate"
        return "test" if trainer.testing else "predict"
