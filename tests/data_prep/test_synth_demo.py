"""The offline demo world: the synth_demo.py script end to end, and the library's truthfulness guarantees."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from compclap.audio.synth import EVENT_TYPES, render_event
from compclap.data.demo_world import (
    COMPA_COLUMNS,
    CROSSFADE_FRACTION,
    MAX_CLIP_S,
    SceneSampler,
    _section_rng,
    build_demo_world,
    DemoWorldConfig,
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
           "compa_order_train.csv", "compa_attribute_train.csv", "meta.json"]
PINNED = Path(__file__).with_name("tiny_world_seed3.json")  # TINY's outputs before audio negatives existed


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
            extra = {"negative_audio"} if split == "train" else set()
            assert set(r) == {"audio", "captions", "events", "relation", "expression"} | extra
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
    for name, folder in (("order", "compa/order"), ("attribute", "compa/attribute"),
                         ("order_train", "compa_train/order"), ("attribute_train", "compa_train/attribute")):
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
                assert row[key].startswith(f"{folder}/")
                audio, sr = sf.read(out / row[key], dtype="float32")
                assert sr == SR and len(audio) <= MAX_CLIP_S * SR
            if name.startswith("order"):
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
        files = sorted(root.glob("**/*.flac"))
        assert any("train_swapped" in p.parts for p in files) and any("compa_train" in p.parts for p in files)
        for p in files:
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


# --- audio negatives and training CompA files (issue 11) -----------------------------------------

def _strip_negative_audio(path: Path) -> bytes:
    """train.jsonl as it was written before the negative_audio field existed (the field is the last key)."""
    records = _read_jsonl(path)
    assert all(list(r)[-1] == "negative_audio" for r in records)
    return "".join(json.dumps({k: v for k, v in r.items() if k != "negative_audio"}, ensure_ascii=False) + "\n"
                   for r in records).encode()


def test_existing_outputs_are_unchanged(worlds):
    out, _ = worlds
    pinned = json.loads(PINNED.read_text())
    for name, digest in pinned["text_sha256"].items():
        data = _strip_negative_audio(out / name) if name == "train.jsonl" else (out / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
    for rel, (n, rms) in pinned["audio"].items():  # every clip of train/val/test/events/CompA, same samples
        audio, _ = sf.read(out / rel, dtype="float64")
        assert len(audio) == n and np.sqrt(np.mean(audio ** 2)) == pytest.approx(rms, rel=1e-4), rel


def _train_scenes(seed: int, count: int) -> list:
    """The train split's scenes, drawn as build_demo_world draws them (captions advance the same stream)."""
    types = event_types()
    sampler = SceneSampler(types, choose_held_out_pairs(types, seed), _section_rng(seed, "train"), "train")
    scenes = []
    for _ in range(count):
        scenes.append(sampler.sample())
        caption_scene_n(scenes[-1], sampler.rng, 3)
    return scenes


def _layout(lengths: list[int], gaps: list[float]) -> tuple[list[int], list[int]]:
    """Start sample of each event and the fade of each junction, as concat_crossfade places them."""
    starts, fades, end = [0], [], lengths[0]
    for prev, nxt, gap in zip(lengths[:-1], lengths[1:], gaps):
        fade, gap_n = int(CROSSFADE_FRACTION * min(prev, nxt)), int(round(gap * SR))
        start = end + gap_n if gap_n > 0 or fade == 0 else end - fade
        starts.append(start)
        fades.append(fade)
        end = start + nxt
    return starts, fades


def _frame_db(x: np.ndarray, frame: int = 320) -> np.ndarray:
    n = len(x) // frame
    return 10 * np.log10(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-10)


