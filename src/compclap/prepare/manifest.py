"""Turn an audio folder plus an AudioCaps- or Clotho-style caption CSV into a JSONL manifest.

    compclap prepare manifest --csv val.csv --audio-dir audio/val --output val.jsonl
    python data_prep/build_manifest.py --csv val.csv --audio-dir audio/val --output val.jsonl   # the same

Each output line is {"audio": path, "captions": [...]}. Audio files are found recursively under --audio-dir
with every extension the installed libsndfile decodes (.wav, .flac, .ogg, .oga, .opus, .mp3, .aiff, ...).
A clip of the CSV without audio is an error: the missing ids are reported on stderr (count and first 10;
--missing-report writes them all), nothing is written and the exit status is 1. --allow-missing writes the
manifest without those clips instead (exit 0, unless no clip at all was found). Exit status 2: the inputs
cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

_SHOWN_MISSING = 10

__all__ = ["build_parser", "main"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Command-line options."""
    from compclap.data.manifest_builder import FORMATS

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, type=Path, help="caption CSV (AudioCaps or Clotho layout)")
    parser.add_argument("--audio-dir", required=True, type=Path, help="folder searched recursively for audio")
    parser.add_argument("--output", required=True, type=Path, help="manifest to write (.jsonl)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="CSV layout (default: from its columns)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="write the manifest without the clips whose audio is not found (default: fail)")
    parser.add_argument("--missing-report", type=Path, default=None, help="write every missing clip id here")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from compclap.data.manifest_builder import AUDIO_EXTENSIONS, MissingAudioError, build_manifest

    args = build_parser(prog).parse_args(argv)
    try:
        report = build_manifest(args.csv, args.audio_dir, args.output, fmt=args.format,
                                allow_missing=args.allow_missing)
    except MissingAudioError as err:
        report = err.report
        _write_missing(args.missing_report, report.missing)
        print(f"error: {err}", file=sys.stderr)
        print(f"error: {args.output} not written; {report.n_clips} clips have audio", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print(f"{args.output}: {report.n_clips} clips, {report.n_captions} captions ({report.format} CSV)",
          file=sys.stderr)
    if report.missing:
        shown = ", ".join(report.missing[:_SHOWN_MISSING])
        more = "" if len(report.missing) <= _SHOWN_MISSING else ", ..."
        print(f"warning: missing audio for {len(report.missing)} clips (left out, --allow-missing): {shown}{more}",
              file=sys.stderr)
        for key, path in list(report.undecodable.items())[:5]:
            print(f"  {key}: {path} has an extension soundfile does not decode", file=sys.stderr)
    if report.no_captions:
        print(f"{len(report.no_captions)} clips have no caption and were left out", file=sys.stderr)
    _write_missing(args.missing_report, report.missing)
    if report.n_clips == 0:
        print(f"error: no audio found for any clip of the CSV (searched extensions: {' '.join(AUDIO_EXTENSIONS)})",
              file=sys.stderr)
        return 1
    return 0


def _write_missing(path: Path | None, missing: list[str]) -> None:
    """Write the missing clip ids, one per line, when --missing-report was given."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(m + "\n" for m in missing), encoding="utf-8")
