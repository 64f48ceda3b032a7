"""Reading caption files and writing hard negatives (the `data_prep/hard_negatives.py` back end).

Caption files:
* ``.txt``: one caption per line (every line counts, so a blank line is reported as empty);
* ``.csv``: a ``caption`` column (another name with ``field=``);
* ``.jsonl``: one JSON object per line with a ``caption`` field (blank lines are ignored).

Output (caption mode): one JSON line per *valid* caption, in input order,
``{"caption": str, "negatives": [{"text": str, "kind": "order"|"attribute"}, ...]}``. Empty,
missing or non-string captions and unreadable lines are skipped and reported by line number.

Manifest mode: the input is a manifest (JSONL, one clip per line, ``{"audio": ..., "captions":
[...], ...}``) and every line is written back with a ``negatives`` field parallel to ``captions``
(``negatives[i]`` is the list of negatives of ``captions[i]``; an invalid caption gets ``[]``).
Lines that are not JSON objects with a ``captions`` list are reported and dropped.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compclap.text.negatives import HardNegativeRewriter

CAPTION_SUFFIXES = (".txt", ".csv", ".jsonl")


@dataclass
class Report:
    """What a run did: counts and the problems found, by line number."""

    read: int = 0
    written: int = 0
    with_negatives: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, message))


def _check_caption(value: Any) -> str | None:
    """The reason a caption is unusable, or None."""
    if value is None:
        return "missing caption"
    if not isinstance(value, str):
        return f"caption is not a string ({type(value).__name__})"
    if not value.strip():
        return "empty caption"
    return None


def read_captions(path: str | os.PathLike, field_name: str = "caption") -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line_number, caption, problem)`` for every record of a caption file.

    ``problem`` is None for a usable caption, else a short reason (the caption is then unusable).
    Line numbers are 1-based physical lines (for CSV: the line where the record starts).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CAPTION_SUFFIXES:
        raise ValueError(f"{path}: unsupported caption file type {suffix!r}; use one of {CAPTION_SUFFIXES}")
    if suffix == ".txt":
        with open(path, encoding="utf-8", errors="replace") as f:
            for no, line in enumerate(f, 1):
                text = line.rstrip("\r\n")
                yield no, text, _check_caption(text)
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or field_name not in reader.fieldnames:
                raise ValueError(f"{path}: no {field_name!r} column (columns: {reader.fieldnames})")
            start = reader.line_num + 1
            for row in reader:
                value = row.get(field_name)
                yield start, value, _check_caption(value)
                start = reader.line_num + 1
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            for no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield no, None, f"invalid JSON ({e.msg})"
                    continue
                if not isinstance(obj, dict):
                    yield no, None, "not a JSON object"
                    continue
                value = obj.get(field_name)
                yield no, value, _check_caption(value)


def looks_like_manifest(path: str | os.PathLike) -> bool:
    """Whether a .jsonl file's first object has a ``captions`` list and no ``caption`` field."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                return False
            return isinstance(obj, dict) and isinstance(obj.get("captions"), list) and "caption" not in obj
    return False


def _write_lines(path: str | os.PathLike, lines: list[str]) -> None:
    out = Path(path)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, out)


def rewrite_caption_file(rewriter: HardNegativeRewriter, input_path: str | os.PathLike,
                         output_path: str | os.PathLike, field_name: str = "caption", batch_size: int = 256,
                         n_process: int = 1) -> Report:
    """Caption mode: write ``{"caption", "negatives"}`` for every valid caption of `input_path`."""
    report = Report()
    captions: list[str] = []
    for no, value, problem in read_captions(input_path, field_name):
        report.read += 1
        if problem is not None:
            report.problem(no, problem)
            continue
        captions.append(value)
    results = rewriter.rewrite_many(captions, batch_size=batch_size, n_process=n_process)
    lines = []
    for caption, negs in zip(captions, results):
        lines.append(json.dumps({"caption": caption, "negatives": negs}, ensure_ascii=False))
        report.with_negatives += bool(negs)
    _write_lines(output_path, lines)
    report.written = len(lines)
    return report


def rewrite_manifest(rewriter: HardNegativeRewriter, input_path: str | os.PathLike,
                     output_path: str | os.PathLike, batch_size: int = 256, n_process: int = 1) -> Report:
    """Manifest mode: add ``negatives`` (parallel to ``captions``) to every manifest line."""
    report = Report()
    records: list[dict] = []
    flat: list[Any] = []
    with open(input_path, encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.read += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                report.problem(no, f"invalid JSON ({e.msg}); line dropped")
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("captions"), list):
                report.problem(no, "no `captions` list; line dropped")
                continue
            for i, cap in enumerate(obj["captions"]):
                problem = _check_caption(cap)
                if problem is not None:
                    report.problem(no, f"captions[{i}]: {problem}; it gets no negatives")
                    flat.append(None)
                else:
                    flat.append(cap)
            records.append(obj)
    results = rewriter.rewrite_many(flat, batch_size=batch_size, n_process=n_process)
    lines = []
    pos = 0
    for obj in records:
        k = len(obj["captions"])
        obj["negatives"] = results[pos:pos + k]
        pos += k
        report.with_negatives += any(obj["negatives"])
        lines.append(json.dumps(obj, ensure_ascii=False))
    _write_lines(output_path, lines)
    report.written = len(lines)
    return report
