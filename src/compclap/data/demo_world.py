"""The offline demo world: scene sampling, held-out compositions, rendering, and the whole world's files.

Everything is deterministic for a seed: scenes, captions and per-event seeds are drawn in the main
process from one seed sequence per section (train, val, test, events, CompA, swaps), and audio is then
rendered from those per-event seeds, so worker count and scheduling never change the output. Captions
live in compclap.data.demo_captions, CompA rows in compclap.data.demo_compa, swapped renderings (the
training clips' audio negatives) in compclap.data.swaps.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compclap.audio.synth import (
    ATTRIBUTE_VALUES,
    DURATION_RANGE_S,
    EVENT_TYPES,
    LEVEL_DB_RANGE,
    OPTIONAL_EVENT_TYPES,
    PITCH_FACTOR,
    get_event_type,
    render_composition,
    render_composition_to_file,
    speech_available,
)
from compclap.data.demo_captions import (  # noqa: F401  (re-exported: the demo world's caption API)
    ATTRIBUTE_ORDER,
    ATTRIBUTE_WORDS,
    OVERLAY2_TEMPLATES,
    SEQUENCE2_TEMPLATES,
    SEQUENCE3_TEMPLATES,
    SINGLE_TEMPLATES,
    caption_scene,
    caption_scene_mentions,
    caption_scene_n,
    caption_scene_n_mentions,
    head_noun,
    noun_phrase,
)
from compclap.data.swaps import swapped_negatives, twin_negative_audio

MAX_CLIP_S = 4.0  # the demo model looks at 4 s
CROSSFADE_FRACTION = 0.1
GAP_RANGE_S = (0.05, 0.25)
P_NO_GAP = 0.3  # share of sequence junctions that crossfade directly instead of leaving silence
OVERLAY_MAX_OFFSET_S = 0.2
# Relation mix of a clip: (relation, number of events) -> probability.
SCENE_MIX: dict[tuple[str, int], float] = {
    ("single", 1): 0.25, ("sequence", 2): 0.35, ("sequence", 3): 0.15, ("overlay", 2): 0.25}
HELD_OUT_FRACTION = 0.1  # of all unordered type pairs
HELD_OUT_SHARE_EVAL = 0.5  # share of multi-event val/test clips built on a held-out pair
SPLITS = ("train", "val", "test")
# Never renumber: each id seeds one section's stream, so new sections get new ids and old outputs stay as they were.
_SECTION_IDS = {"held_out": 0, "train": 1, "val": 2, "test": 3, "events": 4, "compa_order": 5, "compa_attribute": 6,
                "train_swaps": 7, "compa_order_train": 8, "compa_attribute_train": 9}
# compclap.data.demo_compa imports this module, so its names are re-exported lazily (see __getattr__).
_COMPA_EXPORTS = ("COMPA_COLUMNS", "compa_order_rows", "compa_attribute_rows")


@dataclass(frozen=True)
class EventSpec:
    """One event instance: its type, attribute words and the seed its audio is rendered from."""

    type: str
    loudness: str
    pitch: str
    duration: str
    seed: int

    def attributes(self) -> dict[str, str]:
        """The attribute words as a dict."""
        return {"loudness": self.loudness, "pitch": self.pitch, "duration": self.duration}

    def to_json(self) -> dict[str, str]:
        """Manifest form: type and attribute words (no seed)."""
        return {"type": self.type, **self.attributes()}

    def max_seconds(self) -> float:
        """Upper bound of this event's rendered length."""
        return DURATION_RANGE_S[self.duration][1]


@dataclass(frozen=True)
class Scene:
    """A clip: events joined by a relation; sequences carry a gap per junction, overlays an onset per event."""

    relation: str
    events: tuple[EventSpec, ...]
    gaps_s: tuple[float, ...] = ()
    offsets_s: tuple[float, ...] = ()

    def to_plan(self) -> dict:
        """Plain-data form understood by compclap.audio.synth.render_composition."""
        return {"relation": self.relation, "events": [[e.type, e.attributes(), e.seed] for e in self.events],
                "gaps_s": list(self.gaps_s), "offsets_s": list(self.offsets_s)}

    def expression(self) -> str:
        """Expression string: `+` concatenates, `*` overlays (same operators as the modular loss)."""
        op = {"single": "", "sequence": " + ", "overlay": " * "}[self.relation]
        return op.join(e.type for e in self.events) if op else self.events[0].type


