"""Synthesise the offline demo world: procedural audio clips, captions, held-out compositions, CompA CSVs, a tokenizer.

    compclap prepare synth-demo --out demo_world --seed 0   (or: python data_prep/synth_demo.py ...)

Nothing is downloaded. See compclap.data.demo_world for what is generated and how.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same data (byte-identical manifests)")
    p.add_argument("--num-train", type=int, default=1200, help="training clips")
    p.add_argument("--num-val", type=int, default=150, help="validation clips")
    p.add_argument("--num-test", type=int, default=150, help="test clips")
    p.add_argument("--num-compa", type=int, default=60, help="rows in each of compa_order.csv and compa_attribute.csv")
    p.add_argument("--num-compa-train", type=int, default=None,
                   help="rows in each of compa_order_train.csv and compa_attribute_train.csv, built from training "
                        "pairs only (default: --num-compa)")
    p.add_argument("--num-events", type=int, default=300, help="single-event clips in events.jsonl")
    p.add_argument("--sample-rate", type=int, default=16000, help="output sample rate in Hz")
    p.add_argument("--workers", type=int, default=2, help="processes rendering audio (1 = in process)")
    p.add_argument("--tokenizer-vocab", type=int, default=1000, help="BPE vocabulary size; 0 skips the tokenizer")
    p.add_argument("--pad", action=argparse.BooleanOptionalAction, default=True,
                   help="pad train/val/test and CompA clips with silence to exactly 4 s (a loader that "
                        "repeat-pads short clips would otherwise turn 'A then B' into 'A B A B')")
    p.add_argument("--audio-negatives", action=argparse.BooleanOptionalAction, default=True,
                   help="render every sequence train clip reversed and 2-event train clips with one attribute traded "
                        "between the events, listed per caption as \"negative_audio\" in train.jsonl")
    p.add_argument("--speech", action="store_true",
                   help="add spoken-word events via espeak-ng when it is installed (skipped silently otherwise)")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict:
    """Parse arguments, build the demo world, print a one-line summary and return it."""
    from compclap.data.demo_world import DemoWorldConfig, build_demo_world

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    cfg = DemoWorldConfig(out=args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                          num_test=args.num_test, num_compa=args.num_compa,
                          num_compa_train=args.num_compa_train, num_events=args.num_events,
                          sample_rate=args.sample_rate, workers=args.workers,
                          tokenizer_vocab=args.tokenizer_vocab, pad_clips=args.pad,
                          include_speech=args.speech, audio_negatives=args.audio_negatives)
    start = time.perf_counter()
    summary = build_demo_world(cfg)
    elapsed = time.perf_counter() - start
    print(f"demo world -> {summary['out']}: {cfg.num_train}/{cfg.num_val}/{cfg.num_test} train/val/test clips, "
          f"{cfg.num_events} events, {cfg.num_compa}+{cfg.num_compa} CompA rows (+ training ones), {summary['types']} event types, "
          f"{summary['held_out_pairs']} held-out pairs, {summary['files']} files, "
          f"{summary['audio_seconds']:.0f} s of audio in {elapsed:.1f} s")
    summary["elapsed_s"] = elapsed
    return summary

