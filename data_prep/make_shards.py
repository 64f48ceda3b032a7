"""Write a manifest's clips as webdataset tar shards (FLAC audio + JSON captions) for ShardDataModule.

Example:
    python data_prep/make_shards.py --manifest data/my_corpus/train.jsonl --out shards/train \
        --shard-size 1000 --sample-rate 48000 --max-seconds 30 --workers 8

Writes OUT/shard-000000.tar, ... (each clip as mono FLAC plus a JSON record with its captions, hard negatives,
positives, expression and global index), OUT/sizes.json (clips per shard) and OUT/info.json (totals, the brace
pattern to pass as data.train_shards, clips left out). A clip that fails to decode is reported on stderr and
left out. Exit status: 0 when at least one clip was written, 1 when none was, 2 when the inputs are unusable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compclap.data.manifest import ManifestError
from compclap.data.shard_writer import write_shards


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args(argv)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
