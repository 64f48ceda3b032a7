"""The training and evaluation streams of `ShardDataModule`: `ShardStream` (one rank's batches, each DataLoader
worker streaming its part), `ShardLoader` (tells the stream its epoch, skips batches on resume) and the resumable
training position a checkpoint holds.

Training
    Each rank takes its own shards (``shards[rank::world_size]``, an explicit node splitter: the rank is read
    from the trainer when the loader is built, never guessed inside a worker; with fewer shards than ranks
    every rank uses all of them). Each DataLoader worker takes its share of those, draws shards at random with
    replacement (resampling: the stream never runs dry), shuffles samples in a buffer of `shuffle_buffer`,
    decodes only the random crop it needs, picks one caption at random and batches. `with_epoch` ends an epoch
    after `batches_per_rank` batches per rank, spread over the workers, so every rank runs the same number of
    steps (DDP needs that). Randomness is keyed by (seed, epoch, rank, worker), never drawn from a global RNG.

Resume
    A checkpoint holds the training position (`train_stream_state`: the epoch of the next batch and the clips of
    it all ranks have seen). A resumed run (same ranks, workers, batch size and seed) reads that epoch's stream
    again and drops the batches already run (`resume_skip`, `ShardLoader.skip_next`), so it trains on exactly the
    batches, crops and captions of an uninterrupted run. A stream cannot seek: a mid-epoch resume re-reads and
    decodes the batches it drops (no training on them), which costs up to one epoch of data loading. With other
    ranks, workers or batch size the resumed epoch is another stream (a warning says so); later epochs are again
    keyed as usual.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import webdataset as wds
from torch.utils.data import DataLoader, get_worker_info

from compclap.data.datasets import collate_clips
from compclap.data.shard_lists import eval_batches_per_rank, eval_positions, eval_segments, split_by_node
from compclap.data.shard_samples import decode_sample, iter_shard

__all__ = ["ShardLoader", "ShardStream", "resume_skip", "train_stream_state"]

# Lightning warns about any IterableDataset with a __len__; ShardStream's length is exact by construction.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")


class ShardStream(wds.DataPipeline):
    """Collated batches of one split for one rank; each DataLoader worker streams its own part.

    rank and world_size are given explicitly (read in the main process when the loader is built). `__len__` is
    the number of batches this rank yields per epoch, over all workers.
    """

    def __init__(self, urls: Sequence[str], *, train: bool, sample_rate: int, num_samples: int, batch_size: int,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, seed: int = 0,
                 sizes: Sequence[int] | None = None, shuffle_buffer: int = 1000, batches_per_rank: int | None = None,
                 negatives: bool = True) -> None:
        """urls: the split's shards; train: resampled/shuffled/random crops vs in-order/head crops;
        sizes: clips per shard (required for evaluation); batches_per_rank: training epoch length in batches."""
        super().__init__()
        self.urls, self.train = list(urls), train
        self.sample_rate, self.num_samples, self.batch_size = sample_rate, num_samples, batch_size
        self.rank, self.world_size, self.num_workers = rank, world_size, max(0, num_workers)
        self.seed, self.shuffle_buffer, self.negatives = seed, shuffle_buffer, negatives
        self.sizes = None if sizes is None else [int(s) for s in sizes]
        self.epoch, self._passes = 0, 0
        if train:
            if not batches_per_rank or batches_per_rank < 1:
                raise ValueError("a training stream needs batches_per_rank >= 1")
            self.node_urls = split_by_node(self.urls, rank, world_size)
            self.size = batches_per_rank
        else:
            if self.sizes is None or len(self.sizes) != len(self.urls):
                raise ValueError("an evaluation stream needs the number of clips of every shard (sizes.json)")
            self.size = eval_batches_per_rank(sum(self.sizes), world_size, batch_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self.size

    def set_epoch(self, epoch: int) -> None:
        """Key the next pass's randomness on this epoch (called in the main process before workers start)."""
        self.epoch, self._passes = int(epoch), 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """One epoch of this worker's batches."""
        info = get_worker_info()
        self._worker, self._workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # Persistent workers keep their copy of the stream: count passes so each epoch draws anew.
        self._pass_epoch = self.epoch + self._passes
        self._passes += 1
        if self.train:
            share = self.size // self._workers + (self._worker < self.size % self._workers)
            if share == 0:
                return iter(())
            self.with_epoch(nbatches=share)  # this worker's part of the rank's epoch
        return super().__iter__()

    def iterator1(self) -> Iterator[dict[str, Any]]:
        """Build this worker's pipeline: shards -> samples -> (shuffle) -> decode -> batches."""
        if not self.train:
            items = (decode_sample(s, self.sample_rate, self.num_samples, train=False)
                     for s in self._eval_samples())
            return wds.batched(self.batch_size, collation_fn=collate_clips, partial=True)(items)
        state = np.random.SeedSequence([self.seed, self._pass_epoch, self.rank, self._worker])
        py_rng, np_rng = random.Random(int(state.generate_state(1)[0])), np.random.default_rng(state)
        samples = self._train_samples(py_rng)
        if self.shuffle_buffer > 1:
            samples = wds.shuffle(self.shuffle_buffer, initial=max(1, self.shuffle_buffer // 4), rng=py_rng)(samples)
        items = (decode_sample(s, self.sample_rate, self.num_samples, train=True, rng=np_rng,
                               negatives=self.negatives) for s in samples)
        return wds.batched(self.batch_size, collation_fn=collate_clips, partial=False)(items)

    def _train_samples(self, rng: random.Random) -> Iterator[dict[str, Any]]:
        """Endless samples from shards drawn with replacement from this worker's share of the rank's shards."""
        urls = self.node_urls
        if len(urls) >= self._workers:
            urls = urls[self._worker::self._workers]
        empty = 0
        while True:
            url = urls[rng.randrange(len(urls))]
            count = 0
            try:
                for sample in iter_shard(url):
                    count += 1
                    yield sample
            except Exception as exc:  # a broken shard or a failed download: warn and draw another
                warnings.warn(f"training shard {url!r} failed after {count} samples: {exc!r}", stacklevel=2)
            empty = 0 if count else empty + 1
            if empty >= max(10, 2 * len(urls)):
                raise RuntimeError(f"no sample could be read from {empty} training shards in a row (last: {url!r})")

    def _eval_samples(self) -> Iterator[dict[str, Any]]:
        """This worker's positions of the padded evaluation sequence, shard by shard, in order."""
        start, stop = eval_positions(sum(self.sizes), self.rank, self.world_size, self.batch_size,
                                     self._worker, self._workers)
        for shard, first, end in eval_segments(self.sizes, start, stop):
            url, count = self.urls[shard], 0
            for sample in iter_shard(url):
                if count >= first:
                    yield sample
                count += 1
                if count >= end:
                    break
            if count < end:
                raise ValueError(f"shard {url!r} holds {count} samples but its sizes.json says {self.sizes[shard]}")


class ShardLoader(DataLoader):
    """DataLoader over a ShardStream that tells the stream its epoch each time an epoch starts.

    The epoch is `epoch_fn()` (the trainer's current epoch) or, when that returns None, the number of epochs this
    loader has started, so shuffles and crops differ between epochs either way. `skip_next(k)` makes the next pass
    drop its first k batches (a mid-epoch resume). Pass `generator=` so that worker base seeds are not drawn from
    torch's global RNG.
    """

    def __init__(self, dataset: ShardStream, epoch_fn: Callable[[], int | None] | None = None,
                 **kwargs: Any) -> None:
        """dataset: the stream (it batches itself); epoch_fn: the current epoch, or None; kwargs: DataLoader's."""
        super().__init__(dataset, batch_size=None, **kwargs)
        self.epoch_fn = epoch_fn
        self.epochs_started = 0
        self._skip = 0

    def state_dict(self) -> dict[str, int]:
        """Passes started (informational: ShardDataModule's checkpoint state positions a resumed stream)."""
        return {"epochs_started": self.epochs_started}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Nothing to restore here (see state_dict); having the method tells Lightning the loader resumes mid-epoch."""

    def skip_next(self, batches: int) -> None:
        """Make the next pass drop its first `batches` batches (read and decoded, as the stream has no seek)."""
        self._skip = int(batches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Set the stream's epoch in this process, so fresh workers copy it; drop the batches a resume skips."""
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        self.dataset.set_epoch(self.epochs_started if epoch is None else epoch)
        self.epochs_started += 1
        iterator = super().__iter__()
        skip, self._skip = self._skip, 0
        for _ in range(skip):
            next(iterator)
        return iterator


# --------------------------------------------------------------------------------------------- resume position
def train_stream_state(position: tuple[int, int] | None, world_size: int, batch_size: int,
                       num_workers: int) -> dict[str, Any]:
    """A checkpoint's training-stream state: the epoch of the next batch, the clips of it seen, and the set-up."""
    if position is None:
        return {}
    return {"train_stream": {"epoch": position[0], "clips_seen": position[1],
                             "world_size": int(world_size), "batch_size": int(batch_size),
                             "num_workers": int(num_workers)}}


def resume_skip(state: dict[str, int], world_size: int, batch_size: int, num_workers: int) -> int:
    """Batches of the resumed epoch this rank already ran; warn when the set-up changed since."""
    seen = int(state.get("clips_seen", 0))
    now = {"world_size": world_size, "batch_size": batch_size, "num_workers": num_workers}
    changed = [f"{key} {state[key]} -> {value}" for key, value in now.items()
               if key in state and int(state[key]) != value]
    if seen and (changed or seen % (world_size * batch_size)):
        warnings.warn(f"resuming after {seen} clips of the epoch with {'; '.join(changed) or 'a partial batch'}: "
                      "the rest of the epoch's stream is not the one the interrupted run would have read",
                      stacklevel=3)
    return seen // (world_size * batch_size)
