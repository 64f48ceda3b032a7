"""Diagnostics: the order probe (standalone and as a suite benchmark), CompA separation in the report."""

from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from compclap.eval.diagnostics import (
    OrderProbeBenchmark,
    fit_order_probe,
    order_probe_accuracy,
    pair_choice_accuracy,
    sequence_clips,
)
from compclap.eval.report import diagnostics_table, summary_table

K, D = 8, 24
_GEN = torch.Generator().manual_seed(0)
TYPE_VECS = torch.randn(K, D, generator=_GEN)
PAIRS = list(combinations(range(K), 2))
HELD_OUT = PAIRS[::5]  # the probe is scored on type pairs it never saw
TRAIN_PAIRS = [p for p in PAIRS if p not in HELD_OUT]


def _items(pairs, reps: int, order_weight: float, noise: float, seed: int):
    """Features of clips (a, b) and (b, a) for every pair: E[first] * (1 + w) + E[second] (+ noise)."""
    gen = torch.Generator().manual_seed(seed)
    feats, first, pair = [], [], []
    for _ in range(reps):
        for a, b in pairs:
            for x, y in ((a, b), (b, a)):
                feats.append((1 + order_weight) * TYPE_VECS[x] + TYPE_VECS[y] + noise * torch.randn(D, generator=gen))
                first.append(x)
                pair.append(sorted((x, y)))
    return F.normalize(torch.stack(feats), dim=1), torch.tensor(first), torch.tensor(pair)


def test_probe_reads_a_linearly_encoded_first_type_on_held_out_pairs() -> None:
    train = _items(TRAIN_PAIRS, 2, order_weight=1.0, noise=0.1, seed=1)
    test = _items(HELD_OUT, 2, order_weight=1.0, noise=0.1, seed=2)
    assert order_probe_accuracy(*train, *test) >= 97.0


def test_probe_is_at_chance_when_the_features_are_symmetric() -> None:
    # Sum of the two type vectors: (a, b) and (b, a) are the same point, so exactly one of the two is right.
    train = _items(TRAIN_PAIRS, 1, order_weight=0.0, noise=0.0, seed=1)
    test = _items(HELD_OUT, 1, order_weight=0.0, noise=0.0, seed=2)
    assert order_probe_accuracy(*train, *test) == pytest.approx(50.0)
    noisy = order_probe_accuracy(*_items(TRAIN_PAIRS, 4, 0.0, 0.1, 1), *_items(HELD_OUT, 4, 0.0, 0.1, 2))
    assert 35.0 <= noisy <= 65.0


def test_probe_is_deterministic_and_standardises_features() -> None:
    train = _items(TRAIN_PAIRS, 2, order_weight=0.5, noise=0.1, seed=3)
    one = fit_order_probe(train[0], train[1], K)
    two = fit_order_probe(train[0], train[1], K)
    assert torch.equal(one.weight, two.weight) and torch.equal(one.bias, two.bias)
    # Scaling and shifting the features changes nothing: the probe sees standardised inputs.
    moved = fit_order_probe(train[0] * 50.0 + 3.0, train[1], K)
    assert torch.allclose(moved.logits(train[0] * 50.0 + 3.0), one.logits(train[0]), atol=1e-5)


def test_pair_choice_ties_count_half_and_the_listed_order_does_not_matter() -> None:
    first = torch.tensor([0, 1, 2])
    pair = torch.tensor([[0, 1], [0, 1], [2, 3]])
    assert pair_choice_accuracy(torch.zeros(3, 4), first, pair) == 50.0  # all ties: no free credit
    logits = torch.tensor([[2.0, 1.0, 0, 0], [2.0, 1.0, 0, 0], [0, 0, 5.0, -1.0]])
    assert pair_choice_accuracy(logits, first, pair) == pytest.approx(200 / 3)
    assert pair_choice_accuracy(logits, first, pair.flip(1)) == pytest.approx(200 / 3)
    # Types outside the pair do not count, however high their logit.
    assert pair_choice_accuracy(torch.tensor([[0.0, 1.0, 9.0]]), torch.tensor([1]), torch.tensor([[0, 1]])) == 100.0
    with pytest.raises(ValueError, match="one of its pair"):
        pair_choice_accuracy(logits, torch.tensor([3, 1, 2]), pair)
    with pytest.raises(ValueError, match="two different types"):
        pair_choice_accuracy(logits, first, torch.tensor([[0, 0], [0, 1], [2, 3]]))


