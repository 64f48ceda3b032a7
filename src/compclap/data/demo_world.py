"""The offline demo world: scene sampling, truthful captions, held-out compositions, CompA-style pairs, rendering.

Everything is deterministic for a seed: scenes, captions and per-event seeds are drawn in the main
process from one seed sequence per section (train, val, test, events, CompA), and audio is then
rendered from those per-event seeds, so worker count and scheduling never change the output.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

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
COMPA_COLUMNS = ["pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file",
                 "triplet_caption", "triplet_file"]
ATTRIBUTE_ORDER = ("duration", "loudness", "pitch")  # adjective order in noun phrases: "a short loud high beep"
# Caption wording: the first word of each tuple is the canonical one (CompA rows, event captions).
ATTRIBUTE_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "loudness": {"loud": ("loud",), "soft": ("soft", "quiet")},
    "pitch": {"high": ("high", "high-pitched"), "low": ("low", "low-pitched")},
    "duration": {"short": ("short", "brief"), "long": ("long",)},
}
SINGLE_TEMPLATES = ("{a}", "the sound of {a}", "{a} can be heard", "there is {a}", "a recording of {a}",
                    "{a} is heard", "you can hear {a}")
SEQUENCE2_TEMPLATES = ("{a} followed by {b}", "{a}, then {b}", "{a} and then {b}", "{a} before {b}",
                       "{b} after {a}", "first {a}, then {b}", "{a} is followed by {b}",
                       "{a} comes first, then {b}")
SEQUENCE3_TEMPLATES = ("{a}, then {b}, then {c}", "{a} followed by {b} and then {c}",
                       "first {a}, then {b}, and finally {c}", "{a}, {b} and then {c}",
                       "{a} followed by {b}, followed by {c}", "{a} before {b}, and {c} last")
# Overlay is symmetric, so the renderer is free to swap {a} and {b} when captioning.
OVERLAY2_TEMPLATES = ("{a} while {b} is heard", "{a} with {b}", "{a} over {b}", "{a} and {b} at the same time",
                      "{a} and {b} simultaneously", "{a} together with {b}", "{a} mixed with {b}",
                      "{a} on top of {b}")
SPLITS = ("train", "val", "test")
_SECTION_IDS = {"held_out": 0, "train": 1, "val": 2, "test": 3, "events": 4, "compa_order": 5, "compa_attribute": 6}


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
    num_events: int = 300
    sample_rate: int = 16000
    workers: int = 2
    tokenizer_vocab: int = 1000  # 0 skips the tokenizer
    pad_clips: bool = True  # pad train/val/test and CompA clips with silence to exactly MAX_CLIP_S
    include_speech: bool = False


# --- types and held-out compositions ---------------------------------------------------------

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


# --- captions --------------------------------------------------------------------------------

def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def head_noun(type_name: str) -> str:
    """The type's noun without its article: 'beep', 'engine rumble'."""
    phrase = get_event_type(type_name).noun_phrase
    first, _, rest = phrase.partition(" ")
    return rest if first in ("a", "an") else phrase


def noun_phrase(event: EventSpec, include: Iterable[str] = ATTRIBUTE_ORDER,
                rng: np.random.Generator | None = None) -> str:
    """'a short loud high beep': the listed attributes as adjectives; with `rng`, synonyms are varied."""
    include = set(include)
    words = []
    for key in ATTRIBUTE_ORDER:
        if key in include:
            options = ATTRIBUTE_WORDS[key][getattr(event, key)]
            words.append(options[int(rng.integers(len(options)))] if rng is not None else options[0])
    words.append(head_noun(event.type))
    return f"{_article(words[0])} {' '.join(words)}"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _attribute_subset(rng: np.random.Generator) -> tuple[str, ...]:
    # A third of the mentions carry every attribute; the rest a random subset (possibly none).
    if rng.random() < 0.35:
        return ATTRIBUTE_ORDER
    return tuple(k for k in ATTRIBUTE_ORDER if rng.random() < 0.5)


