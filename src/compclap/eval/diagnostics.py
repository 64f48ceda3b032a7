"""Diagnostics that say *why* a model fails CompA: a linear order probe on each tower's embeddings.

**Order probe.** Take the 2-event "sequence" clips of a training manifest and of a held-out manifest (the
demo world's records carry ``events`` and ``relation``). Embed the audio and, separately, every caption
(the same L2-normalised joint-space embeddings the other benchmarks score), standardise the features
with the training statistics, and fit a multinomial logistic regression (full-batch L-BFGS, L2 penalty)
that predicts the type of the event that comes first. On held-out items the probe only has to choose
between the two types present in the clip (argmax of its logits restricted to them), so chance is 50%:
a tower whose embedding of "A then B" equals that of "B then A" scores 50% however well it knows which
events are present; a tower that keeps the order linearly readable scores near 100%.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from compclap.data.manifest import read_manifest
from compclap.eval.benchmarks import Benchmark, _sha1_text
from compclap.eval.cache import file_sha1

__all__ = ["OrderProbe", "OrderProbeBenchmark", "fit_order_probe", "order_probe_accuracy", "pair_choice_accuracy",
           "sequence_clips"]

ORDER_PROBE_CHANCE = 50.0
Manifests = str | os.PathLike | Sequence[str | os.PathLike]


def _paths(manifests: Manifests) -> list[str]:
    items = [manifests] if isinstance(manifests, (str, os.PathLike)) else list(manifests)
    if not items:
        raise ValueError("no manifest given")
    return [str(m) for m in items]


@dataclass
class OrderProbe:
    """A fitted linear probe: standardisation statistics and the (K, D) weights and (K,) biases."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of features (N, D), standardised with the training statistics."""
        x = (torch.as_tensor(feats).double() - self.mean) / self.std
        return x @ self.weight.T + self.bias


def _check_items(feats: torch.Tensor, first: torch.Tensor, pair: torch.Tensor | None, what: str) -> None:
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise ValueError(f"{what} features must have shape (N, D) with N >= 1, got {tuple(feats.shape)}")
    if first.shape != (feats.shape[0],):
        raise ValueError(f"{what}: first must have shape ({feats.shape[0]},), got {tuple(first.shape)}")
    if bool((first < 0).any()):
        raise ValueError(f"{what}: type indices must be >= 0")
    if pair is None:
        return
    if pair.shape != (feats.shape[0], 2):
        raise ValueError(f"{what}: pair must have shape ({feats.shape[0]}, 2), got {tuple(pair.shape)}")
    if bool((pair[:, 0] == pair[:, 1]).any()):
        raise ValueError(f"{what}: a pair needs two different types (the choice is trivial otherwise)")
    if not bool(((pair == first[:, None]).any(dim=1)).all()):
        raise ValueError(f"{what}: every first type must be one of its pair's two types")


