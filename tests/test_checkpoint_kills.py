"""`compclap fit` killed with SIGKILL at random moments and mid-write: last.ckpt always loads and the run resumes.

Two variants: $TMPDIR on the run folder's filesystem, and on a tmpfs (another filesystem, where Lightning's own
fsspec transaction copied its temp file over the old checkpoint); the tmpfs variant needs `unshare`/`nsenter`
and the right to mount (root or user namespaces) and is skipped otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from compclap.checkpoint_io import TEMP_PREFIX
from conftest import write_tiny_manifest
from test_training_cli import _config

KILLS = 6  # per variant: odd ones while a temp checkpoint is being written, even ones at a random moment


def _kill_config(tmp: Path, tokenizer_dir: Path) -> Path:
    """A tiny run that writes the two best (by train loss), the last and every step's checkpoint."""
    train = write_tiny_manifest(tmp, "train", 8)
    path = _config(tmp, tokenizer_dir, train, None, name="kill.yaml")
    cfg = yaml.safe_load(path.read_text())
    cfg["trainer"]["callbacks"] = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {
        "every_n_train_steps": 1, "save_last": True, "save_top_k": 2, "monitor": "train/loss", "mode": "min",
        "save_on_exception": True}}]
    path.write_text(yaml.safe_dump(cfg))
    return path


def _step(path: Path) -> int:
    """global_step of a checkpoint, loaded as untrusted data; every weight must be finite."""
    ckpt = torch.load(path, weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()), path
    return int(ckpt["global_step"])


def _temps(folder: Path) -> set[str]:
    return {e.name for e in os.scandir(folder) if e.name.startswith(TEMP_PREFIX)} if folder.is_dir() else set()


def _tmpdir_files(tmpdir: Path) -> list[str]:
    return [str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*") if p.is_file()]


class _Namespace:
    """A process holding a private mount namespace with a tmpfs at `mount_point` (seen via /proc/PID/root)."""

    def __init__(self, mount_point: Path) -> None:
        """Mount a 256 MiB tmpfs at mount_point in a new mount namespace, or raise OSError."""
        if not (shutil.which("unshare") and shutil.which("nsenter")):
            raise OSError("unshare/nsenter not installed")
        script = 'mount -t tmpfs -o size=256m tmpfs "$0" && echo ready && exec sleep 3600'
        self.proc = None
        for prefix in (["unshare", "-m", "--propagation", "private"], ["unshare", "-rm", "--propagation", "private"]):
            proc = subprocess.Popen([*prefix, "sh", "-c", script, str(mount_point)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            if proc.stdout.readline().strip() == "ready":
                self.proc = proc
                self.prefix = ["nsenter", "-t", str(proc.pid), "-m"] + (["-U", "--preserve-credentials"]
                                                                        if "-rm" in prefix else [])
                break
            proc.kill()
            proc.wait()
        if self.proc is None:
            raise OSError("cannot mount a tmpfs (not root, no user namespaces?)")
        self.view = Path(f"/proc/{self.proc.pid}/root") / mount_point.relative_to("/")

    def close(self) -> None:
        """End the namespace (the tmpfs goes with it)."""
        self.proc.kill()
        self.proc.wait()


def _wait_for_new_checkpoint(last: Path, old_mtime: int | None, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        if last.exists() and last.stat().st_mtime_ns != old_mtime:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run exited with {proc.returncode} before writing a checkpoint:\n"
                                 + log.read_text()[-3000:])
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no checkpoint within 180 s:\n" + log.read_text()[-3000:])


def _kill_loop(tmp: Path, cfg: Path, env: dict[str, str], prefix: list[str], tmpdir_view: Path,
               seed: int) -> dict[str, int]:
    """Start, kill, check, resume KILLS times, then finish the run; returns counts."""
    rng = random.Random(seed)
    run_dir = tmp / "run"
    ckpts, last = run_dir / "checkpoints", run_dir / "checkpoints" / "last.ckpt"
    stats = {"kills": 0, "survived": 0, "mid_write": 0, "stale_removed": 0}
    previous_step, leftovers = -1, set()
    for i in range(KILLS + 1):
        final = i == KILLS
        max_steps = previous_step + 3 if final else 100_000
        args = [*prefix, sys.executable, "-m", "compclap.cli", "fit", "--config", str(cfg), "--run_dir", str(run_dir),
                f"--trainer.max_steps={max_steps}", "--trainer.max_epochs=-1"]
        if last.exists():
            args += ["--ckpt_path", str(last)]
        log = tmp / f"run{i}.log"
        old_mtime = last.stat().st_mtime_ns if last.exists() else None
        with log.open("w") as out:
            proc = subprocess.Popen(args, env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
        if final:
            assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
            assert _step(last) == max_steps  # resumed from the last kill's checkpoint and trained on to the end
            assert not _temps(ckpts) and not _tmpdir_files(tmpdir_view)
            break
        _wait_for_new_checkpoint(last, old_mtime, proc, log)
        gone = leftovers - _temps(ckpts)
        stats["stale_removed"] += len(gone)
        assert not leftovers - gone, f"stale temp files kept: {leftovers - gone}"
        if i % 2:  # mid-write: kill as soon as a temp checkpoint appears
            deadline = time.time() + 20
            while not _temps(ckpts) and time.time() < deadline:
                time.sleep(0.0002)
        else:
            time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stats["kills"] += 1
        leftovers = _temps(ckpts)
        stats["mid_write"] += bool(leftovers)
        step = _step(last)  # never truncated: loads with weights_only
        for other in ckpts.glob("*.ckpt"):
            _step(other)
        assert step >= previous_step
        leaked = _tmpdir_files(tmpdir_view)
        assert not leaked, f"files left in TMPDIR: {leaked}"
        previous_step = step
        stats["survived"] += 1
    print(f"kill test: {stats}")
    return stats


def _env(tmpdir: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TMPDIR": str(tmpdir)}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_same_filesystem_tmpdir(tmp_path, tokenizer_dir):
    cfg = _kill_config(tmp_path, tokenizer_dir)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    stats = _kill_loop(tmp_path, cfg, _env(tmpdir), [], tmpdir, seed=0)
    assert stats["survived"] == stats["kills"] == KILLS
    assert stats["mid_write"] >= 1  # at least one kill really hit a write


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_tmpdir_on_another_filesystem(tmp_path, tokenizer_dir):
    cfg = _kill_config(tmp_path, tokenizer_dir)
    tmpdir = tmp_path / "tmpfs"
    tmpdir.mkdir()
    try:
        ns = _Namespace(tmpdir)
    except OSError as err:
        pytest.skip(f"no tmpfs for TMPDIR: {err}")
    try:
        stats = _kill_loop(tmp_path, cfg, _env(tmpdir), ns.prefix, ns.view, seed=1)
    finally:
        ns.close()
    assert stats["survived"] == stats["kills"] == KILLS
    assert stats["mid_write"] >= 1