def caption_scene(scene: Scene, rng: np.random.Generator) -> str:
    """One caption that is true of the scene: order words follow the audio order, attributes the rendered ones."""
    phrases = [noun_phrase(e, _attribute_subset(rng), rng) for e in scene.events]
    n = len(phrases)
    if scene.relation == "single":
        templates: Sequence[str] = SINGLE_TEMPLATES
    elif scene.relation == "sequence":
        templates = SEQUENCE2_TEMPLATES if n == 2 else SEQUENCE3_TEMPLATES
        if n > 3:
            raise ValueError("sequence captions support at most 3 events")
    elif scene.relation == "overlay" and n == 2:
        templates = OVERLAY2_TEMPLATES
        if rng.random() < 0.5:
            phrases = phrases[::-1]
    else:
        raise ValueError(f"no caption templates for {scene.relation} with {n} events")
    template = templates[int(rng.integers(len(templates)))]
    return _capitalise(template.format(**dict(zip("abc", phrases))))


def caption_scene_n(scene: Scene, rng: np.random.Generator, n: int = 3) -> list[str]:
    """`n` distinct captions for a scene (distinct as long as the templates allow)."""
    captions: list[str] = []
    for _ in range(50 * n):
        c = caption_scene(scene, rng)
        if c not in captions:
            captions.append(c)
        if len(captions) == n:
            break
    while len(captions) < n:  # only reachable with a template set too small for n
        captions.append(captions[len(captions) % max(1, len(captions))])
    return captions


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


# --- CompA-style benchmark rows --------------------------------------------------------------

def _pick_pair(rng: np.random.Generator, types: Sequence[str], held_out: Sequence[tuple[str, str]],
               use_held_out: bool) -> list[str]:
    if use_held_out and held_out:
        pair = list(held_out[int(rng.integers(len(held_out)))])
    else:
        pair = [str(t) for t in rng.choice(list(types), size=2, replace=False)]
    rng.shuffle(pair)
    return pair


def compa_order_rows(rng: np.random.Generator, types: Sequence[str], held_out: Sequence[tuple[str, str]],
                     n: int, triplet_share: float = 0.5) -> list[dict]:
    """CompA-order rows: A then B vs B then A from the same two event instances; some rows add A and B overlaid.

    Both events are loud so that order is the only thing that separates the candidates.
    """
    rows = []
    for i in range(n):
        a_type, b_type = _pick_pair(rng, types, held_out, use_held_out=i % 2 == 0)
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
                         n: int) -> list[dict]:
    """CompA-attribute rows: 'a loud A and a soft B' vs 'a soft A and a loud B', rendered from the same instances.

    The swapped attribute cycles loudness, pitch, duration; the audio plays A then B in both files.
    """
    kinds = ("loudness", "pitch", "duration")
    rows = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        a_type, b_type = _pick_pair(rng, types, held_out, use_held_out=i % 2 == 0)
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


# --- the whole world -------------------------------------------------------------------------

