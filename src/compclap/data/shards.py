"""Webdataset shards for many GPUs on many nodes: `ShardDataModule` and the streams behind it.

Shards are the tar files `data_prep/make_shards.py` writes (``<key>.flac`` + ``<key>.json`` per clip, a
``sizes.json`` next to them). Shard lists are brace patterns or lists of them (``shards/train/shard-{000000..000127}.tar``)
and may be local paths, ``file://`` URLs or ``pipe:`` commands that write a shard to stdout
(``pipe:aws s3 cp s3://bucket/train/shard-000001.tar -``, ``pipe:curl -sfL https://host/shard-000001.tar``).

Batches have exactly the layout of `compclap.data.datasets.collate_clips` (index, waveforms, captions,
caption_owner, skipped, and negatives / positives / positive_owner when the shards carry them), so the
LightningModule is the same for manifests and shards.

Training
    Each rank takes its own shards (``shards[rank::world_size]``, an explicit node splitter: the rank is read
    from the trainer when the loader is built, never guessed inside a worker; with fewer shards than ranks
    every rank uses all of them). Each DataLoader worker takes its share of those, draws shards at random with
    replacement (resampling: the stream never runs dry), shuffles samples in a buffer of `shuffle_buffer`,
    decodes only the random crop it needs, picks one caption at random and batches. `with_epoch` ends an epoch
    after `epoch_length` samples per rank (default: the shards' total from sizes.json divided by the number of
    ranks), rounded down to whole batches and spread over the workers, so every rank runs the same number of
    steps (DDP needs that) and the learning-rate schedule knows the run's length. Randomness is keyed by
    (seed, epoch, rank, worker), never drawn from a global RNG.

Resume
    Every checkpoint holds the training position (`ShardDataModule.state_dict`: the epoch of the next batch and
    the clips of it all ranks have seen). A resumed run (same ranks, workers, batch size and seed) reads that
    epoch's stream again and drops the batches already run, so it trains on exactly the batches, crops and
    captions of an uninterrupted run, from an epoch-end or a mid-epoch checkpoint alike, and (with the saved RNG
    states) ends with the same weights. A stream cannot seek: a mid-epoch resume re-reads and decodes the batches
    it drops (no training on them), which costs up to one epoch of data loading. With other ranks, workers or
    batch size the resumed epoch is another stream (a warning says so); later epochs are again keyed as usual.

Validation and test
    The shards are read in order as one sequence of N clips (sizes.json gives N). Rank r reads positions
    ``[r * P, (r + 1) * P)`` with ``P = ceil(N / world_size)``, wrapping around to the start: like
    `DistributedSampler`, the last rank(s) are *padded with duplicates* of the first clips so that every rank
    sees exactly P clips and runs the same number of batches. Padding never drops a clip, and each duplicate
    carries the same global ``index`` as its original, so the LightningModule's gather drops it and metrics
    gathered over ranks equal those of one process. Each rank opens only the shards its range touches; its P
    positions are split over its workers in whole batches.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, get_worker_info

from compclap.audio.io import AudioDecodeError, load_clip
from compclap.data.bad_files import BadFileTracker, current_split
from compclap.data.datasets import collate_clips
from compclap.data.shard_specs import check_local_shards, check_shard_count, folder_shards, use_pin_memory
from compclap.data.sampler import train_position

AUDIO_KEYS = ("flac", "wav", "mp3", "ogg", "opus")
# Lightning warns about any IterableDataset with a __len__; ShardStream's length is exact by construction.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
_SHARD_NAME = re.compile(r"[^/\s'\"]+\.tar(?:\.gz)?")


# --------------------------------------------------------------------------------------------- shard lists
def expand_shards(shards: str | Sequence[str]) -> list[str]:
    """Brace-expand a pattern (or each pattern of a list) into shard URLs; ``::`` separates patterns too.

    A local folder stands for the shards `compclap prepare shards --out FOLDER` wrote there (its sizes.json).
    """
    from webdataset.shardlists import expand_urls

    patterns = [shards] if isinstance(shards, str) else list(shards)
    urls = [url for pattern in patterns for url in (folder_shards(pattern) or expand_urls(pattern))]
    if not urls:
        raise ValueError(f"no shards in {shards!r}")
    return urls


def shard_name(url: str) -> str:
    """File name of the tar a URL or pipe command refers to: ``pipe:cat /x/shard-000001.tar`` -> ``shard-000001.tar``."""
    names = _SHARD_NAME.findall(url)
    if not names:
        raise ValueError(f"cannot find a .tar file name in shard URL {url!r}")
    return names[-1]


def sizes_url(url: str) -> str:
    """The sizes.json next to a shard, in the same URL form: ``pipe:cat /x/shard-000001.tar`` -> ``pipe:cat /x/sizes.json``."""
    matches = list(_SHARD_NAME.finditer(url))
    if not matches:
        raise ValueError(f"cannot find a .tar file name in shard URL {url!r}; pass the sizes.json location explicitly")
    last = matches[-1]
    return url[:last.start()] + "sizes.json" + url[last.end():]


def read_sizes(urls: Sequence[str], sizes: str | None = None) -> list[int]:
    """Clips per shard, in the order of `urls`, from `sizes` (a sizes.json path or URL) or the sizes.json next to each shard."""
    tables: dict[str, dict[str, int]] = {}
    counts = []
    for url in urls:
        where = sizes or sizes_url(url)
        if where not in tables:
            try:
                with wds.gopen(where, "rb") as f:
                    tables[where] = json.loads(f.read().decode("utf-8"))
            except Exception as exc:
                raise FileNotFoundError(f"cannot read shard sizes from {where!r} ({exc}); write shards with "
                                        "data_prep/make_shards.py or pass data.<split>_sizes") from exc
        name = shard_name(url)
        if name not in tables[where]:
            raise ValueError(f"{where} has no entry for shard {name!r}")
        counts.append(int(tables[where][name]))
    return counts


def split_by_node(urls: Sequence[str], rank: int, world_size: int) -> list[str]:
    """A rank's training shards: every world_size-th one (all of them when there are fewer shards than ranks)."""
    if world_size <= 1:
        return list(urls)
    if len(urls) < world_size:
        warnings.warn(f"{len(urls)} training shard(s) for {world_size} ranks: every rank draws from all of them "
                      "(write more, smaller shards for disjoint ranks)", stacklevel=2)
        return list(urls)
    return list(urls[rank::world_size])


