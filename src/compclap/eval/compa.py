"""CompA (order / attribute) scoring: Winoground-style text, audio and group scores.

For one row with captions c_0..c_{n-1} and audios a_0..a_{n-1} (caption i describes audio i) and
``S[i, j] = sim(c_i, a_j)``:

* text score: for every audio j, its own caption beats every other caption
  (``S[j, j] > S[i, j]`` for all i != j) -- pick the right caption for each audio;
* audio score: for every caption i, its own audio beats every other audio
  (``S[i, i] > S[i, j]`` for all j != i) -- pick the right audio for each caption;
* group score: both.

All comparisons are strict: a tie is not a win (and NaN never wins). For n = 2 this is the
official CompA definition (text: s00 > s10 and s11 > s01; audio: s00 > s01 and s11 > s10).
Rows with a triplet are also scored 3-way on (pair, reversed pair, triplet).

Separation diagnostics (pair only), which say *why* a score is low: the matched-minus-swapped margin
``(S[0, 0] + S[1, 1] - S[0, 1] - S[1, 0]) / 2`` (> 0: the matched pairs are closer on average), and the
cosines between the two audios and between the two captions (~1: that tower does not tell them apart).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from compclap.eval.compa_csv import REQUIRED_COLUMNS, CompaRow, read_compa_csv  # noqa: F401 - re-exported

__all__ = [
    "CompaRow",
    "bootstrap_ci",
    "compa_scores",
    "compa_scores_nway",
    "compa_separation",
    "evaluate_compa",
    "read_compa_csv",
    "write_rows_csv",
]

# --------------------------------------------------------------------------- scores


def compa_scores_nway(S: Tensor | np.ndarray) -> dict[str, Any]:
    """Text/audio/group scores of rows S (R, n, n), S[r, i, j] = sim(caption i, audio j)."""
    sims = torch.as_tensor(S)
    if sims.ndim != 3 or sims.shape[1] != sims.shape[2] or sims.shape[1] < 2:
        raise ValueError(f"S must have shape (R, n, n) with n >= 2, got {tuple(sims.shape)}")
    n = sims.shape[1]
    diag = torch.diagonal(sims, dim1=1, dim2=2)  # (R, n): S[r, i, i]
    off_diag = ~torch.eye(n, dtype=torch.bool, device=sims.device)
    # Column j: the matched caption's similarity must beat every other caption's on audio j.
    text_wins = diag[:, None, :] > sims  # [r, i, j]: S[j, j] > S[i, j]
    # Row i: the matched audio must beat every other audio for caption i.
    audio_wins = diag[:, :, None] > sims  # [r, i, j]: S[i, i] > S[i, j]
    text = (text_wins | ~off_diag).all(dim=2).all(dim=1)
    audio = (audio_wins | ~off_diag).all(dim=2).all(dim=1)
    group = text & audio
    out: dict[str, Any] = {}
    for name, rows in (("text", text), ("audio", audio), ("group", group)):
        values = rows.cpu().numpy()
        out[name] = _percent(values)
        out[f"{name}_rows"] = values
    return out


def compa_scores(s00: Any, s01: Any, s10: Any, s11: Any) -> dict[str, Any]:
    """2-way CompA scores from per-row similarities sij = sim(caption_i, audio_j)."""
    cols = [_as_1d(s) for s in (s00, s01, s10, s11)]
    if len({c.numel() for c in cols}) != 1:
        raise ValueError(f"s00, s01, s10, s11 must have the same length, got {[c.numel() for c in cols]}")
    sims = torch.stack(cols, dim=1).reshape(-1, 2, 2)
    return compa_scores_nway(sims)


def compa_separation(S: Tensor | np.ndarray, audio: Tensor | np.ndarray,
                     text: Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """Per-row margin of S (R, 2, 2) and cosines of audio (R, 2, D) and text (R, 2, D) pairs."""
    sims = torch.as_tensor(S).detach().cpu().double()
    if sims.ndim != 3 or sims.shape[1:] != (2, 2):
        raise ValueError(f"S must have shape (R, 2, 2), got {tuple(sims.shape)}")
    out = {"margin": ((sims[:, 0, 0] + sims[:, 1, 1] - sims[:, 0, 1] - sims[:, 1, 0]) / 2).numpy()}
    for name, emb in (("audio_cos", audio), ("text_cos", text)):
        pairs = torch.as_tensor(emb).detach().cpu().double()
        if pairs.ndim != 3 or pairs.shape[:2] != (sims.shape[0], 2):
            raise ValueError(f"{name}: embeddings must have shape ({sims.shape[0]}, 2, D), got {tuple(pairs.shape)}")
        # Normalised here although the inputs should be unit vectors: a cosine must not depend on that promise.
        out[name] = torch.nn.functional.cosine_similarity(pairs[:, 0], pairs[:, 1], dim=-1).numpy()
    return out


def _as_1d(values: Any) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().cpu().double().reshape(-1)
    return torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(-1)


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) confidence interval, in percent, of the mean of 0/1 values."""
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if data.size == 0:
        return (math.nan, math.nan)
    if n_boot < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got n_boot={n_boot}, alpha={alpha}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Resample in blocks so n_boot x n indices never sit in memory at once for large n.
    block = max(1, 2_000_000 // data.size)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        idx = rng.integers(0, data.size, size=(stop - start, data.size))
        means[start:stop] = data[idx].mean(axis=1)
    lo, hi = np.quantile(means * 100.0, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def _percent(values: np.ndarray) -> float:
    return float(values.mean() * 100.0) if values.size else math.nan


# --------------------------------------------------------------------------- evaluation


def _embed_unique(
    items: Sequence[Any], embed: Callable[[list[Any]], Tensor], batch_size: int
) -> dict[Any, Tensor]:
    unique = list(dict.fromkeys(items))
    parts = []
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        emb = torch.as_tensor(embed(list(batch))).detach().float().cpu()
        if emb.ndim != 2 or emb.shape[0] != len(batch):
            raise ValueError(
                f"embedding callable returned shape {tuple(emb.shape)} for {len(batch)} inputs; "
                "expected (N, D)"
            )
        parts.append(emb)
    table = torch.cat(parts)
    return {item: table[i] for i, item in enumerate(unique)}


def _summary(scores: dict[str, Any], n_boot: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("text", "audio", "group"):
        out[name] = scores[name]
        # Same seed and row count -> the same resamples for all three scores (paired intervals).
        out[f"{name}_ci"] = list(bootstrap_ci(scores[f"{name}_rows"], n_boot=n_boot, seed=seed))
    out["n_rows"] = int(scores["text_rows"].size)
    return out


def evaluate_compa(
    rows: Sequence[CompaRow],
    embed_audio: Callable[[list[Path]], Tensor],
    embed_text: Callable[[list[str]], Tensor],
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Score CompA rows with the given (L2-normalised) embedding callables; 2-way and triplet scores.

    Besides text/audio/group (percent) the result holds the pair rows' mean `margin`, `audio_cos` and
    `text_cos` (see the module docstring; plain cosines, not percent).
    """
    if not rows:
        raise ValueError("no CompA rows to evaluate")
    files: list[Path] = []
    captions: list[str] = []
    for row in rows:
        files.extend(row.files)
        captions.extend(row.captions)
        if row.triplet_file is not None and row.triplet_caption is not None:
            files.append(row.triplet_file)
            captions.append(row.triplet_caption)
    audio = _embed_unique(files, embed_audio, batch_size)
    text = _embed_unique(captions, embed_text, batch_size)

    pair_sims = torch.stack(
        [
            torch.stack([text[c] for c in row.captions]) @ torch.stack([audio[f] for f in row.files]).T
            for row in rows
        ]
    )
    pair = compa_scores_nway(pair_sims)
    result: dict[str, Any] = _summary(pair, n_boot, seed)
    pair_audio = torch.stack([torch.stack([audio[f] for f in row.files]) for row in rows])
    pair_text = torch.stack([torch.stack([text[c] for c in row.captions]) for row in rows])
    separation = compa_separation(pair_sims, pair_audio, pair_text)
    for name, values in separation.items():
        result[name] = float(values.mean())

    triplet_rows = [i for i, row in enumerate(rows) if row.triplet_file is not None]
    triplet: dict[str, Any] | None = None
    triplet_scores: dict[str, Any] | None = None
    if triplet_rows:
        trip_sims = torch.stack(
            [
                torch.stack([text[c] for c in (*rows[i].captions, rows[i].triplet_caption)])
                @ torch.stack([audio[f] for f in (*rows[i].files, rows[i].triplet_file)]).T
                for i in triplet_rows
            ]
        )
        triplet_scores = compa_scores_nway(trip_sims)
        triplet = _summary(triplet_scores, n_boot, seed)
    result["triplet"] = triplet

    trip_pos = {r: k for k, r in enumerate(triplet_rows)}
    per_row = []
    for i, row in enumerate(rows):
        s = pair_sims[i]
        entry: dict[str, Any] = {
            "row": i + 1,
            "caption_0": row.captions[0],
            "caption_1": row.captions[1],
            "file_0": str(row.files[0]),
            "file_1": str(row.files[1]),
            "s00": float(s[0, 0]),
            "s01": float(s[0, 1]),
            "s10": float(s[1, 0]),
            "s11": float(s[1, 1]),
            "text": bool(pair["text_rows"][i]),
            "audio": bool(pair["audio_rows"][i]),
            "group": bool(pair["group_rows"][i]),
            "margin": float(separation["margin"][i]),
            "audio_cos": float(separation["audio_cos"][i]),
            "text_cos": float(separation["text_cos"][i]),
            "triplet_caption": row.triplet_caption,
            "triplet_file": str(row.triplet_file) if row.triplet_file is not None else None,
            "triplet_text": None,
            "triplet_audio": None,
            "triplet_group": None,
        }
        if i in trip_pos and triplet_scores is not None:
            k = trip_pos[i]
            for name in ("text", "audio", "group"):
                entry[f"triplet_{name}"] = bool(triplet_scores[f"{name}_rows"][k])
        per_row.append(entry)
    result["rows"] = per_row
    return result


def write_rows_csv(result: dict[str, Any], path: str | Path) -> None:
    """Write the per-row table of an `evaluate_compa` result as CSV (None becomes an empty cell)."""
    rows = result["rows"]
    if not rows:
        raise ValueError("result has no rows to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
