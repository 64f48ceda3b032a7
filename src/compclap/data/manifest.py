"""JSONL manifests: one clip per line, {"audio": path, "captions": [str, ...], ...}."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ManifestError(ValueError):
    """A manifest line is malformed; the message names the file and line."""


def read_manifest(path: str | os.PathLike, require_captions: bool = True) -> list[dict[str, Any]]:
    """Read a manifest; audio paths become absolute (relative ones resolve against the manifest's folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    root = path.parent
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("audio"), str) or not rec["audio"]:
                raise ManifestError(f"{path}:{lineno}: every line needs an \"audio\" path string")
            caps = rec.get("captions")
            if require_captions and (not isinstance(caps, list) or not caps
                                     or not all(isinstance(c, str) and c.strip() for c in caps)):
                raise ManifestError(f"{path}:{lineno}: \"captions\" must be a non-empty list of non-empty strings")
            audio = Path(rec["audio"])
            rec["audio"] = str(audio if audio.is_absolute() else root / audio)
            records.append(rec)
    if not records:
        raise ManifestError(f"{path}: manifest is empty")
    return records


def write_manifest(records: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write records as JSONL (paths are written as given)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
