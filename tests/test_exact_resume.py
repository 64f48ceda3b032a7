"""Exact resume: a run killed between checkpoints and resumed from the last one equals an uninterrupted run.

Every test records, for each training step, the clips of its batch (indices, chosen captions, a checksum of the
crops); a step recorded twice (before a kill and again after the resume) keeps its later record. The resumed run
must see exactly the uninterrupted run's batches, step by step (from a manifest: every clip once per epoch), and
end with bit-identical weights. Manifests (ManifestDataModule) and webdataset shards (ShardDataModule) alike.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from compclap.cli import main
from compclap.data.sampler import ClipSampler
from compclap.data.shard_writer import write_shards
from conftest import write_tiny_manifest
from test_training_cli import SimulatedCrash, _config

CLIPS, BATCH = 12, 3  # 4 batches per epoch


class RecordClips(L.Callback):
    """Append each training batch's clips to a JSONL file (flushed, so a SIGKILL loses nothing recorded)."""

    def __init__(self, path: str) -> None:
        """path: the JSONL file to append to."""
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Record (step, epoch, batch_idx, clips, captions, crop checksum)."""
        rec = {"step": trainer.global_step, "epoch": trainer.current_epoch, "batch_idx": batch_idx,
               "index": batch["index"].tolist(), "captions": batch["captions"],
               "crops": float(batch["waveforms"].double().sum())}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


class KillAtStep(L.Callback):
    """SIGKILL this very process when the global step reaches `step` (no exception handler, no clean-up runs)."""

    def __init__(self, step: int) -> None:
        """step: global step at which to die."""
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Die once the global step is reached."""
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _resume_config(tmp: Path, tokenizer_dir: Path, name: str, record: Path, every_n_steps: int | None,
                   extra: list[dict] | None = None, val: bool = False, shards: bool = False, **data) -> Path:
    """The tiny CLI run of test_training_cli (dropout on), recording clips, checkpointing every N steps (or epoch);
    shards: stream the same clips from webdataset shards (ShardDataModule) instead of the manifest."""
    train, val_manifest = tmp / "train.jsonl", tmp / "val.jsonl"
    if not train.exists():
        write_tiny_manifest(tmp, "train", CLIPS)
        write_tiny_manifest(tmp, "val", 4, seed=1)
    path = _config(tmp, tokenizer_dir, train, val_manifest if val else None, name=name, batch_size=BATCH, **data)
    cfg = yaml.safe_load(path.read_text())
    if shards:
        pattern = write_shards(train, tmp / "shards", shard_size=3, log=False, overwrite=True).pattern
        cfg["data"] = {"class_path": "compclap.data.shards.ShardDataModule", "init_args": {
            "train_shards": pattern, "batch_size": BATCH, "shuffle_buffer": 4, "num_workers": 0, **data}}
    ckpt_args = {"save_last": True, "save_top_k": -1}
    if every_n_steps is not None:
        ckpt_args["every_n_train_steps"] = every_n_steps
    cfg["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": ckpt_args},
        {"class_path": "test_exact_resume.RecordClips", "init_args": {"path": str(record)}},
        *(extra or [])]
    path.write_text(yaml.safe_dump(cfg))
    return path


def _steps(record: Path) -> dict[int, dict]:
    """step -> the last record of that step."""
    out: dict[int, dict] = {}
    for line in record.read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec
    return out


def _per_epoch(steps: dict[int, dict]) -> dict[int, Counter]:
    """epoch -> how often each clip was seen in it."""
    out: dict[int, Counter] = {}
    for rec in steps.values():
        out.setdefault(rec["epoch"], Counter()).update(rec["index"])
    return out


def _last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)


def _compare(straight: Path, resumed: Path, rec_straight: Path, rec_resumed: Path, total_steps: int,
             once_per_epoch: bool = True) -> None:
    """Same batches step by step, every clip once per epoch (not for resampled shards), identical weights."""
    a, b = _steps(rec_straight), _steps(rec_resumed)
    assert sorted(a) == list(range(total_steps))
    assert a == b
    for epoch, seen in _per_epoch(b).items():
        assert not once_per_epoch or seen == Counter(range(CLIPS)), (epoch, seen)
    wa, wb = _last(straight), _last(resumed)
    assert wa["global_step"] == wb["global_step"] == total_steps
    diff = max(float((wa["state_dict"][k].double() - wb["state_dict"][k].double()).abs().max())
               for k in wa["state_dict"])
    print(f"resume comparison: {total_steps} steps, max |weight diff| {diff}, "
          f"clips per epoch {[sum(c.values()) for c in _per_epoch(b).values()]}")
    for key in wa["state_dict"]:
        assert torch.equal(wa["state_dict"][key], wb["state_dict"][key]), key


def _limits(limit: str) -> list[str]:
    return ["--trainer.max_steps=12", "--trainer.max_epochs=-1"] if limit == "max_steps" else ["--trainer.max_epochs=3"]


# (limit, checkpoint every N steps or None for epoch ends, crash at step, step of the checkpoint resumed, validation)
CASES = [
    ("max_steps", 3, 7, 6, False),     # mid-epoch (epoch 1, after batch 2 of 4)
    ("max_epochs", 3, 7, 6, False),
    ("max_epochs", 4, 6, 4, False),    # written at the last batch of epoch 0
    ("max_epochs", None, 6, 4, False),  # end-of-epoch checkpoint (on_train_epoch_end)
    ("max_steps", None, 6, 4, False),
    ("max_epochs", None, 10, 8, True),  # end-of-epoch checkpoint after validation (on_validation_end)
]


