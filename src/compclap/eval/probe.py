"""Supervised downstream evaluation (the CLAP 2022 protocol): linear and MLP probes on frozen audio embeddings.

For every model the clips' L2-normalised audio embeddings come from the embedding cache (computed once per
model). On each train / val / test partition of `compclap.data.labelled.protocol_splits` (ESC-50: train on four
folds, test on the fifth, for each fold; a split CSV: its train / val / test rows) a linear head and a 3-layer MLP
head are trained on the standardised embeddings (AdamW, cross-entropy or, multi-label, binary cross-entropy) with
early stopping on the validation clips: the epoch with the best validation accuracy (mAP), ties broken by a
validation loss lower by 1e-3 at least, after `patience` epochs without improvement. Reported per head: accuracy
(top-1, percent) per fold and their mean, or multi-label macro mAP; per-class accuracy (AP) pooled over the folds. Beside them, the
zero-shot score of the same model on the same test clips, and for a fine-tuned `compclap.classifier` checkpoint
its own head's score on the fold(s) it was not trained on.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from compclap.data.labelled import LabelledData, Split, protocol_splits, read_labelled
from compclap.eval.benchmarks import Benchmark, _sha1_text, _write_dict_rows
from compclap.eval.cache import file_sha1
from compclap.eval.zeroshot import DEFAULT_TEMPLATES, class_embeddings, multilabel_average_precision
from compclap.models.classifier_head import ClassifierHead

__all__ = ["FittedProbe", "ProbeBenchmark", "ProbeConfig", "classification_score", "fit_probe", "per_class_scores"]

HEADS = ("linear", "mlp")
MIN_LOSS_DELTA = 1e-3


@dataclass
class ProbeConfig:
    """Training settings of the probe heads (the same for every model, fold and head kind)."""

    hidden_dim: int = 512
    dropout: float = 0.1
    lr: float = 1e-3  # the MLP head's
    linear_lr: float = 1e-2  # the linear head's (at 1e-3 it is still underfitted after 300 epochs of 300 clips)
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 300
    patience: int = 30
    val_fraction: float = 0.15
    seed: int = 0


@dataclass
class FittedProbe:
    """A trained head and how training went."""

    head: ClassifierHead
    best_epoch: int
    epochs: int
    val_score: float | None


def classification_score(scores: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> float:
    """Top-1 accuracy in percent (argmax of (N, C) scores vs (N,) class indices), or macro mAP for multi-hot targets."""
    if multi_label:
        return multilabel_average_precision(scores, targets.bool())[0]
    if len(targets) == 0:
        return math.nan
    return float((scores.argmax(1) == targets).double().mean() * 100.0)


def per_class_scores(scores: torch.Tensor, targets: torch.Tensor, multi_label: bool,
                     classes: Sequence[str]) -> dict[str, float]:
    """Per class: accuracy (percent of its clips predicted as it) or AP (multi-label); NaN for an absent class."""
    if multi_label:
        ap = multilabel_average_precision(scores, targets.bool())[1] * 100.0
        return {c: float(v) for c, v in zip(classes, ap)}
    pred = scores.argmax(1)
    out = {}
    for k, name in enumerate(classes):
        mine = targets == k
        out[name] = float((pred[mine] == k).double().mean() * 100.0) if bool(mine.any()) else math.nan
    return out


def _loss(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, targets.float())
    return F.cross_entropy(logits, targets)


def fit_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor | None, val_y: torch.Tensor | None,
              kind: str, num_classes: int, multi_label: bool = False, config: ProbeConfig | None = None,
              seed: int | None = None, device: str = "cpu") -> FittedProbe:
    """Train a `kind` head ("linear" or "mlp") on standardised features; early stopping on (val_x, val_y) if given.

    Deterministic for a given seed (its own RNG streams; the global ones are left as they were).
    """
    cfg = config or ProbeConfig()
    seed = cfg.seed if seed is None else seed
    x = torch.as_tensor(train_x).float().to(device)
    y = torch.as_tensor(train_y).to(device)
    if x.ndim != 2 or x.shape[0] == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"probe training needs features (N, D), N >= 1, and N targets; got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    has_val = val_x is not None and val_y is not None and len(val_x) > 0
    if has_val:
        vx, vy = torch.as_tensor(val_x).float().to(device), torch.as_tensor(val_y).to(device)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        head = ClassifierHead(x.shape[1], num_classes, kind, cfg.hidden_dim, cfg.dropout).to(device)
        head.set_standardisation(x)
        lr = cfg.linear_lr if kind == "linear" else cfg.lr
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        order = torch.Generator().manual_seed(seed)
        best: tuple[float, float] | None = None
        best_state, best_epoch, wait, epoch = None, 0, 0, 0
        for epoch in range(1, cfg.max_epochs + 1):
            head.train()
            perm = torch.randperm(x.shape[0], generator=order).to(device)
            for start in range(0, x.shape[0], cfg.batch_size):
                idx = perm[start:start + cfg.batch_size]
                opt.zero_grad(set_to_none=True)
                _loss(head(x[idx]), y[idx], multi_label).backward()
                opt.step()
            if not has_val:
                continue
            head.eval()
            with torch.no_grad():
                logits = head(vx)
                key = (classification_score(logits.cpu(), vy.cpu(), multi_label),
                       -float(_loss(logits, vy, multi_label)))
            # Equal accuracy counts as progress only with a validation loss lower by 1e-3 at least: on separable data
            # the loss falls for ever (by a constant factor per epoch) while nothing else changes.
            if best is None or key[0] > best[0] or (key[0] == best[0] and key[1] > best[1] + MIN_LOSS_DELTA):
                best, best_state, best_epoch, wait = key, copy.deepcopy(head.state_dict()), epoch, 0
            else:
                wait += 1
                if wait >= cfg.patience:
                    break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return FittedProbe(head, best_epoch if has_val else epoch, epoch, best[0] if best is not None else None)


def _predict(head: torch.nn.Module, feats: torch.Tensor) -> torch.Tensor:
    head.eval()
    with torch.no_grad():
        return head(feats).float().cpu()


class ProbeBenchmark(Benchmark):
    """Linear / MLP probes (and zero-shot, and fine-tuned classifiers) on a labelled set with its folds or split.

    Args:
        name: report section name.
        data: the labelled clips (`compclap.data.labelled.read_labelled`).
        config: probe training settings (validation share and seed included).
        zeroshot: also score zero-shot classification on the same test clips (needs the model's text tower).
        templates: zero-shot prompt templates.
        classifiers: model name -> fine-tuned `compclap.classifier` checkpoint: that model's row also gets the
            checkpoint's own head scored on the fold(s) (or test split) it did not train on.
    """

    kind = "probe"

    def __init__(self, name: str, data: LabelledData, config: ProbeConfig | None = None, zeroshot: bool = True,
                 templates: Sequence[str] = DEFAULT_TEMPLATES, classifiers: Mapping[str, str] | None = None) -> None:
        """Fix the protocol (folds, validation carving) now, so that every model sees the same partitions."""
        super().__init__(name, data.source)
        self.data, self.config = data, config or ProbeConfig()
        self.zeroshot, self.templates = zeroshot, list(templates)
        self.classifiers = dict(classifiers or {})
        self.splits: list[Split] = protocol_splits(data, self.config.val_fraction, self.config.seed)
        self.metric = "mAP" if data.multi_label else "accuracy"
        label = "mAP" if data.multi_label else "acc"
        parts = (["zeroshot"] if zeroshot else []) + list(HEADS) + (["finetuned"] if self.classifiers else [])
        names = {"zeroshot": "zero-shot", "linear": "linear", "mlp": "MLP", "finetuned": "fine-tuned"}
        self.columns = [(f"{p}.{self.metric}", f"{names[p]} {label}") for p in parts]
        self.details = list(self.columns)
        if len(self.splits) > 1 and len(self.splits) <= 10:
            self.details += [(f"{p}.folds.{s.name}", f"{names[p]} fold {s.name}") for p in HEADS for s in self.splits]
        self.details += [(f"{p}.best_epoch", f"{names[p]} epochs") for p in HEADS]
        self.details += [("n_clips", "clips"), ("n_classes", "classes"), ("fit_seconds", "probe s")]
        self.parts = parts

    @classmethod
    def from_source(cls, name: str, csv_path: str | os.PathLike | None = None, esc50: str | os.PathLike | None = None,
                    audio_root: str | os.PathLike | None = None, label_sep: str = ";", **kwargs: Any) -> ProbeBenchmark:
        """From a label CSV or an ESC-50 folder (see `read_labelled`)."""
        return cls(name, read_labelled(csv_path, esc50, audio_root=audio_root, label_sep=label_sep), **kwargs)

    def fingerprint(self) -> str:
        """Source, files, labels, partitions, probe settings, zero-shot templates."""
        d = self.data
        return _sha1_text(self.kind, file_sha1(self.source), [str(f) for f in d.files], d.targets, d.classes,
                          d.multi_label, [asdict(s) for s in self.splits], asdict(self.config), self.zeroshot,
                          self.templates)

    def describe(self) -> dict[str, Any]:
        """Adds sizes, the protocol, chance levels and a description for the report."""
        d, c = self.data, len(self.data.classes)
        if d.multi_label:
            prevalence = float(np.mean([len(t) for t in d.targets]) / c * 100.0)
            chance = {p: {"mAP": prevalence} for p in self.parts}
        else:
            chance = {p: {"accuracy": 100.0 / c} for p in self.parts}
        protocol = (f"{len(self.splits)} folds (train on the others, test on each)" if d.splits is None
                    else "train / val / test split")
        what = "multi-label, macro mAP" if d.multi_label else "top-1 accuracy"
        zs = "; zero-shot on the same test clips" if self.zeroshot else ""
        return {**super().describe(), "n_clips": len(d.files), "n_classes": c, "multi_label": d.multi_label,
                "folds": [s.name for s in self.splits], "probe": asdict(self.config), "chance": chance,
                "description": (f"supervised probes on frozen audio embeddings ({what}), {len(d.files)} clips, {c} "
                                f"classes, {protocol}; linear and 3-layer MLP heads, early stopping on a validation "
                                f"share carved from training (seed {self.config.seed}){zs}")}

    # ------------------------------------------------------------------------------------------------ scoring
    def _aggregate(self, per_split: dict[str, torch.Tensor], splits: Sequence[Split]) -> dict[str, Any]:
        """Mean over folds, per fold, and per class over the pooled test clips."""
        folds, all_idx, all_scores = {}, [], []
        for split in splits:
            scores = per_split[split.name]
            folds[split.name] = classification_score(scores, self.data.target_tensor(split.test), self.data.multi_label)
            all_idx += split.test
            all_scores.append(scores)
        pooled = torch.cat(all_scores)
        targets = self.data.target_tensor(all_idx)
        out = {self.metric: float(np.nanmean(list(folds.values()))),
               "folds": folds if len(splits) > 1 else None,
               "per_class": per_class_scores(pooled, targets, self.data.multi_label, self.data.classes)}
        if len(splits) > 1:
            out[f"pooled_{self.metric}"] = classification_score(pooled, targets, self.data.multi_label)
        return out

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """Every part's score; per-clip predictions under "rows" (written as CSV by write_artifacts)."""
        d = self.data
        audio = F.normalize(torch.as_tensor(embedder.embed_audio(list(d.files))).float(), dim=-1)
        if audio.shape[0] != len(d.files):
            raise ValueError(f"embed_audio returned {audio.shape[0]} embeddings for {len(d.files)} clips")
        predictions: dict[str, dict[str, torch.Tensor]] = {}
        result: dict[str, Any] = {}
        if self.zeroshot:
            class_emb = class_embeddings(embedder.embed_text, d.classes, self.templates)
            scores = audio @ class_emb.T
            predictions["zeroshot"] = {s.name: scores[s.test] for s in self.splits}
        t0 = time.perf_counter()
        for kind in HEADS:
            preds, epochs = {}, []
            for k, split in enumerate(self.splits):
                fitted = fit_probe(audio[split.train], d.target_tensor(split.train), audio[split.val],
                                   d.target_tensor(split.val), kind, len(d.classes), d.multi_label, self.config,
                                   seed=self.config.seed + k, device=device)
                preds[split.name] = _predict(fitted.head, audio[split.test].to(device))
                epochs.append(fitted.best_epoch)
            predictions[kind] = preds
            result[kind] = {"best_epoch": float(np.mean(epochs))}
        result["fit_seconds"] = time.perf_counter() - t0
        ckpt = self.classifiers.get(getattr(embedder, "name", None))
        splits_of = {"finetuned": self.splits}
        if ckpt is not None:
            splits_of["finetuned"], predictions["finetuned"] = self._finetuned(ckpt, audio)
        for part, preds in predictions.items():
            result.setdefault(part, {}).update(self._aggregate(preds, splits_of.get(part, self.splits)))
        result.update({"n_clips": len(d.files), "n_classes": len(d.classes), "multi_label": d.multi_label,
                       "rows": self._rows(predictions)})
        return result

    def _finetuned(self, ckpt: str, audio: torch.Tensor) -> tuple[list[Split], dict[str, torch.Tensor]]:
        """A fine-tuned classifier's own head on the embeddings of the clips it held out."""
        from compclap.classifier import load_classifier_head

        head, info = load_classifier_head(ckpt)
        missing = sorted(set(self.data.classes) - set(info["classes"]))
        if missing:
            raise ValueError(f"{ckpt}: the classifier has no output for classes {missing[:5]} of {self.source}")
        columns = [info["classes"].index(c) for c in self.data.classes]
        held = info.get("test_folds")
        if self.data.splits is not None:
            splits = self.splits
        elif held is None:
            raise ValueError(f"{ckpt} was trained on a train/val/test split, {self.source} is fold data: it is not "
                             "known which folds the classifier has not seen")
        else:
            splits = [s for s in self.splits if s.name in {str(f) for f in held}]
            if not splits:
                raise ValueError(f"{ckpt} held out fold(s) {held}, which {self.source} does not have")
        return splits, {s.name: _predict(head, audio[s.test])[:, columns] for s in splits}

    def _rows(self, predictions: Mapping[str, Mapping[str, torch.Tensor]]) -> list[dict[str, Any]]:
        """One row per test clip: fold, labels, and each part's top class."""
        d, rows = self.data, []
        for split in self.splits:
            for j, i in enumerate(split.test):
                row: dict[str, Any] = {"file": str(d.files[i]), "fold": split.name,
                                       "labels": ";".join(d.classes[t] for t in d.targets[i])}
                for part, preds in predictions.items():
                    row[part] = d.classes[int(preds[split.name][j].argmax())] if split.name in preds else ""
                rows.append(row)
        return rows

    def write_artifacts(self, result: dict[str, Any], out_dir: Path, slug: str) -> dict[str, Any]:
        """Per-class CSV (each part's accuracy or AP) and per-clip CSV (each part's prediction)."""
        per_class = [{"class": c, **{p: result[p]["per_class"][c] for p in self.parts if p in result}}
                     for c in self.data.classes]
        name, clips = f"{self.name}__{slug}.csv", f"{self.name}__{slug}__clips.csv"
        _write_dict_rows(per_class, out_dir / name)
        _write_dict_rows(result["rows"], out_dir / clips)
        return {**super().write_artifacts(result, out_dir, slug), "rows_csv": name, "clips_csv": clips}

