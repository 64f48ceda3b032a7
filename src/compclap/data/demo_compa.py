"""CompA-style rows of the demo world (order and attribute pairs from the same event instances) and their files."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from compclap.audio.synth import ATTRIBUTE_VALUES
from compclap.data.demo_captions import _capitalise, noun_phrase
from compclap.data.demo_world import Scene, _sequence_gaps, sample_event

COMPA_COLUMNS = ["pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file",
                 "triplet_caption", "triplet_file"]
RenderJob = tuple[str, Scene, int, float | None]  # (path, scene, sample rate, pad to seconds), as render_jobs takes


def _pick_pair(rng: np.random.Generator, types: Sequence[str], held_out: Sequence[tuple[str, str]],
               use_held_out: bool, exclude: frozenset[tuple[str, str]] = frozenset()) -> list[str]:
    if use_held_out and held_out:
        pair = list(held_out[int(rng.integers(len(held_out)))])
    else:
        for _ in range(1000):  # without exclusions the first draw is taken: the rows of old seeds stay as they were
            pair = [str(t) for t in rng.choice(list(types), size=2, replace=False)]
            if tuple(sorted(pair)) not in exclude:
                break
        else:
            raise ValueError("every pair of the given types is excluded")
    rng.shuffle(pair)
    return pair


def _excluded(pairs: Iterable[Sequence[str]]) -> frozenset[tuple[str, str]]:
    return frozenset(tuple(sorted(p)) for p in pairs)


def compa_order_rows(rng: np.random.Generator, types: Sequence[str], held_out: Sequence[tuple[str, str]],
                     n: int, triplet_share: float = 0.5, exclude: Iterable[Sequence[str]] = ()) -> list[dict]:
    """CompA-order rows: A then B vs B then A from the same two event instances; some rows add A and B overlaid.

    Both events are loud so that order is the only thing that separates the candidates. Half the rows use
    a `held_out` pair; no row uses a pair listed in `exclude` (unordered).
    """
    excluded = _excluded(exclude)
    rows = []
    for i in range(n):
        a_type, b_type = _pick_pair(rng, types, held_out, use_held_out=i % 2 == 0, exclude=excluded)
        a, b = sample_event(rng, a_type, loudness="loud"), sample_event(rng, b_type, loudness="loud")
        gap = _sequence_gaps(rng, [a, b])
        pa, pb = noun_phrase(a, ()), noun_phrase(b, ())
        row = {
            "pair": Scene("sequence", (a, b), gaps_s=gap),
            "reversed": Scene("sequence", (b, a), gaps_s=gap),
            "pair_caption": _capitalise(f"{pa} followed by {pb}"),
            "reversed_pair_caption": _capitalise(f"{pb} followed by {pa}"),
            "triplet": None,
            "triplet_caption": "-",
        }
        if rng.random() < triplet_share:
            row["triplet"] = Scene("overlay", (a, b), offsets_s=(0.0, 0.0))
            row["triplet_caption"] = _capitalise(f"{pa} and {pb} at the same time")
        rows.append(row)
    return rows


def compa_attribute_rows(rng: np.random.Generator, types: Sequence[str], held_out: Sequence[tuple[str, str]],
                         n: int, exclude: Iterable[Sequence[str]] = ()) -> list[dict]:
    """CompA-attribute rows: 'a loud A and a soft B' vs 'a soft A and a loud B', rendered from the same instances.

    The swapped attribute cycles loudness, pitch, duration; the audio plays A then B in both files. Half
    the rows use a `held_out` pair; no row uses a pair listed in `exclude` (unordered).
    """
    excluded = _excluded(exclude)
    kinds = ("loudness", "pitch", "duration")
    rows = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        a_type, b_type = _pick_pair(rng, types, held_out, use_held_out=i % 2 == 0, exclude=excluded)
        v1, v2 = ATTRIBUTE_VALUES[kind]
        if rng.random() < 0.5:
            v1, v2 = v2, v1
        fixed = {} if kind == "loudness" else {"loudness": "loud"}
        a = replace(sample_event(rng, a_type, **fixed), **{kind: v1})
        b = replace(sample_event(rng, b_type, **fixed), **{kind: v2})
        a_rev, b_rev = replace(a, **{kind: v2}), replace(b, **{kind: v1})
        # Gaps are sized for two long events so both renderings share one gap and fit in MAX_CLIP_S.
        gap = _sequence_gaps(rng, [replace(a, duration="long"), replace(b, duration="long")])
        rows.append({
            "pair": Scene("sequence", (a, b), gaps_s=gap),
            "reversed": Scene("sequence", (a_rev, b_rev), gaps_s=gap),
            "pair_caption": _capitalise(f"{noun_phrase(a, (kind,))} and {noun_phrase(b, (kind,))}"),
            "reversed_pair_caption": _capitalise(f"{noun_phrase(a_rev, (kind,))} and {noun_phrase(b_rev, (kind,))}"),
            "triplet": None,
            "triplet_caption": "-",
            "attribute": kind,
        })
    return rows


def compa_files(rows: Sequence[dict], folder: str, out: Path, sample_rate: int,
                pad: float | None) -> tuple[list[RenderJob], list[dict]]:
    """Render jobs (files `<folder>/NNNNNN_{a,b,c}.flac` under `out`) and the CSV rows (COMPA_COLUMNS) of CompA rows."""
    (out / folder).mkdir(parents=True, exist_ok=True)
    jobs: list[RenderJob] = []
    csv_rows = []
    for i, row in enumerate(rows):
        files = {}
        for key, suffix in (("pair", "a"), ("reversed", "b"), ("triplet", "c")):
            if row[key] is None:
                files[key] = "-"
                continue
            rel = f"{folder}/{i:06d}_{suffix}.flac"
            jobs.append((str(out / rel), row[key], sample_rate, pad))
            files[key] = rel
        csv_rows.append({"pair_caption": row["pair_caption"], "reversed_pair_caption": row["reversed_pair_caption"],
                         "pair_file": files["pair"], "reversed_pair_file": files["reversed"],
                         "triplet_caption": row["triplet_caption"], "triplet_file": files["triplet"]})
    return jobs, csv_rows


def write_compa_csv(path: Path, csv_rows: Sequence[dict]) -> None:
    """Write CSV rows with the COMPA_COLUMNS header (LF line ends, so bytes do not depend on the platform)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COMPA_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows)
