"""The offline demo world: the synth_demo.py script end to end, and the library's truthfulness guarantees."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from compclap.audio.synth import EVENT_TYPES, render_event
from compclap.data.demo_world import (
    COMPA_COLUMNS,
    MAX_CLIP_S,
    SceneSampler,
    caption_scene,
    caption_scene_n,
    choose_held_out_pairs,
    compa_attribute_rows,
    compa_order_rows,
    event_types,
    head_noun,
    noun_phrase,
    render_scene,
    type_pairs,
)

ROOT = Path(__file__).resolve().parents[2]
SR = 16000
TINY = ["--seed", "3", "--num-train", "12", "--num-val", "4", "--num-test", "4", "--num-compa", "4",
        "--num-events", "13", "--tokenizer-vocab", "300"]
OUTPUTS = ["train.jsonl", "val.jsonl", "test.jsonl", "events.jsonl", "compa_order.csv", "compa_attribute.csv",
           "meta.json"]


def _load_script():
    spec = importlib.util.spec_from_file_location("synth_demo_script", ROOT / "data_prep" / "synth_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The same tiny world generated twice: in process, and with a 2-process pool."""
    script = _load_script()
    a, b = tmp_path_factory.mktemp("world_a"), tmp_path_factory.mktemp("world_b")
    script.main(["--out", str(a), "--workers", "1", *TINY])
    script.main(["--out", str(b), "--workers", "2", *TINY])
    return a, b


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_manifests_are_valid_and_audio_decodes(worlds):
    out, _ = worlds
    types = set(EVENT_TYPES)
    for split, count in (("train", 12), ("val", 4), ("test", 4)):
        records = _read_jsonl(out / f"{split}.jsonl")
        assert len(records) == count
        for r in records:
            assert set(r) == {"audio", "captions", "events", "relation", "expression"}
            assert r["audio"].startswith(f"audio/{split}/") and r["audio"].endswith(".flac")
            assert len(r["captions"]) == 3 and all(isinstance(c, str) and c for c in r["captions"])
            assert r["relation"] in ("single", "sequence", "overlay")
            assert (len(r["events"]) == 1) == (r["relation"] == "single") and 1 <= len(r["events"]) <= 3
            for e in r["events"]:
                assert set(e) == {"type", "loudness", "pitch", "duration"} and e["type"] in types
            op = {"single": " ", "sequence": " + ", "overlay": " * "}[r["relation"]]
            assert r["expression"] == op.join(e["type"] for e in r["events"]).strip()
            audio, sr = sf.read(out / r["audio"], dtype="float32")
            assert sr == SR and audio.ndim == 1 and 0.2 * SR < len(audio) <= MAX_CLIP_S * SR
            assert np.max(np.abs(audio)) <= 1.0 and np.sqrt(np.mean(audio ** 2)) > 1e-4
    for r in _read_jsonl(out / "events.jsonl"):
        assert set(r) == {"audio", "label", "captions", "attributes"} and r["label"] in types
        assert head_noun(r["label"]) in r["captions"][0]
        audio, sr = sf.read(out / r["audio"], dtype="float32")
        assert sr == SR and len(audio) <= 1.31 * SR  # single events are never padded
    tok = out / "tokenizer" / "tokenizer.json"
    assert tok.is_file()
    from tokenizers import Tokenizer

    assert len(Tokenizer.from_file(str(tok)).encode("a loud beep followed by a soft hum").ids) > 3


def test_held_out_pairs_absent_from_train(worlds):
    out, _ = worlds
    meta = json.loads((out / "meta.json").read_text())
    held = {tuple(sorted(p)) for p in meta["held_out_pairs"]}
    assert held and meta["seed"] == 3 and meta["sample_rate"] == SR
    assert set(meta["event_types"]) == set(EVENT_TYPES)
    for r in _read_jsonl(out / "train.jsonl"):
        assert not (type_pairs(e["type"] for e in r["events"]) & held)
    assert meta["held_out_clips"]["train"] == 0


def test_compa_csvs(worlds):
    out, _ = worlds
    for name in ("order", "attribute"):
        columns, rows = _read_csv(out / f"compa_{name}.csv")
        assert columns == COMPA_COLUMNS == ["pair_caption", "reversed_pair_caption", "pair_file",
                                            "reversed_pair_file", "triplet_caption", "triplet_file"]
        assert len(rows) == 4
        for row in rows:
            assert row["pair_caption"] != row["reversed_pair_caption"]
            for key in ("pair_file", "reversed_pair_file", "triplet_file"):
                if row[key] == "-":
                    assert key == "triplet_file" and row["triplet_caption"] == "-"
                    continue
                assert row[key].startswith(f"compa/{name}/")
                audio, sr = sf.read(out / row[key], dtype="float32")
                assert sr == SR and len(audio) <= MAX_CLIP_S * SR
            if name == "order":
                a, b = row["pair_caption"].split(" followed by ")
                assert row["reversed_pair_caption"].lower() == f"{b} followed by {a}".lower()
            else:
                assert row["triplet_file"] == "-"


def test_same_seed_same_bytes_whatever_the_worker_count(worlds):
    a, b = worlds
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.glob("**/*.flac")):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
        return h.hexdigest()

    assert digest(a) == digest(b)


# --- library-level guarantees, on more samples than the tiny world ---------------------------

