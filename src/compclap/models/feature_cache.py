"""Feature caches of frozen towers: what cached features depend on (the weights) and how inputs are keyed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import nn


def weights_fingerprint(module: nn.Module, owner: object) -> tuple[float, ...]:
    """A float64 sum per floating-point tensor of `module`'s state (weights and buffers), memoised on `owner`.

    The sums are recomputed whenever a tensor's storage or in-place version counter moved (load_state_dict,
    init_from, an optimiser step), so weights loaded after construction never meet features of the old ones."""
    tensors = [t for t in module.state_dict().values() if t.is_floating_point()]
    versions = tuple((t.data_ptr(), t._version) for t in tensors)
    memo = getattr(owner, "_weights_memo", None)
    if memo is None or memo[0] != versions:
        with torch.no_grad():
            sums = tuple(round(float(t.sum(dtype=torch.float64)), 6) for t in tensors)
        memo = (versions, sums)
        object.__setattr__(owner, "_weights_memo", memo)  # not a module attribute: never in the state dict
    return memo[1]


def waveform_digests(waveforms: torch.Tensor) -> list[bytes]:
    """A 160-bit digest (SHA-1) of each row of a (B, T) waveform batch, from its float32 samples.

    Keyed by content rather than by file: the same crop of the same clip meets its features again whatever the
    data source (manifest, shards, negatives rendered elsewhere), and a different crop never does."""
    if waveforms.ndim != 2:
        raise ValueError(f"expected a (B, T) waveform batch, got shape {tuple(waveforms.shape)}")
    rows = waveforms.detach().to("cpu", torch.float32).contiguous().numpy()
    return [hashlib.sha1(row).digest() for row in rows]  # sha1 hashes ~3x faster than blake2b here


def read_through(cache: dict, keys: Sequence[Hashable], compute: Callable[[list], torch.Tensor], chunk_size: int,
                 limit: int, order: Callable[[Hashable], object] | None = None) -> torch.Tensor:
    """The cached rows of `keys`, (len(keys), D) float32 on the CPU, computing only the keys `cache` lacks.

    Missing keys (each once, in first-seen order or sorted by `order`) go to `compute` in chunks of `chunk_size`
    without gradients; the cache starts over when it would grow past `limit` entries."""
    missing = [k for k in dict.fromkeys(keys) if k not in cache]
    if order is not None:
        missing.sort(key=order)
    if missing:
        if len(cache) + len(missing) > limit:
            cache.clear()
        with torch.no_grad():
            for start in range(0, len(missing), chunk_size):
                chunk = missing[start:start + chunk_size]
                cache.update(zip(chunk, compute(chunk).float().cpu()))
    return torch.stack([cache[k] for k in keys])
