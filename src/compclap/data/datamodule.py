"""LightningDataModule over JSONL manifests, with bad-file accounting and mid-epoch resume.

Every checkpoint holds the training sampler's position (`state_dict`): the epoch of the next batch, how many of
its clips all ranks have seen, and the seed. A run resumed from it (`--ckpt_path`) starts that epoch after those
clips, in the same order, with the same crops and captions: a run killed mid-epoch misses and repeats no clip.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from compclap.data.bad_files import BadFileTracker, TooManyBadFilesError, current_split
from compclap.data.datasets import ManifestDataset, collate_clips
from compclap.data.manifest import read_manifest
from compclap.data.sampler import ClipSampler, ResumableDataLoader, train_position


__all__ = ["ManifestDataModule", "TooManyBadFilesError"]


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
        hard_negatives: str = "manifest",
        rewriter: dict[str, Any] | None = None,
        negatives_cache_dir: str | None = None,
        audio_negatives: bool = True,
        max_audio_negatives: int | None = None,
        cache_decoded_audio: bool = False,
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
            hard_negatives: "manifest" uses the training manifest's "negatives" field when present;
                "rewrite" writes them on the fly with the caption rewriter (cached on disk); "none" drops them.
            rewriter: HardNegativeRewriter keyword arguments for "rewrite" (kinds, max_per_kind, seed, spacy_model).
            negatives_cache_dir: folder of the rewrite cache (default: next to the training manifest).
            audio_negatives: load the training manifest's "negative_audio" (per caption, audio it is false of, e.g.
                its events swapped) into batch["negative_waveforms"] (B, K, T) with batch["negative_waveform_mask"]
                (B, K); False drops the field. Validation/test/predict never load them.
            max_audio_negatives: keep at most this many audio negatives per caption (None: all; 0: none).
            cache_decoded_audio: keep the decoded training audio in memory after its first use (each DataLoader
                worker its own copy: 4 bytes per sample per clip; with num_workers=0 one copy and no transfer).
                For many short epochs over a small corpus, e.g. heads-only stages on cached tower features.
        """
        super().__init__()
        self.save_hyperparameters()
        self.manifests = {"fit": train_manifest, "validate": val_manifest, "test": test_manifest,
                          "predict": predict_manifest}
        if hard_negatives not in ("manifest", "rewrite", "none"):
            raise ValueError(f"hard_negatives must be 'manifest', 'rewrite' or 'none', got {hard_negatives!r}")
        if max_audio_negatives is not None and max_audio_negatives < 0:
            raise ValueError(f"max_audio_negatives must be >= 0 or None, got {max_audio_negatives}")
        self.datasets: dict[str, ManifestDataset] = {}
        self._bad_files = BadFileTracker(max_skipped_fraction)
        self._resume: dict[str, int] | None = None  # training position read from a checkpoint, used once

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
            records = read_manifest(path)
            if split == "fit":
                self._prepare_negatives(records, path)
                self._prepare_audio_negatives(records)
            else:
                for rec in records:
                    rec.pop("negatives", None)  # evaluation uses positives only
                    rec.pop("negative_audio", None)
            self.datasets[split] = ManifestDataset(records, self.hparams.sample_rate, self.num_samples,
                                                   train=split == "fit",
                                                   cache_decoded=split == "fit" and self.hparams.cache_decoded_audio)
        return self.datasets[split]

    def _prepare_negatives(self, records: list[dict[str, Any]], manifest: str) -> None:
        """Keep, rewrite or drop the training captions' hard negatives according to `hard_negatives`."""
        mode = self.hparams.hard_negatives
        if mode == "none":
            for rec in records:
                rec.pop("negatives", None)
        elif mode == "rewrite":
            from compclap.data.negatives_cache import attach_negatives

            attach_negatives(records, manifest, dict(self.hparams.rewriter or {}), self.hparams.negatives_cache_dir)
        else:
            for lineno, rec in enumerate(records, 1):
                negs = rec.get("negatives")
                if negs is not None and (not isinstance(negs, list) or len(negs) != len(rec["captions"])):
                    raise ValueError(f"{manifest}: clip {lineno}: \"negatives\" must be a list parallel to "
                                     f"\"captions\" ({len(rec['captions'])} entries)")

    def _prepare_audio_negatives(self, records: list[dict[str, Any]]) -> None:
        """Drop the training clips' "negative_audio" (audio_negatives=False) or cap it per caption."""
        cap = self.hparams.max_audio_negatives
        for rec in records:
            if not self.hparams.audio_negatives:
                rec.pop("negative_audio", None)
            elif cap is not None and "negative_audio" in rec:
                rec["negative_audio"] = [negs[:cap] for negs in rec["negative_audio"]]

    def prepare_data(self) -> None:
        """Write the rewrite cache once per node (before DDP ranks read it in setup)."""
        if self.hparams.hard_negatives == "rewrite" and self.manifests["fit"] is not None:
            from compclap.data.negatives_cache import attach_negatives

            attach_negatives(read_manifest(self.manifests["fit"]), self.manifests["fit"],
                             dict(self.hparams.rewriter or {}), self.hparams.negatives_cache_dir)

    def setup(self, stage: str) -> None:
        """Read the manifests the stage needs."""
        needed = {"fit": ["fit", "validate"], "validate": ["validate"], "test": ["test"], "predict": ["predict"]}[stage]
        for split in needed:
            if self.manifests[split] is not None or split == stage:
                self._dataset(split)

    def _loader(self, split: str) -> DataLoader:
        """DataLoader with the rank-aware ClipSampler (whose generator gives the workers' base seeds)."""
        ds = self._dataset(split)
        train = split == "fit"
        sampler = ClipSampler(ds, shuffle=train, seed=self.hparams.seed, drop_last=False)
        bs = self.hparams.batch_size if train else (self.hparams.eval_batch_size or self.hparams.batch_size)
        if train and self._resume is not None:
            self._resume_sampler(sampler, self._resume)
            self._resume = None
        loader = ResumableDataLoader if train else DataLoader
        return loader(ds, batch_size=bs, sampler=sampler, num_workers=self.hparams.num_workers,
                      collate_fn=collate_clips, drop_last=train and self.hparams.drop_last,
                      generator=sampler.generator,
                      persistent_workers=self.hparams.persistent_workers and self.hparams.num_workers > 0)

    def _resume_sampler(self, sampler: ClipSampler, state: dict[str, int]) -> None:
        """Start the training sampler where the checkpoint's run stopped; warn when the set-up no longer matches."""
        seen, world, bs = int(state["clips_seen"]), sampler.num_replicas, self.hparams.batch_size
        changed = [f"{key} {state[key]} -> {now}" for key, now in (("seed", self.hparams.seed),
                   ("dataset_size", len(sampler.dataset)), ("world_size", world), ("batch_size", bs))
                   if key in state and int(state[key]) != now]
        if seen % (world * bs):
            changed.append(f"{seen} clips seen are not whole batches of {bs} x {world} ranks")
        if changed and seen:
            warnings.warn(f"resuming epoch {state['epoch']} after {seen} clips, but {'; '.join(changed)}: the rest "
                          "of this epoch is not the one the interrupted run would have seen", stacklevel=3)
        sampler.resume_at(int(state["epoch"]), seen // world)

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

    def state_dict(self) -> dict[str, Any]:
        """The training position saved in every checkpoint: {"train_sampler": {epoch, clips_seen, seed, ...}}."""
        position = train_position(self.trainer, self.hparams.batch_size) if self.trainer is not None else None
        if position is None or "fit" not in self.datasets:
            return {}
        epoch, seen = position
        return {"train_sampler": {"epoch": epoch, "clips_seen": seen, "seed": int(self.hparams.seed),
                                  "dataset_size": len(self.datasets["fit"]), "batch_size": int(self.hparams.batch_size),
                                  "world_size": int(self.trainer.world_size)}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's training position for the next train_dataloader (older checkpoints have none)."""
        self._resume = state_dict.get("train_sampler")
        fit_loop = getattr(self.trainer, "fit_loop", None)
        if self._resume is not None and getattr(fit_loop, "_combined_loader", None) is not None:
            # Strategies that restore after setup (DeepSpeed, ModelParallel) may already have built the loader.
            warnings.warn("the training loader was built before the checkpoint was restored: its position (epoch "
                          f"{self._resume['epoch']} after {self._resume['clips_seen']} clips) is not applied",
                          stacklevel=2)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Account for clips that failed to decode; stop once a split exceeds `max_skipped_fraction`."""
        split = current_split(self.trainer)
        share = None
        if split in self.datasets:
            world = self.trainer.world_size if self.trainer is not None else 1
            share = max(1, len(self.datasets[split]) // world)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return self._bad_files.add_batch(batch, split, share, epoch)
