"""Render an evaluation payload (results.json of `run_suite`) as Markdown with PNG plots.

* a summary table: one row per model, the headline metrics of every benchmark as columns (and a chance row);
* a diagnostics table (`diagnostics_table`): order-probe accuracies per tower, and per CompA benchmark the
  group score on held-out vs training compositions, the matched-minus-swapped margin and the audio-audio /
  text-text cosines of the two candidates;
* per benchmark: a detailed table (confidence intervals, triplet scores, per-fold accuracies, ...), a
  grouped bar plot (models side by side for each headline metric, with 95% intervals where known), for
  zero-shot a per-class table, and for CompA a few example rows with every model's 2x2 caption-audio
  similarity matrix on one shared colour scale, and a sentence saying why those rows were chosen
  (`compclap.eval.report_compa`).

The report is re-renderable from the output folder alone: CompA examples are read back from the per-row
CSVs the suite wrote next to results.json.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compclap.eval.report_compa import choose_compa_examples, plot_compa_examples

__all__ = ["benchmark_table", "diagnostics_table", "format_value", "lookup", "per_class_table", "plot_bars",
           "plot_compa_examples", "render_report", "summary_table"]


def lookup(result: Mapping[str, Any] | None, key: str) -> Any:
    """`result["a"]["b"]` for key "a.b"; None when any level is missing."""
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def format_value(value: Any, digits: int = 1) -> str:
    """A table cell: `digits` decimals for floats, [lo, hi] for intervals, '-' for missing or NaN."""
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{format_value(float(value[0]), digits)}, {format_value(float(value[1]), digits)}]"
    return str(value)


def _digits(desc: Mapping[str, Any], key: str) -> int:
    # Cosines and margins live in [-1, 1] (differences of a few thousandths matter); scores are percentages.
    return 3 if key in desc.get("precise", ()) else 1


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: bool = True) -> str:
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |",
             "|---|" + ("---:|" if numeric else "---|") * (len(header) - 1)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(payload: Mapping[str, Any]) -> str:
    """Markdown table: rows = models, columns = every benchmark's headline metrics."""
    cols = [(bench, key, f"{bench} {label}") for bench, desc in payload["benchmarks"].items()
            for key, label in desc["columns"]]
    rows = []
    for model in payload["models"]:
        res = payload["results"].get(model, {})
        rows.append([model] + [format_value(lookup(res.get(bench), key)) for bench, key, _ in cols])
    chance = [lookup(payload["benchmarks"][bench].get("chance"), key) for bench, key, _ in cols]
    if any(c is not None for c in chance):
        rows.append(["*chance*"] + [format_value(c) for c in chance])
    return _table(["model"] + [c[2] for c in cols], rows)


def benchmark_table(payload: Mapping[str, Any], bench: str) -> str:
    """Markdown table of one benchmark's detailed metrics (only columns some model has)."""
    desc = payload["benchmarks"][bench]
    results = {m: payload["results"].get(m, {}).get(bench) for m in payload["models"]}
    cols = [(k, label) for k, label in desc["details"] if any(lookup(r, k) is not None for r in results.values())]
    rows = [[m] + [format_value(lookup(r, k), _digits(desc, k)) for k, _ in cols] for m, r in results.items()
            if r is not None]
    chance = [lookup(desc.get("chance"), k) for k, _ in cols]
    if rows and any(c is not None for c in chance):
        rows.append(["*chance*"] + [format_value(c) for c in chance])
    return _table(["model"] + [label for _, label in cols], rows)


DIAGNOSTICS_HELP = (
    "How to read it: an order probe at about 50% (chance) means that tower's embedding carries no linearly "
    "readable information about which event came first, so a cosine (itself linear in the embedding) cannot "
    "rank \"A then B\" above \"B then A\". In the CompA rows, cos(t1,t2) or cos(a1,a2) near 1 means the text or "
    "the audio tower maps the two candidates to nearly the same point, and a margin near 0 means the matched "
    "pairs are no closer than the swapped ones. A group score well above chance (16.7%) on compositions seen in "
    "training (train) but not on held-out ones means the model memorised pairs rather than learning order or "
    "binding. An attribute probe at about 50% means the audio embedding does not say which of two events is the "
    "loud (high, long) one, so no caption can bind the attribute to its event (CompA-attribute's audio side).")


