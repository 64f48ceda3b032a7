"""Build a JSONL caption manifest from an audio folder and an AudioCaps- or Clotho-style CSV.

Output: one clip per line, ``{"audio": path, "captions": [str, ...]}``. ``path`` is relative to
the manifest's folder when the audio file lies inside that folder, otherwise absolute (a path
climbing out with ``..`` would break as soon as the manifest is moved or copied alone).

CSV styles (auto-detected from the header):

* AudioCaps: columns ``youtube_id`` and ``caption`` (others such as ``audiocap_id`` and
  ``start_time`` are ignored); one row per caption, rows of one clip grouped by ``youtube_id``.
  The audio file is the one whose stem is ``<youtube_id>`` or ``Y<youtube_id>``.
* Clotho: columns ``file_name`` and ``caption_1`` .. ``caption_N``; one row per clip. The audio
  file is matched by its relative path under the audio folder, else by its file name, else by
  its stem.

Audio files are searched recursively with the extensions of `AUDIO_EXTENSIONS`: every container the
installed libsndfile decodes (``soundfile.available_formats()``: .wav, .flac, .ogg / .oga / .opus, .mp3,
.aiff, ...); when one stem exists with several extensions, the earlier extension in that tuple wins.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

__all__ = [
    "AUDIO_EXTENSIONS",
    "ManifestReport",
    "MissingAudioError",
    "audio_extensions",
    "build_manifest",
    "detect_format",
    "index_audio_dir",
    "read_caption_csv",
]

# libsndfile format name -> the file extensions it is found under, most common formats first (that order is the
# preference when one stem has several files). RAW (header-less), MAT4/5 and HTK (usually not audio) are left out.
_FORMAT_EXTENSIONS = {
    "WAV": (".wav", ".wave"), "FLAC": (".flac",), "OGG": (".ogg", ".oga", ".opus"), "MP3": (".mp3",),
    "WAVEX": (".wav",), "RF64": (".rf64",), "W64": (".w64",), "AIFF": (".aiff", ".aif", ".aifc"),
    "CAF": (".caf",), "AU": (".au", ".snd"), "VOC": (".voc",), "IRCAM": (".sf", ".ircam"), "NIST": (".sph", ".nist"),
    "PAF": (".paf",), "SVX": (".iff", ".svx", ".8svx"), "AVR": (".avr",), "SD2": (".sd2",), "PVF": (".pvf",),
    "XI": (".xi",), "SDS": (".sds",), "MPC2K": (".mpc",), "WVE": (".wve",),
}


def audio_extensions() -> tuple[str, ...]:
    """File extensions (lower case, with the dot) of every audio format the installed libsndfile decodes."""
    formats = sf.available_formats()
    out: list[str] = []
    for name, extensions in _FORMAT_EXTENSIONS.items():
        if name not in formats:
            continue
        for ext in extensions:
            if ext == ".opus" and "OPUS" not in sf.available_subtypes("OGG"):
                continue
            if ext not in out:
                out.append(ext)
    return tuple(out)


AUDIO_EXTENSIONS = audio_extensions()
FORMATS = ("audiocaps", "clotho")
_CLOTHO_CAPTION = re.compile(r"^caption_(\d+)$")


@dataclass
class ManifestReport:
    """What `build_manifest` wrote and what it could not find."""

    format: str
    n_clips: int
    n_captions: int
    missing: list[str] = field(default_factory=list)
    no_captions: list[str] = field(default_factory=list)
    # missing clip -> a file of its stem that soundfile cannot read (a hint for the user)
    undecodable: dict[str, str] = field(default_factory=dict)


class MissingAudioError(ValueError):
    """Some clips of the CSV have no audio file; raised by `build_manifest(..., allow_missing=False)`."""

    def __init__(self, report: ManifestReport, audio_dir: Path) -> None:
        """Keep the report (nothing was written) and name the first missing clips."""
        self.report = report
        shown = ", ".join(report.missing[:10]) + (", ..." if len(report.missing) > 10 else "")
        hints = [f"{key}: {path} has an extension soundfile does not decode"
                 for key, path in list(report.undecodable.items())[:5]]
        super().__init__(
            f"no audio file under {audio_dir} for {len(report.missing)} of "
            f"{len(report.missing) + report.n_clips + len(report.no_captions)} clips: {shown}"
            + ("".join(f"\n  {h}" for h in hints))
            + f"\n(searched extensions: {' '.join(AUDIO_EXTENSIONS)}; allow_missing / --allow-missing writes the "
              "manifest without them)")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = columns
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read caption CSV {path}: {err}") from err
    if not columns:
        raise ValueError(f"caption CSV {path} is empty (no header line)")
    return columns, rows


def detect_format(columns: list[str]) -> str:
    """'audiocaps' or 'clotho' from a CSV header; ValueError naming the columns otherwise."""
    names = set(columns)
    if {"youtube_id", "caption"} <= names:
        return "audiocaps"
    if "file_name" in names and any(_CLOTHO_CAPTION.match(c) for c in columns):
        return "clotho"
    raise ValueError(
        f"cannot tell the CSV style from its columns {columns}: AudioCaps needs "
        "['youtube_id', 'caption'], Clotho needs ['file_name', 'caption_1', ...]"
    )


def read_caption_csv(path: str | Path, fmt: str | None = None) -> tuple[str, dict[str, list[str]]]:
    """Read captions grouped per clip key (youtube_id or file_name), in first-seen order."""
    path = Path(path)
    columns, rows = _read_csv(path)
    if fmt is None:
        fmt = detect_format(columns)
    elif fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    if fmt == "audiocaps":
        key_col, caption_cols = "youtube_id", ["caption"]
    else:
        key_col = "file_name"
        numbered = sorted(
            (int(m.group(1)), c) for c in columns if (m := _CLOTHO_CAPTION.match(c))
        )
        caption_cols = [c for _, c in numbered]
    required = [key_col, *caption_cols] if caption_cols else [key_col, "caption_1"]
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(
            f"{fmt} CSV {path} lacks columns {missing}; found columns {columns}; "
            f"required {required}"
        )

    clips: dict[str, list[str]] = {}
    for row in rows:
        key = (row.get(key_col) or "").strip()
        if not key:
            continue
        captions = clips.setdefault(key, [])
        for col in caption_cols:
            text = (row.get(col) or "").strip()
            if text:
                captions.append(text)
    return fmt, clips


def index_audio_dir(audio_dir: str | Path) -> dict[str, Path]:
    """Map every audio file under audio_dir by relative path, file name and stem."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise NotADirectoryError(f"audio folder not found: {audio_dir}")
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTENSIONS)}
    files = sorted(
        (p for p in audio_dir.rglob("*") if p.suffix.lower() in rank and p.is_file()),
        key=lambda p: (rank[p.suffix.lower()], len(p.parts), str(p)),
    )
    index: dict[str, Path] = {}
    # Most specific keys first; setdefault keeps the preferred extension / shallowest file.
    for p in files:
        index.setdefault("rel:" + p.relative_to(audio_dir).as_posix(), p)
    for p in files:
        index.setdefault("name:" + p.name, p)
    for p in files:
        index.setdefault("stem:" + p.stem, p)
    return index


