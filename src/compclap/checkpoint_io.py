"""Atomic checkpoint writes: a temp file in the destination folder, flushed and fsynced, then `os.replace`d.

Lightning's own `TorchCheckpointIO` writes through an fsspec transaction whose temp file lives in $TMPDIR:
on another filesystem the commit copies it over the old checkpoint (a kill mid-copy truncates last.ckpt),
on the same one each kill leaks a checkpoint-sized file there. `AtomicCheckpointIO` writes
`<folder>/.compclap-tmp-<name>.<host>.<pid>.<random>.part` next to the target, so a kill at any instant leaves
the old or the new file, never a partial one; leftovers of killed writers are removed at the next start.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

TEMP_PREFIX = ".compclap-tmp-"
TEMP_SUFFIX = ".part"
_HOST = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:40] or "host"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r".*\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[^.]+"
                        + re.escape(TEMP_SUFFIX) + "$")


def _umask() -> int:
    """The process umask (mkstemp creates 0600 files; checkpoints get the mode a plain open would give)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous file at that path (if any) is untouched."""


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:  # some filesystems (network, FUSE) refuse fsync on a directory
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class _RecordingFile:
    """A write-only file proxy that keeps the OSError a write raised (torch.save turns it into a RuntimeError)."""

    def __init__(self, f: Any) -> None:
        """f: the open binary file."""
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        """Write through, remembering an OSError (a full disk)."""
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        """Flush the underlying file."""
        self.f.flush()


def atomic_write(path: str | os.PathLike, write: Any) -> Path:
    """Call `write(fileobj)` on a temp file beside `path`, fsync it and the folder, then rename it onto `path`.

    On any failure (a full disk included) the temp file is removed and `path` keeps its previous content; an
    OSError (ENOSPC, EIO, ...) comes back as a `CheckpointWriteError` that names `path`. Returns `path`.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.{_HOST}.{os.getpid()}.", suffix=TEMP_SUFFIX,
                                   dir=folder)
    except OSError as err:
        raise CheckpointWriteError(err.errno, f"cannot create a temp file in {folder} to write checkpoint {path}: "
                                   f"{err.strerror}", str(path)) from err
    proxy = None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _FILE_MODE)
            proxy = _RecordingFile(f)
            write(proxy)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        cause = err if isinstance(err, OSError) else proxy.error if proxy is not None else None
        if cause is None:
            raise
        what = "no space left on the device" if cause.errno == errno.ENOSPC else cause.strerror or str(cause)
        kept = "the previous file is kept intact" if path.exists() else "no file was left there"
        raise CheckpointWriteError(cause.errno or errno.EIO, f"could not write checkpoint {path}: {what} ({kept}, "
                                   "temp file removed)", str(path)) from err
    _fsync_dir(folder)
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save(obj, path)`, atomically (see `atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files that killed writers left in `folder` (not those of live processes on this host)."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _TEMP_NAME.match(entry.name)
        if m is None or not entry.is_file():
            continue
        pid = int(m["pid"])
        if m["host"] == _HOST and pid != os.getpid() and _alive(pid):
            continue  # another process on this machine is writing it right now
        try:
            entry.unlink()
            removed.append(entry)
        except FileNotFoundError:
            pass
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local writes are atomic and stay in the destination folder (remote URLs: Lightning's)."""

    def __init__(self) -> None:
        """No options."""
        super().__init__()
        self._cleaned: set[Path] = set()
        self.last_saved: str | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write `checkpoint` to `path` atomically; the first write into a folder clears stale temp files there."""
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            self.last_saved = str(path)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        folder = Path(path).parent.resolve()
        if folder not in self._cleaned:
            remove_stale_temps(folder)
            self._cleaned.add(folder)
        atomic_torch_save(checkpoint, path)
        self.last_saved = str(path)


def use_atomic_checkpoints(trainer: Any) -> AtomicCheckpointIO | None:
    """Give `trainer`'s strategy an AtomicCheckpointIO unless a custom CheckpointIO is configured; clear stale temps
    in the checkpoint folders already known (on the main process). Returns the plugin installed, if any."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

    strategy = trainer.strategy
    current = getattr(strategy, "_checkpoint_io", None)
    plugin: AtomicCheckpointIO | None = None
    if current is None or type(current) is TorchCheckpointIO:
        plugin = AtomicCheckpointIO()
        strategy.checkpoint_io = plugin
    elif isinstance(current, _WrappingCheckpointIO) and (
            current.checkpoint_io is None or type(current.checkpoint_io) is TorchCheckpointIO):
        plugin = AtomicCheckpointIO()
        current._checkpoint_io = plugin  # the wrapper's setter ignores a base set once
        current._base_checkpoint_io_configured = True
    if getattr(rank_zero_only, "rank", 0) == 0:
        for cb in trainer.checkpoint_callbacks:
            dirpath = getattr(cb, "dirpath", None)
            if dirpath and "://" not in str(dirpath):
                remove_stale_temps(dirpath)
    return plugin
