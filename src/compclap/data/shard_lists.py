"""Shard lists: brace patterns and folders expanded to URLs, clips per shard (sizes.json), and how a split's
shards and positions are divided over ranks and workers.

Shard lists are brace patterns or lists of them (``shards/train/shard-{000000..000127}.tar``) and may be local
paths, ``file://`` URLs or ``pipe:`` commands that write a shard to stdout
(``pipe:aws s3 cp s3://bucket/train/shard-000001.tar -``, ``pipe:curl -sfL https://host/shard-000001.tar``).

Training shards are split by node (``shards[rank::world_size]``, all of them when there are fewer shards than
ranks). Validation and test read the shards in order as one sequence of N clips (sizes.json gives N): rank r
reads positions ``[r * P, (r + 1) * P)`` with ``P = ceil(N / world_size)``, wrapping around to the start, so the
last rank(s) are *padded with duplicates* of the first clips (like `DistributedSampler`) and every rank runs the
same number of batches; its P positions are split over its workers in whole batches.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence

import numpy as np
import webdataset as wds

from compclap.data.shard_specs import folder_shards

__all__ = ["eval_batches_per_rank", "eval_positions", "eval_segments", "expand_shards", "read_sizes", "shard_name",
           "sizes_url", "split_by_node"]

_SHARD_NAME = re.compile(r"[^/\s'\"]+\.tar(?:\.gz)?")


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
