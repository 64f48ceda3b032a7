"""Zero-shot audio classification: ESC-50 and generic label CSVs, prompt templates, top-k and mAP.

Each class is turned into one prompt per template ("This is a sound of {label}."); the normalised text
embeddings of a class's prompts are averaged and renormalised into one class embedding. A clip's
score for a class is the cosine similarity of the two embeddings.

* single-label: the prediction is the softmax over classes (of the scaled similarities). Softmax is
  monotone, so top-k accuracy is computed on the similarities directly: the rank of the true class
  is the number of classes whose score is ``>=`` its score -- a tie is not a win.
* multi-label: each class is an independent sigmoid; per-class average precision over clips (again
  ranking-only, so sigmoid or not gives the same value), macro-averaged over the classes that have at
  least one positive clip. A negative clip tied with a positive one ranks ahead of it.
* ESC-50: the five official folds are reported separately and their mean is the headline number
  (a zero-shot model sees no fold in training; the folds only make the numbers comparable to papers).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_TEMPLATES",
    "ZeroShotData",
    "class_embeddings",
    "evaluate_zeroshot",
    "multilabel_average_precision",
    "per_class_scores",
    "read_esc50",
    "read_label_csv",
    "target_ranks",
    "topk_accuracy",
]

DEFAULT_TEMPLATES = ("This is a sound of {label}.",)
PATH_COLUMNS = ("path", "filename", "file_name", "file", "audio")
ESC50_COLUMNS = ("filename", "fold", "target", "category")


@dataclass
class ZeroShotData:
    """A zero-shot classification set: audio files, class names and each clip's class indices."""

    files: list[Path]
    classes: list[str]
    targets: list[list[int]]
    multi_label: bool = False
    folds: list[str] | None = None
    source: str = ""

    def target_tensor(self, indices: Sequence[int]) -> Tensor:
        """Class indices (N,) for single-label data, multi-hot float (N, C) for multi-label data."""
        if not self.multi_label:
            return torch.tensor([self.targets[i][0] for i in indices], dtype=torch.long)
        out = torch.zeros(len(indices), len(self.classes))
        for row, i in enumerate(indices):
            out[row, self.targets[i]] = 1.0
        return out


# --------------------------------------------------------------------------- readers


def _read_rows(path: Path, what: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{what} {path} is empty (no header line)")
            columns = [h.strip() for h in header]
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                rows.append((reader.line_num, {c: v.strip() for c, v in zip(columns, values)}))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from err
    if not rows:
        raise ValueError(f"{what} {path} has a header but no rows")
    return columns, rows


def _check_files(files: Sequence[Path], source: Path) -> None:
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise FileNotFoundError(f"{source}: {len(missing)} audio file(s) not found: {', '.join(missing[:5])}{more}")


def _check_classes(classes: Sequence[str], source: Path) -> None:
    if len(classes) < 2:
        raise ValueError(f"{source}: zero-shot classification needs at least 2 classes, found {list(classes)}")


def read_esc50(root: str | Path) -> ZeroShotData:
    """ESC-50 layout: ``root/meta/esc50.csv`` (filename, fold, target, category) and ``root/audio/``.

    Class names are the categories with underscores turned into spaces ("chirping_birds" -> "chirping birds"),
    ordered by `target`.
    """
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"{root} is not an ESC-50 folder: {meta} not found")
    columns, rows = _read_rows(meta, "ESC-50 metadata CSV")
    missing = [c for c in ESC50_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"ESC-50 metadata CSV {meta} lacks columns {missing}; found columns {columns}; "
                         f"required {list(ESC50_COLUMNS)}")
    names: dict[int, str] = {}
    files, targets, folds = [], [], []
    for line, row in rows:
        try:
            target = int(row["target"])
        except ValueError as err:
            raise ValueError(f"{meta} line {line}: target {row['target']!r} is not an integer") from err
        category = row["category"].replace("_", " ").strip()
        if not row["filename"] or not category or not row["fold"]:
            raise ValueError(f"{meta} line {line}: empty filename, fold or category")
        if names.setdefault(target, category) != category:
            raise ValueError(f"{meta} line {line}: target {target} is {category!r} here but {names[target]!r} "
                             "on an earlier line")
        files.append(root / "audio" / row["filename"])
        targets.append(target)
        folds.append(row["fold"])
    order = sorted(names)
    index = {t: i for i, t in enumerate(order)}
    classes = [names[t] for t in order]
    _check_classes(classes, meta)
    _check_files(files, meta)
    return ZeroShotData(files=files, classes=classes, targets=[[index[t]] for t in targets], multi_label=False,
                        folds=folds, source=str(meta))


