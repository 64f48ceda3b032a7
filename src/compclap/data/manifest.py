"""JSONL manifests: one clip per line, {"audio": path, "captions": [str, ...], ...}.

Optional "negative_audio", parallel to "captions": per caption a list of {"audio": path, "kind": str}, audio
the caption is false of (e.g. its events swapped); those paths resolve like "audio".

A malformed line stops the read with a ManifestError naming the file and line, before any training
starts. That includes text a tokenizer would reject later, mid-run: bytes that are not UTF-8 and lone
surrogates (a JSON "\ud800" escape) anywhere in the line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from compclap.text.text_input import find_lone_surrogate, may_hold_surrogate_escape, open_text, undecodable


class ManifestError(ValueError):
    """A manifest line is malformed; the message names the file and line."""


def read_manifest(path: str | os.PathLike, require_captions: bool = True) -> list[dict[str, Any]]:
    """Read a manifest; audio paths (negative_audio's too) become absolute, relative ones against its folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    root = path.parent
    records = []
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            bad = undecodable(line)
            if bad is not None:
                raise ManifestError(f"{path}:{lineno}: {bad}")
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            bad = find_lone_surrogate(rec) if may_hold_surrogate_escape(line) else None
            if bad is not None:
                raise ManifestError(f"{path}:{lineno}: {bad} (a tokenizer cannot encode it)")
            if not isinstance(rec, dict) or not isinstance(rec.get("audio"), str) or not rec["audio"]:
                raise ManifestError(f"{path}:{lineno}: every line needs an \"audio\" path string")
            caps = rec.get("captions")
            if require_captions and (not isinstance(caps, list) or not caps
                                     or not all(isinstance(c, str) and c.strip() for c in caps)):
                raise ManifestError(f"{path}:{lineno}: \"captions\" must be a non-empty list of non-empty strings")
            rec["audio"] = _resolve(rec["audio"], root)
            if "negative_audio" in rec:
                rec["negative_audio"] = _negative_audio(rec["negative_audio"], len(caps or []), root,
                                                        f"{path}:{lineno}")
            records.append(rec)
    if not records:
        raise ManifestError(f"{path}: manifest is empty")
    return records


def _resolve(audio: str, root: Path) -> str:
    path = Path(audio)
    return str(path if path.is_absolute() else root / path)


def _negative_audio(value: Any, num_captions: int, root: Path, where: str) -> list[list[dict[str, Any]]]:
    """Check a "negative_audio" field (one list of {"audio", ...} per caption) and resolve its paths."""
    if not isinstance(value, list) or len(value) != num_captions or not all(
            isinstance(negs, list) and all(isinstance(n, dict) and isinstance(n.get("audio"), str) and n["audio"]
                                           for n in negs) for negs in value):
        raise ManifestError(f"{where}: \"negative_audio\" must be a list parallel to \"captions\" "
                            f"({num_captions} entries) of lists of {{\"audio\": path, \"kind\": ...}}")
    return [[{**n, "audio": _resolve(n["audio"], root)} for n in negs] for negs in value]


def write_manifest(records: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write records as JSONL (paths are written as given)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
