"""Webdataset shards for many GPUs on many nodes: `ShardDataModule`.

Shards are the tar files `data_prep/make_shards.py` writes (``<key>.flac`` + ``<key>.json`` per clip, a
``sizes.json`` next to them). Batches have exactly the layout of `compclap.data.datasets.collate_clips` (index,
waveforms, captions, caption_owner, skipped, and negatives / positives / positive_owner when the shards carry them),
so the LightningModule is the same for manifests and shards.

The parts live in their own modules, and their names stay importable from here:

- `compclap.data.shard_lists`: shard patterns and folders -> URLs, sizes.json, rank/worker partitioning.
- `compclap.data.shard_samples`: reading one shard's samples and decoding a sample into a clip item.
- `compclap.data.shard_stream`: `ShardStream` / `ShardLoader` and the resumable training position.
- `compclap.data.shard_specs`: checks on shard lists as users write them.

Training
    `epoch_length` samples per rank make an epoch (default: the shards' total from sizes.json divided by the number
    of ranks), rounded down to whole batches, so every rank runs the same number of steps and the learning-rate
    schedule knows the run's length (see `compclap.data.shard_stream`).

Resume
    Every checkpoint holds the training position (`ShardDataModule.state_dict`); a resumed run (same ranks,
    workers, batch size and seed) trains on exactly the batches, crops and captions of an uninterrupted run, from an
    epoch-end or a mid-epoch checkpoint alike, and (with the saved RNG states) ends with the same weights.

Validation and test
    Every clip once across ranks: the last rank(s) are padded with duplicates of the first clips (see
    `compclap.data.shard_lists`). Each duplicate carries the same global ``index`` as its original, so the
    LightningModule's gather drops it and metrics gathered over ranks equal those of one process.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from compclap.data.bad_files import BadFileTracker, current_split
from compclap.data.sampler import train_position
from compclap.data.shard_lists import (eval_batches_per_rank, eval_positions, eval_segments, expand_shards, read_sizes,
                                       shard_name, sizes_url, split_by_node)
from compclap.data.shard_samples import AUDIO_KEYS, decode_sample, iter_shard
from compclap.data.shard_specs import check_local_shards, check_shard_count, use_pin_memory
from compclap.data.shard_stream import ShardLoader, ShardStream, resume_skip, train_stream_state

# Importable from here, as before the split.
__all__ = ["AUDIO_KEYS", "ShardDataModule", "ShardLoader", "ShardStream", "decode_sample", "eval_batches_per_rank",
           "eval_positions", "eval_segments", "expand_shards", "iter_shard", "read_sizes", "shard_name", "sizes_url",
           "split_by_node"]


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
        if self.trainer is None:
            return {}
        hp = self.hparams
        return train_stream_state(train_position(self.trainer, hp.batch_size), self.trainer.world_size,
                                  hp.batch_size, hp.num_workers)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's position: the next training pass is its epoch, after the batches already run."""
        self._resume = dict(state_dict["train_stream"]) if "train_stream" in state_dict else None

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
            loader.skip_next(resume_skip(state, world, hp.batch_size, hp.num_workers))
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
