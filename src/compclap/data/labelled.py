"""Labelled audio (ESC-50 layout, or a path,label(s) CSV with a split or fold column): readers, the train / val /
test protocol shared by the probes and the fine-tuned classifier, and a LightningDataModule.

Protocol (CLAP 2022, ESC-50 style):

* a ``split`` column (train / val / test): train on train, stop early on val, report test; without val rows a
  validation share is carved from train (seeded, stratified by the first label);
* a ``fold`` column (ESC-50's five folds): for each fold k, train on the other folds (minus a seeded,
  stratified validation share) and test on fold k; accuracies are reported per fold and as their mean.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from compclap.data.bad_files import BadFileTracker, current_split
from compclap.data.datasets import ClipSampler, ManifestDataset, collate_clips
from compclap.eval.zeroshot import ZeroShotData, _read_rows, read_esc50, read_label_csv

__all__ = ["LabelledData", "LabelledDataModule", "Split", "carve_validation", "classifier_split", "fold_order",
           "protocol_splits", "read_labelled", "write_labels_from_jsonl"]

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "eval": "test", "evaluation": "test"}


@dataclass
class LabelledData(ZeroShotData):
    """A classification set (files, classes, targets, folds as zero-shot reads them) and each clip's split."""

    splits: list[str] | None = None  # train / val / test per clip, from a CSV's split column

    def first_labels(self) -> list[int]:
        """The first class of each clip (what validation carving stratifies by)."""
        return [t[0] for t in self.targets]


def fold_order(folds: Sequence[str]) -> list[str]:
    """Distinct fold names, numbers in numeric order first."""
    return sorted(set(folds), key=lambda f: (0, int(f)) if f.isdigit() else (1, f))


def read_labelled(csv_path: str | os.PathLike | None = None, esc50: str | os.PathLike | None = None,
                  audio_root: str | os.PathLike | None = None, label_sep: str = ";") -> LabelledData:
    """Read an ESC-50 folder (meta/esc50.csv + audio/) or a label CSV (path + label or ';'-separated labels).

    The CSV may carry a ``split`` column (train/val/test; validation/valid/dev and eval are accepted too) and/or a
    ``fold`` column; when both are present the split column defines the protocol.
    """
    if (csv_path is None) == (esc50 is None):
        raise ValueError("give exactly one of an ESC-50 folder and a label CSV")
    if esc50 is not None:
        zs = read_esc50(esc50)
        return LabelledData(zs.files, zs.classes, zs.targets, False, zs.folds, zs.source)
    zs = read_label_csv(csv_path, audio_root=audio_root, label_sep=label_sep)
    columns, rows = _read_rows(Path(csv_path), "label CSV")  # the same rows, in the same order
    splits = None
    if "split" in columns:
        splits = []
        for line, row in rows:
            value = SPLIT_ALIASES.get(row.get("split", "").strip().lower())
            if value is None:
                raise ValueError(f"{csv_path} line {line}: split {row.get('split')!r} is not one of train, val, test")
            splits.append(value)
    if splits is None and zs.folds is None:
        raise ValueError(f"label CSV {csv_path} has neither a 'split' (train/val/test) nor a 'fold' column: the "
                         "probe needs to know which clips to train and test on")
    return LabelledData(zs.files, zs.classes, zs.targets, zs.multi_label, zs.folds, zs.source, splits)


@dataclass
class Split:
    """Indices of one train / val / test partition; `name` is the test fold (or "test")."""

    name: str
    train: list[int]
    val: list[int]
    test: list[int]