def _no_resume_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Neither Lightning's "dataloader is not resumable" nor a data module's "not the one ... would have seen"."""
    bad = [str(w.message) for w in caught if any(text in str(w.message) for text in (
        "not resumable", "was to resume epoch", "resuming epoch", "resuming after", "is not applied"))]
    assert not bad, bad


def _resume(args: list[str]) -> None:
    """`compclap fit ARGS`, checking that the resume warned of no mismatch."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(args)
    _no_resume_warnings(caught)


def _crash_and_resume(tmp: Path, tokenizer_dir: Path, limit: str, every: int | None, crash_at: int,
                      resumed_at: int, **kw) -> None:
    """Run straight; run again crashing at `crash_at`; resume from last.ckpt (written at `resumed_at`); compare."""
    rec_a, rec_b = tmp / "straight.jsonl", tmp / "resumed.jsonl"
    cfg_a = _resume_config(tmp, tokenizer_dir, "a.yaml", rec_a, every, **kw)
    cfg_b = _resume_config(tmp, tokenizer_dir, "b.yaml", rec_b, every, **kw)
    crash = _resume_config(tmp, tokenizer_dir, "crash.yaml", rec_b, every, **kw,
                           extra=[{"class_path": "test_training_cli.CrashAtStep", "init_args": {"step": crash_at}}])
    straight, resumed = tmp / "straight", tmp / "resumed"
    main(["fit", "--config", str(cfg_a), *_limits(limit), "--run_dir", str(straight)])
    with pytest.raises(SimulatedCrash):
        main(["fit", "--config", str(crash), *_limits(limit), "--run_dir", str(resumed)])
    ckpt = _last(resumed)
    assert ckpt["global_step"] == resumed_at
    batches = CLIPS // BATCH
    position = ckpt["ShardDataModule" if kw.get("shards") else "ManifestDataModule"]
    position = position["train_stream" if kw.get("shards") else "train_sampler"]
    assert (position["epoch"], position["clips_seen"]) == (resumed_at // batches, resumed_at % batches * BATCH)
    _resume(["fit", "--config", str(cfg_b), *_limits(limit), "--run_dir", str(resumed), "--ckpt_path", "last"])
    _compare(straight, resumed, rec_a, rec_b, total_steps=12, once_per_epoch=not kw.get("shards"))


@pytest.mark.parametrize("limit,every,crash_at,resumed_at,val", CASES)
def test_resume_equals_an_uninterrupted_run(tmp_path, tokenizer_dir, limit, every, crash_at, resumed_at, val):
    """Crash at `crash_at`, resume from the checkpoint of `resumed_at`: same batches, same weights."""
    _crash_and_resume(tmp_path, tokenizer_dir, limit, every, crash_at, resumed_at, val=val)


@pytest.mark.parametrize("persistent", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_sigkilled_run_with_workers_resumes_exactly(tmp_path, tokenizer_dir, persistent):
    """A real SIGKILL at step 7 of a max_epochs run with 2 DataLoader workers; resume from the step-6 checkpoint."""
    data = {"num_workers": 2, "persistent_workers": persistent}
    rec_a, rec_b = tmp_path / "straight.jsonl", tmp_path / "resumed.jsonl"
    cfg_a = _resume_config(tmp_path, tokenizer_dir, "a.yaml", rec_a, 3, **data)
    cfg_b = _resume_config(tmp_path, tokenizer_dir, "b.yaml", rec_b, 3, **data)
    kill = _resume_config(tmp_path, tokenizer_dir, "kill.yaml", rec_b, 3, **data,
                          extra=[{"class_path": "test_exact_resume.KillAtStep", "init_args": {"step": 7}}])
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main(["fit", "--config", str(cfg_a), *_limits("max_epochs"), "--run_dir", str(straight)])
    tests = str(Path(__file__).resolve().parent)
    # The killed run computes in another process: with the parent's thread count, so that its float reductions
    # are those of the in-process straight run (bit-exactness across thread counts is not a property of torch).
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()),
           "PYTHONPATH": os.pathsep.join([tests, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "compclap.cli", "fit", "--config", str(kill), *_limits("max_epochs"),
                           "--run_dir", str(resumed)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert max(_steps(rec_b)) == 7 and _last(resumed)["global_step"] == 6
    _resume(["fit", "--config", str(cfg_b), *_limits("max_epochs"), "--run_dir", str(resumed), "--ckpt_path", "last"])
    _compare(straight, resumed, rec_a, rec_b, total_steps=12)


def test_sampler_resume_skips_the_seen_clips_of_that_epoch_only():
    data = list(range(10))
    full = ClipSampler(data, shuffle=True, seed=3, num_replicas=2, rank=1)
    full.set_epoch(2)
    expected = list(full)
    resumed = ClipSampler(data, shuffle=True, seed=3, num_replicas=2, rank=1)
    resumed.resume_at(2, 2)
    assert list(resumed) == expected[2:]
    assert list(resumed) == expected  # the skip applies to one pass only
    resumed.set_epoch(3)
    assert list(resumed) != expected


class _Scalar(L.LightningModule):
    """A one-parameter module: enough to drive the fit loop over real batches."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch["waveforms"].mean()).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_checkpoint_saved_after_fit_points_at_the_next_epoch(tmp_path):
    from compclap.data.datamodule import ManifestDataModule

    train = write_tiny_manifest(tmp_path, "train", CLIPS)
    dm = ManifestDataModule(train_manifest=str(train), batch_size=BATCH, num_workers=0, sample_rate=8000,
                            clip_seconds=0.5)
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(_Scalar(), datamodule=dm)
    trainer.save_checkpoint(tmp_path / "after.ckpt")
    position = torch.load(tmp_path / "after.ckpt", weights_only=True)["ManifestDataModule"]["train_sampler"]
    assert (position["epoch"], position["clips_seen"], position["dataset_size"]) == (2, 0, CLIPS)