def _other_files(audio_dir: Path) -> dict[str, Path]:
    """Files under audio_dir without an audio extension, by stem: hints for clips that look missing."""
    rank = set(AUDIO_EXTENSIONS)
    out: dict[str, Path] = {}
    for p in sorted(audio_dir.rglob("*")):
        if p.suffix and p.suffix.lower() not in rank and p.is_file():
            out.setdefault(p.stem, p)
    return out


def _find(fmt: str, key: str, index: dict[str, Path]) -> Path | None:
    if fmt == "audiocaps":
        candidates = ["stem:" + key, "stem:Y" + key]
    else:
        candidates = ["rel:" + key.replace("\\", "/"), "name:" + Path(key).name, "stem:" + Path(key).stem]
    for candidate in candidates:
        if candidate in index:
            return index[candidate]
    return None


def _manifest_path(audio: Path, manifest_dir: Path) -> str:
    audio_abs = Path(os.path.abspath(audio))
    try:
        return audio_abs.relative_to(manifest_dir).as_posix()
    except ValueError:
        return str(audio_abs)


def build_manifest(
    csv_path: str | Path,
    audio_dir: str | Path,
    output: str | Path,
    fmt: str | None = None,
    allow_missing: bool = True,
) -> ManifestReport:
    """Write a JSONL manifest of the clips of csv_path found under audio_dir; report the missing ones.

    With allow_missing=False a clip without audio raises MissingAudioError (naming them) and nothing is written.
    """
    fmt, clips = read_caption_csv(csv_path, fmt)
    index = index_audio_dir(audio_dir)
    output = Path(output)
    manifest_dir = Path(os.path.abspath(output.parent))

    lines: list[str] = []
    missing: list[str] = []
    no_captions: list[str] = []
    n_captions = 0
    for key, captions in clips.items():
        audio = _find(fmt, key, index)
        if audio is None:
            missing.append(key)
            continue
        if not captions:
            no_captions.append(key)
            continue
        n_captions += len(captions)
        record = {"audio": _manifest_path(audio, manifest_dir), "captions": captions}
        lines.append(json.dumps(record, ensure_ascii=False))

    report = ManifestReport(
        format=fmt, n_clips=len(lines), n_captions=n_captions, missing=missing, no_captions=no_captions
    )
    if missing:
        others = _other_files(Path(audio_dir))
        for key in missing:
            stem = Path(key).stem if fmt == "clotho" else key
            hit = others.get(stem) or others.get("Y" + stem)
            if hit is not None:
                report.undecodable[key] = str(hit)
    if missing and not allow_missing:
        raise MissingAudioError(report, Path(audio_dir))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)
    return report
