"""Hard negatives for a manifest's captions, rewritten on the fly and cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_path(manifest: str | os.PathLike, rewriter_config: dict[str, Any], cache_dir: str | None = None) -> Path:
    """Cache file for a manifest and rewriter settings (a settings change gets a new file)."""
    key = hashlib.sha1(json.dumps(rewriter_config, sort_keys=True).encode()).hexdigest()[:10]
    folder = Path(cache_dir) if cache_dir else Path(manifest).parent
    return folder / f"{Path(manifest).stem}.negatives-{key}.jsonl"


def attach_negatives(records: list[dict[str, Any]], manifest: str | os.PathLike, rewriter_kwargs: dict[str, Any],
                     cache_dir: str | None = None, n_process: int = 1) -> Path:
    """Set rec["negatives"] (parallel to rec["captions"]) for every record, rewriting only uncached captions."""
    from compclap.text.negatives import HardNegativeRewriter

    rewriter = HardNegativeRewriter(**rewriter_kwargs)
    path = cache_path(manifest, rewriter.config(), cache_dir)
    cache: dict[str, list[dict[str, str]]] = {}
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            for line in f:
                entry = json.loads(line)
                cache[entry["caption"]] = entry["negatives"]
    missing = sorted({c for rec in records for c in rec["captions"]} - cache.keys())
    if missing:
        fresh = rewriter.rewrite_many(missing, n_process=n_process)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:  # append: an interrupted run keeps what it wrote
            for caption, negs in zip(missing, fresh):
                cache[caption] = negs
                f.write(json.dumps({"caption": caption, "negatives": negs}, ensure_ascii=False) + "\n")
    for rec in records:
        rec["negatives"] = [cache[c] for c in rec["captions"]]
    return path
