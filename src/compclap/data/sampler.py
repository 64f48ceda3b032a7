"""A rank-aware sampler that resumes mid-epoch; an epoch's order and each clip's randomness depend on (seed, epoch).

`ClipSampler` yields ``(index, item_seed)``: the order of epoch e is `DistributedSampler`'s permutation seeded with
``seed + e`` and ``item_seed`` is derived from ``(seed, e, index)``, so no draw from a global RNG decides what a batch
holds. `resume_at(epoch, skip)` makes the next pass start at `epoch` after this rank's first `skip` clips: the
DataModule calls it with the position a checkpoint recorded (`train_position`), so a run killed mid-epoch goes on
with the next unseen batch of that epoch, in the same order. The sampler also owns the DataLoader's `generator`,
reseeded at every `set_epoch`: DataLoader draws its workers' base seed from it instead of from torch's global RNG,
so creating an iterator (which Lightning does before the saved RNG states are restored) changes no random stream.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["ClipSampler", "ResumableDataLoader", "train_position"]


def _derive(*keys: int) -> int:
    """A 32-bit seed derived from integer keys."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class ClipSampler(DistributedSampler):
    """Rank-aware sampler yielding (index, seed): shuffling and per-item randomness depend on (seed, epoch).

    Being a DistributedSampler, Lightning keeps it as is under DDP and calls set_epoch on it. A pass captures its
    epoch when it starts, so a `set_epoch` arriving while DataLoader workers already prefetch changes nothing in it.
    """

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        """dataset: the clips; shuffle: new order each epoch; seed: base seed; drop_last: drop the uneven tail
        across ranks; num_replicas/rank: default to torch.distributed's (1 and 0 without it)."""
        dist_ok = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if dist_ok else 1
        if rank is None:
            rank = torch.distributed.get_rank() if dist_ok else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.generator = torch.Generator()  # pass as DataLoader(generator=...): worker base seeds keyed on the epoch
        self._resume: tuple[int, int] | None = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Key the next pass (order, item seeds, DataLoader worker seeds) on `epoch`."""
        super().set_epoch(int(epoch))
        self.generator.manual_seed(_derive(self.seed, self.epoch, self.rank, 2))

    def resume_at(self, epoch: int, skip: int) -> None:
        """Make the next pass epoch `epoch`, starting after this rank's first `skip` clips of it."""
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.set_epoch(epoch)
        self._resume = (int(epoch), int(skip))

    def state_dict(self) -> dict[str, int]:
        """Seed, epoch and rank layout (the position within the epoch is the trainer's: see train_position)."""
        return {"seed": int(self.seed), "epoch": int(self.epoch), "num_replicas": int(self.num_replicas),
                "dataset_size": len(self.dataset)}

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Yield (index, item_seed) for this rank."""
        epoch, skip = self.epoch, 0
        if self._resume is not None:
            resume_epoch, resume_skip = self._resume
            self._resume = None
            if resume_epoch == epoch:
                skip = resume_skip
            else:
                warnings.warn(f"the sampler was to resume epoch {resume_epoch} after {resume_skip} clips, but this "
                              f"pass is epoch {epoch}: starting it from its first clip", stacklevel=2)
        indices = list(super().__iter__())  # DistributedSampler's order of `epoch` for this rank
        for index in indices[skip:]:
            yield index, _derive(self.seed, epoch, index)


class ResumableDataLoader(DataLoader):
    """A DataLoader over a ClipSampler that tells Lightning it resumes mid-epoch.

    The position itself travels in the DataModule's checkpoint state (restored at every resume, also at an epoch
    boundary where Lightning restores no loader state); the loader's own state is informational.
    """

    def state_dict(self) -> dict[str, Any]:
        """The sampler's seed, epoch and rank layout (saved by Lightning's fit loop)."""
        sampler = self.sampler
        return sampler.state_dict() if isinstance(sampler, ClipSampler) else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to do: the DataModule already positioned the sampler (see ManifestDataModule.load_state_dict)."""


def train_position(trainer: Any, batch_size: int) -> tuple[int, int] | None:
    """(epoch, clips seen in it over all ranks) of the next training batch, as Lightning will restart from this moment.

    Mirrors the fit loop's restart logic: a checkpoint written in `on_train_batch_end` counts that batch as done,
    one written mid-step (a signal handler) does not; once every batch of an epoch is done (its end-of-epoch
    checkpoint, its last batch's, or one saved after `fit` returned) the position is the next epoch's start.
    None outside of fitting.
    """
    fit_loop = getattr(trainer, "fit_loop", None)
    if fit_loop is None or trainer.state.fn != "fit":
        return None
    progress = fit_loop.epoch_loop.batch_progress
    total = progress.total
    done = progress.current.completed
    if total.ready == total.started == total.processed == total.completed + 1:
        done += 1  # saved in on_train_batch_end: Lightning resumes after this batch
    # batch_progress counts the batches of the epoch started last (it is reset only once the next one is under way)
    epoch = max(fit_loop.epoch_progress.current.started - 1, 0)
    batches = trainer.num_training_batches
    if done >= batches:  # the epoch is over (its end-of-epoch checkpoint or its last batch's)
        return epoch + 1, 0
    return epoch, done * batch_size * trainer.world_size
