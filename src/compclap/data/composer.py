"""Compose multi-event training clips from single-event clips (CompA-CLAP stage 3 data).

Pipeline (`compose(ComposeConfig(...))`, CLI: `data_prep/compose.py`):

1. Read the event manifest: one single-event clip per line with a `label` (str; a list of labels uses its
   first) and optionally `captions`. Each event's caption phrase is its first caption ("a short loud
   low beep") or, without one (or with `phrase_source="label"`), its label with an article ("a dog bark").
2. Probe every event clip (fully decoded, in parallel, at the target rate). Clips that fail to decode
   are reported on stderr (count and names) and skipped; so are clips longer than `max_seconds`.
3. Plan each mix in the main process from its own random stream, `SeedSequence([seed, crc32(name),
   stage, i])`, so the output does not depend on the number of workers or on `num`: the number of
   events n is drawn from `events_per_mix` (or fixed per curriculum stage), a random tree shape over n
   events (`expressions.sample_shape`), then the events. Event choice never puts a label pair listed in
   `exclude_pairs` into one mix (e.g. the demo world's held-out pairs, so that composed training data
   does not leak them) and avoids, as far as the pool allows, two events of the same category
   (`categories`) sounding together (their lowest common node is an overlay) and the same label twice
   in one mix. With `max_seconds`, a mix whose
   rendered length would exceed it is re-drawn (other events; after half the tries also another shape)
   and dropped (counted as "unfit") after `max_tries` tries; mixes are never cropped, since that would cut
   off the end of a sequence and make its caption false.
4. Render in a process pool: sequences crossfade (`crossfade_fraction` of the shorter neighbour),
   overlays mix at a sampled RMS level ratio (`overlay_db`), nothing clips, the result is
   peak-normalised (`peak`), optionally padded with silence to `max_seconds` (`pad`), and written as
   16-bit FLAC. With `swapped_audio`, a mix containing a `+` is also rendered from the same clips with one
   `+` reversed (the root if it is one, else the first in pre-order; `swaps.order_swapped_tree`), same
   levels and crossfades, to `audio/<stem>_swapped/NNNNNN_order.flac`: audio its full caption is false of.
5. Write the manifest: one line per mix, `{"audio", "captions": [full caption], "negatives": [[...]]
   (parallel to captions), "positives": [full caption, sub-expression captions...], "expression",
   "n_events", "seconds", "events": [{"audio", "label"(, "category")}]}` and, with `swapped_audio`,
   `"negative_audio": [[{"audio": <swapped file>, "kind": "order"}]]` (parallel to captions; `[[]]` when no
   swap changes the caption, e.g. no `+`), plus `<name>_compose.json`
   (settings and counts). With `curriculum=[2, 3, 4]` one manifest per stage is written,
   `<name>_stage1.jsonl`, ..., stage k with exactly curriculum[k-1] events per mix (see
   compclap.data.curriculum for switching between them by epoch).
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compclap.data.compose_workers import _parallel_map, _probe, _render_job
from compclap.data.expressions import (
    DEFAULT_TEMPLATES,
    Leaf,
    Node,
    caption,
    caption_phrase,
    decorate,
    expression,
    label_phrase,
    leaves,
    map_leaves,
    negatives,
    overlaid_pairs,
    positives,
    rendered_length,
    sample_shape,
)
from compclap.data.manifest import ManifestError, read_manifest, write_manifest
from compclap.data.swaps import order_swapped_tree

DEFAULT_EVENTS_PER_MIX: dict[int, float] = {2: 0.3, 3: 0.6, 4: 0.1}


@dataclass
class ComposeConfig:
    """Settings of one composition run (see the module docstring for what each does)."""

    events: str  # manifest of single-event clips, each with a "label"
    out: str  # output folder: <name>.jsonl (or <name>_stageK.jsonl), audio/<stem>/NNNNNN.flac, <name>_compose.json
    num: int = 1000  # mixes to plan per manifest (per stage with a curriculum)
    seed: int = 0
    name: str = "train"  # manifest name; also salts the random streams so train/val differ at one seed
    events_per_mix: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_EVENTS_PER_MIX))
    curriculum: list[int] | None = None  # events per mix of each stage, e.g. [2, 3, 4]
    categories: str | None = None  # YAML/JSON: label -> category, or category -> [labels]
    exclude_pairs: str | None = None  # YAML/JSON list of [label, label], or a demo world meta.json
    phrase_source: str = "caption"  # "caption": first caption, else label; "label": always the label
    p_sequence: float = 0.5  # probability that a split of the random tree is `+` (else `*`)
    max_negatives: int | None = 5  # per kind ("order", "relation")
    max_positives: int | None = None  # None keeps every sub-expression caption
    sample_rate: int = 16000
    crossfade_fraction: float = 0.1
    overlay_db: tuple[float, float] | None = (-6.0, 6.0)  # None keeps each operand's own level
    peak: float | None = 0.9  # None keeps absolute levels (only scales down what would clip)
    max_seconds: float | None = None
    pad: bool = False  # pad with silence (not repetition) to max_seconds
    max_tries: int = 50  # attempts to fit a mix into max_seconds before it is dropped
    swapped_audio: bool = True  # also render each mix with one `+` reversed: its caption's "negative_audio"
    workers: int = 2


# --- option parsing helpers ----------------------------------------------------------------------


def parse_events_per_mix(text: str | Mapping) -> dict[int, float]:
    """'{2: 0.3, 3: 0.6, 4: 0.1}' (YAML or JSON, keys may be strings) -> {2: 0.3, 3: 0.6, 4: 0.1}, normalised."""
    import yaml

    raw = yaml.safe_load(text) if isinstance(text, str) else dict(text)
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"events per mix must be a mapping {{n: probability}}, got {text!r}")
    dist = {int(k): float(v) for k, v in raw.items()}
    if any(n < 1 for n in dist) or any(p < 0 for p in dist.values()) or sum(dist.values()) <= 0:
        raise ValueError(f"events per mix needs n >= 1 and non-negative probabilities summing to > 0, got {text!r}")
    total = sum(dist.values())
    return {n: round(p / total, 9) for n, p in sorted(dist.items()) if p > 0}


def parse_overlay_db(text: str | None) -> tuple[float, float] | None:
    """'keep' -> None; '6' -> (-6, 6); '-3,9' -> (-3, 9)."""
    if text is None or str(text).strip().lower() in ("keep", "none"):
        return None
    parts = [float(p) for p in str(text).split(",")]
    if len(parts) == 1:
        return (-abs(parts[0]), abs(parts[0]))
    if len(parts) != 2 or parts[0] > parts[1]:
        raise ValueError(f"overlay level range must be 'keep', 'X' or 'LO,HI' (dB), got {text!r}")
    return (parts[0], parts[1])


def load_categories(path: str | os.PathLike | None) -> dict[str, str]:
    """Label -> category (keys lower-cased) from YAML/JSON: `{label: category}` or `{category: [labels]}`."""
    if path is None:
        return {}
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: the category map must be a mapping")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, (list, tuple)):
            out.update({str(label).lower(): str(key) for label in value})
        elif value is not None:
            out[str(key).lower()] = str(value)
    return out


def load_excluded_pairs(path: str | os.PathLike | None) -> set[frozenset[str]]:
    """Label pairs never to put in one mix, from a YAML/JSON list of pairs or a file with a `held_out_pairs` key."""
    if path is None:
        return set()
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if isinstance(raw, Mapping):
        raw = raw.get("held_out_pairs", raw.get("exclude_pairs"))
    if not isinstance(raw, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in raw):
        raise ValueError(f"{path}: expected a list of [label, label] pairs (or a 'held_out_pairs' key)")
    return {frozenset((str(a).lower(), str(b).lower())) for a, b in raw}


# --- the event pool ------------------------------------------------------------------------------


@dataclass
class EventPool:
    """Usable single-event clips: absolute paths, paths as written to the output, labels, phrases, categories, lengths."""

    paths: list[str]
    sources: list[str]
    labels: list[str]
    phrases: list[str]
    categories: list[str | None]
    lengths: list[int]

    def __len__(self) -> int:
        return len(self.paths)


def read_events(path: str | os.PathLike, phrase_source: str = "caption",
                categories: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Event manifest lines as {"path", "source", "label", "phrase", "category"}; raises ManifestError without a label."""
    if phrase_source not in ("caption", "label"):
        raise ValueError(f"phrase_source must be 'caption' or 'label', got {phrase_source!r}")
    categories = categories or {}
    root = Path(path).resolve().parent
    out = []
    for lineno, rec in enumerate(read_manifest(path, require_captions=False), 1):
        label = rec.get("label")
        if isinstance(label, (list, tuple)) and label:
            label = label[0]
        if not isinstance(label, str) or not label.strip():
            raise ManifestError(f"{path}: event {lineno}: every event needs a \"label\" string")
        caps = rec.get("captions") or []
        first = caps[0] if isinstance(caps, list) and caps and isinstance(caps[0], str) and caps[0].strip() else None
        phrase = caption_phrase(first) if phrase_source == "caption" and first else label_phrase(label)
        audio = Path(rec["audio"]).resolve()
        try:
            source = audio.relative_to(root).as_posix()  # as the input manifest wrote it, when it is relative
        except ValueError:
            source = str(audio)
        out.append({"path": str(audio), "source": source, "label": label.strip(), "phrase": phrase,
                    "category": categories.get(label.strip().lower())})
    return out


