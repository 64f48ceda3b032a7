"""Attribute-binding probe: does the audio embedding say *which* of two events is the loud (high, long) one?

CompA-attribute asks a model to tell "a loud A and a soft B" from "a soft A and a loud B" on audio that plays
the same events with the attribute traded. That needs an audio embedding in which "the first event is loud"
is readable. The probe takes the 2-event sequence clips of a training and a held-out manifest whose events
differ in one attribute (records carry ``events`` with attribute words, as the demo world's do), and per
attribute fits a logistic regression (the order probe's: standardised features, L2, L-BFGS) that predicts
whether the first event has that attribute's first value. Chance is 50%: a tower that knows which events are
present, and even how loud the clip is, but not which event was loud scores 50%.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from compclap.data.manifest import read_manifest
from compclap.eval.benchmarks import Benchmark, _sha1_text
from compclap.eval.cache import file_sha1
from compclap.eval.diagnostics import Manifests, _paths, fit_order_probe, pair_choice_accuracy

__all__ = ["AttributeProbeBenchmark", "attribute_values"]

ATTRIBUTE_PROBE_CHANCE = 50.0


def _two_event_sequences(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records that are sequences of exactly two events given as dicts."""
    return [r for r in records if r.get("relation") == "sequence" and isinstance(r.get("events"), list)
            and len(r["events"]) == 2 and all(isinstance(e, Mapping) for e in r["events"])]


def attribute_values(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """{attribute: (first value, second value)} for every event attribute with exactly two string values."""
    seen: dict[str, set[str]] = {}
    for rec in records:
        for event in rec["events"]:
            for key, value in event.items():
                if key != "type" and isinstance(value, str):
                    seen.setdefault(key, set()).add(value)
    return {k: tuple(sorted(v)) for k, v in sorted(seen.items()) if len(v) == 2}


class AttributeProbeBenchmark(Benchmark):
    """Per attribute, a linear probe of "the first event has value v" on the audio embedding of 2-event sequences.

    Args:
        train_manifest: manifest(s) whose 2-event sequence clips train the probes (the demo world's train.jsonl).
        test_manifest: held-out manifest(s) the probes are scored on.
        name: report section name.
        weight_decay: L2 penalty of the probe (on standardised features, per-item mean loss).
        max_iter: L-BFGS iterations.
        min_clips: an attribute needs this many differing clips in each split to be probed.
    """

    kind = "attribute_probe"

    def __init__(self, train_manifest: Manifests, test_manifest: Manifests, name: str = "attribute_probe",
                 weight_decay: float = 1e-2, max_iter: int = 100, min_clips: int = 10) -> None:
        """Read the manifests now: no usable clips or a missing file fails before any model is loaded."""
        paths = {"train": _paths(train_manifest), "test": _paths(test_manifest)}
        super().__init__(name, " -> ".join(" + ".join(p) for p in paths.values()))
        self.manifests = [p for split in paths.values() for p in split]
        self.weight_decay, self.max_iter = float(weight_decay), int(max_iter)
        clips = {split: [r for p in files for r in _two_event_sequences(read_manifest(p))]
                 for split, files in paths.items()}
        self.values = attribute_values(clips["train"] + clips["test"])
        self.items: dict[str, dict[str, dict[str, Any]]] = {}
        for attr, (first_value, _) in self.values.items():
            per_split = {}
            for split, recs in clips.items():
                chosen = [r for r in recs if r["events"][0].get(attr) != r["events"][1].get(attr)
                          and all(e.get(attr) in self.values[attr] for e in r["events"])]
                per_split[split] = {"files": [Path(r["audio"]) for r in chosen],
                                    "label": torch.tensor([int(r["events"][0][attr] == first_value) for r in chosen])}
            if all(len(s["files"]) >= min_clips for s in per_split.values()):
                self.items[attr] = per_split
        if not self.items:
            raise ValueError(f"{' + '.join(self.manifests)}: no attribute with {min_clips}+ 2-event sequence clips "
                             "whose events differ in it (records need 'events' with attribute words)")
        absent = sorted({str(f) for s in self.items.values() for it in s.values() for f in it["files"]
                         if not f.is_file()})
        if absent:
            raise FileNotFoundError(f"{len(absent)} audio file(s) not found: {', '.join(absent[:5])}")
        self.columns = [(attr, attr) for attr in self.items]
        self.details = self.columns + [(f"{a}_train", f"{a} (train fit)") for a in self.items] + \
            [(f"n_{a}", f"{a} held-out clips") for a in self.items]

    def fingerprint(self) -> str:
        """Manifest contents, selected clips and labels, probe settings."""
        parts = [[attr, split, [str(f) for f in it["files"]], it["label"].tolist()]
                 for attr, splits in self.items.items() for split, it in splits.items()]
        return _sha1_text(self.kind, [file_sha1(m) for m in self.manifests], parts, self.weight_decay, self.max_iter)

    def describe(self) -> dict[str, Any]:
        """Adds the chance level and a one-line description for the report."""
        sizes = ", ".join(f"{a} {len(s['train']['files'])}/{len(s['test']['files'])}" for a, s in self.items.items())
        return {**super().describe(), "chance": {a: ATTRIBUTE_PROBE_CHANCE for a in self.items},
                "values": {a: list(self.values[a]) for a in self.items},
                "description": ("attribute probe: logistic regression on the audio embedding of 2-event sequences "
                                "whose events differ in one attribute predicts which value the first event has "
                                f"(chance 50%; train/held-out clips: {sizes})")}

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """Held-out and training-fit accuracy (percent) per attribute."""
        files = sorted({f for s in self.items.values() for it in s.values() for f in it["files"]})
        row = {f: i for i, f in enumerate(files)}
        feats = torch.as_tensor(embedder.embed_audio(files)).double()
        out: dict[str, Any] = {}
        for attr, splits in self.items.items():
            x = {s: feats[[row[f] for f in it["files"]]] for s, it in splits.items()}
            y = {s: it["label"] for s, it in splits.items()}
            probe = fit_order_probe(x["train"], y["train"], 2, self.weight_decay, self.max_iter)
            both = {s: torch.tensor([[0, 1]]).expand(len(y[s]), 2) for s in y}
            out[attr] = pair_choice_accuracy(probe.logits(x["test"]), y["test"], both["test"])
            out[f"{attr}_train"] = pair_choice_accuracy(probe.logits(x["train"]), y["train"], both["train"])
            out[f"n_{attr}"] = len(y["test"])
        return out
