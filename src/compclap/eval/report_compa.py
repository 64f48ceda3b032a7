"""CompA example rows for the report: which rows are shown (and why), and their 2x2 similarity heatmaps.

Every matrix of one figure shares one colour scale, with a colour bar, so equal colours mean equal cosines
across models and rows (a per-matrix scale painted 0.516783 and 0.516787 as opposite ends of the palette);
the printed values carry enough digits to see which entry wins.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CompaExamples", "choose_compa_examples", "plot_compa_examples"]


@dataclass
class CompaExamples:
    """The rows a CompA example figure shows: per-model CSV rows, chosen positions and the reason."""

    rows_by_model: dict[str, list[dict[str, str]]]
    chosen: list[int]
    note: str


def _read_rows(path: Path) -> list[dict[str, str]] | None:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return None


def _order(rows_by_model: Mapping[str, list[dict[str, str]]]) -> list[tuple[int, int, int]]:
    """(-disagreements, -wins, position) per row: models disagreeing most first, then rows won by most."""
    n_rows = min(len(r) for r in rows_by_model.values())
    keyed = []
    for i in range(n_rows):
        disagree = sum(len({rows[i][k] for rows in rows_by_model.values()}) > 1 for k in ("text", "audio", "group"))
        wins = sum(rows[i][k] == "True" for rows in rows_by_model.values() for k in ("text", "audio"))
        keyed.append((-disagree, -wins, i))
    return sorted(keyed)


def choose_compa_examples(payload: Mapping[str, Any], bench: str, out_dir: str | Path,
                          n_examples: int = 3) -> CompaExamples | None:
    """Pick the example rows of a CompA benchmark from the per-row CSVs in out_dir; None when there are none."""
    rows_by_model: dict[str, list[dict[str, str]]] = {}
    for model in payload["models"]:
        res = payload["results"].get(model, {})
        name = res.get(bench, {}).get("rows_csv") if isinstance(res.get(bench), Mapping) else None
        rows = _read_rows(Path(out_dir) / name) if name else None
        if rows:
            rows_by_model[model] = rows
    if not rows_by_model:
        return None
    keyed = _order(rows_by_model)[:n_examples]
    if not keyed:
        return None
    chosen = [i for *_, i in keyed]
    numbers = ", ".join(rows_by_model[next(iter(rows_by_model))][i].get("row", str(i)) for i in chosen)
    n_total = min(len(r) for r in rows_by_model.values())
    split = sum(1 for d, *_ in keyed if d < 0)
    if len(rows_by_model) == 1:
        why = "the rows the model wins on most conditions (text, audio) first"
    elif split == len(chosen):
        why = "the rows on which the models' text / audio / group outcomes differ most"
    elif split:
        why = f"the {split} row(s) on which the models' outcomes differ, then the rows most models win (text, audio)"
    else:
        why = "no row separates the models, so the rows most models win (text, audio)"
    note = f"Rows shown (CSV row {numbers} of {n_total}): {why}."
    note += (" Each matrix: rows are the two captions, columns the two audios, red boxes the matching pairs; a "
             "text win needs each audio's own caption to score higher in its column, an audio win each caption's "
             "own audio higher in its row. One colour scale for all matrices (colour bar).")
    return CompaExamples(rows_by_model, chosen, note)


def _wrap(text: str, width: int, lines: int) -> str:
    """text wrapped to `width` columns, at most `lines` lines (the last one ending in '...' when cut)."""
    parts = textwrap.wrap(str(text), width) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][:max(1, width - 3)].rstrip() + "..."
    return "\n".join(parts)


def _short(file: str, width: int = 16) -> str:
    """A file name shortened to `width` characters (its end kept) and wrapped on two lines."""
    name = Path(file).name
    if len(name) > 2 * width:
        name = "..." + name[-(2 * width - 3):]
    return "\n".join(name[k:k + width] for k in range(0, len(name), width))


def _digits(mat: list[list[float]]) -> int:
    """Decimals that tell the compared entries apart (3 to 6)."""
    gaps = [abs(mat[0][0] - mat[1][0]), abs(mat[1][1] - mat[0][1]), abs(mat[0][0] - mat[0][1]),
            abs(mat[1][1] - mat[1][0])]
    smallest = min([g for g in gaps if g > 0] or [1.0])
    return min(6, max(3, math.ceil(-math.log10(smallest)) + 1))


def plot_compa_examples(payload: Mapping[str, Any], bench: str, out_dir: str | Path, path: str | Path,
                        n_examples: int = 3, examples: CompaExamples | None = None) -> Path | None:
    """A few CompA rows (see choose_compa_examples): each model's 2x2 caption x audio cosine matrix."""
    from compclap.eval.report import _pyplot

    examples = examples or choose_compa_examples(payload, bench, out_dir, n_examples)
    if examples is None:
        return None
    rows_by_model, chosen = examples.rows_by_model, examples.chosen
    models = list(rows_by_model)
    mats = {(r, m): [[float(rows_by_model[m][i][f"s{a}{b}"]) for b in (0, 1)] for a in (0, 1)]
            for r, i in enumerate(chosen) for m in models}
    values = [v for mat in mats.values() for row in mat for v in row]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1e-3, hi + 1e-3
    plt = _pyplot()
    n_cols = len(models)
    fig, axes = plt.subplots(len(chosen), n_cols, figsize=(2.4 * n_cols + 3.4, 2.5 * len(chosen) + 0.8),
                             squeeze=False, layout="constrained")
    image = None
    for r, i in enumerate(chosen):
        ref = rows_by_model[models[0]][i]
        for c, model in enumerate(models):
            ax, mat = axes[r][c], mats[(r, model)]
            image = ax.imshow(mat, cmap="viridis", vmin=lo, vmax=hi)
            for d in (0, 1):
                ax.add_patch(plt.Rectangle((d - 0.5, d - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
            digits = _digits(mat)
            for a in (0, 1):
                for b in (0, 1):
                    ax.text(b, a, f"{mat[a][b]:.{digits}f}", ha="center", va="center", fontsize=7,
                            color="white" if mat[a][b] < (lo + hi) / 2 else "black")
            row = rows_by_model[model][i]
            marks = " ".join(f"{k}:{'win' if row[k] == 'True' else 'lose'}" for k in ("text", "audio"))
            ax.set_title(f"{model}\n{marks}" if r == 0 else marks, fontsize=8)
            ax.set_xticks([0, 1], [_short(ref["file_0"]), _short(ref["file_1"])], fontsize=6)
            ax.set_xlabel("audio", fontsize=7)
            if c == 0:
                ax.set_yticks([0, 1], [_wrap(ref["caption_0"], 22, 3), _wrap(ref["caption_1"], 22, 3)], fontsize=6)
                ax.set_ylabel(f"caption (CSV row {ref.get('row', i)})", fontsize=7)
            else:
                ax.set_yticks([])
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.8, pad=0.02)
        bar.set_label("cosine similarity (one scale for all)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle(f"{bench}: caption x audio cosine similarity (red: matching pairs)", fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