def test_every_sequence_train_clip_has_its_reversed_arrangement_as_order_negative(worlds):
    out, _ = worlds
    records = _read_jsonl(out / "train.jsonl")
    scenes = _train_scenes(3, len(records))
    checked = 0
    for i, (rec, scene) in enumerate(zip(records, scenes)):
        assert [e.to_json() for e in scene.events] == rec["events"]
        assert len(rec["negative_audio"]) == len(rec["captions"])
        orders = [[n for n in negs if n["kind"] == "order"] for negs in rec["negative_audio"]]
        if rec["relation"] != "sequence":
            assert orders == [[]] * 3
            continue
        expected = {"audio": f"audio/train_swapped/{i:06d}_order.flac", "kind": "order"}
        assert orders == [[expected]] * 3  # every sequence caption states the order
        lengths = [len(render_event(e.type, e.attributes(), e.seed, SR)) for e in scene.events]
        starts, fades = _layout(lengths, list(scene.gaps_s))
        rev_starts, _ = _layout(lengths[::-1], list(scene.gaps_s)[::-1])
        rev_starts = rev_starts[::-1]  # indexed by the original event
        orig, _ = sf.read(out / rec["audio"], dtype="float32")
        swapped, _ = sf.read(out / expected["audio"], dtype="float32")
        assert len(swapped) == len(orig) == MAX_CLIP_S * SR
        n = len(lengths)
        for k in range(n):
            # Clear of the fades at both of its junctions, event k sounds alone, in both files.
            f = max(fades[k - 1] if k else 0, fades[k] if k < n - 1 else 0)
            x = orig[starts[k] + f: starts[k] + lengths[k] - f]
            y = swapped[rev_starts[k] + f: rev_starts[k] + lengths[k] - f]
            assert len(x) == len(y) > SR // 10
            assert _corr(x, y) > 0.999
            diff = _frame_db(x) - _frame_db(y)
            assert np.all(np.abs(diff - np.median(diff)) < 0.5) and abs(np.median(diff)) < 3.1  # only clip-guard gain
        checked += 1
    assert checked >= 3


ATTRIBUTE_OF = {key: [w for w, (k, _) in ADJECTIVE_MEANING.items() if k == key]
                for key in ("loudness", "pitch", "duration")}


def _names_attribute(caption: str, type_name: str, attribute: str) -> bool:
    m = re.search(rf"\b(?:a|an) ((?:(?:{ADJECTIVES}) )*){re.escape(head_noun(type_name))}\b", caption.lower())
    assert m, (type_name, caption)
    return any(word in ATTRIBUTE_OF[attribute] for word in m.group(1).split())


def test_attribute_negatives_only_for_captions_naming_the_attribute(worlds):
    out, _ = worlds
    records = _read_jsonl(out / "train.jsonl")
    scenes = _train_scenes(3, len(records))
    with_attribute = 0
    for i, (rec, scene) in enumerate(zip(records, scenes)):
        attrs = {n["attribute"] for negs in rec["negative_audio"] for n in negs if n["kind"] == "attribute"}
        if len(scene.events) != 2 or all(getattr(scene.events[0], k) == getattr(scene.events[1], k)
                                         for k in ("loudness", "pitch", "duration")):
            assert not attrs
            continue
        if not attrs:  # no caption named the drawn attribute: nothing was rendered
            assert not (out / f"audio/train_swapped/{i:06d}_attribute.flac").exists()
            continue
        (attr,) = attrs
        a, b = scene.events
        assert getattr(a, attr) != getattr(b, attr)
        for caption, negs in zip(rec["captions"], rec["negative_audio"]):
            names = any(_names_attribute(caption, e.type, attr) for e in scene.events)
            has = [n for n in negs if n["kind"] == "attribute"]
            assert bool(has) == names, (caption, attr)
        path = f"audio/train_swapped/{i:06d}_attribute.flac"
        assert all(n["audio"] == path for negs in rec["negative_audio"] for n in negs if n["kind"] == "attribute")
        # The file is the same two instances (seeds, gaps, onsets) with that attribute's values traded.
        traded = replace(scene, events=(replace(a, **{attr: getattr(b, attr)}), replace(b, **{attr: getattr(a, attr)})))
        audio, _ = sf.read(out / path, dtype="float32")
        np.testing.assert_allclose(audio, render_scene(traded, SR, pad_to_seconds=MAX_CLIP_S), atol=1e-4)
        assert not np.allclose(audio, render_scene(scene, SR, pad_to_seconds=MAX_CLIP_S), atol=1e-2)
        with_attribute += 1
    assert with_attribute >= 2


