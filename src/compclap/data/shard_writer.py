"""Manifest -> webdataset tar shards: FLAC audio plus a JSON record per clip, and a sizes.json.

Each sample of a shard is two tar members with the same key (the clip's manifest position, zero-padded):

* ``<key>.flac``: the clip as mono FLAC (16-bit by default), optionally resampled and trimmed to its head;
* ``<key>.json``: ``{"index": <manifest position>, "source": <original audio path>, "sample_rate": ...,
  "num_samples": ..., "captions": [...], ...}`` carrying every other manifest field unchanged
  (``negatives``, ``positives``, ``expression``, ...).

``index`` is unique across the split (clips that fail to decode leave gaps), which is what validation uses to
drop the duplicates that even out the ranks. Shards are written in manifest order, so their content does not
depend on the number of worker processes; tar member times are fixed, so rewriting gives identical bytes.

Next to the shards: ``sizes.json`` (shard file name -> number of clips, the webdataset convention that
``ShardDataModule`` reads for epoch lengths and evaluation splits) and ``info.json`` (totals, settings,
the brace pattern of the shards and the clips that were left out with their errors).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compclap.audio.io import AudioDecodeError, load_audio
from compclap.data.manifest import read_manifest

SHARD_PATTERN = "shard-%06d.tar"
_SUBTYPES = {16: "PCM_16", 24: "PCM_24"}


@dataclass
class ShardReport:
    """What write_shards did."""

    out_dir: str
    shards: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    written: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pattern(self) -> str:
        """Brace pattern that expands to every shard written, e.g. ``DIR/shard-{000000..000009}.tar``."""
        if not self.shards:
            return ""
        if len(self.shards) == 1:
            return str(Path(self.out_dir) / self.shards[0])
        first, last = (SHARD_PATTERN % 0)[6:12], (SHARD_PATTERN % (len(self.shards) - 1))[6:12]
        return str(Path(self.out_dir) / f"shard-{{{first}..{last}}}.tar")


def encode_clip(index: int, record: dict[str, Any], sample_rate: int | None = None,
                max_seconds: float | None = None, bits: int = 16) -> tuple[bytes, dict[str, Any]]:
    """Decode one manifest record and return (FLAC bytes, JSON record); raises AudioDecodeError for a bad clip."""
    import soundfile as sf

    wave, sr = load_audio(record["audio"], sample_rate)
    if max_seconds is not None:
        wave = wave[:max(1, int(round(max_seconds * sr)))]
    buf = io.BytesIO()
    # libsndfile wraps out-of-range floats when converting to integers: clip first.
    sf.write(buf, np.clip(wave, -1.0, 1.0), sr, format="FLAC", subtype=_SUBTYPES[bits])
    meta = {"index": index, "source": record["audio"], "sample_rate": sr, "num_samples": len(wave)}
    meta.update({k: v for k, v in record.items() if k not in ("audio", "index")})
    return buf.getvalue(), meta


def _encode_task(task: tuple[int, dict[str, Any], int | None, float | None, int]) -> tuple[int, Any, Any]:
    """Pool worker: (index, flac, meta) or (index, None, error message)."""
    index, record, sample_rate, max_seconds, bits = task
    try:
        flac, meta = encode_clip(index, record, sample_rate, max_seconds, bits)
    except AudioDecodeError as exc:
        return index, None, str(exc)
    return index, flac, meta


def write_shards(manifest: str | os.PathLike, out_dir: str | os.PathLike, shard_size: int = 1000,
                 sample_rate: int | None = None, max_seconds: float | None = None, workers: int = 1,
                 bits: int = 16, max_shard_bytes: int | None = None, overwrite: bool = False,
                 log: Any = None) -> ShardReport:
    """Write a manifest's clips as webdataset shards; clips that fail to decode are reported and left out.

    Args:
        manifest: JSONL manifest ({"audio", "captions", ...} per line; relative paths resolve against it).
        out_dir: folder for shard-%06d.tar, sizes.json and info.json.
        shard_size: clips per shard (the last one may hold fewer).
        sample_rate: resample to this rate at write time (default: keep each file's rate).
        max_seconds: keep only the first `max_seconds` of each clip.
        workers: processes that decode and encode in parallel (output is the same for any number).
        bits: FLAC sample width, 16 or 24.
        max_shard_bytes: also start a new shard before a shard's audio and JSON would exceed this many bytes.
        overwrite: replace shards already in out_dir (otherwise existing shards are an error).
        log: stream for progress and bad-clip lines (default: stderr; pass False for silence).
    """
    import webdataset as wds

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if bits not in _SUBTYPES:
        raise ValueError(f"bits must be 16 or 24, got {bits}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = sorted(out.glob("shard-*.tar"))
    if stale and not overwrite:
        raise FileExistsError(f"{out} already holds {len(stale)} shard(s) ({stale[0].name}, ...); "
                              "pass overwrite=True (--overwrite) to replace them")
    for path in stale:
        path.unlink()
    stream = sys.stderr if log is None else log
    say = (lambda msg: print(msg, file=stream, flush=True)) if stream is not False else (lambda msg: None)

    records = read_manifest(manifest)
    tasks = [(i, rec, sample_rate, max_seconds, bits) for i, rec in enumerate(records)]
    report = ShardReport(out_dir=str(out))
    writer, count, nbytes = None, 0, 0

    def close_shard() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            name = report.shards[-1]
            os.replace(out / (name + ".tmp"), out / name)
            report.sizes[name] = count
            say(f"wrote {name}: {count} clips")
            writer = None

    for index, flac, meta in _results(tasks, workers):
        if flac is None:
            report.skipped.append({"index": index, "audio": records[index]["audio"], "error": meta})
            say(f"skipped clip {index}: {meta}")
            continue
        payload = json.dumps(meta, ensure_ascii=False).encode("utf-8")
        size = len(flac) + len(payload)
        if writer is not None and (count >= shard_size
                                   or (max_shard_bytes is not None and nbytes + size > max_shard_bytes)):
            close_shard()
        if writer is None:
            name = SHARD_PATTERN % len(report.shards)
            report.shards.append(name)
            writer = wds.TarWriter(str(out / (name + ".tmp")), encoder=False, mtime=0.0)
            count, nbytes = 0, 0
        writer.write({"__key__": f"{index:09d}", "flac": flac, "json": payload})
        count, nbytes = count + 1, nbytes + size
        report.written += 1
    close_shard()

    (out / "sizes.json").write_text(json.dumps(report.sizes, indent=1) + "\n")
    info = {"manifest": str(manifest), "clips": len(records), "written": report.written,
            "shards": len(report.shards), "pattern": report.pattern, "shard_size": shard_size,
            "sample_rate": sample_rate, "max_seconds": max_seconds, "bits": bits, "skipped": report.skipped}
    (out / "info.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    say(f"{report.written} of {len(records)} clips in {len(report.shards)} shard(s): {report.pattern}"
        + (f"; {len(report.skipped)} clip(s) left out (listed in {out / 'info.json'})" if report.skipped else ""))
    return report


def _results(tasks: list[tuple], workers: int) -> Iterator[tuple[int, Any, Any]]:
    """Encode tasks in manifest order, in `workers` forked processes (nothing threaded has run in this one yet)."""
    if workers <= 1:
        yield from map(_encode_task, tasks)
        return
    methods = multiprocessing.get_all_start_methods()
    with multiprocessing.get_context("fork" if "fork" in methods else None).Pool(workers) as pool:
        yield from pool.imap(_encode_task, tasks, chunksize=4)