def _dump_jsonl(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def build_demo_world(cfg: DemoWorldConfig) -> dict:
    """Generate the whole demo world under `cfg.out` (audio, manifests, CompA CSVs, tokenizer, meta.json)."""
    out = Path(cfg.out)
    sr = int(cfg.sample_rate)
    types = event_types(cfg.include_speech)
    held_out = choose_held_out_pairs(types, cfg.seed)
    pad = MAX_CLIP_S if cfg.pad_clips else None
    jobs: list[tuple[str, Scene, int, float | None]] = []
    job_owner: list[tuple[str, int]] = []  # (section, index) per job, to total up seconds
    manifests: dict[str, list[dict]] = {}
    held_set = set(held_out)

    for split, count in zip(SPLITS, (cfg.num_train, cfg.num_val, cfg.num_test)):
        sampler = SceneSampler(types, held_out, _section_rng(cfg.seed, split), split)
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
        records = []
        for i in range(count):
            scene = sampler.sample()
            rel = f"audio/{split}/{i:06d}.flac"
            records.append({"audio": rel, "captions": caption_scene_n(scene, sampler.rng, 3),
                            "events": [e.to_json() for e in scene.events], "relation": scene.relation,
                            "expression": scene.expression()})
            jobs.append((str(out / rel), scene, sr, pad))
            job_owner.append((split, i))
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
        job_owner.append(("events", i))

    compa = {
        "order": compa_order_rows(_section_rng(cfg.seed, "compa_order"), types, held_out, cfg.num_compa),
        "attribute": compa_attribute_rows(_section_rng(cfg.seed, "compa_attribute"), types, held_out,
                                          cfg.num_compa),
    }
    compa_csv_rows: dict[str, list[dict]] = {}
    for name, rows in compa.items():
        (out / "compa" / name).mkdir(parents=True, exist_ok=True)
        csv_rows = []
        for i, row in enumerate(rows):
            files = {}
            for key, suffix in (("pair", "a"), ("reversed", "b"), ("triplet", "c")):
                if row[key] is None:
                    files[key] = "-"
                    continue
                rel = f"compa/{name}/{i:06d}_{suffix}.flac"
                jobs.append((str(out / rel), row[key], sr, pad))
                job_owner.append((f"compa_{name}", i))
                files[key] = rel
            csv_rows.append({"pair_caption": row["pair_caption"],
                             "reversed_pair_caption": row["reversed_pair_caption"],
                             "pair_file": files["pair"], "reversed_pair_file": files["reversed"],
                             "triplet_caption": row["triplet_caption"], "triplet_file": files["triplet"]})
        compa_csv_rows[name] = csv_rows

    lengths = render_jobs(jobs, cfg.workers)
    seconds: Counter = Counter()
    for (section, _), n in zip(job_owner, lengths):
        seconds[section] += n / sr

    for split in SPLITS:
        _dump_jsonl(out / f"{split}.jsonl", manifests[split])
    _dump_jsonl(out / "events.jsonl", event_records)
    for name, csv_rows in compa_csv_rows.items():
        with open(out / f"compa_{name}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COMPA_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(csv_rows)

    all_captions = [c for split in SPLITS for r in manifests[split] for c in r["captions"]]
    all_captions += [c for r in event_records for c in r["captions"]]
    all_captions += [r[k] for rows in compa_csv_rows.values() for r in rows
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
                   "compa_order_triplets": sum(r["triplet"] is not None for r in compa["order"])},
        "relations": {s: dict(sorted(Counter(r["relation"] for r in manifests[s]).items())) for s in SPLITS},
        "held_out_clips": {s: held_count(manifests[s]) for s in SPLITS},
        "event_types": {t: get_event_type(t).noun_phrase for t in types},
        "held_out_pairs": [list(p) for p in held_out],
        "held_out_policy": ("clips whose event types contain a held-out pair (in either order) occur only in "
                            "val/test and the CompA files; train never contains both types of such a pair"),
        "attributes": {"loudness_level_db": {k: list(v) for k, v in LEVEL_DB_RANGE.items()},
                       "pitch_factor": PITCH_FACTOR,
                       "duration_seconds": {k: list(v) for k, v in DURATION_RANGE_S.items()}},
        "audio_seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
        "files": {"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl", "events": "events.jsonl",
                  "compa_order": "compa_order.csv", "compa_attribute": "compa_attribute.csv",
                  "tokenizer": "tokenizer" if tokenizer_dir is not None else None},
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "workers")},
    }
    with open(out / "meta.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return {"out": os.fspath(out), "files": len(jobs), "types": len(types), "held_out_pairs": len(held_out),
            "audio_seconds": round(sum(seconds.values()), 1), "meta": meta}
