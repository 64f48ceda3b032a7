"""The attribute-binding probe: above chance only when the audio embedding says which event has the value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from compclap.eval.attribute_probe import AttributeProbeBenchmark, attribute_values

TYPES = ["beep", "hum", "knock", "siren", "bell"]
D = 16
_GEN = torch.Generator().manual_seed(0)
TYPE_VECS = torch.randn(len(TYPES), D, generator=_GEN)
LOUD_VEC = torch.randn(D, generator=_GEN)


def _write(root: Path, name: str, n: int, seed: int) -> tuple[Path, dict[str, tuple[str, str, str, str]]]:
    """A manifest of n 2-event sequences (random types and loudness) and one 1-event clip; tiny silent WAVs."""
    rng = np.random.default_rng(seed)
    clips, records = {}, []
    for i in range(n):
        a, b = rng.choice(len(TYPES), 2, replace=False)
        la, lb = rng.choice(["loud", "soft"], 2)
        path = root / f"{name}_{i}.wav"
        sf.write(path, np.zeros(160, dtype=np.float32), 16000)
        clips[str(path)] = (TYPES[a], la, TYPES[b], lb)
        records.append({"audio": str(path), "captions": ["x"], "relation": "sequence",
                        "events": [{"type": TYPES[a], "loudness": la, "pitch": "low"},
                                   {"type": TYPES[b], "loudness": lb, "pitch": "low"}]})
    single = root / f"{name}_single.wav"
    sf.write(single, np.zeros(160, dtype=np.float32), 16000)
    records.append({"audio": str(single), "captions": ["x"], "relation": "single",
                    "events": [{"type": "beep", "loudness": "loud", "pitch": "high"}]})
    manifest = root / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return manifest, clips


class Embedder:
    """Audio embedding: the two types, plus a loudness vector at the first event (bound) or for the clip (unbound)."""

    def __init__(self, clips: dict[str, tuple[str, str, str, str]], bound: bool) -> None:
        self.clips, self.bound = clips, bound

    def embed_audio(self, files):
        out = []
        for f in files:
            a, la, b, lb = self.clips[str(f)]
            vec = TYPE_VECS[TYPES.index(a)] + TYPE_VECS[TYPES.index(b)]
            if self.bound:  # first-event loudness in one half, second-event loudness in the other
                vec = torch.cat([vec + (la == "loud") * LOUD_VEC, (lb == "loud") * LOUD_VEC])
            else:  # only how many loud events the clip holds: says nothing about which one
                vec = torch.cat([vec + ((la == "loud") + (lb == "loud")) * LOUD_VEC, torch.zeros(D)])
            out.append(vec)
        return torch.stack(out)


@pytest.fixture()
def world(tmp_path: Path):
    train, train_clips = _write(tmp_path, "train", 120, seed=1)
    test, test_clips = _write(tmp_path, "test", 60, seed=2)
    return train, test, {**train_clips, **test_clips}


def test_bound_loudness_is_read_and_clip_loudness_is_chance(world) -> None:
    train, test, clips = world
    bench = AttributeProbeBenchmark(train, test)
    # pitch never differs inside a sequence here: only loudness is probed
    assert [c for c, _ in bench.columns] == ["loudness"]
    bound = bench.evaluate(Embedder(clips, bound=True))
    unbound = bench.evaluate(Embedder(clips, bound=False))
    assert bound["loudness"] == 100.0
    # "one loud event" clips cannot say which one: the probe is right on about half of them
    assert unbound["loudness"] < 75.0
    assert bound["n_loudness"] == len(bench.items["loudness"]["test"]["files"])
    assert bench.describe()["chance"] == {"loudness": 50.0}


def test_attribute_values_and_errors(tmp_path: Path, world) -> None:
    train, test, _ = world
    records = [json.loads(line) for line in train.read_text().splitlines()]
    assert attribute_values([r for r in records if len(r["events"]) == 2]) == {"loudness": ("loud", "soft")}
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"audio": str(tmp_path / "train_0.wav"), "captions": ["x"]}) + "\n")
    with pytest.raises(ValueError, match="no attribute"):
        AttributeProbeBenchmark(empty, empty)
    (tmp_path / "test_3.wav").unlink()
    with pytest.raises(FileNotFoundError, match="test_3.wav"):
        AttributeProbeBenchmark(train, test)


def test_diagnostics_table_shows_the_attribute_probe(world) -> None:
    from compclap.eval.report import diagnostics_table

    train, test, clips = world
    bench = AttributeProbeBenchmark(train, test)
    payload = {"benchmarks": {"attribute_probe": bench.describe()}, "models": ["bound", "unbound"],
               "results": {name: {"attribute_probe": bench.evaluate(Embedder(clips, bound=name == "bound"))}
                           for name in ("bound", "unbound")}}
    table = diagnostics_table(payload)
    assert "attribute_probe audio: loudness" in table
    assert "| bound | 100.0" in table and "*chance*" in table
