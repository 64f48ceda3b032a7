"""Turn an audio folder plus an AudioCaps- or Clotho-style caption CSV into a JSONL manifest.

Example:
    python data_prep/build_manifest.py --csv val.csv --audio-dir audio/val --output val.jsonl

Each output line is {"audio": path, "captions": [...]}. Clips whose audio is not found are left
out and reported on stderr (count and first 10 ids; --missing-report writes them all). The exit
status is non-zero only when no clip at all was found, or the inputs cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compclap.data.manifest_builder import FORMATS, build_manifest

_SHOWN_MISSING = 10


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True, type=Path, help="caption CSV (AudioCaps or Clotho layout)")
    parser.add_argument("--audio-dir", required=True, type=Path, help="folder searched recursively for audio")
    parser.add_argument("--output", required=True, type=Path, help="manifest to write (.jsonl)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="CSV layout (default: from its columns)")
    parser.add_argument("--missing-report", type=Path, default=None, help="write every missing clip id here")
    args = parser.parse_args(argv)

    try:
        report = build_manifest(args.csv, args.audio_dir, args.output, fmt=args.format)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print(
        f"{args.output}: {report.n_clips} clips, {report.n_captions} captions ({report.format} CSV)",
        file=sys.stderr,
    )
    if report.missing:
        shown = ", ".join(report.missing[:_SHOWN_MISSING])
        more = "" if len(report.missing) <= _SHOWN_MISSING else ", ..."
        print(f"missing audio for {len(report.missing)} clips: {shown}{more}", file=sys.stderr)
    if report.no_captions:
        print(f"{len(report.no_captions)} clips have no caption and were left out", file=sys.stderr)
    if args.missing_report is not None:
        args.missing_report.parent.mkdir(parents=True, exist_ok=True)
        args.missing_report.write_text("".join(m + "\n" for m in report.missing), encoding="utf-8")
    if report.n_clips == 0:
        print("error: no audio found for any clip of the CSV", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