# --- planning ------------------------------------------------------------------------------------


def _rng_for(seed: int, name: str, stage: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), stage, index]))


_RELAXED_TRIES = 10  # fresh draws to try when a greedy choice had to relax a constraint


def _pick_events(shape: Node, pool: EventPool, rng: np.random.Generator,
                 excluded: set[frozenset[str]]) -> tuple[list[int] | None, int]:
    """Pool indices for the shape's leaves (left to right), and how far the constraints had to be relaxed (0: not).

    Constraints, relaxed in this order when nothing satisfies them (greedily, slot by slot): no overlaid
    pair of the same category (level 1); no label twice (level 2: even the same clip may recur). Excluded
    label pairs are never relaxed: when nothing else is left, the picks are None.
    """
    n = len(leaves(shape))
    partners: dict[int, set[int]] = {i: set() for i in range(n)}
    for i, j in overlaid_pairs(shape):
        partners[i].add(j)
        partners[j].add(i)
    chosen: list[int] = []
    labels_lower = [lab.lower() for lab in pool.labels]

    def ok(idx: int, slot: int, level: int) -> bool:
        label = labels_lower[idx]
        used = [labels_lower[c] for c in chosen]
        if any(frozenset((label, u)) in excluded for u in used if u != label):
            return False
        if level < 2 and label in used:
            return False
        if level < 1 and pool.categories[idx] is not None:
            clash = any(pool.categories[chosen[j]] == pool.categories[idx] for j in partners[slot] if j < slot)
            if clash:
                return False
        return True

    relaxed = 0
    for slot in range(n):
        pick = None
        for _ in range(64):
            idx = int(rng.integers(len(pool)))
            if ok(idx, slot, 0):
                pick = idx
                break
        if pick is None:  # rare: scan the whole pool in a random order, relaxing step by step
            order = rng.permutation(len(pool))
            for level in range(3):
                pick = next((int(i) for i in order if ok(int(i), slot, level)), None)
                if pick is not None:
                    relaxed = max(relaxed, level)
                    break
            if pick is None:
                return None, 3
        chosen.append(int(pick))
    return chosen, relaxed


