"""Write a manifest's clips as webdataset tar shards (FLAC audio + JSON captions) for ShardDataModule.

Example:
    compclap prepare shards --manifest data/my_corpus/train.jsonl --out data/my_corpus/shards/train \\
        --shard-size 1000 --sample-rate 48000 --max-seconds 30 --workers 8
    (the same: python data_prep/make_shards.py --manifest ... --out ...)

Writes OUT/shard-000000.tar, ... (each clip as mono FLAC plus a JSON record with its captions, hard negatives,
positives, expression and global index), OUT/sizes.json (clips per shard) and OUT/info.json (totals, the brace
pattern to pass as data.train_shards, clips left out), and prints the exact `--data.<split>_shards` argument
to train with (the folder OUT itself works too: ShardDataModule reads its info.json). A clip that fails to decode
is reported on stderr and left out. Exit status: 0 when at least one clip was written, 1 when none was, 2 when
the inputs are unusable.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     epilog="Train with the printed --data.<split>_shards pattern "
                                            "(or the --out folder).")
    parser.add_argument("--manifest", required=True, type=Path, help="JSONL manifest to shard")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--shard-size", type=int, default=1000, help="clips per shard (default 1000)")
    parser.add_argument("--max-shard-mb", type=float, default=None,
                        help="also start a new shard before one would exceed this many MB")
    parser.add_argument("--sample-rate", type=int, default=None,
                        help="resample to this rate at write time (default: keep each file's rate)")
    parser.add_argument("--max-seconds", type=float, default=None, help="keep only the first S seconds of a clip")
    parser.add_argument("--bits", type=int, choices=(16, 24), default=16, help="FLAC sample width (default 16)")
    parser.add_argument("--workers", type=int, default=1, help="decoding/encoding processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace shards already in --out")
    parser.add_argument("--split", choices=("train", "val", "test"), default=None,
                        help="split named in the printed argument (default: from the --out folder name, else train)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    from compclap.data.manifest import ManifestError
    from compclap.data.shard_writer import write_shards

    args = build_parser(prog).parse_args(argv)
    try:
        report = write_shards(args.manifest, args.out, shard_size=args.shard_size, sample_rate=args.sample_rate,
                              max_seconds=args.max_seconds, workers=args.workers, bits=args.bits,
                              max_shard_bytes=None if args.max_shard_mb is None else int(args.max_shard_mb * 2**20),
                              overwrite=args.overwrite)
    except (ValueError, OSError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if report.written == 0:
        print("error: no clip of the manifest could be decoded", file=sys.stderr)
        return 1
    split = args.split or next((s for s in ("train", "val", "test") if s in args.out.name.lower()), "train")
    print(f"--data.{split}_shards {shlex.quote(report.pattern)}   # {len(report.shards)} shard(s), "
          f"{report.written} clips; the folder {shlex.quote(str(args.out))} works too")
    return 0
