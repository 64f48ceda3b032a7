"""Reading CompA-order / CompA-attribute CSVs into rows of captions and audio files.

A malformed row stops the read with an error that names the file, the row and its line: a missing
field or audio file, a half triplet, bytes that are not UTF-8. Rows that repeat an earlier row
(same captions, files and triplet) are kept but reported in one warning with their row numbers,
since they weigh that comparison twice in every score.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

from compclap.text.text_input import open_text, undecodable

__all__ = ["REQUIRED_COLUMNS", "CompaRow", "read_compa_csv"]

REQUIRED_COLUMNS = ("pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file")
_NONE_MARKERS = ("", "-")


@dataclass
class CompaRow:
    """One CompA row: two captions and their two audio files, optionally a third (triplet) pair."""

    captions: list[str]
    files: list[Path]
    triplet_caption: str | None = None
    triplet_file: Path | None = None


def _mangle_duplicates(header: list[str]) -> list[str]:
    """Rename repeated column names like pandas does (pair_file, pair_file.1, ...)."""
    seen: dict[str, int] = {}
    out = []
    for name in header:
        if name in seen:
            seen[name] += 1
            out.append(f"{name}.{seen[name]}")
        else:
            seen[name] = 0
            out.append(name)
    return out


def _read_records(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and (line number, fields) of every record; bytes that are not UTF-8 name their line."""
    try:
        with open_text(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"CompA CSV {path} is empty (no header line)")
            bad = undecodable(",".join(header))
            if bad is not None:
                raise ValueError(f"CompA CSV {path} header (line 1): {bad}")
            # The attribute CSV repeats `pair_file` / `reversed_pair_file`; csv.DictReader would
            # keep only the last of each, so name the repeats the way pandas does.
            columns = _mangle_duplicates([h.strip() for h in header])
            records = []
            start = reader.line_num + 1
            for line in reader:
                bad = undecodable(",".join(line))
                if bad is not None:
                    raise ValueError(f"{path} row {len(records) + 1} (line {start}): {bad}")
                records.append((reader.line_num, line))
                start = reader.line_num + 1
    except (OSError, csv.Error) as err:
        raise ValueError(f"cannot read CompA CSV {path}: {err}") from err
    return columns, records


def read_compa_csv(path: str | Path, audio_root: str | Path | None = None) -> list[CompaRow]:
    """Parse a CompA-order or CompA-attribute CSV into rows whose audio files all exist."""
    path = Path(path)
    root = Path(audio_root) if audio_root is not None else path.parent
    columns, records = _read_records(path)

    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"CompA CSV {path} lacks required columns {missing}; found columns {columns}; "
            f"required {list(REQUIRED_COLUMNS)} (optional: triplet_caption, triplet_file, "
            "pair_file.1, reversed_pair_file.1)"
        )
    # Attribute CSVs: the `.1` columns hold the local file names, the first ones YouTube ids.
    pair_cols = ["pair_file.1", "pair_file"] if "pair_file.1" in columns else ["pair_file"]
    rev_cols = (
        ["reversed_pair_file.1", "reversed_pair_file"]
        if "reversed_pair_file.1" in columns
        else ["reversed_pair_file"]
    )

    rows: list[CompaRow] = []
    first_seen: dict[tuple, int] = {}
    repeats: list[tuple[int, int]] = []  # (row number, row number it repeats)
    for number, (line_num, values) in enumerate(records, start=1):
        if not any(v.strip() for v in values):
            continue  # blank line, typically at the end of the file
        if len(values) > len(columns):
            raise ValueError(
                f"{path} row {number} (line {line_num}) has {len(values)} fields but the header "
                f"has {len(columns)}"
            )
        record = {c: v.strip() for c, v in zip(columns, values)}
        where = f"{path} row {number} (line {line_num})"

        def field(names: list[str], what: str) -> str:
            for name in names:
                value = record.get(name, "")
                if value not in _NONE_MARKERS:
                    return value
            raise ValueError(f"{where}: empty {what} (columns {names})")

        captions = [
            field(["pair_caption"], "pair_caption"),
            field(["reversed_pair_caption"], "reversed_pair_caption"),
        ]
        files = [
            _resolve(field(pair_cols, "pair file"), root, where),
            _resolve(field(rev_cols, "reversed pair file"), root, where),
        ]
        trip_caption = record.get("triplet_caption", "")
        trip_file = record.get("triplet_file", "")
        has_caption = trip_caption not in _NONE_MARKERS
        has_file = trip_file not in _NONE_MARKERS
        if has_caption != has_file:
            raise ValueError(
                f"{where}: triplet_caption={trip_caption!r} but triplet_file={trip_file!r}; "
                "a triplet needs both (or '-' in both)"
            )
        row = CompaRow(
            captions=captions,
            files=files,
            triplet_caption=trip_caption if has_caption else None,
            triplet_file=_resolve(trip_file, root, where) if has_file else None,
        )
        key = (tuple(row.captions), tuple(row.files), row.triplet_caption, row.triplet_file)
        if key in first_seen:
            repeats.append((number, first_seen[key]))
        else:
            first_seen[key] = number
        rows.append(row)
    if repeats:
        listed = ", ".join(f"row {n} = row {m}" for n, m in repeats[:50])
        more = f", ... ({len(repeats) - 50} more)" if len(repeats) > 50 else ""
        warnings.warn(
            f"{path}: {len(repeats)} duplicate row(s) (same captions, files and triplet as an earlier row; "
            f"kept, so each counts twice in the scores): {listed}{more}",
            stacklevel=2,
        )
    return rows


def _resolve(name: str, root: Path, where: str) -> Path:
    """An audio file of a row, relative to the audio root; FileNotFoundError naming the row if missing."""
    file = Path(name)
    if not file.is_absolute():
        file = root / file
    if not file.is_file():
        raise FileNotFoundError(f"{where}: audio file not found: {file}")
    return file