def plan_mix(pool: EventPool, n: int, rng: np.random.Generator, cfg: ComposeConfig,
             excluded: set[frozenset[str]] = frozenset()) -> Node | None:
    """A decorated tree over n pool events that fits in cfg.max_seconds, or None after cfg.max_tries attempts."""
    max_samples = None if cfg.max_seconds is None else int(round(cfg.max_seconds * cfg.sample_rate))
    tries = max(1, cfg.max_tries)
    shape = sample_shape(n, rng, cfg.p_sequence)
    best: tuple[int, Node] | None = None  # (constraint relaxation level, tree) of the best fitting draw
    for attempt in range(tries):
        if attempt and attempt == tries // 2:
            shape = sample_shape(n, rng, cfg.p_sequence)  # overlays are shorter than sequences
        picks, level = _pick_events(shape, pool, rng, excluded)
        if picks is None:
            continue
        tree = map_leaves(shape, lambda leaf: Leaf(picks[leaf.index], pool.labels[picks[leaf.index]],
                                                   pool.phrases[picks[leaf.index]]))
        if max_samples is None or rendered_length(tree, pool.lengths, cfg.crossfade_fraction) <= max_samples:
            if level == 0:
                return decorate(tree, rng, cfg.overlay_db)
            if best is None or level < best[0]:
                best = (level, tree)
        if best is not None and attempt >= min(tries - 1, _RELAXED_TRIES):
            break  # the greedy choice had to relax a constraint; a few fresh draws did not avoid it
    return None if best is None else decorate(best[1], rng, cfg.overlay_db)


