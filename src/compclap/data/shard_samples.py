"""Shard samples: one shard's samples in stored order, and a sample decoded into a clip item.

Shards are the tar files `compclap prepare shards` (``data_prep/make_shards.py``) writes: ``<key>.flac`` +
``<key>.json`` per clip. A decoded item has the fields `compclap.data.datasets.ManifestDataset` yields, so
`collate_clips` batches both alike.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import webdataset as wds

from compclap.audio.io import AudioDecodeError, load_clip

__all__ = ["AUDIO_KEYS", "decode_sample", "iter_shard"]

AUDIO_KEYS = ("flac", "wav", "mp3", "ogg", "opus")


def iter_shard(url: str) -> Iterator[dict[str, Any]]:
    """Samples of one shard in stored order: dicts with ``__key__``, ``__url__`` and one bytes entry per extension.

    Errors are raised. Stopping early closes the stream quietly (a `pipe:` command then dies of SIGPIPE).
    """
    from webdataset.tariterators import group_by_keys, tar_file_expander

    stream = wds.gopen(url, "rb")
    complete = False
    try:
        yield from group_by_keys(tar_file_expander([{"url": url, "stream": stream}]))
        complete = True
    finally:
        try:
            stream.close()
        except Exception:
            if complete:
                raise


def decode_sample(sample: dict[str, Any], sample_rate: int, num_samples: int, train: bool = False,
                  rng: np.random.Generator | None = None, negatives: bool = True) -> dict[str, Any]:
    """A shard sample -> a clip item as `ManifestDataset` yields it (an error item when the audio does not decode).

    Training: random crop and one random caption (with its negatives, and the clip's positives); evaluation:
    head crop and all captions, no negatives.
    """
    where = f"{sample.get('__url__', '?')}#{sample.get('__key__', '?')}"
    try:
        meta = json.loads(sample["json"])
        index = int(meta["index"])
    except Exception as exc:
        warnings.warn(f"skipping shard sample {where}: no JSON record with an index ({exc})", stacklevel=2)
        return {"index": -1, "path": where, "error": f"no JSON record with an index: {exc}"}
    audio = next((sample[k] for k in AUDIO_KEYS if k in sample), None)
    if audio is None:
        return {"index": index, "path": where, "error": f"no audio member ({'/'.join(AUDIO_KEYS)})"}
    try:
        wave = load_clip(audio, sample_rate, num_samples, rng if train else None, name=where)
    except AudioDecodeError as exc:
        warnings.warn(f"skipping clip: {exc}", stacklevel=2)
        return {"index": index, "path": where, "error": str(exc)}
    captions = list(meta.get("captions") or [])
    item: dict[str, Any] = {"index": index, "path": where, "waveform": wave}
    negs = meta.get("negatives") if negatives else None
    if negs is not None and (not isinstance(negs, list) or len(negs) != len(captions)):
        raise ValueError(f"shard sample {where}: \"negatives\" must be a list parallel to \"captions\"")
    if train and "negative_audio" in meta:
        # A shard carries its clip's own audio only; reading negatives from their source paths would defeat streaming.
        warnings.warn("shards do not support \"negative_audio\" (audio negatives); ignoring it: train on the "
                      "JSONL manifest (ManifestDataModule) to use them", stacklevel=2)
    if train and captions:
        pick = int(rng.integers(len(captions)))
        item["captions"] = [captions[pick]]
        if negs is not None:
            item["negatives"] = [negs[pick]]
        if "positives" in meta:
            item["positives"] = list(meta["positives"])
    else:
        item["captions"] = captions
    return item
