"""The demo's stages on several seeds: mean +- sd of every cell of the demo's table, and the acceptance margins.

Each seed gets its own world (scenes, captions, held-out pairs, CompA rows), compositions and training seed, so
the spread covers data and initialisation. Seeds default to 1 2 3: seed 0 is the one `make demo` shows.

    .venv/bin/python benchmarks/bench_demo_seeds.py --out /tmp/demo_seeds [--seeds 1 2 3] [--max-epochs N]

Prints one table per seed as it finishes, then the mean +- sd table, the best compositional stage's margins over
the standard stage (CompA-order group/text, CompA-attribute group, t2a R@1) and the wall time per seed; writes
everything to OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from compclap.demo import HEADS_STAGE
from compclap.eval.report import lookup

CELLS = [("retrieval", "t2a_R@1"), ("retrieval", "a2t_R@1"), ("retrieval", "t2a_mAP@10"),
         ("compa_order", "text"), ("compa_order", "audio"), ("compa_order", "group"),
         ("compa_attribute", "text"), ("compa_attribute", "audio"), ("compa_attribute", "group"),
         ("compa_order_train", "group"), ("compa_attribute_train", "group"),
         ("compa_order", "margin"), ("compa_order", "text_cos"), ("compa_order", "audio_cos"),
         ("order_probe", "audio"), ("order_probe", "text"), ("attribute_probe", "loudness"),
         ("attribute_probe", "pitch"), ("attribute_probe", "duration")]
COMPOSITIONAL = ("+hard negatives", HEADS_STAGE, "+modular")


def cells(payload: dict) -> dict[str, dict[str, float]]:
    """{model: {"bench metric": value}} for the CELLS of one demo payload (NaN where missing)."""
    out = {}
    for model, results in payload["results"].items():
        row = {}
        for bench, key in CELLS:
            value = lookup(results.get(bench), key)
            row[f"{bench} {key}"] = float(value) if isinstance(value, (int, float)) else math.nan
        out[model] = row
    return out


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), NaNs left out."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def aggregate(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """{model: {cell: (mean, sd)}} over seeds."""
    models = list(next(iter(per_seed.values())))
    names = [f"{b} {k}" for b, k in CELLS]
    return {m: {c: mean_sd([per_seed[s][m][c] for s in per_seed if m in per_seed[s]]) for c in names}
            for m in models}


def margins(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per compositional stage: (mean, sd) over seeds of its difference to the standard stage on the target cells."""
    targets = ["compa_order group", "compa_order text", "compa_attribute group", "retrieval t2a_R@1"]
    out = {}
    for stage in COMPOSITIONAL:
        out[stage] = {t: mean_sd([per_seed[s][stage][t] - per_seed[s]["standard"][t] for s in per_seed])
                      for t in targets}
    return out


def _markdown(rows: dict[str, dict[str, str]], columns: list[str]) -> str:
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {m} | " + " | ".join(r[c] for c in columns) + " |" for m, r in rows.items()]
    return "\n".join(lines)


def _fmt(mean: float, sd: float, precise: bool) -> str:
    if math.isnan(mean):
        return "-"
    d = 3 if precise else 1
    return f"{mean:.{d}f} ± {sd:.{d}f}"


def main(argv: list[str] | None = None) -> dict:
    """Run the demo per seed and print the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the worlds, runs and reports of every seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--max-epochs", type=int, default=None, help="override every stage's epoch count (smoke runs)")
    p.add_argument("--with-prolap", action="store_true", help="also train the ProLAP stage (not in the targets)")
    args = p.parse_args(argv)
    from compclap.demo import main as demo_main

    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    seconds: dict[int, float] = {}
    for seed in args.seeds:
        root = args.out / f"seed{seed}"
        demo_args = ["--seed", str(seed), "--world", str(root / "world"), "--runs", str(root / "runs"),
                     "--report", str(root / "report")]
        if args.max_epochs is not None:
            demo_args += ["--max-epochs", str(args.max_epochs)]
        if not args.with_prolap:
            demo_args.append("--skip-prolap")
        t0 = time.time()
        per_seed[seed] = cells(demo_main(demo_args))
        seconds[seed] = time.time() - t0
        print(f"[seeds] seed {seed} done in {seconds[seed]:.0f} s", flush=True)

    columns = [f"{b} {k}" for b, k in CELLS]
    agg = aggregate(per_seed)
    table = {m: {c: _fmt(*agg[m][c], precise=c.split()[-1] in ("margin", "text_cos", "audio_cos")) for c in columns}
             for m in agg}
    print(f"\nmean ± sd over seeds {args.seeds} (percent; margin and cosines raw)\n")
    print(_markdown(table, columns))
    gains = margins(per_seed)
    print("\ncompositional stage minus standard, mean ± sd over seeds (targets: order group >= 20, order text >= 30, "
          "attribute group >= 10, t2a R@1 >= -5)\n")
    print(_markdown({s: {t: _fmt(*v, precise=False) for t, v in g.items()} for s, g in gains.items()},
                    list(next(iter(gains.values())))))
    print("\nper seed, compositional minus standard:")
    for seed, rows in per_seed.items():
        for stage in COMPOSITIONAL:
            diffs = ", ".join(f"{t} {rows[stage][t] - rows['standard'][t]:+.1f}" for t in gains[stage])
            print(f"  seed {seed} {stage}: {diffs}")
    print("\nwall time per seed: " + ", ".join(f"{s}: {t:.0f} s" for s, t in seconds.items()))
    summary = {"seeds": args.seeds, "per_seed": per_seed, "seconds": seconds,
               "mean_sd": {m: {c: list(v) for c, v in row.items()} for m, row in agg.items()},
               "margins": {s: {t: list(v) for t, v in g.items()} for s, g in gains.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