def describe(tree: Node, max_negatives: int | None = 5, max_positives: int | None = None) -> dict[str, Any]:
    """The manifest fields that depend only on the tree: captions, negatives, positives, expression."""
    pos = positives(tree, DEFAULT_TEMPLATES, max_positives)
    full = caption(tree)
    all_pos = pos if max_positives is None else positives(tree, DEFAULT_TEMPLATES)
    negs = negatives(tree, DEFAULT_TEMPLATES, max_negatives, positive_texts=all_pos)
    return {"captions": [full], "negatives": [negs], "positives": pos, "expression": expression(tree)}


# --- the whole run -------------------------------------------------------------------------------


def _stages(cfg: ComposeConfig) -> list[tuple[int, str, dict[int, float]]]:
    """(stage number, manifest stem, events-per-mix distribution) per output manifest."""
    if cfg.curriculum:
        return [(k, f"{cfg.name}_stage{k}", {int(n): 1.0}) for k, n in enumerate(cfg.curriculum, 1)]
    return [(0, cfg.name, parse_events_per_mix(cfg.events_per_mix))]


def _report(what: str, failures: Sequence[tuple[str, str]], total: int) -> None:
    if not failures:
        return
    names = ", ".join(p for p, _ in failures[:10]) + (f" (+{len(failures) - 10} more)" if len(failures) > 10 else "")
    print(f"compose: {len(failures)} of {total} {what} failed to decode and were skipped: {names}", file=sys.stderr)
    for path, err in failures[:10]:
        print(f"compose:   {err}", file=sys.stderr)