def test_training_compa_files_use_training_pairs_only(worlds):
    out, _ = worlds
    meta = json.loads((out / "meta.json").read_text())
    held = {tuple(sorted(p)) for p in meta["held_out_pairs"]}
    assert meta["files"]["compa_order_train"] == "compa_order_train.csv"
    assert meta["files"]["compa_attribute_train"] == "compa_attribute_train.csv"
    counts = meta["counts"]["train_negative_audio"]
    records = _read_jsonl(out / "train.jsonl")
    assert counts["order"] == sum(r["relation"] == "sequence" for r in records) and counts["attribute"] > 0
    types = sorted(event_types(), key=lambda t: -len(head_noun(t)))  # "engine rumble" before "rumble"-like nouns
    for name in ("order_train", "attribute_train"):
        _, rows = _read_csv(out / f"compa_{name}.csv")
        assert len(rows) == 4
        for row in rows:
            mentioned = {t for t in types if re.search(rf"\b{re.escape(head_noun(t))}\b", row["pair_caption"].lower())}
            assert len(mentioned) == 2 and tuple(sorted(mentioned)) not in held, row["pair_caption"]
    # The same functions with the held-out pairs offered would use them for half the rows: the exclusion is what
    # keeps them out, on many rows.
    types = event_types()
    held_list = choose_held_out_pairs(types, 0)
    for rows in (compa_order_rows(np.random.default_rng(1), types, [], 200, exclude=held_list),
                 compa_attribute_rows(np.random.default_rng(2), types, [], 200, exclude=held_list)):
        assert not {tuple(sorted(e.type for e in r["pair"].events)) for r in rows} & set(held_list)


def test_audio_negatives_can_be_switched_off(tmp_path):
    build_demo_world(DemoWorldConfig(out=str(tmp_path), seed=3, num_train=6, num_val=1, num_test=1, num_compa=1,
                                     num_events=1, tokenizer_vocab=0, workers=1, audio_negatives=False))
    assert all("negative_audio" not in r for r in _read_jsonl(tmp_path / "train.jsonl"))
    assert not (tmp_path / "audio" / "train_swapped").exists()
    assert not (tmp_path / "train_swapped.jsonl").exists()
    assert json.loads((tmp_path / "meta.json").read_text())["counts"]["train_negative_audio"] == {
        "order": 0, "attribute": 0}


def test_every_swapped_rendering_is_also_a_clip_with_its_own_true_captions(worlds):
    out, _ = worlds
    train = {r["audio"]: r for r in _read_jsonl(out / "train.jsonl")}
    twins = _read_jsonl(out / "train_swapped.jsonl")
    rendered = sorted(p.relative_to(out).as_posix() for p in (out / "audio" / "train_swapped").glob("*.flac"))
    assert sorted(t["audio"] for t in twins) == rendered
    for twin in twins:
        original = train[twin["twin_of"]]
        kind = "order" if twin["audio"].endswith("_order.flac") else "attribute"
        assert len(twin["captions"]) == len(twin["negative_audio"]) == 3
        if kind == "order":
            assert twin["events"] == original["events"][::-1]
            assert all(negs == [{"audio": twin["twin_of"], "kind": "order"}] for negs in twin["negative_audio"])
            continue
        (attr,) = {n["attribute"] for negs in original["negative_audio"] for n in negs if n["kind"] == "attribute"}
        a, b = original["events"]
        assert twin["events"] == [{**a, attr: b[attr]}, {**b, attr: a[attr]}]
        for caption, negs in zip(twin["captions"], twin["negative_audio"]):
            names = any(_names_attribute(caption, e["type"], attr) for e in twin["events"])
            assert negs == ([{"audio": twin["twin_of"], "kind": "attribute", "attribute": attr}] if names else [])