def _pair_cell(values: Sequence[Any], digits: int) -> str:
    return " / ".join(format_value(v, digits) for v in values)


def diagnostics_table(payload: Mapping[str, Any]) -> str:
    """Markdown: order-probe accuracy per tower; CompA group, margin and cosines, held-out / train ("" if none)."""
    benches = payload["benchmarks"]
    results = payload["results"]
    parts = []
    probes = [b for b, d in benches.items() if d.get("kind") == "order_probe"]
    if probes:
        header = ["model"] + [f"{b} {tower}" for b in probes for tower in ("audio", "text")]
        rows = [[m] + [format_value(lookup(results.get(m, {}).get(b), t)) for b in probes for t in ("audio", "text")]
                for m in payload["models"]]
        rows.append(["*chance*"] + [format_value(lookup(benches[b].get("chance"), t)) for b in probes
                                    for t in ("audio", "text")])
        parts.append(_table(header, rows))
    for b in (b for b, d in benches.items() if d.get("kind") == "attribute_probe"):
        attrs = [c[0] for c in benches[b].get("columns", [])]
        rows = [[m] + [format_value(lookup(results.get(m, {}).get(b), a)) for a in attrs] for m in payload["models"]]
        rows.append(["*chance*"] + [format_value(lookup(benches[b].get("chance"), a)) for a in attrs])
        parts.append(_table(["model"] + [f"{b} audio: {a}" for a in attrs], rows))
    compa = [b for b, d in benches.items() if d.get("kind") == "compa"]
    # (label, held-out benchmark, training-composition benchmark): a `train_of` benchmark sits beside the one it
    # mirrors; one whose counterpart is absent gets a row of its own with an empty held-out side.
    mirrors = {b: benches[b].get("train_of") for b in compa}
    families: list[tuple[str, str | None, str | None]] = []
    for b in compa:
        if mirrors[b] is None or mirrors[b] == b:
            train = next((t for t in compa if t != b and mirrors[t] == b), None)
            families.append((b, b, train))
        elif mirrors[b] not in compa:
            families.append((b, None, b))
    if families:
        with_train = any(train is not None for _, _, train in families)
        suffix = " (held-out / train)" if with_train else ""
        header = ["model", "CompA"] + [f"{label}{suffix}" for label in ("group", "margin", "cos(a1,a2)",
                                                                         "cos(t1,t2)")]
        rows = []
        for model in payload["models"]:
            res = results.get(model, {})
            for label, held, train in families:
                pair = [res.get(held) if held else None] + ([res.get(train) if train else None] if with_train else [])
                if all(r is None for r in pair):
                    continue
                cells = [_pair_cell([lookup(r, key) for r in pair], digits) for key, digits in
                         (("group", 1), ("margin", 3), ("audio_cos", 3), ("text_cos", 3))]
                rows.append([model, label] + cells)
        if rows:
            parts.append(_table(header, rows))
    return "\n\n".join(parts)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_bars(payload: Mapping[str, Any], bench: str, path: str | Path) -> Path | None:
    """Grouped bars: one group per headline metric, one bar per model (95% interval whiskers if known)."""
    desc = payload["benchmarks"][bench]
    models = [m for m in payload["models"] if payload["results"].get(m, {}).get(bench) is not None]
    metrics = [(k, label) for k, label in desc["columns"] if not k.endswith("medR")
               and any(isinstance(lookup(payload["results"][m][bench], k), (int, float)) for m in models)]
    if not models or not metrics:
        return None
    plt = _pyplot()
    n_models = len(models)
    width = 0.8 / n_models
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 + len(metrics) * (0.5 + 0.35 * n_models)), 3.6))
    cmap = plt.get_cmap("tab10")
    tops: list[float] = []
    for i, model in enumerate(models):
        res = payload["results"][model][bench]
        values = [lookup(res, k) for k, _ in metrics]
        heights = [float(v) if isinstance(v, (int, float)) else float("nan") for v in values]
        xs = [j + (i - (n_models - 1) / 2) * width for j in range(len(metrics))]
        errs = None
        cis = [lookup(res, f"{k}_ci") for k, _ in metrics]
        if all(isinstance(c, (list, tuple)) and len(c) == 2 for c in cis):
            errs = [[max(0.0, h - c[0]) for h, c in zip(heights, cis)],
                    [max(0.0, c[1] - h) for h, c in zip(heights, cis)]]
        bars = ax.bar(xs, heights, width * 0.95, yerr=errs, capsize=2, label=model, color=cmap(i % 10),
                      error_kw={"ecolor": "0.35", "elinewidth": 0.8})
        for j, (bar, h) in enumerate(zip(bars, heights)):
            if not math.isnan(h):
                y = h + (errs[1][j] if errs is not None else 0.0)  # above the whisker
                tops.append(y)
                ax.annotate(f"{h:.1f}", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
    ax.set_ylabel("percent")
    top = max(tops + [1.0])
    ax.set_ylim(0, min(110.0, top * 1.15 + 5) if top <= 100 else top * 1.15)
    ax.set_title(f"{bench}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


PER_CLASS_MAX_ROWS = 100


def per_class_table(payload: Mapping[str, Any], bench: str) -> str:
    """Markdown: a zero-shot benchmark's score per class (top-1 accuracy, or AP when multi-label), per model.

    Classes in the benchmark's order; above PER_CLASS_MAX_ROWS classes, the lowest-scoring ones (mean over the
    models) are shown. "" when no result carries per-class scores.
    """
    models = [m for m in payload["models"] if lookup(payload["results"].get(m, {}), f"{bench}.per_class")]
    if not models:
        return ""
    per = {m: payload["results"][m][bench]["per_class"] for m in models}
    classes = list(dict.fromkeys(c for m in models for c in per[m]))
    metric = "AP" if payload["benchmarks"][bench].get("multi_label") else "top1"

    def cell(model: str, cls: str) -> Any:
        return lookup(per[model].get(cls), metric)

    note = ""
    if len(classes) > PER_CLASS_MAX_ROWS:
        def mean(cls: str) -> float:
            vals = [v for v in (cell(m, cls) for m in models) if isinstance(v, (int, float))]
            return sum(vals) / len(vals) if vals else math.inf

        keep = set(sorted(classes, key=mean)[:PER_CLASS_MAX_ROWS])
        note = f"\n\nThe {PER_CLASS_MAX_ROWS} lowest-scoring of {len(classes)} classes (mean over the models)."
        classes = [c for c in classes if c in keep]
    label = "AP" if metric == "AP" else "top-1"
    n_label = "positives" if metric == "AP" else "clips"
    rows = [[cls, str(lookup(per[models[0]].get(cls), "n") or 0)] + [format_value(cell(m, cls)) for m in models]
            for cls in classes]
    return _table(["class", n_label] + [f"{m} {label}" for m in models], rows) + note


def _describe(desc: Mapping[str, Any]) -> str:
    kind = desc.get("kind")
    if kind == "compa":
        seen = f", compositions seen in training (mirrors `{desc['train_of']}`)" if desc.get("train_of") else ""
        chance = desc.get("chance") or {}
        hint = (f"; chance (random similarities): text {chance['text']:.0f}%, audio {chance['audio']:.0f}%, "
                f"group {chance['group']:.1f}%" if {"text", "audio", "group"} <= set(chance) else "")
        return (f"CompA-style benchmark, {desc.get('n_rows')} rows ({desc.get('n_triplet_rows', 0)} with a "
                f"triplet){seen}{hint}; margin = mean (s(a1,t1) + s(a2,t2) - s(a1,t2) - s(a2,t1)) / 2, "
                "cos(a1,a2) / cos(t1,t2) = mean cosine of the two audios / the two captions")
    if kind == "zeroshot":
        what = "multi-label, mAP" if desc.get("multi_label") else "single-label, top-k accuracy"
        templates = "; ".join(f"`{t}`" for t in desc.get("templates", []))
        return (f"zero-shot classification ({what}), {desc.get('n_clips')} clips, {desc.get('n_classes')} classes, "
                f"templates {templates}")
    if kind == "retrieval":
        missing = f", {desc['n_missing']} clips without audio left out" if desc.get("n_missing") else ""
        return (f"retrieval, multi-caption protocol, {desc.get('n_clips')} clips, "
                f"{desc.get('n_captions')} captions{missing}")
    return str(desc.get("description") or kind)


def _file_read(info: Mapping[str, Any]) -> str:
    """The file a model's path resolved to (a run directory: its best checkpoint, else last.ckpt) and why."""
    if not info.get("checkpoint"):
        return ""
    how = info.get("resolved_as")
    return f"`{info['checkpoint']}`" + (f" ({_escape(how)})" if how and how not in ("file", "model directory") else "")


def render_report(payload: Mapping[str, Any], out_dir: str | Path, plots: bool = True) -> Path:
    """Write ``report.md`` (and the PNGs it shows, unless `plots` is False) into out_dir; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# {payload.get('title', 'compclap evaluation')}", ""]
    if payload.get("description"):
        parts += [payload["description"], ""]
    last = payload.get("last_run", {})
    parts += [f"All scores in percent (medR: median rank). Written by `compclap evaluate` "
              f"{('on ' + last['time']) if last.get('time') else ''}; raw numbers in `results.json`.", ""]
    parts += ["## Models", "", _table(["model", "checkpoint", "file read", "identity"], [
        [m, f"`{info.get('path')}`" if info.get("path") else "(in memory)", _file_read(info),
         f"`{str(info.get('identity'))[:12]}`"] for m, info in payload["models"].items()], numeric=False), ""]
    parts += ["## Summary", "", summary_table(payload), ""]
    diagnostics = diagnostics_table(payload)
    if diagnostics:
        parts += ["## Diagnostics", "", DIAGNOSTICS_HELP, "", diagnostics, ""]
    for bench, desc in payload["benchmarks"].items():
        parts += [f"## {bench}", "", f"{_describe(desc)}; source `{desc.get('source')}`.", "",
                  benchmark_table(payload, bench), ""]
        if plots:
            bars = plot_bars(payload, bench, out_dir / f"bars_{bench}.png")
            if bars is not None:
                parts += [f"![{bench} scores]({bars.name})", ""]
            examples = choose_compa_examples(payload, bench, out_dir) if desc.get("kind") == "compa" else None
            if examples is not None:
                ex = plot_compa_examples(payload, bench, out_dir, out_dir / f"examples_{bench}.png", examples=examples)
                parts += [f"![{bench} example rows]({ex.name})", "", examples.note, ""]
        if desc.get("kind") == "zeroshot":
            table = per_class_table(payload, bench)
            if table:
                parts += [f"Per class ({'AP' if desc.get('multi_label') else 'top-1 accuracy'}, percent, all clips "
                          "pooled):", "", table, ""]
        for model in payload["models"]:  # per-model Markdown notes a benchmark wrote (e.g. ProLAP traversals)
            notes = lookup(payload["results"].get(model, {}), f"{bench}.notes_md")
            if notes and (out_dir / notes).is_file():
                parts += [f"### {bench}: {model}", "", (out_dir / notes).read_text().rstrip(), ""]
        csvs = [(m, lookup(payload["results"].get(m, {}), f"{bench}.rows_csv")) for m in payload["models"]]
        csvs = [(m, name) for m, name in csvs if name]
        if csvs:
            parts += ["Per-row results: " + ", ".join(f"[{m}]({name})" for m, name in csvs), ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path
