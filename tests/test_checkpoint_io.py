"""Atomic checkpoint writes: temp file beside the target, full disk, stale temp files, the plugin in `compclap fit`."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

import compclap.checkpoint_io as cio
from compclap.checkpoint_io import (TEMP_PREFIX, AtomicCheckpointIO, CheckpointWriteError, atomic_torch_save,
                                    remove_stale_temps)


def test_atomic_save_replaces_and_leaves_nothing_behind(tmp_path, monkeypatch):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    target = tmp_path / "ckpts" / "last.ckpt"
    atomic_torch_save({"w": torch.ones(3)}, target)
    atomic_torch_save({"w": torch.zeros(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.zeros(3))
    assert os.listdir(target.parent) == ["last.ckpt"] and not os.listdir(tmpdir)
    assert target.stat().st_mode & 0o777 == 0o666 & ~cio._umask()  # not mkstemp's 0600


def test_full_disk_keeps_the_old_checkpoint_and_names_the_path(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.ones(1000)}, target)
    old = target.read_bytes()

    def full_disk_save(obj, f, *args, **kwargs):
        f.write(b"x" * 4096)  # part of the file got out, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cio.torch, "save", full_disk_save)
    with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*last\.ckpt: no space left") as info:
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1000)}, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == old
    assert os.listdir(tmp_path) == ["last.ckpt"]  # temp removed


def test_torch_save_runtime_error_on_a_real_full_disk(tmp_path):
    """torch.save turns the ENOSPC of its writer into a RuntimeError; on a real 256 KiB tmpfs it still comes back
    as ENOSPC naming the path, with the old file intact."""
    if not shutil.which("unshare"):
        pytest.skip("unshare not installed")
    mount = tmp_path / "small"
    mount.mkdir()
    code = ("import errno, os, torch\n"
            "from compclap.checkpoint_io import atomic_torch_save, CheckpointWriteError\n"
            f"p = {str(mount / 'last.ckpt')!r}\n"
            "atomic_torch_save({'w': torch.ones(1000)}, p)\n"
            "old = open(p, 'rb').read()\n"
            "try:\n"
            "    atomic_torch_save({'w': torch.randn(200_000)}, p)\n"
            "except CheckpointWriteError as err:\n"
            "    assert err.errno == errno.ENOSPC and p in str(err), err\n"
            "    assert open(p, 'rb').read() == old and os.listdir(os.path.dirname(p)) == ['last.ckpt']\n"
            "    print('ENOSPC-OK', err)\n")
    script = f'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$1" -c "$2"'
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        run = subprocess.run([*prefix, "sh", "-c", script, str(mount), sys.executable, code], capture_output=True,
                             text=True)
        if "mount" not in run.stderr and "unshare" not in run.stderr:
            break
    else:
        pytest.skip(f"cannot mount a tmpfs: {run.stderr.strip()[-200:]}")
    assert "ENOSPC-OK" in run.stdout, run.stdout + run.stderr


def test_stale_temps_are_removed_but_live_ones_kept(tmp_path):
    dead = tmp_path / f"{TEMP_PREFIX}last.ckpt.{cio._HOST}.999999999.abc{cio.TEMP_SUFFIX}"
    other_host = tmp_path / f"{TEMP_PREFIX}last.ckpt.elsewhere.{os.getpid()}.abc{cio.TEMP_SUFFIX}"
    live = tmp_path / f"{TEMP_PREFIX}last.ckpt.{cio._HOST}.{os.getppid()}.abc{cio.TEMP_SUFFIX}"
    unrelated = tmp_path / "notes.part"
    for p in (dead, other_host, live, unrelated):
        p.write_bytes(b"x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted([dead, other_host])
    assert live.exists() and unrelated.exists()


def test_fit_uses_atomic_checkpoints_and_cleans_stale_temps(tmp_path, tokenizer_dir, monkeypatch):
    from compclap.cli import main
    from conftest import write_tiny_manifest
    from test_training_cli import _config

    saved: list[str] = []
    real = cio.atomic_torch_save
    monkeypatch.setattr(cio, "atomic_torch_save", lambda obj, path: saved.append(str(path)) or real(obj, path))
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    stale = ckpts / f"{TEMP_PREFIX}last.ckpt.{cio._HOST}.999999999.x{cio.TEMP_SUFFIX}"
    stale.write_bytes(b"partial")
    cfg = _config(tmp_path, tokenizer_dir, write_tiny_manifest(tmp_path, "train", 8), None)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=2", "--run_dir", str(tmp_path / "run")])
    assert not stale.exists()
    assert str(ckpts / "last.ckpt") in saved
    assert not [p for p in ckpts.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_remote_urls_fall_back_to_lightning(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cio.TorchCheckpointIO, "save_checkpoint", lambda self, c, p, s=None: calls.append(p))
    AtomicCheckpointIO().save_checkpoint({}, "memory://bucket/last.ckpt")
    assert calls == ["memory://bucket/last.ckpt"]
