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

Text that cannot be written back is a bad line like any other: bytes that are not UTF-8 and lone
surrogates (a JSON ``"\ud800"``) are reported by line number (see :mod:`compclap.text.text_input`);
such a caption is skipped (caption mode) and such a manifest line dropped (manifest mode). Captions
longer than the rewriter's ``max_caption_tokens`` are written with no negatives and listed in
``Report.too_long``.
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
from compclap.text.text_input import (
    find_lone_surrogate,
    lone_surrogate,
    may_hold_surrogate_escape,
    open_text,
    undecodable,
)

CAPTION_SUFFIXES = (".txt", ".csv", ".jsonl")


@dataclass
class Report:
    """What a run did: counts and the problems found, by line number."""

    read: int = 0
    written: int = 0
    with_negatives: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    too_long: list[int] = field(default_factory=list)  # line of every caption over max_caption_tokens

    def problem(self, line: int, message: str) -> None:
        """Record a problem of input line `line`."""
        self.problems.append((line, message))


def _check_caption(value: Any, raw: bool = False) -> str | None:
    """The reason a caption is unusable, or None; raw: read as text (surrogates are undecodable bytes)."""
    if value is None:
        return "missing caption"
    if not isinstance(value, str):
        return f"caption is not a string ({type(value).__name__})"
    bad = undecodable(value) if raw else lone_surrogate(value)
    if bad is not None:
        return bad
    if not value.strip():
        return "empty caption"
    return None


class _Counted:
    """An iterator over a file's lines that counts them."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = iter(lines)
        self.count = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        return line


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
        with open_text(path) as f:
            for no, line in enumerate(f, 1):
                text = line.rstrip("\r\n")
                yield no, text, _check_caption(text, raw=True)
    elif suffix == ".csv":
        with open_text(path, newline="") as f:
            lines = _Counted(f)  # physical lines read so far (reader.line_num lags after a csv.Error)
            reader = csv.DictReader(lines)
            try:
                fieldnames = reader.fieldnames
            except csv.Error as e:
                raise ValueError(f"{path}:1: unreadable CSV header ({e})") from e
            if fieldnames is None or field_name not in fieldnames:
                raise ValueError(f"{path}: no {field_name!r} column (columns: {fieldnames})")
            start = lines.count + 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:  # e.g. a field over the csv module's size limit: skip the record
                    yield start, None, f"unreadable CSV record ({e})"
                    start = lines.count + 1
                    continue
                value = row.get(field_name)
                yield start, value, _check_caption(value, raw=True)
                start = lines.count + 1
    else:
        with open_text(path) as f:
            for no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                bad = undecodable(line)
                if bad is not None:
                    yield no, None, bad
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
    with open_text(path) as f:
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
        if rewriter.too_long(value):
            report.too_long.append(no)
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
    with open_text(input_path) as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.read += 1
            bad = undecodable(line)
            if bad is not None:
                report.problem(no, f"{bad}; line dropped")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                report.problem(no, f"invalid JSON ({e.msg}); line dropped")
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("captions"), list):
                report.problem(no, "no `captions` list; line dropped")
                continue
            bad = find_lone_surrogate(obj) if may_hold_surrogate_escape(line) else None
            if bad is not None:  # the line could not be written back as UTF-8
                report.problem(no, f"{bad}; line dropped")
                continue
            for i, cap in enumerate(obj["captions"]):
                problem = _check_caption(cap)
                if problem is not None:
                    report.problem(no, f"captions[{i}]: {problem}; it gets no negatives")
                    flat.append(None)
                else:
                    if rewriter.too_long(cap):
                        report.too_long.append(no)
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