def carve_validation(indices: Sequence[int], labels: Sequence[int], fraction: float,
                     seed: int | Sequence[int]) -> tuple[list[int], list[int]]:
    """Split `indices` into (train, val): about `fraction` of every class goes to val (seeded; at least one item
    overall when there are two or more, and never a class's last item)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(int(labels[i]), []).append(int(i))
    val: list[int] = []
    for label in sorted(groups):
        members = [groups[label][j] for j in rng.permutation(len(groups[label]))]
        take = min(int(round(fraction * len(members))), len(members) - 1)
        val += members[:take]
    if fraction > 0 and not val and len(indices) >= 2:
        biggest = max(sorted(groups), key=lambda g: len(groups[g]))
        val = [groups[biggest][int(rng.integers(len(groups[biggest])))]]
    chosen = set(val)
    return [int(i) for i in indices if int(i) not in chosen], sorted(val)


def protocol_splits(data: LabelledData, val_fraction: float = 0.15, seed: int = 0,
                    test_folds: Sequence[str] | None = None) -> list[Split]:
    """The evaluation protocol: one Split for split data, one per test fold (default: all folds) for fold data."""
    labels = data.first_labels()
    if data.splits is not None:
        by = {s: [i for i, v in enumerate(data.splits) if v == s] for s in ("train", "val", "test")}
        if not by["train"] or not by["test"]:
            raise ValueError(f"{data.source}: the split column needs train and test rows (found "
                             f"{ {k: len(v) for k, v in by.items()} })")
        train, val = by["train"], by["val"]
        if not val:
            train, val = carve_validation(train, labels, val_fraction, [seed, 0])
        return [Split("test", train, val, by["test"])]
    assert data.folds is not None
    order = fold_order(data.folds)
    if len(order) < 2:
        raise ValueError(f"{data.source}: fold-wise evaluation needs at least 2 folds, found {order}")
    wanted = order if test_folds is None else [str(f) for f in test_folds]
    unknown = [f for f in wanted if f not in order]
    if unknown:
        raise ValueError(f"{data.source}: unknown test fold(s) {unknown}; folds are {order}")
    out = []
    for fold in wanted:
        rest = [i for i, f in enumerate(data.folds) if f != fold]
        train, val = carve_validation(rest, labels, val_fraction, [seed, order.index(fold) + 1])
        out.append(Split(fold, train, val, [i for i, f in enumerate(data.folds) if f == fold]))
    return out


def classifier_split(data: LabelledData, test_fold: str | None = None, val_fraction: float = 0.15,
                     seed: int = 0) -> Split:
    """The one partition a fine-tuned classifier trains on: the probe's split for `test_fold` (default: the last
    fold), or the train/val/test split."""
    if data.splits is not None:
        if test_fold is not None:
            raise ValueError(f"{data.source} has a split column: test_fold applies to fold data only")
        return protocol_splits(data, val_fraction, seed)[0]
    fold = str(test_fold) if test_fold is not None else fold_order(data.folds or [])[-1]
    return protocol_splits(data, val_fraction, seed, [fold])[0]


def write_labels_from_jsonl(jsonl: str | os.PathLike, out_csv: str | os.PathLike, test_fraction: float = 0.2,
                            seed: int = 0, label_key: str = "label") -> Path:
    """A labels CSV (path,label,split) from a JSONL of clips with an ``audio`` path and a label field (e.g. the demo
    world's events.jsonl): a seeded split stratified by label, `test_fraction` of every class to test.

    Underscores in labels become spaces ("noise_burst" -> "noise burst", as ESC-50 categories). Paths are written
    relative to the CSV's folder when they lie under it.
    """
    jsonl, out_csv = Path(jsonl), Path(out_csv)
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{jsonl} has no clips")
    labels = [str(r[label_key]).replace("_", " ").strip() for r in records]
    index = {c: i for i, c in enumerate(sorted(set(labels)))}
    rest, test = carve_validation(range(len(records)), [index[c] for c in labels], test_fraction, [seed, 1000])
    test_set = set(test)
    root = out_csv.parent.resolve()
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(out_csv.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for i, (rec, label) in enumerate(zip(records, labels)):
            audio = Path(rec["audio"])
            audio = audio if audio.is_absolute() else (jsonl.parent / audio).resolve()
            try:
                audio = audio.relative_to(root)
            except ValueError:
                pass
            writer.writerow([audio.as_posix(), label, "test" if i in test_set else "train"])
    os.replace(tmp, out_csv)
    return out_csv


class _LabelledDataset(ManifestDataset):
    """ManifestDataset items plus each clip's "target" (class index, or multi-hot vector)."""

    def __init__(self, data: LabelledData, indices: Sequence[int], sample_rate: int, num_samples: int,
                 train: bool) -> None:
        """data: the labelled set; indices: the clips of this split; the rest as ManifestDataset."""
        self.targets = data.target_tensor(indices)
        super().__init__([{"audio": str(data.files[i]), "captions": []} for i in indices], sample_rate,
                         num_samples, train)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """The decoded clip with its target (no target for a clip that failed to decode)."""
        item = super().__getitem__(key)
        if "error" not in item:
            item["target"] = self.targets[item["index"]]
        return item


def collate_labelled(items: list[dict[str, Any]]) -> dict[str, Any]:
    """`collate_clips` plus "targets": (B,) class indices or (B, C) multi-hot, for the clips that decoded."""
    batch = collate_clips(items)
    good = [it["target"] for it in items if "error" not in it]
    batch["targets"] = torch.stack(good) if good else torch.empty(0, dtype=torch.long)
    return batch


class LabelledDataModule(L.LightningDataModule):
    """Train / val / test clips of a labelled CSV or ESC-50 folder, split as the probes split them."""

    def __init__(
        self,
        csv: str | None = None,
        esc50: str | None = None,
        audio_root: str | None = None,
        label_sep: str = ";",
        test_fold: str | None = None,
        val_fraction: float = 0.15,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        sample_rate: int = 48_000,
        clip_seconds: float = 10.0,
        seed: int = 0,
        max_skipped_fraction: float = 0.01,
        drop_last: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        """Read the labels now (a bad CSV fails before any model is built).

        Args:
            csv: label CSV: a path column and ``label`` (single-label) or ``labels`` (``label_sep``-separated,
                multi-label), with a ``split`` (train/val/test) or ``fold`` column.
            esc50: an ESC-50 folder (meta/esc50.csv, audio/) instead of `csv`.
            audio_root: folder the CSV's relative paths resolve against (default: the CSV's folder).
            label_sep: separator of the ``labels`` column.
            test_fold: fold data: the held-out fold (default: the last fold); the other folds train, minus a
                validation share.
            val_fraction: share of the training clips (per class, seeded) kept for validation when the data has
                no val rows.
            batch_size: training clips per batch per device.
            eval_batch_size: clips per batch in val/test/predict (default: batch_size).
            num_workers: DataLoader worker processes.
            sample_rate: audio rate the model expects (the CLI links it from the model).
            clip_seconds: clip length the model expects (the CLI links it from the model).
            seed: seed of the validation carving, shuffling and random crops.
            max_skipped_fraction: stop with an error when more than this share of a split fails to decode.
            drop_last: drop the last incomplete training batch.
            persistent_workers: keep DataLoader workers alive between epochs.
        """
        super().__init__()
        self.save_hyperparameters()
        self.data = read_labelled(csv, esc50, audio_root=audio_root, label_sep=label_sep)
        self.split = classifier_split(self.data, test_fold, val_fraction, seed)
        self.datasets: dict[str, _LabelledDataset] = {}
        self._bad_files = BadFileTracker(max_skipped_fraction)

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the model's outputs."""
        return list(self.data.classes)

    @property
    def multi_label(self) -> bool:
        """Whether a clip may carry several labels."""
        return self.data.multi_label

    @property
    def test_folds(self) -> list[str] | None:
        """The held-out fold (fold data) or None (split data: the test split is held out)."""
        return None if self.data.splits is not None else [self.split.name]

    def _dataset(self, split: str) -> _LabelledDataset:
        """The dataset of a stage (fit -> train, validate -> val, test and predict -> test), built once."""
        if split not in self.datasets:
            part = {"fit": self.split.train, "validate": self.split.val}.get(split, self.split.test)
            num_samples = int(round(self.hparams.sample_rate * self.hparams.clip_seconds))
            self.datasets[split] = _LabelledDataset(self.data, part, self.hparams.sample_rate, num_samples,
                                                    train=split == "fit")
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        """Build the datasets the stage needs."""
        for split in {"fit": ["fit", "validate"]}.get(stage, [stage]):
            self._dataset(split)

    def _loader(self, split: str) -> DataLoader:
        ds = self._dataset(split)
        train = split == "fit"
        bs = self.hparams.batch_size if train else (self.hparams.eval_batch_size or self.hparams.batch_size)
        return DataLoader(ds, batch_size=bs, sampler=ClipSampler(ds, shuffle=train, seed=self.hparams.seed),
                          num_workers=self.hparams.num_workers, collate_fn=collate_labelled,
                          drop_last=train and self.hparams.drop_last,
                          persistent_workers=self.hparams.persistent_workers and self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Training batches (random crops)."""
        return self._loader("fit")

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches (none when the validation share is empty)."""
        return self._loader("validate") if self.split.val else []

    def test_dataloader(self) -> DataLoader:
        """Held-out batches."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Held-out batches, for predictions."""
        return self._loader("predict")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Account for clips that failed to decode; stop once a split exceeds `max_skipped_fraction`."""
        split = current_split(self.trainer)
        ds = self.datasets.get(split)
        world = self.trainer.world_size if self.trainer is not None else 1
        share = max(1, len(ds) // world) if ds is not None else None
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return self._bad_files.add_batch(batch, split, share, epoch)