@dataclass
class DemoWorldConfig:
    """Sizes and settings of a generated demo world."""

    out: str
    seed: int = 0
    num_train: int = 1200
    num_val: int = 150
    num_test: int = 150
    num_compa: int = 60
    num_compa_train: int | None = None  # rows of each compa_*_train.csv (training pairs only); None: num_compa
    num_events: int = 300
    sample_rate: int = 16000
    workers: int = 2
    tokenizer_vocab: int = 1000  # 0 skips the tokenizer
    pad_clips: bool = True  # pad train/val/test and CompA clips with silence to exactly MAX_CLIP_S
    include_speech: bool = False
    audio_negatives: bool = True  # render swapped train clips and list them as "negative_audio" of the captions


# --- types and held-out compositions ---------------------------------------------------------

def __getattr__(name: str) -> Any:
    """Names re-exported from compclap.data.demo_compa, imported on first use."""
    if name in _COMPA_EXPORTS:
        from compclap.data import demo_compa

        return getattr(demo_compa, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def event_types(include_speech: bool = False) -> list[str]:
    """Names of the event types the world uses; speech only when asked for and espeak-ng is installed."""
    names = list(EVENT_TYPES)
    if include_speech and speech_available():
        names += list(OPTIONAL_EVENT_TYPES)
    return names


def _section_rng(seed: int, section: str) -> np.random.Generator:
    # One stream per section: changing --num-train leaves val/test/CompA untouched.
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SECTION_IDS[section]]))


def choose_held_out_pairs(types: Sequence[str], seed: int, fraction: float = HELD_OUT_FRACTION,
                          max_per_type: int = 2) -> list[tuple[str, str]]:
    """Deterministically pick unordered type pairs reserved for val/test (each type in at most `max_per_type`)."""
    pairs = list(itertools.combinations(sorted(types), 2))
    if not pairs:
        return []
    want = max(1, int(round(fraction * len(pairs))))
    rng = _section_rng(seed, "held_out")
    chosen: list[tuple[str, str]] = []
    used: Counter = Counter()
    for i in rng.permutation(len(pairs)):
        a, b = pairs[i]
        # Capping per type keeps every type well represented in training compositions.
        if used[a] < max_per_type and used[b] < max_per_type:
            chosen.append((a, b))
            used[a] += 1
            used[b] += 1
        if len(chosen) == want:
            break
    return sorted(chosen)


def type_pairs(types: Iterable[str]) -> set[tuple[str, str]]:
    """All unordered (sorted) pairs of distinct types occurring together in a clip."""
    return {tuple(sorted(p)) for p in itertools.combinations(set(types), 2)}


# --- sampling --------------------------------------------------------------------------------

def sample_event(rng: np.random.Generator, type_name: str, **fixed: str) -> EventSpec:
    """Draw an event of `type_name` with uniformly random attributes (unless fixed) and a render seed."""
    attrs = {k: str(rng.choice(v)) for k, v in ATTRIBUTE_VALUES.items()}
    attrs.update(fixed)
    return EventSpec(type=type_name, seed=int(rng.integers(0, 2**31 - 1)), **attrs)


def _sequence_gaps(rng: np.random.Generator, events: Sequence[EventSpec]) -> tuple[float, ...]:
    """Silence between sequence neighbours, kept small enough that the clip never exceeds MAX_CLIP_S."""
    junctions = len(events) - 1
    budget = max(0.0, MAX_CLIP_S - sum(e.max_seconds() for e in events)) / max(1, junctions)
    gaps = []
    for _ in range(junctions):
        no_gap, u = rng.random(2)
        gap = 0.0 if no_gap < P_NO_GAP else GAP_RANGE_S[0] + (GAP_RANGE_S[1] - GAP_RANGE_S[0]) * u
        gaps.append(round(min(gap, budget), 4))
    return tuple(gaps)


def make_scene(rng: np.random.Generator, relation: str, events: Sequence[EventSpec]) -> Scene:
    """Wrap events into a Scene, drawing sequence gaps or overlay onsets."""
    events = tuple(events)
    if relation == "sequence":
        return Scene(relation, events, gaps_s=_sequence_gaps(rng, events))
    if relation == "overlay":
        # The first event starts at 0; later ones may enter a little later but always overlap it.
        offs = [0.0] + [round(float(OVERLAY_MAX_OFFSET_S * rng.random()), 4) for _ in events[1:]]
        return Scene(relation, events, offsets_s=tuple(offs))
    if relation == "single" and len(events) == 1:
        return Scene(relation, events)
    raise ValueError(f"bad relation/events: {relation!r} with {len(events)} events")


