"""The composer's process-pool workers: decode (cached per process), probe, render a planned mix to FLAC.

Module level and free of Lightning/torch imports so a forked or spawned worker can run them cheaply.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compclap.audio.io import AudioDecodeError, load_audio
from compclap.data.expressions import render

_CACHE: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
_CACHE_BUDGET = 16_000_000  # samples per worker (64 MB of float32)


def _load_cached(path: str, sample_rate: int) -> np.ndarray:
    key = (path, sample_rate)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    wave, _ = load_audio(path, sample_rate)
    _CACHE[key] = wave
    total = sum(len(w) for w in _CACHE.values())
    while total > _CACHE_BUDGET and len(_CACHE) > 1:
        total -= len(_CACHE.popitem(last=False)[1])
    return wave


def _probe(job: tuple[str, int]) -> tuple[int, str | None]:
    """(length in samples at the target rate, None) or (0, error message)."""
    path, sample_rate = job
    try:
        return len(_load_cached(path, sample_rate)), None
    except AudioDecodeError as exc:
        return 0, str(exc)


def _write_flac(path: str, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    buf = io.BytesIO()  # encode in memory: libsndfile's FLAC finaliser is slow on a real file
    sf.write(buf, audio, sample_rate, format="FLAC", subtype="PCM_16")
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def _render_job(job: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """Render one planned mix to FLAC: (samples written, None, None) or (0, failing source path, error).

    With job["swapped"] = {"path", "tree"}, the same clips are also rendered as that tree (its order-swapped
    twin, same levels and crossfades) to that path.
    """
    clips = {}
    for idx, path in job["sources"].items():
        try:
            clips[idx] = _load_cached(path, job["sample_rate"])
        except AudioDecodeError as exc:
            return 0, path, str(exc)
    outputs = [(job["path"], job["tree"])]
    if job.get("swapped"):
        outputs.append((job["swapped"]["path"], job["swapped"]["tree"]))
    lengths = []
    for path, tree in outputs:
        audio = render(tree, clips, job["sample_rate"], job["crossfade_fraction"], job["peak"])
        if job["pad_to"] is not None and len(audio) < job["pad_to"]:
            audio = np.pad(audio, (0, job["pad_to"] - len(audio)))
        _write_flac(path, audio, job["sample_rate"])
        lengths.append(len(audio))
    return lengths[0], None, None


def _parallel_map(fn: Callable, items: Sequence, workers: int) -> list:
    """fn over items in order; a process pool when workers > 1 (fork where available: no re-import of the package)."""
    if workers <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    import multiprocessing as mp

    # The workers only run numpy/soundfile/soxr code, never torch, so forking a parent that imported
    # torch is safe; spawn would re-import compclap.data (Lightning) in every worker, seconds each.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    chunk = max(1, len(items) // (workers * 8))
    with mp.get_context(method).Pool(processes=workers) as pool:
        return list(pool.imap(fn, items, chunksize=chunk))