def fit_order_probe(feats: torch.Tensor, first: torch.Tensor, n_types: int | None = None,
                    weight_decay: float = 1e-2, max_iter: int = 100) -> OrderProbe:
    """Multinomial logistic regression of `first` (N,) on standardised `feats` (N, D), L-BFGS, L2 penalty."""
    x = torch.as_tensor(feats).detach().double().cpu()
    y = torch.as_tensor(first).detach().long().cpu()
    _check_items(x, y, None, "train")
    k = int(n_types) if n_types is not None else int(y.max()) + 1
    if k <= int(y.max()):
        raise ValueError(f"n_types={k} but a type index is {int(y.max())}")
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant feature stays 0, not NaN
    x = (x - mean) / std
    # Zero start: the penalised problem is strictly convex, so L-BFGS from a fixed start in float64 gives the
    # same probe on every run with no random state at all.
    weight = torch.zeros(k, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # callers may sit in inference code under no_grad
        opt.step(closure)
    return OrderProbe(mean, std, weight.detach(), bias.detach())


def pair_choice_accuracy(logits: torch.Tensor, first: torch.Tensor, pair: torch.Tensor) -> float:
    """Percent of items whose first type out-scores the other type of its pair (a tie counts one half)."""
    logits, first, pair = torch.as_tensor(logits).double(), torch.as_tensor(first).long(), torch.as_tensor(pair).long()
    _check_items(logits, first, pair, "test")
    other = torch.where(pair[:, 0] == first, pair[:, 1], pair[:, 0])
    if int(torch.maximum(first, other).max()) >= logits.shape[1]:
        raise ValueError(f"a type index exceeds the probe's {logits.shape[1]} classes")
    l_first = logits.gather(1, first[:, None])[:, 0]
    l_other = logits.gather(1, other[:, None])[:, 0]
    # Scoring by "first beats other" rather than argmax over the pair as listed: argmax would break a tie
    # towards whichever type is listed first and so reward a probe that knows nothing.
    credit = (l_first > l_other).double() + 0.5 * (l_first == l_other).double()
    return float(credit.mean() * 100.0)


def order_probe_accuracy(train_feats: torch.Tensor, train_first: torch.Tensor, train_pair: torch.Tensor,
                         test_feats: torch.Tensor, test_first: torch.Tensor, test_pair: torch.Tensor,
                         weight_decay: float = 1e-2, max_iter: int = 100) -> float:
    """Fit the order probe on the training items, return its held-out pair-choice accuracy in percent (chance 50)."""
    train_first, test_first = torch.as_tensor(train_first).long(), torch.as_tensor(test_first).long()
    train_pair, test_pair = torch.as_tensor(train_pair).long(), torch.as_tensor(test_pair).long()
    _check_items(torch.as_tensor(train_feats), train_first, train_pair, "train")
    n_types = int(max(train_pair.max(), test_pair.max())) + 1
    probe = fit_order_probe(train_feats, train_first, n_types, weight_decay=weight_decay, max_iter=max_iter)
    return pair_choice_accuracy(probe.logits(test_feats), test_first, test_pair)


def sequence_clips(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records that are 2-event sequences of two different event types."""
    out = []
    for rec in records:
        events = rec.get("events")
        if rec.get("relation") != "sequence" or not isinstance(events, list) or len(events) != 2:
            continue
        types = [e.get("type") if isinstance(e, Mapping) else None for e in events]
        if all(isinstance(t, str) for t in types) and types[0] != types[1]:
            out.append(rec)
    return out


class OrderProbeBenchmark(Benchmark):
    """Order probe per tower: can a linear read-out of the embedding tell which of two events came first?

    Args:
        train_manifest: manifest(s) whose 2-event sequence clips train the probe (e.g. the demo world's train.jsonl).
        test_manifest: held-out manifest(s) the probe is scored on (e.g. test.jsonl, or [val.jsonl, test.jsonl]
            for twice the clips).
        name: report section name.
        weight_decay: L2 penalty of the probe (on standardised features, per-item mean loss).
        max_iter: L-BFGS iterations.
    """

    kind = "order_probe"
    columns = [("audio", "audio"), ("text", "text")]
    details = [("audio", "audio (held-out)"), ("text", "text (held-out)"), ("audio_train", "audio (train fit)"),
               ("text_train", "text (train fit)"), ("n_train_clips", "train clips"), ("n_test_clips", "held-out clips"),
               ("n_train_captions", "train captions"), ("n_test_captions", "held-out captions"),
               ("n_types", "types")]

    def __init__(self, train_manifest: Manifests, test_manifest: Manifests, name: str = "order_probe",
                 weight_decay: float = 1e-2, max_iter: int = 100) -> None:
        """Read the manifests now: no usable clips or a missing file fails before any model is loaded."""
        paths = {"train": _paths(train_manifest), "test": _paths(test_manifest)}
        super().__init__(name, " -> ".join(" + ".join(p) for p in paths.values()))
        self.manifests = [p for split in paths.values() for p in split]
        self.weight_decay, self.max_iter = float(weight_decay), int(max_iter)
        splits = {}
        for split, files in paths.items():
            clips = [r for path in files for r in sequence_clips(read_manifest(path))]
            if not clips:
                raise ValueError(f"{' + '.join(files)}: no 2-event sequence clips (records with relation 'sequence' "
                                 "and two 'events' of different types) for the order probe")
            absent = [r["audio"] for r in clips if not Path(r["audio"]).is_file()]
            if absent:
                raise FileNotFoundError(f"{' + '.join(files)}: {len(absent)} audio file(s) not found: "
                                        f"{', '.join(absent[:5])}")
            splits[split] = clips
        self.types = sorted({e["type"] for clips in splits.values() for r in clips for e in r["events"]})
        index = {t: i for i, t in enumerate(self.types)}
        self.items: dict[str, dict[str, Any]] = {}
        for split, clips in splits.items():
            first = [index[r["events"][0]["type"]] for r in clips]
            # The pair as a sorted set: listing it in event order would leak the answer to a tie-breaking rule.
            pair = [sorted(index[e["type"]] for e in r["events"]) for r in clips]
            captions = [str(c) for r in clips for c in r["captions"]]
            owner = [i for i, r in enumerate(clips) for _ in r["captions"]]
            self.items[split] = {"files": [Path(r["audio"]) for r in clips], "first": torch.tensor(first),
                                 "pair": torch.tensor(pair), "captions": captions, "owner": torch.tensor(owner)}

    def fingerprint(self) -> str:
        """Manifest contents, selected clips and captions, probe settings."""
        parts = [[str(f) for f in it["files"]] + it["captions"] + it["first"].tolist() for it in self.items.values()]
        return _sha1_text(self.kind, [file_sha1(m) for m in self.manifests], parts, self.types, self.weight_decay,
                          self.max_iter)

    def describe(self) -> dict[str, Any]:
        """Adds the sizes, the chance level and a one-line description for the report."""
        tr, te = self.items["train"], self.items["test"]
        return {**super().describe(), "n_train_clips": len(tr["files"]), "n_test_clips": len(te["files"]),
                "n_types": len(self.types), "chance": {"audio": ORDER_PROBE_CHANCE, "text": ORDER_PROBE_CHANCE},
                "description": (f"order probe: logistic regression on each tower's embedding, trained on "
                                f"{len(tr['files'])} 2-event sequences, predicts which event comes first in "
                                f"{len(te['files'])} held-out ones (a choice between the clip's two types, "
                                f"chance 50%)")}

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """Probe accuracy (percent) on the held-out clips and on its own training clips, audio and text tower."""
        tr, te = self.items["train"], self.items["test"]
        n_types = len(self.types)
        audio = torch.as_tensor(embedder.embed_audio(tr["files"] + te["files"])).double()
        text = torch.as_tensor(embedder.embed_text(tr["captions"] + te["captions"])).double()
        out: dict[str, Any] = {}
        for tower, feats, per_item in (("audio", audio, False), ("text", text, True)):
            n_tr = len(tr["captions"]) if per_item else len(tr["files"])
            labels = {}
            for split, it in (("train", tr), ("test", te)):
                pick = it["owner"] if per_item else torch.arange(len(it["files"]))
                labels[split] = (it["first"][pick], it["pair"][pick])
            probe = fit_order_probe(feats[:n_tr], labels["train"][0], n_types, self.weight_decay, self.max_iter)
            out[tower] = pair_choice_accuracy(probe.logits(feats[n_tr:]), *labels["test"])
            out[f"{tower}_train"] = pair_choice_accuracy(probe.logits(feats[:n_tr]), *labels["train"])
        out.update({"n_train_clips": len(tr["files"]), "n_test_clips": len(te["files"]),
                    "n_train_captions": len(tr["captions"]), "n_test_captions": len(te["captions"]),
                    "n_types": n_types})
        return out