ADJECTIVE_MEANING = {"loud": ("loudness", "loud"), "soft": ("loudness", "soft"), "quiet": ("loudness", "soft"),
                     "high": ("pitch", "high"), "high-pitched": ("pitch", "high"), "low": ("pitch", "low"),
                     "low-pitched": ("pitch", "low"), "short": ("duration", "short"),
                     "brief": ("duration", "short"), "long": ("duration", "long")}
ADJECTIVES = "|".join(sorted(map(re.escape, ADJECTIVE_MEANING), key=len, reverse=True))


def _mentions(caption: str, types: list[str]) -> list[str]:
    """Event types in the order the caption mentions them."""
    found = []
    for t in types:
        m = re.search(rf"\b{re.escape(head_noun(t))}\b", caption.lower())
        assert m, (t, caption)
        found.append((m.start(), t))
    return [t for _, t in sorted(found)]


def test_sequence_captions_follow_audio_order():
    types = event_types()
    sampler = SceneSampler(types, choose_held_out_pairs(types, 0), np.random.default_rng(1), "val")
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(150):
        scene = sampler.sample()
        order = [e.type for e in scene.events]
        for caption in caption_scene_n(scene, rng, 3):
            mentioned = _mentions(caption, order)
            if scene.relation == "sequence":
                # "B after A" is the only template whose textual order is the reverse of the audio order.
                expected = order[::-1] if re.search(r"\bafter\b", caption) else order
                assert mentioned == expected, caption
                checked += 1
            if scene.relation == "overlay":
                assert sorted(mentioned) == sorted(order)
            for e in scene.events:  # every adjective in an event's noun phrase is one that was rendered
                m = re.search(rf"\b(?:a|an) ((?:(?:{ADJECTIVES}) )*){re.escape(head_noun(e.type))}\b", caption.lower())
                assert m, (e, caption)
                for word in m.group(1).split():
                    key, value = ADJECTIVE_MEANING[word]
                    assert getattr(e, key) == value, (e, caption)
    assert checked > 100


def test_held_out_share_in_eval_splits_only():
    types = event_types()
    held = set(choose_held_out_pairs(types, 0))
    assert held == set(choose_held_out_pairs(types, 0)) and len(held) >= 3
    for split, expect_some in (("train", False), ("val", True)):
        sampler = SceneSampler(types, sorted(held), np.random.default_rng(4), split)
        hits = sum(bool(type_pairs(e.type for e in sampler.sample().events) & held) for _ in range(200))
        assert (hits > 30) if expect_some else hits == 0


def test_sampled_scenes_fit_the_clip_budget():
    types = event_types()
    sampler = SceneSampler(types, [], np.random.default_rng(5), "train",
                           mix={("sequence", 3): 1.0})
    for _ in range(40):
        scene = sampler.sample()
        assert len(render_scene(scene, SR, max_seconds=None)) <= MAX_CLIP_S * SR


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    n = min(len(x), len(y))
    return float(np.corrcoef(x[:n], y[:n])[0, 1])


def test_compa_order_audio_matches_captions():
    types = event_types()
    rows = compa_order_rows(np.random.default_rng(6), types, choose_held_out_pairs(types, 0), 6, triplet_share=1.0)
    for row in rows:
        a, b = row["pair"].events
        clip_a = render_event(a.type, a.attributes(), a.seed, SR)
        clip_b = render_event(b.type, b.attributes(), b.seed, SR)
        pair, rev = render_scene(row["pair"], SR), render_scene(row["reversed"], SR)
        assert row["pair_caption"].lower().startswith(noun_phrase(a, ()))
        head = int(0.8 * min(len(clip_a), len(clip_b)))  # before any crossfade
        assert _corr(pair[:head], clip_a[:head]) > 0.99 and _corr(rev[:head], clip_b[:head]) > 0.99
        assert len(pair) == len(rev)
        trip = render_scene(row["triplet"], SR)
        assert len(trip) == max(len(clip_a), len(clip_b))
        assert row["triplet_caption"].endswith("at the same time")


def test_compa_attribute_audio_matches_captions():
    types = event_types()
    rows = compa_attribute_rows(np.random.default_rng(7), types, choose_held_out_pairs(types, 0), 6)
    assert [r["attribute"] for r in rows] == ["loudness", "pitch", "duration"] * 2
    for row in rows:
        kind = row["attribute"]
        (a, b), (a2, b2) = row["pair"].events, row["reversed"].events
        assert getattr(a, kind) != getattr(a2, kind) and getattr(b, kind) != getattr(b2, kind)
        assert (a.type, a.seed) == (a2.type, a2.seed)  # same instance, attribute swapped
        assert getattr(a, kind) in row["pair_caption"].split(" and ")[0]
        assert getattr(a2, kind) in row["reversed_pair_caption"].split(" and ")[0]
        x = render_event(a.type, a.attributes(), a.seed, SR)
        x2 = render_event(a2.type, a2.attributes(), a2.seed, SR)
        if kind == "loudness":
            louder = np.sqrt(np.mean(x ** 2)) > np.sqrt(np.mean(x2 ** 2))
            assert louder == (a.loudness == "loud")
        elif kind == "duration":
            assert (len(x) > len(x2)) == (a.duration == "long")
        pair = render_scene(row["pair"], SR, max_seconds=None)
        assert len(pair) <= MAX_CLIP_S * SR


def test_captions_are_capitalised_and_varied():
    types = event_types()
    sampler = SceneSampler(types, [], np.random.default_rng(8), "train")
    rng = np.random.default_rng(9)
    captions = {caption_scene(sampler.sample(), rng) for _ in range(100)}
    assert len(captions) > 90 and all(c[0].isupper() for c in captions)
