"""Accounting for clips that fail to decode, shared by the data modules."""

from __future__ import annotations

from typing import Any


class TooManyBadFilesError(RuntimeError):
    """More files of a split failed to decode than the configured fraction allows."""


def current_split(trainer: Any) -> str:
    """The split whose batch the trainer is handling: fit, validate, test or predict."""
    if trainer is None or trainer.training:
        return "fit"
    if trainer.sanity_checking or trainer.validating:
        return "validate"
    return "test" if trainer.testing else "predict"


class BadFileTracker:
    """Counts distinct undecodable files per split and stops once a split exceeds `max_fraction`."""

    def __init__(self, max_fraction: float) -> None:
        """max_fraction: share of a split's files (on this rank) that may fail before the run stops."""
        self.max_fraction = max_fraction
        self.bad: dict[str, list[str]] = {}
        self.seen: list[str] = []  # every distinct bad file of the run, any split or epoch, in order
        self._epoch: dict[str, int] = {}

    def add_batch(self, batch: Any, split: str, share: int | None, epoch: int = 0) -> Any:
        """Record a batch's "skipped" files, set batch["skipped_total"], raise above the threshold.

        share: number of the split's files this rank reads in one epoch (None when unknown: only counted).
        epoch: counts restart each epoch, since a shuffled rank reads a different share of the files every epoch.
        """
        skipped = batch.get("skipped") if isinstance(batch, dict) else None
        if skipped is None:
            return batch
        if self._epoch.get(split) != epoch:
            self._epoch[split] = epoch
            self.bad[split] = []
        bad = self.bad.setdefault(split, [])
        bad.extend(p for p in dict.fromkeys(skipped) if p not in bad)
        known = set(self.seen)
        self.seen.extend(p for p in dict.fromkeys(skipped) if p not in known)
        batch["skipped_total"] = len(bad)
        if bad and share and len(bad) / share > self.max_fraction:
            current = set(bad)
            earlier = [p for p in self.seen if p not in current]
            raise TooManyBadFilesError(
                f"{len(bad)} of ~{share} files of the {split} split on this rank failed to decode "
                f"(more than max_skipped_fraction={self.max_fraction}); bad files: " + ", ".join(bad)
                + ("; seen earlier in this run: " + ", ".join(earlier) if earlier else ""))
        return batch
