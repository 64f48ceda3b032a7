"""Compose multi-event clips from single-event clips: expression trees, multi-granular positives, hard negatives.

    compclap prepare compose --events demo_world/events.jsonl --out data/composed --num 1200 --seed 0 \\
        --max-seconds 4 --pad
    compclap prepare compose --events events.jsonl --out data/composed --num 5000 --curriculum 2,3,4

`+` concatenates events with a crossfade (10 % of the shorter one), `*` overlays them at a sampled RMS
level ratio; the result is peak-normalised and written as 16-bit FLAC with a JSONL manifest
(`captions`, `negatives`, `positives`, `expression`, `events`, and `negative_audio`: the mix rendered with a
`+` reversed, unless --no-swapped-audio). See compclap.data.composer. `python data_prep/compose.py ...` is the
same tool.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _optional_float(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "keep") else float(text)


def _optional_int(text: str) -> int | None:
    return None if text.strip().lower() in ("none", "all") else int(text)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--events", required=True,
                   help="manifest of single-event clips (JSONL with \"audio\", \"label\", optional \"captions\")")
    p.add_argument("--out", required=True, help="output folder (created; files of the same name are overwritten)")
    p.add_argument("--num", type=int, default=1000, help="mixes per manifest (per stage with --curriculum)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same output (byte-identical, any --workers)")
    p.add_argument("--name", default="train", help="manifest name: NAME.jsonl or NAME_stageK.jsonl; salts the seed")
    p.add_argument("--events-per-mix", default="{2: 0.3, 3: 0.6, 4: 0.1}",
                   help="distribution of the number of events per mix (YAML/JSON mapping n: probability)")
    p.add_argument("--curriculum", default=None,
                   help="comma-separated events per mix of each stage, e.g. 2,3,4: writes NAME_stage1.jsonl ... "
                        "(overrides --events-per-mix); switch by epoch with compclap.data.curriculum")
    p.add_argument("--categories", default=None,
                   help="YAML/JSON label -> category map (or category -> [labels]); two events of one category "
                        "are never overlaid, and the category is recorded per event")
    p.add_argument("--exclude-pairs", default=None,
                   help="YAML/JSON list of [label, label] pairs never put in one mix, or a file with a "
                        "'held_out_pairs' key (e.g. demo_world/meta.json, to keep held-out pairs out of training)")
    p.add_argument("--phrase-source", choices=("caption", "label"), default="caption",
                   help="an event's caption phrase: its first caption (label when it has none), or its label")
    p.add_argument("--p-sequence", type=float, default=0.5, help="probability that a node of a random tree is '+'")
    p.add_argument("--max-negatives", type=_optional_int, default=5, help="negatives per kind (order, relation)")
    p.add_argument("--max-positives", type=_optional_int, default=None,
                   help="positive captions per mix (whole tree first; default: all sub-expressions)")
    p.add_argument("--sample-rate", type=int, default=16000, help="output sample rate in Hz")
    p.add_argument("--crossfade", type=float, default=0.1, help="sequence crossfade, as a fraction of the shorter clip")
    p.add_argument("--overlay-db", default="6",
                   help="level of each overlaid operand relative to the first (RMS, dB) drawn from [-X, X] ('X') "
                        "or [LO, HI] ('--overlay-db=LO,HI'); 'keep' keeps the clips' own levels")
    p.add_argument("--peak", type=_optional_float, default=0.9,
                   help="peak-normalise every mix to this; 'none' keeps absolute levels (only prevents clipping)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="longest mix: events are re-drawn until the mix fits (never cropped); unfit mixes dropped")
    p.add_argument("--pad", action="store_true", help="pad every mix with silence to --max-seconds")
    p.add_argument("--no-swapped-audio", dest="swapped_audio", action="store_false",
                   help="do not render each mix with one '+' reversed (audio/NAME_swapped/, listed per caption as "
                        "\"negative_audio\", an audio-side hard negative)")
    p.add_argument("--workers", type=int, default=2, help="processes decoding and rendering audio (1 = in process)")
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict:
    """Parse arguments, compose, print a one-line summary and return it."""
    from compclap.data.composer import ComposeConfig, compose, parse_events_per_mix, parse_overlay_db

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        curriculum = [int(x) for x in args.curriculum.split(",") if x.strip()] if args.curriculum else None
        cfg = ComposeConfig(events=args.events, out=args.out, num=args.num, seed=args.seed, name=args.name,
                            events_per_mix=parse_events_per_mix(args.events_per_mix), curriculum=curriculum,
                            categories=args.categories, exclude_pairs=args.exclude_pairs,
                            phrase_source=args.phrase_source, p_sequence=args.p_sequence,
                            max_negatives=args.max_negatives, max_positives=args.max_positives,
                            sample_rate=args.sample_rate, crossfade_fraction=args.crossfade,
                            overlay_db=parse_overlay_db(args.overlay_db), peak=args.peak,
                            max_seconds=args.max_seconds, pad=args.pad, swapped_audio=args.swapped_audio,
                            workers=args.workers)
    except ValueError as exc:
        parser.error(str(exc))
    summary = compose(cfg)
    per = ", ".join(f"{stem}: {n} ({', '.join(f'{k} ev: {c}' for k, c in summary['events_per_mix'][stem].items())})"
                    for stem, n in summary["per_manifest"].items())
    print(f"composed {summary['clips']} clips -> {summary['out']} [{per}]; event clips: {summary['events_usable']} of "
          f"{summary['events_total']} used ({len(summary['skipped_events'])} failed to decode, "
          f"{summary['too_long_events']} too long); {summary['unfit']} mixes did not fit, "
          f"{summary['render_failed']} failed to render; {summary['swapped_audio']} order-swapped twins; "
          f"{summary['audio_seconds']:.0f} s of audio in "
          f"{summary['elapsed_s']:.1f} s")
    sys.stdout.flush()
    return summary