class SceneSampler:
    """Samples clips for one split, keeping held-out pairs out of train and putting them into val/test."""

    def __init__(self, types: Sequence[str], held_out: Sequence[tuple[str, str]], rng: np.random.Generator,
                 split: str, mix: dict[tuple[str, int], float] | None = None,
                 held_out_share: float = HELD_OUT_SHARE_EVAL) -> None:
        """Args: types: event type names; held_out: reserved pairs; rng: this split's generator;
        split: train|val|test; mix: relation mix; held_out_share: share of multi-event eval clips on held-out pairs."""
        self.types = list(types)
        self.held_out = [tuple(sorted(p)) for p in held_out]
        self._held_set = set(self.held_out)
        self.rng = rng
        self.split = split
        self.kinds = list((mix or SCENE_MIX).items())
        self.held_out_share = held_out_share if split != "train" else 0.0

    def _types_for(self, n: int, use_held_out: bool) -> list[str]:
        rng = self.rng
        if use_held_out and self.held_out:
            pair = list(self.held_out[int(rng.integers(len(self.held_out)))])
            rng.shuffle(pair)
            rest = [t for t in self.types if t not in pair]
            chosen = pair + [str(t) for t in rng.choice(rest, size=n - 2, replace=False)]
            # Shuffle so the held-out pair is not always at the front of a 3-event sequence.
            return [chosen[i] for i in rng.permutation(n)]
        for _ in range(1000):
            chosen = [str(t) for t in rng.choice(self.types, size=n, replace=False)]
            if not (type_pairs(chosen) & self._held_set):
                return chosen
        raise RuntimeError("could not sample a composition free of held-out pairs")

    def sample(self) -> Scene:
        """Draw one scene."""
        rng = self.rng
        probs = np.array([p for _, p in self.kinds], dtype=float)
        (relation, n) = self.kinds[int(rng.choice(len(self.kinds), p=probs / probs.sum()))][0]
        use_held = n > 1 and rng.random() < self.held_out_share
        types = self._types_for(n, use_held)
        return make_scene(rng, relation, [sample_event(rng, t) for t in types])


# --- rendering -------------------------------------------------------------------------------

def render_scene(scene: Scene, sample_rate: int = 16000, max_seconds: float | None = MAX_CLIP_S,
                 pad_to_seconds: float | None = None) -> np.ndarray:
    """Render a scene to float32 mono; absolute event levels are kept (loud/soft stay meaningful across clips)."""
    return render_composition(scene.to_plan(), sample_rate, CROSSFADE_FRACTION, max_seconds, pad_to_seconds)