def read_label_csv(path: str | Path, audio_root: str | Path | None = None, label_sep: str = ";") -> ZeroShotData:
    """A generic label CSV: a path column and either ``label`` (single-label) or ``labels`` (multi-label).

    The path column is the first of `PATH_COLUMNS` present; relative paths resolve against `audio_root`
    (default: the CSV's folder). ``labels`` cells hold `label_sep`-separated labels. An optional ``fold``
    column gives per-fold results. Classes are the sorted set of labels seen.
    """
    path = Path(path)
    root = Path(audio_root) if audio_root is not None else path.parent
    columns, rows = _read_rows(path, "label CSV")
    path_col = next((c for c in PATH_COLUMNS if c in columns), None)
    label_col = "labels" if "labels" in columns else "label" if "label" in columns else None
    if path_col is None or label_col is None:
        needed = [] if path_col else [f"one of {list(PATH_COLUMNS)}"]
        needed += [] if label_col else ["'label' (single-label) or 'labels' (multi-label)"]
        raise ValueError(f"label CSV {path} lacks columns: {', '.join(needed)}; found columns {columns}")
    multi = label_col == "labels"
    files, labels, folds = [], [], []
    for line, row in rows:
        where = f"{path} line {line}"
        if not row.get(path_col):
            raise ValueError(f"{where}: empty {path_col!r}")
        cell = row.get(label_col, "")
        parts = [p.strip() for p in cell.split(label_sep)] if multi else [cell]
        parts = list(dict.fromkeys(p for p in parts if p))
        if not parts:
            raise ValueError(f"{where}: empty label set in column {label_col!r}")
        file = Path(row[path_col])
        files.append(file if file.is_absolute() else root / file)
        labels.append(parts)
        folds.append(row.get("fold", ""))
    classes = sorted({label for parts in labels for label in parts})
    _check_classes(classes, path)
    _check_files(files, path)
    index = {c: i for i, c in enumerate(classes)}
    has_folds = "fold" in columns
    if has_folds and not all(folds):
        raise ValueError(f"label CSV {path}: the 'fold' column has empty cells")
    return ZeroShotData(files=files, classes=classes, targets=[[index[p] for p in parts] for parts in labels],
                        multi_label=multi, folds=folds if has_folds else None, source=str(path))


# --------------------------------------------------------------------------- metrics