def eval_positions(total: int, rank: int, world_size: int, batch_size: int, worker: int = 0,
                   num_workers: int = 1) -> tuple[int, int]:
    """Positions [start, stop) of the padded sequence that one worker of one rank reads (wrap around modulo `total`).

    A rank reads ceil(total / world_size) positions; its workers take whole batches of them in turn.
    """
    per_rank = -(-total // world_size)
    batches = -(-per_rank // batch_size)
    first, last = batches * worker // num_workers, batches * (worker + 1) // num_workers
    base = rank * per_rank
    return base + first * batch_size, base + min(last * batch_size, per_rank)


def eval_segments(sizes: Sequence[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """(shard, first, end) sample ranges covering positions [start, stop) of the shards' concatenation, wrapping."""
    total = sum(sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    segments = []
    pos = start
    while pos < stop and total > 0:
        p = pos % total
        take = min(stop - pos, total - p)
        for shard, size in enumerate(sizes):
            lo, hi = max(p, offsets[shard]), min(p + take, offsets[shard] + size)
            if lo < hi:
                segments.append((shard, lo - offsets[shard], hi - offsets[shard]))
        pos += take
    return segments


def eval_batches_per_rank(total: int, world_size: int, batch_size: int) -> int:
    """Validation/test batches every rank runs."""
    return -(-(-(-total // world_size)) // batch_size)


# --------------------------------------------------------------------------------------------- samples
def iter_shard(url: str) -> Iterator[dict[str, Any]]:
    """Samples of one shard in stored order: dicts with ``__key__``, ``__url__`` and one bytes entry per extension.

    Errors are raised. Stopping early closes the stream quietly (a `pipe:` command then dies of SIGPIPE).
    """
    from webdataset.tariterators import group_by_keys, tar_file_expander

    stream = wds.gopen(url, "rb")
    complete = False
    try:
        yield from group_by_keys(tar_file_expander([{"url": url, "stream": stream}]))
        complete = True
    finally:
        try:
            stream.close()
        except Exception:
            if complete:
                raise


def decode_sample(sample: dict[str, Any], sample_rate: int, num_samples: int, train: bool = False,
                  rng: np.random.Generator | None = None, negatives: bool = True) -> dict[str, Any]:
    """A shard sample -> a clip item as `ManifestDataset` yields it (an error item when the audio does not decode).

    Training: random crop and one random caption (with its negatives, and the clip's positives); evaluation:
    head crop and all captions, no negatives.
    """
    where = f"{sample.get('__url__', '?')}#{sample.get('__key__', '?')}"
    try:
        meta = json.loads(sample["json"])
        index = int(meta["index"])
    except Exception as exc:
        warnings.warn(f"skipping shard sample {where}: no JSON record with an index ({exc})", stacklevel=2)
        return {"index": -1, "path": where, "error": f"no JSON record with an index: {exc}"}
    audio = next((sample[k] for k in AUDIO_KEYS if k in sample), None)
    if audio is None:
        return {"index": index, "path": where, "error": f"no audio member ({'/'.join(AUDIO_KEYS)})"}
    try:
        wave = load_clip(audio, sample_rate, num_samples, rng if train else None, name=where)
    except AudioDecodeError as exc:
        warnings.warn(f"skipping clip: {exc}", stacklevel=2)
        return {"index": index, "path": where, "error": str(exc)}
    captions = list(meta.get("captions") or [])
    item: dict[str, Any] = {"index": index, "path": where, "waveform": wave}
    negs = meta.get("negatives") if negatives else None
    if negs is not None and (not isinstance(negs, list) or len(negs) != len(captions)):
        raise ValueError(f"shard sample {where}: \"negatives\" must be a list parallel to \"captions\"")
    if train and "negative_audio" in meta:
        # A shard carries its clip's own audio only; reading negatives from their source paths would defeat streaming.
        warnings.warn("shards do not support \"negative_audio\" (audio negatives); ignoring it: train on the "
                      "JSONL manifest (ManifestDataModule) to use them", stacklevel=2)
    if train and captions:
        pick = int(rng.integers(len(captions)))
        item["captions"] = [captions[pick]]
        if negs is not None:
            item["negatives"] = [negs[pick]]
        if "positives" in meta:
            item["positives"] = list(meta["positives"])
    else:
        item["captions"] = captions
    return item


# --------------------------------------------------------------------------------------------- the stream
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

    def __iter__(self):
        """Set the stream's epoch in this process, so fresh workers copy it; drop the batches a resume skips."""
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        self.dataset.set_epoch(self.epochs_started if epoch is None else epoch)
        self.epochs_started += 1
        iterator = super().__iter__()
        skip, self._skip = self._skip, 0
        for _ in range(skip):
            next(iterator)
        return iterator


# --------------------------------------------------------------------------------------------- DataModule
class ShardDataModule(L.LightningDataModule):
    """Audio-caption pairs streamed from webdataset shards to any number of ranks and workers.

    Train: resampled shards split by node, a per-worker shuffle buffer, random crop and caption, a fixed epoch
    length. Val/test: every clip once across ranks (the last rank padded with duplicates that the gather drops).
    """

    def __init__(
        self,
        train_shards: str | list[str] | None = None,
        val_shards: str | list[str] | None = None,
        test_shards: str | list[str] | None = None,
        train_sizes: str | None = None,
        val_sizes: str | None = None,
        test_sizes: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        sample_rate: int = 48_000,
        clip_seconds: float = 10.0,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        epoch_length: int | None = None,
        max_skipped_fraction: float = 0.01,
        persistent_workers: bool = False,
        pin_memory: bool | None = None,
        hard_negatives: str = "manifest",
    ) -> None:
        """Configure the splits.

        Args:
            train_shards: training shards: the folder `compclap prepare shards` wrote, a brace pattern
                (``dir/shard-{000000..000099}.tar``, as make_shards prints it), a list of patterns, local paths,
                ``file://`` URLs or ``pipe:`` commands that write a shard to stdout.
            val_shards: validation shards (retrieval metrics), same forms.
            test_shards: test shards, same forms.
            train_sizes: sizes.json of the training shards (default: the one next to the shards, same URL form);
                needed only when epoch_length is not set.
            val_sizes: sizes.json of the validation shards (default: next to the shards).
            test_sizes: sizes.json of the test shards (default: next to the shards).
            batch_size: training clips per batch per device.
            eval_batch_size: clips per batch in val/test (default: batch_size).
            num_workers: DataLoader worker processes per rank.
            sample_rate: audio rate the model expects (the CLI links it from the model).
            clip_seconds: clip length the model expects (the CLI links it from the model).
            seed: base seed for shard draws, shuffling, crops and caption choice.
            shuffle_buffer: samples each worker shuffles among (encoded audio: about 0.6-1 MB per 10 s clip at
                48 kHz; 0 or 1: no shuffle).
            epoch_length: training samples per epoch per rank (default: the training shards' total from sizes.json
                divided by the number of ranks); rounded down to whole batches.
            max_skipped_fraction: stop with an error when more than this share of a split fails to decode.
            persistent_workers: keep DataLoader workers alive between epochs.
            pin_memory: pin batches in page-locked memory (faster host-to-GPU copies); None: when the trainer
                uses CUDA. Never on CPU.
            hard_negatives: "manifest" uses the "negatives" stored in the shards (written from the manifest);
                "none" drops them.
        """
        super().__init__()
        self.save_hyperparameters()
        if hard_negatives not in ("manifest", "none"):
            raise ValueError(f"hard_negatives must be 'manifest' or 'none' for shards, got {hard_negatives!r} "
                             "(write negatives into the manifest before sharding: data_prep/hard_negatives.py --manifest)")
        self.shards = {"fit": train_shards, "validate": val_shards, "test": test_shards}
        self.sizes_files = {"fit": train_sizes, "validate": val_sizes, "test": test_sizes}
        self._urls: dict[str, list[str]] = {}
        self._sizes: dict[str, list[int] | None] = {}
        self._bad_files = BadFileTracker(max_skipped_fraction)
        self._share: dict[str, int] = {}
        self._resume: dict[str, int] | None = None  # a checkpoint's training position, for the next training loader
        self._resume_epoch: int | None = None  # its epoch, for that loader's first pass

    @property
    def num_samples(self) -> int:
        """Clip length in samples."""
        return int(round(self.hparams.sample_rate * self.hparams.clip_seconds))

    def _split(self, split: str) -> tuple[list[str], list[int] | None]:
        """Shard URLs and sizes of a split (read once); sizes are optional for training with an epoch_length."""
        if split not in self._urls:
            spec = self.shards[split]
            if spec is None:
                name = {"fit": "train", "validate": "val"}.get(split, split)
                raise ValueError(f"no shards configured for {split!r} (set data.{name}_shards)")
            urls = expand_shards(spec)
            check_local_shards(urls, spec)
            need_sizes = split != "fit" or self.hparams.epoch_length is None
            self._urls[split] = urls
            self._sizes[split] = read_sizes(urls, self.sizes_files[split]) if need_sizes else None
        return self._urls[split], self._sizes[split]

    def setup(self, stage: str) -> None:
        """Expand the shard lists and read their sizes for the stage."""
        needed = {"fit": ["fit", "validate"], "validate": ["validate"], "test": ["test"]}.get(stage)
        if needed is None:
            raise ValueError(f"ShardDataModule has no {stage!r} split (embed with a manifest: ManifestDataModule)")
        for split in needed:
            if self.shards[split] is not None or split == stage:
                self._split(split)

    def _rank_world(self) -> tuple[int, int]:
        """This process's rank and the number of ranks: from the trainer, else torch.distributed, else (0, 1)."""
        trainer = self.trainer
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _epoch(self) -> int | None:
        """The trainer's current epoch (None without a trainer: the loader counts its epochs)."""
        return self.trainer.current_epoch if self.trainer is not None else None

    def _train_epoch(self) -> int | None:
        """The epoch of the training pass starting now: a restored checkpoint's first (Lightning builds and starts the
        loader under max_epochs before it restores its loops, when current_epoch still reads 0), then the trainer's."""
        if self._resume_epoch is not None:
            epoch, self._resume_epoch = self._resume_epoch, None
            return epoch
        return self._epoch()

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the epoch of the next training batch and the clips of it all ranks have seen."""
        position = train_position(self.trainer, self.hparams.batch_size) if self.trainer is not None else None
        if position is None:
            return {}
        return {"train_stream": {"epoch": position[0], "clips_seen": position[1],
                                 "world_size": int(self.trainer.world_size), "batch_size": int(self.hparams.batch_size),
                                 "num_workers": int(self.hparams.num_workers)}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's position: the next training pass is its epoch, after the batches already run."""
        self._resume = dict(state_dict["train_stream"]) if "train_stream" in state_dict else None

    def _resume_skip(self, state: dict[str, int], world: int) -> int:
        """Batches of the resumed epoch this rank already ran; warn when the set-up changed since."""
        hp = self.hparams
        seen = int(state.get("clips_seen", 0))
        now = {"world_size": world, "batch_size": hp.batch_size, "num_workers": hp.num_workers}
        changed = [f"{key} {state[key]} -> {value}" for key, value in now.items()
                   if key in state and int(state[key]) != value]
        if seen and (changed or seen % (world * hp.batch_size)):
            warnings.warn(f"resuming after {seen} clips of the epoch with {'; '.join(changed) or 'a partial batch'}: "
                          "the rest of the epoch's stream is not the one the interrupted run would have read",
                          stacklevel=3)
        return seen // (world * hp.batch_size)

    def _loader(self, split: str) -> ShardLoader:
        """A ShardLoader for the split on this rank."""
        urls, sizes = self._split(split)
        rank, world = self._rank_world()
        hp = self.hparams
        common = dict(sample_rate=hp.sample_rate, num_samples=self.num_samples, rank=rank, world_size=world,
                      num_workers=hp.num_workers, seed=hp.seed, sizes=sizes)
        if split == "fit":
            per_rank = hp.epoch_length if hp.epoch_length is not None else sum(sizes) // world
            batches = per_rank // hp.batch_size
            check_shard_count(len(urls), world, hp.num_workers)
            if batches < 1:
                raise ValueError(f"an epoch of {per_rank} training clips per rank holds no batch of {hp.batch_size}")
            stream = ShardStream(urls, train=True, batch_size=hp.batch_size, shuffle_buffer=hp.shuffle_buffer,
                                 batches_per_rank=batches, negatives=hp.hard_negatives != "none", **common)
            self._share[split] = batches * hp.batch_size
        else:
            bs = hp.eval_batch_size or hp.batch_size
            stream = ShardStream(urls, train=False, batch_size=bs, **common)
            self._share[split] = -(-sum(sizes) // world)
        # Workers' base seeds come from the loader's own generator, never from torch's global RNG (which a resumed run
        # restores only after Lightning has started the loader); the stream's randomness is keyed by itself anyway.
        loader = ShardLoader(stream, epoch_fn=self._train_epoch if split == "fit" else self._epoch,
                             num_workers=hp.num_workers, pin_memory=use_pin_memory(hp.pin_memory, self.trainer),
                             generator=torch.Generator().manual_seed(hp.seed),
                             persistent_workers=hp.persistent_workers and hp.num_workers > 0)
        if split == "fit" and self._resume is not None:
            state, self._resume = self._resume, None
            self._resume_epoch = int(state["epoch"])
            loader.skip_next(self._resume_skip(state, world))
        return loader

    def train_dataloader(self) -> ShardLoader:
        """Training batches (a fixed number per epoch on every rank)."""
        return self._loader("fit")

    def val_dataloader(self) -> ShardLoader | list:
        """Validation batches (none when no validation shards are configured)."""
        return self._loader("validate") if self.shards["validate"] is not None else []

    def test_dataloader(self) -> ShardLoader:
        """Test batches."""
        return self._loader("test")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Account for clips that failed to decode; stop once a split exceeds `max_skipped_fraction`."""
        split = current_split(self.trainer)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return self._bad_files.add_batch(batch, split, self._share.get(split), epoch)