def compose(cfg: ComposeConfig) -> dict[str, Any]:
    """Run the whole composition; returns a summary (manifest paths, counts, skipped files, seconds of audio)."""
    start = time.perf_counter()
    if cfg.pad and cfg.max_seconds is None:
        raise ValueError("pad needs max_seconds (the length to pad to)")
    if cfg.curriculum and any(int(n) < 1 for n in cfg.curriculum):
        raise ValueError(f"curriculum stages need at least one event each, got {cfg.curriculum}")
    out = Path(cfg.out)
    sr = int(cfg.sample_rate)
    categories = load_categories(cfg.categories)
    excluded = load_excluded_pairs(cfg.exclude_pairs)
    records = read_events(cfg.events, cfg.phrase_source, categories)
    stages = _stages(cfg)

    # 1. probe every event clip (decode failures are reported and skipped)
    probed = _parallel_map(_probe, [(r["path"], sr) for r in records], cfg.workers)
    bad = [(r["source"], err) for r, (_, err) in zip(records, probed) if err is not None]
    _report("event clips", bad, len(records))
    max_samples = None if cfg.max_seconds is None else int(round(cfg.max_seconds * sr))
    usable = [(r, n) for r, (n, err) in zip(records, probed) if err is None]
    too_long = [r["source"] for r, n in usable if max_samples is not None and n > max_samples]
    usable = [(r, n) for r, n in usable if max_samples is None or n <= max_samples]
    if not usable:
        raise ValueError(f"{cfg.events}: no usable event clips ({len(bad)} failed to decode, {len(too_long)} longer "
                         f"than max_seconds={cfg.max_seconds})")
    pool = EventPool(paths=[r["path"] for r, _ in usable], sources=[r["source"] for r, _ in usable],
                     labels=[r["label"] for r, _ in usable], phrases=[r["phrase"] for r, _ in usable],
                     categories=[r["category"] for r, _ in usable], lengths=[n for _, n in usable])

    # 2. plan every mix in the main process (deterministic whatever the worker count)
    jobs: list[dict[str, Any]] = []
    planned: list[tuple[str, dict[str, Any]]] = []  # (stem, record) per job
    unfit: Counter = Counter()
    for stage, stem, dist in stages:
        (out / "audio" / stem).mkdir(parents=True, exist_ok=True)
        ns, ps = list(dist), np.array(list(dist.values()), dtype=float)
        for i in range(cfg.num):
            rng = _rng_for(cfg.seed, cfg.name, stage, i)
            n = int(ns[int(rng.choice(len(ns), p=ps / ps.sum()))]) if len(ns) > 1 else int(ns[0])
            tree = plan_mix(pool, n, rng, cfg, excluded)
            if tree is None:
                unfit[stem] += 1
                continue
            rel = f"audio/{stem}/{i:06d}.flac"
            events = []
            for leaf in leaves(tree):
                ev = {"audio": pool.sources[leaf.index], "label": pool.labels[leaf.index]}
                if pool.categories[leaf.index] is not None:
                    ev["category"] = pool.categories[leaf.index]
                events.append(ev)
            length = rendered_length(tree, pool.lengths, cfg.crossfade_fraction)
            rec = {"audio": rel, **describe(tree, cfg.max_negatives, cfg.max_positives), "n_events": n,
                   "seconds": round(length / sr, 6), "events": events}
            job = {"path": str(out / rel), "tree": tree, "sample_rate": sr,
                   "sources": {leaf.index: pool.paths[leaf.index] for leaf in leaves(tree)},
                   "crossfade_fraction": cfg.crossfade_fraction, "peak": cfg.peak,
                   "pad_to": max_samples if cfg.pad else None}
            if cfg.swapped_audio:
                swapped = order_swapped_tree(tree)
                rec["negative_audio"] = [[]]
                if swapped is not None:  # same clips, so it fits wherever the mix fits
                    swapped_rel = f"audio/{stem}_swapped/{i:06d}_order.flac"
                    (out / "audio" / f"{stem}_swapped").mkdir(parents=True, exist_ok=True)
                    rec["negative_audio"] = [[{"audio": swapped_rel, "kind": "order"}]]
                    job["swapped"] = {"path": str(out / swapped_rel), "tree": swapped}
            planned.append((stem, rec))
            jobs.append(job)

    # 3. render in parallel
    results = _parallel_map(_render_job, jobs, cfg.workers)
    failed = sorted({(_source_of(pool, p), err) for _, p, err in results if p is not None})
    _report("event clips (while rendering mixes)", failed, len(pool))
    manifests: dict[str, list[dict[str, Any]]] = {stem: [] for _, stem, _ in stages}
    seconds = 0.0
    for (stem, rec), (n_samples, failed_path, _) in zip(planned, results):
        if failed_path is not None:
            continue
        manifests[stem].append(rec)
        seconds += n_samples / sr

    # 4. manifests and a record of how they were made
    paths = {}
    for stem, recs in manifests.items():
        paths[stem] = str(out / f"{stem}.jsonl")
        write_manifest(recs, paths[stem])
    counts = {stem: dict(sorted(Counter(r["n_events"] for r in recs).items())) for stem, recs in manifests.items()}
    meta = {
        "generator": "compclap.data.composer",
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "workers")},
        "manifests": {stem: f"{stem}.jsonl" for stem in manifests},
        "clips": {stem: len(recs) for stem, recs in manifests.items()},
        "events_per_mix": {stem: {str(k): v for k, v in c.items()} for stem, c in counts.items()},
        "event_clips": {"total": len(records), "usable": len(pool), "failed_to_decode": [p for p, _ in bad],
                        "longer_than_max_seconds": too_long},
        "unfit_mixes": dict(unfit),
        "swapped_audio": {stem: sum(bool(r.get("negative_audio", [[]])[0]) for r in recs)
                          for stem, recs in manifests.items()},
        "render_failures": [p for p, _ in failed],
    }
    with open(out / f"{cfg.name}_compose.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return {"out": str(out), "manifests": paths, "clips": sum(len(r) for r in manifests.values()),
            "per_manifest": meta["clips"], "events_per_mix": counts, "events_total": len(records),
            "events_usable": len(pool), "skipped_events": [p for p, _ in bad], "too_long_events": len(too_long),
            "unfit": sum(unfit.values()), "render_failed": len(planned) - sum(len(r) for r in manifests.values()),
            "audio_seconds": round(seconds, 1), "swapped_audio": sum(meta["swapped_audio"].values()),
            "elapsed_s": time.perf_counter() - start}


def _source_of(pool: EventPool, path: str) -> str:
    try:
        return pool.sources[pool.paths.index(path)]
    except ValueError:
        return path