def class_embeddings(embed_text: Callable[[list[str]], Tensor], classes: Sequence[str],
                     templates: Sequence[str] = DEFAULT_TEMPLATES) -> Tensor:
    """One L2-normalised embedding per class: the renormalised mean of its prompts' normalised embeddings."""
    templates = list(templates)
    if not templates:
        raise ValueError("need at least one prompt template")
    bad = [t for t in templates if "{label}" not in t]
    if bad:
        raise ValueError(f"prompt templates must contain '{{label}}': {bad}")
    if not classes:
        raise ValueError("empty class list")
    prompts = [t.replace("{label}", c) for t in templates for c in classes]
    emb = torch.as_tensor(embed_text(prompts)).detach().float().cpu()
    if emb.ndim != 2 or emb.shape[0] != len(prompts):
        raise ValueError(f"embed_text returned shape {tuple(emb.shape)} for {len(prompts)} prompts; expected (N, D)")
    per_template = F.normalize(emb.reshape(len(templates), len(classes), -1), dim=-1)
    return F.normalize(per_template.mean(0), dim=-1)


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """1-based pessimistic rank of each row's target class: #classes scoring >= the target (ties lose)."""
    scores = torch.as_tensor(scores)
    targets = torch.as_tensor(targets, dtype=torch.long)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (N, C) and targets (N,); got {tuple(scores.shape)}, {tuple(targets.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores contain NaN or infinite values")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= scores.shape[1]):
        raise ValueError(f"targets must lie in [0, {scores.shape[1]})")
    own = scores.gather(1, targets[:, None])
    return (scores >= own).sum(1)


def topk_accuracy(scores: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent for each k <= number of classes (a tie with the target is a miss)."""
    ranks = target_ranks(scores, targets)
    n_classes = torch.as_tensor(scores).shape[1]
    return {f"top{k}": float((ranks <= k).double().mean() * 100) for k in ks if k <= n_classes}


def multilabel_average_precision(scores: Tensor | np.ndarray, targets: Tensor | np.ndarray) -> tuple[float, np.ndarray]:
    """Macro mAP in percent over classes with >= 1 positive, and the per-class AP (NaN where no positive).

    AP of a class = mean over its positive clips of precision at that clip's position, where a positive's
    position counts every negative scoring ``>=`` it (ties lose) and every positive scoring above it.
    """
    s = np.asarray(torch.as_tensor(scores).detach().cpu().double())
    y = np.asarray(torch.as_tensor(targets).detach().cpu()).astype(bool)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores and targets must both be (N, C); got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    ap = np.full(s.shape[1], np.nan)
    for c in range(s.shape[1]):
        pos = np.sort(s[y[:, c], c])[::-1]
        if pos.size == 0:
            continue
        neg = np.sort(s[~y[:, c], c])
        ahead = neg.size - np.searchsorted(neg, pos, side="left")  # negatives >= each positive
        index = np.arange(1, pos.size + 1)
        ap[c] = float(np.mean(index / (index + ahead)))
    scored = ap[~np.isnan(ap)]
    return (float(scored.mean() * 100) if scored.size else math.nan), ap


def _subset_metrics(scores: Tensor, data: ZeroShotData, idx: list[int], ks: Sequence[int]) -> dict[str, Any]:
    sub = scores[idx]
    if data.multi_label:
        mean_ap, per_class = multilabel_average_precision(sub, data.target_tensor(idx).bool())
        return {"mAP": mean_ap, "n_clips": len(idx), "n_classes_scored": int((~np.isnan(per_class)).sum())}
    return {**topk_accuracy(sub, data.target_tensor(idx), ks), "n_clips": len(idx)}


def per_class_scores(scores: Tensor, data: ZeroShotData) -> dict[str, dict[str, Any]]:
    """Per class over all clips: {"n": clips, "top1": accuracy %} (single-label) or {"n": positives, "AP": %}."""
    every = range(len(data.targets))
    if data.multi_label:
        y = data.target_tensor(every).bool()
        _, ap = multilabel_average_precision(scores, y)
        return {c: {"n": int(y[:, k].sum()), "AP": None if math.isnan(ap[k]) else float(ap[k] * 100)}
                for k, c in enumerate(data.classes)}
    targets = data.target_tensor(every)
    ranks = target_ranks(scores, targets)
    out: dict[str, dict[str, Any]] = {}
    for k, c in enumerate(data.classes):
        mask = targets == k
        n = int(mask.sum())
        out[c] = {"n": n, "top1": float((ranks[mask] <= 1).double().mean() * 100) if n else None}
    return out


def evaluate_zeroshot(data: ZeroShotData, embed_audio: Callable[[list[Path]], Tensor],
                      embed_text: Callable[[list[str]], Tensor], templates: Sequence[str] = DEFAULT_TEMPLATES,
                      ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """Zero-shot scores of one model; with folds, the headline numbers are the mean over folds.

    Returns top-k accuracies (single-label) or ``mAP`` (multi-label) in percent, ``n_clips``, ``n_classes``,
    ``folds`` ({fold: metrics} or None) and ``rows`` (one dict per clip, for error analysis).
    """
    if not data.files:
        raise ValueError("no clips to classify")
    class_emb = class_embeddings(embed_text, data.classes, templates)
    audio = torch.as_tensor(embed_audio(list(data.files))).detach().float().cpu()
    if audio.ndim != 2 or audio.shape[0] != len(data.files):
        raise ValueError(f"embed_audio returned shape {tuple(audio.shape)} for {len(data.files)} clips")
    scores = F.normalize(audio, dim=-1) @ class_emb.T

    everything = list(range(len(data.files)))
    result: dict[str, Any] = {}
    folds: dict[str, dict[str, Any]] | None = None
    if data.folds is not None:
        groups: dict[str, list[int]] = {}
        for i, fold in enumerate(data.folds):
            groups.setdefault(fold, []).append(i)
        order = sorted(groups, key=lambda f: (0, int(f)) if f.isdigit() else (1, f))
        folds = {f: _subset_metrics(scores, data, groups[f], ks) for f in order}
        keys = [k for k in folds[order[0]] if k.startswith("top") or k == "mAP"]
        for key in keys:
            values = [folds[f][key] for f in order if key in folds[f]]
            result[key] = float(np.nanmean(values)) if values else math.nan
        pooled = _subset_metrics(scores, data, everything, ks)
        result.update({f"pooled_{k}": v for k, v in pooled.items() if k in keys})
        result["n_clips"] = len(everything)
    else:
        result.update(_subset_metrics(scores, data, everything, ks))
    result["n_classes"] = len(data.classes)
    result["multi_label"] = data.multi_label
    result["per_class"] = per_class_scores(scores, data)
    result["templates"] = list(templates)
    result["folds"] = folds

    rows = []
    top = scores.argmax(1).tolist()
    for i, file in enumerate(data.files):
        labels = [data.classes[t] for t in data.targets[i]]
        row: dict[str, Any] = {"file": str(file), "fold": data.folds[i] if data.folds else "",
                               "labels": ";".join(labels), "predicted": data.classes[top[i]],
                               "predicted_score": float(scores[i, top[i]])}
        if not data.multi_label:
            target = data.targets[i][0]
            rank = int((scores[i] >= scores[i, target]).sum())
            row.update({"label_score": float(scores[i, target]), "rank": rank, "correct": rank == 1})
        rows.append(row)
    result["rows"] = rows
    return result