# --------------------------------------------------------------------------- in the suite

TYPES = ["beep", "hum", "buzz", "click", "bell", "whistle"]


class OrderAwareAudioBagOfWordsText:
    """Order-aware audio; bag-of-words text, except memorised captions, embedded like their audio."""

    def __init__(self, clips: dict[str, tuple[str, str]], memorised: dict[str, tuple[str, str]]) -> None:
        """`clips`: file name -> (first, second) type; `memorised`: caption -> (first, second)."""
        gen = torch.Generator().manual_seed(5)
        self.vecs = {t: torch.randn(16, generator=gen) for t in TYPES}
        self.words = {w: torch.randn(16, generator=gen) for w in ("a", "followed", "by", "then", *TYPES)}
        self.clips, self.memorised = clips, memorised

    def _ordered(self, first: str, second: str) -> torch.Tensor:
        return 2 * self.vecs[first] + self.vecs[second]

    def embed_audio(self, items: list) -> torch.Tensor:
        """Order-aware audio."""
        return F.normalize(torch.stack([self._ordered(*self.clips[Path(i).name]) for i in items]), dim=1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Bag of words, or the audio's embedding for a memorised caption."""
        out = [self._ordered(*self.memorised[t]) if t in self.memorised
               else sum(self.words[w] for w in sorted(t.split())) for t in texts]  # sorted: bit-equal sums
        return F.normalize(torch.stack(out), dim=1)


def _write_world(root: Path) -> tuple[Path, Path, dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """Train/test manifests of 2-event sequences (both orders of each pair), plus clips the probe must skip."""
    pairs = list(combinations(TYPES, 2))
    held = pairs[::4]
    clips: dict[str, tuple[str, str]] = {}
    for split, chosen in (("train", [p for p in pairs if p not in held]), ("test", held)):
        records = []
        for a, b in chosen:
            for x, y in ((a, b), (b, a)):
                name = f"{split}_{x}_{y}.wav"
                (root / name).write_bytes(name.encode())  # distinct bytes: the cache keys files by content
                clips[name] = (x, y)
                records.append({"audio": name, "captions": [f"a {x} followed by a {y}", f"a {x} then a {y}"],
                                "events": [{"type": x}, {"type": y}], "relation": "sequence"})
        (root / "single.wav").write_bytes(b"single")
        records += [{"audio": "single.wav", "captions": ["a beep"], "events": [{"type": "beep"}], "relation": "single"},
                    {"audio": "single.wav", "captions": ["a beep with a hum"], "relation": "overlay",
                     "events": [{"type": "beep"}, {"type": "hum"}]},
                    {"audio": "single.wav", "captions": ["a beep then a beep"], "relation": "sequence",
                     "events": [{"type": "beep"}, {"type": "beep"}]}]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root / "train.jsonl", root / "test.jsonl", clips, held


def _compa_csv(path: Path, pairs: list[tuple[str, str]], split: str) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file"])
        for a, b in pairs:
            writer.writerow([f"a {a} followed by a {b}", f"a {b} followed by a {a}", f"{split}_{a}_{b}.wav",
                             f"{split}_{b}_{a}.wav"])
    return path


def test_sequence_clips_keeps_two_event_sequences_of_two_types(tmp_path: Path) -> None:
    from compclap.data.manifest import read_manifest

    train, _, _, _ = _write_world(tmp_path)
    kept = sequence_clips(read_manifest(train))
    assert len(kept) == 2 * (15 - 4) and all(r["relation"] == "sequence" for r in kept)
    no_events = tmp_path / "plain.jsonl"
    no_events.write_text(json.dumps({"audio": "single.wav", "captions": ["x"]}) + "\n")
    with pytest.raises(ValueError, match="no 2-event sequence clips"):
        OrderProbeBenchmark(train, no_events)
    # Several held-out manifests pool their clips; one without sequences adds nothing.
    pooled = OrderProbeBenchmark(train, [tmp_path / "test.jsonl", tmp_path / "test.jsonl", no_events])
    assert pooled.describe()["n_test_clips"] == 2 * 2 * 4 and pooled.describe()["n_train_clips"] == 22


def test_order_probe_and_compa_diagnostics_in_the_report(tmp_path: Path) -> None:
    from compclap.eval.runner import CompaBenchmark, ModelSpec, run_suite

    train, test, clips, held = _write_world(tmp_path)
    seen = [p for p in combinations(TYPES, 2) if p not in held][:4]
    memorised = {f"a {x} followed by a {y}": (x, y) for a, b in seen for x, y in ((a, b), (b, a))}
    model = OrderAwareAudioBagOfWordsText(clips, memorised)
    benchmarks = [OrderProbeBenchmark(train, test),
                  CompaBenchmark("compa_order", _compa_csv(tmp_path / "compa_order.csv", held, "test"), n_boot=20),
                  CompaBenchmark("compa_order_train", _compa_csv(tmp_path / "compa_order_train.csv", seen, "train"),
                                 n_boot=20)]
    assert benchmarks[2].train_of == "compa_order" and benchmarks[1].train_of is None
    payload = run_suite([ModelSpec("fake", model=model, identity="fake-v1")], benchmarks, tmp_path / "report",
                        cache_dir=None, progress=False, plots=False, log=None)
    res = payload["results"]["fake"]
    probe = res["order_probe"]
    assert probe["n_train_clips"] == 22 and probe["n_test_clips"] == 8 and probe["n_test_captions"] == 16
    assert probe["audio"] >= 99.0 and probe["audio_train"] >= 99.0
    assert probe["text"] == pytest.approx(50.0)  # bag of words: the order is not in the text embedding
    held_res, train_res = res["compa_order"], res["compa_order_train"]
    # Held-out: both captions embed identically, so nothing is won and nothing separates them.
    assert held_res["group"] == 0.0 and held_res["text_cos"] == pytest.approx(1.0)
    assert held_res["margin"] == pytest.approx(0.0, abs=1e-6) and held_res["audio_cos"] < 0.99
    # Memorised training compositions: text equals audio, every row is won with a positive margin.
    assert train_res["group"] == 100.0 and train_res["margin"] > 0.05 and train_res["text_cos"] < 0.99

    table = diagnostics_table(payload)
    assert "| fake | 100.0 | 50.0 |" in table and "| *chance* | 50.0 | 50.0 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| fake | compa_order |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0.0 / 100.0" and cells[5].startswith("1.000 / ")
    assert "group (held-out / train)" in table
    assert not any(line.startswith("| fake | compa_order_train |") for line in table.splitlines())

    report = (tmp_path / "report" / "report.md").read_text()
    section = report.split("## Diagnostics")[1].split("\n## ")[0]
    assert "about 50% (chance)" in section and row in section
    assert "| *chance* | 50.0 | 50.0 | 25.0 | 25.0 | 16.7 |" in summary_table(payload)
    compa_section = report.split("## compa_order\n")[1].split("\n## ")[0]
    assert "chance (random similarities): text 25%, audio 25%, group 16.7%" in compa_section
    assert f"| {held_res['margin']:.3f} | {held_res['audio_cos']:.3f} | 1.000 |" in compa_section


def test_diagnostics_table_without_counterparts_or_diagnostics() -> None:
    compa = {"kind": "compa", "columns": [], "details": []}
    payload = {"models": {"m": {}}, "benchmarks": {"x_train": {**compa, "train_of": "x"}},
               "results": {"m": {"x_train": {"group": 40.0, "margin": 0.25, "audio_cos": 0.5, "text_cos": 0.9}}}}
    assert "| m | x_train | - / 40.0 | - / 0.250 | - / 0.500 | - / 0.900 |" in diagnostics_table(payload)
    payload = {"models": {"m": {}}, "benchmarks": {"r": {"kind": "retrieval", "columns": [], "details": []}},
               "results": {"m": {"r": {}}}}
    assert diagnostics_table(payload) == ""