def render_jobs(jobs: Sequence[tuple[str, Scene, int, float | None]], workers: int = 1) -> list[int]:
    """Render `(path, scene, sample_rate, pad_to_seconds)` jobs to FLAC, in a process pool when workers > 1.

    Returns the sample count per job, in job order.
    """
    plain = [{"path": path, "plan": scene.to_plan(), "sample_rate": sr, "crossfade_fraction": CROSSFADE_FRACTION,
              "max_seconds": MAX_CLIP_S, "pad_to_seconds": pad} for path, scene, sr, pad in jobs]
    if workers <= 1 or len(plain) < 2:
        return [render_composition_to_file(j) for j in plain]
    import multiprocessing as mp

    # spawn, not fork: forking a parent that holds torch/OpenMP/tokenizers threads can deadlock. Jobs are
    # plain data and the worker lives in compclap.audio, so children never import this (heavy) package.
    ctx = mp.get_context("spawn")
    chunk = max(1, len(plain) // (workers * 8))
    with ctx.Pool(processes=workers) as pool:
        return list(pool.imap(render_composition_to_file, plain, chunksize=chunk))


# --- the whole world -------------------------------------------------------------------------

def _dump_jsonl(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _twin_record(original: str, path: str, swapped: Scene, kind: str, negs: list[list[dict[str, str]]],
                 rng: np.random.Generator) -> dict:
    """A swapped rendering as a training clip: three captions true of it, the original as their audio negative."""
    attribute = next((n["attribute"] for per_caption in negs for n in per_caption if n["kind"] == kind == "attribute"),
                     None)
    described = caption_scene_n_mentions(swapped, rng, 3)
    return {"audio": path, "captions": [c for c, _ in described], "events": [e.to_json() for e in swapped.events],
            "relation": swapped.relation, "expression": swapped.expression(), "twin_of": original,
            "negative_audio": twin_negative_audio(original, kind, attribute, [m for _, m in described])}


def build_demo_world(cfg: DemoWorldConfig) -> dict:
    """Generate the whole demo world under `cfg.out` (audio, manifests, CompA CSVs, tokenizer, meta.json)."""
    from compclap.data.demo_compa import compa_attribute_rows, compa_files, compa_order_rows, write_compa_csv

    out = Path(cfg.out)
    sr = int(cfg.sample_rate)
    types = event_types(cfg.include_speech)
    held_out = choose_held_out_pairs(types, cfg.seed)
    pad = MAX_CLIP_S if cfg.pad_clips else None
    jobs: list[tuple[str, Scene, int, float | None]] = []
    job_owner: list[str] = []  # section per job, to total up seconds
    manifests: dict[str, list[dict]] = {}
    held_set = set(held_out)
    negative_counts: Counter = Counter()
    twins: list[dict] = []  # the swapped renderings as clips of their own, with their own true captions

    for split, count in zip(SPLITS, (cfg.num_train, cfg.num_val, cfg.num_test)):
        sampler = SceneSampler(types, held_out, _section_rng(cfg.seed, split), split)
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
        swaps = split == "train" and cfg.audio_negatives
        if swaps:
            (out / "audio" / "train_swapped").mkdir(parents=True, exist_ok=True)
        records = []
        for i in range(count):
            scene = sampler.sample()
            rel = f"audio/{split}/{i:06d}.flac"
            described = caption_scene_n_mentions(scene, sampler.rng, 3)
            records.append({"audio": rel, "captions": [c for c, _ in described],
                            "events": [e.to_json() for e in scene.events], "relation": scene.relation,
                            "expression": scene.expression()})
            jobs.append((str(out / rel), scene, sr, pad))
            job_owner.append(split)
            if swaps:
                # A stream per clip from its own section: the split's stream (captions) is never touched.
                rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), _SECTION_IDS["train_swaps"], i]))
                negs, renders = swapped_negatives(scene, [m for _, m in described], f"audio/train_swapped/{i:06d}",
                                                  rng)
                records[-1]["negative_audio"] = negs
                for path, swapped, kind in renders:
                    jobs.append((str(out / path), swapped, sr, pad))
                    job_owner.append("train_swapped")
                    negative_counts[kind] += 1
                    twins.append(_twin_record(rel, path, swapped, kind, negs, rng))
        manifests[split] = records

    rng = _section_rng(cfg.seed, "events")
    (out / "audio" / "events").mkdir(parents=True, exist_ok=True)
    event_records = []
    for i in range(cfg.num_events):
        # Round-robin over types keeps the single-event pool balanced.
        ev = sample_event(rng, types[i % len(types)])
        rel = f"audio/events/{i:06d}.flac"
        event_records.append({"audio": rel, "label": ev.type, "captions": [noun_phrase(ev)],
                              "attributes": ev.attributes()})
        # Never padded: a composer concatenates these, and trailing silence would become a gap.
        jobs.append((str(out / rel), Scene("single", (ev,)), sr, None))
        job_owner.append("events")

    num_train_rows = cfg.num_compa if cfg.num_compa_train is None else cfg.num_compa_train
    compa = {  # (rows, audio folder); the train files are built from training pairs only, never held-out ones
        "order": (compa_order_rows(_section_rng(cfg.seed, "compa_order"), types, held_out, cfg.num_compa),
                  "compa/order"),
        "attribute": (compa_attribute_rows(_section_rng(cfg.seed, "compa_attribute"), types, held_out,
                                           cfg.num_compa), "compa/attribute"),
        "order_train": (compa_order_rows(_section_rng(cfg.seed, "compa_order_train"), types, [], num_train_rows,
                                         exclude=held_out), "compa_train/order"),
        "attribute_train": (compa_attribute_rows(_section_rng(cfg.seed, "compa_attribute_train"), types, [],
                                                 num_train_rows, exclude=held_out), "compa_train/attribute"),
    }
    compa_csv_rows: dict[str, list[dict]] = {}
    for name, (rows, folder) in compa.items():
        row_jobs, compa_csv_rows[name] = compa_files(rows, folder, out, sr, pad)
        jobs += row_jobs
        job_owner += [f"compa_{name}"] * len(row_jobs)

    lengths = render_jobs(jobs, cfg.workers)
    seconds: Counter = Counter()
    for section, n in zip(job_owner, lengths):
        seconds[section] += n / sr

    for split in SPLITS:
        _dump_jsonl(out / f"{split}.jsonl", manifests[split])
    _dump_jsonl(out / "events.jsonl", event_records)
    if cfg.audio_negatives:
        _dump_jsonl(out / "train_swapped.jsonl", twins)
    for name, csv_rows in compa_csv_rows.items():
        write_compa_csv(out / f"compa_{name}.csv", csv_rows)

    all_captions = [c for split in SPLITS for r in manifests[split] for c in r["captions"]]
    all_captions += [c for r in event_records for c in r["captions"]]
    # The training CompA files only reuse words of these captions; leaving them out keeps the tokenizer as it was.
    all_captions += [r[k] for name in ("order", "attribute") for r in compa_csv_rows[name]
                     for k in ("pair_caption", "reversed_pair_caption", "triplet_caption") if r[k] != "-"]
    tokenizer_dir = None
    if cfg.tokenizer_vocab > 0:
        from compclap.text.tokenizer import train_bpe_tokenizer

        tokenizer_dir = train_bpe_tokenizer(all_captions, out / "tokenizer", cfg.tokenizer_vocab)

    def held_count(records: list[dict]) -> int:
        return sum(bool(type_pairs(e["type"] for e in r["events"]) & held_set) for r in records)

    meta = {
        "generator": "compclap.data.demo_world",
        "seed": cfg.seed,
        "sample_rate": sr,
        "max_clip_seconds": MAX_CLIP_S,
        "clips_padded_to_seconds": pad,
        "counts": {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test, "events": cfg.num_events,
                   "compa_order": cfg.num_compa, "compa_attribute": cfg.num_compa,
                   "compa_order_triplets": sum(r["triplet"] is not None for r in compa["order"][0]),
                   "compa_order_train": num_train_rows, "compa_attribute_train": num_train_rows,
                   "train_negative_audio": {k: negative_counts[k] for k in ("order", "attribute")}},
        "relations": {s: dict(sorted(Counter(r["relation"] for r in manifests[s]).items())) for s in SPLITS},
        "held_out_clips": {s: held_count(manifests[s]) for s in SPLITS},
        "event_types": {t: get_event_type(t).noun_phrase for t in types},
        "held_out_pairs": [list(p) for p in held_out],
        "held_out_policy": ("clips whose event types contain a held-out pair (in either order) occur only in "
                            "val/test and the CompA files; train (and compa_*_train) never contains both types "
                            "of such a pair"),
        "negative_audio_policy": ("train.jsonl's negative_audio lists, per caption, swapped renderings it is false "
                                  "of: every sequence reversed (kind order, all its captions); a 2-event clip with "
                                  "one differing attribute traded between its events (kind attribute, the captions "
                                  "naming that attribute)"),
        "swapped_clips_policy": ("train_swapped.jsonl holds every swapped rendering as a training clip with its own "
                                 "true captions and the original clip as negative_audio of the captions false of it, "
                                 "so no rendering is only ever a negative (a loss could then push all of them away "
                                 "from every text instead of reading order and attributes)"),
        "attributes": {"loudness_level_db": {k: list(v) for k, v in LEVEL_DB_RANGE.items()},
                       "pitch_factor": PITCH_FACTOR,
                       "duration_seconds": {k: list(v) for k, v in DURATION_RANGE_S.items()}},
        "audio_seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
        "files": {"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl", "events": "events.jsonl",
                  "train_swapped": "train_swapped.jsonl" if cfg.audio_negatives else None,
                  **{f"compa_{name}": f"compa_{name}.csv" for name in compa},
                  "tokenizer": "tokenizer" if tokenizer_dir is not None else None},
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "workers")},
    }
    with open(out / "meta.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return {"out": os.fspath(out), "files": len(jobs), "types": len(types), "held_out_pairs": len(held_out),
            "audio_seconds": round(sum(seconds.values()), 1), "meta": meta}
