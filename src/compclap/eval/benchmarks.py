"""Benchmarks of the evaluation suite: a definition parsed once, scored for each model by `run_suite`.

CompA (order / attribute), zero-shot classification and retrieval live here; the order probe in
`compclap.eval.diagnostics`, the ProLAP metrics in `compclap.eval.probabilistic`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from compclap.data.manifest import read_manifest
# `_find` is the manifest builder's clip-key -> file matching (AudioCaps stems, Clotho names); reused so that
# `compclap evaluate retrieval --csv` finds exactly the files `build_manifest.py` would.
from compclap.data.manifest_builder import _find as find_audio
from compclap.data.manifest_builder import index_audio_dir, read_caption_csv
from compclap.eval.cache import file_sha1
from compclap.eval.compa import evaluate_compa, read_compa_csv, write_rows_csv
from compclap.eval.retrieval import retrieval_metrics
from compclap.eval.zeroshot import DEFAULT_TEMPLATES, ZeroShotData, evaluate_zeroshot


def _sha1_text(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _percent_retrieval(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: (v if k.endswith("medR") else v * 100.0) for k, v in metrics.items()}


class Benchmark:
    """A benchmark parsed once and scored for each model; subclasses set `kind`, columns and `evaluate`."""

    kind = "benchmark"
    #: (result key, label) of the headline metrics (summary table, bar plot); dotted keys reach nested dicts.
    columns: list[tuple[str, str]] = []
    #: (result key, label) of the per-benchmark table.
    details: list[tuple[str, str]] = []
    #: result keys that are not percentages (cosines, margins): shown with three decimals.
    precise: list[str] = []

    def __init__(self, name: str, source: str) -> None:
        """Name (a report section) and the file it was read from."""
        self.name = name
        self.source = source

    def fingerprint(self) -> str:
        """Changes whenever the benchmark's definition changes (results of other models become stale)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What results.json records about the benchmark."""
        return {"kind": self.kind, "source": self.source, "fingerprint": self.fingerprint(),
                "columns": [list(c) for c in self.columns], "details": [list(c) for c in self.details],
                "precise": list(self.precise)}

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """Scores of one model (`embedder` has embed_audio / embed_text)."""
        raise NotImplementedError

    def write_artifacts(self, result: dict[str, Any], out_dir: Path, slug: str) -> dict[str, Any]:
        """Write per-row files from `result`; return it without bulky entries, with the files' names."""
        return {k: v for k, v in result.items() if k != "rows"}


#: Scores of random similarities on a 2-way row (Winoground): each text/audio condition holds with
#: probability 1/2 twice, the group score needs the two matched pairs on top of all four (2! 2! / 4!).
COMPA_CHANCE = {"text": 25.0, "audio": 25.0, "group": 100.0 / 6.0}


class CompaBenchmark(Benchmark):
    """CompA-order / CompA-attribute CSV: text, audio and group scores with bootstrap intervals.

    Args:
        name: report section name.
        csv_path: the CompA-style CSV.
        audio_root: folder relative file names resolve against (default: the CSV's folder).
        n_boot: bootstrap resamples of the confidence intervals.
        seed: bootstrap seed.
        train_of: for a CSV of compositions seen in training, the name of the held-out benchmark it mirrors
            (the diagnostics table puts the two side by side); default: `name` minus a ``_train`` suffix.
    """

    kind = "compa"
    columns = [("text", "text"), ("audio", "audio"), ("group", "group")]
    details = [("text", "text"), ("text_ci", "text 95% CI"), ("audio", "audio"), ("audio_ci", "audio 95% CI"),
               ("group", "group"), ("group_ci", "group 95% CI"), ("n_rows", "rows"),
               ("margin", "margin"), ("audio_cos", "cos(a1,a2)"), ("text_cos", "cos(t1,t2)"),
               ("triplet.text", "3-way text"), ("triplet.audio", "3-way audio"), ("triplet.group", "3-way group"),
               ("triplet.n_rows", "3-way rows")]
    precise = ["margin", "audio_cos", "text_cos"]

    def __init__(self, name: str, csv_path: str | os.PathLike, audio_root: str | os.PathLike | None = None,
                 n_boot: int = 1000, seed: int = 0, train_of: str | None = None) -> None:
        """Parse the CSV now: a malformed file or a missing clip fails before any model is loaded."""
        super().__init__(name, str(csv_path))
        self.rows = read_compa_csv(csv_path, audio_root=audio_root)
        if not self.rows:
            raise ValueError(f"CompA CSV {csv_path} has no rows")
        self.n_boot, self.seed = n_boot, seed
        if train_of is None and name.endswith("_train"):
            train_of = name[: -len("_train")]
        self.train_of = train_of

    def fingerprint(self) -> str:
        """CSV content, resolved files, bootstrap settings."""
        return _sha1_text(self.kind, file_sha1(self.source), [[str(f) for f in r.files] for r in self.rows],
                          [str(r.triplet_file) for r in self.rows], self.n_boot, self.seed)

    def describe(self) -> dict[str, Any]:
        """Adds the row counts."""
        n_trip = sum(r.triplet_file is not None for r in self.rows)
        return {**super().describe(), "n_rows": len(self.rows), "n_triplet_rows": n_trip,
                "chance": dict(COMPA_CHANCE), "train_of": self.train_of}

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """`evaluate_compa` (the function `compclap test` logs), all items embedded in one cached call."""
        n_items = 3 * len(self.rows)
        return evaluate_compa(self.rows, embedder.embed_audio, embedder.embed_text, n_boot=self.n_boot,
                              seed=self.seed, batch_size=max(1, n_items))

    def write_artifacts(self, result: dict[str, Any], out_dir: Path, slug: str) -> dict[str, Any]:
        """Per-row CSV (captions, files, the 2x2 similarities, wins) for error analysis."""
        name = f"{self.name}__{slug}.csv"
        write_rows_csv(result, out_dir / name)
        return {**super().write_artifacts(result, out_dir, slug), "rows_csv": name}


class ZeroShotBenchmark(Benchmark):
    """Zero-shot classification (ESC-50 or a label CSV) with averaged prompt templates."""

    kind = "zeroshot"

    def __init__(self, name: str, data: ZeroShotData, templates: Sequence[str] = DEFAULT_TEMPLATES) -> None:
        """`data` from `read_esc50` / `read_label_csv`."""
        super().__init__(name, data.source)
        self.data, self.templates = data, list(templates)
        if data.multi_label:
            self.columns = [("mAP", "mAP")]
        else:
            self.columns = [("top1", "top-1")] + ([("top5", "top-5")] if len(data.classes) >= 5 else [])
        self.details = list(self.columns) + [("n_clips", "clips"), ("n_classes", "classes")]
        if data.folds is not None:
            metric = self.columns[0][0]
            folds = sorted(set(data.folds), key=lambda f: (0, int(f)) if f.isdigit() else (1, f))
            self.details += [(f"folds.{f}.{metric}", f"fold {f} {self.columns[0][1]}") for f in folds]

    def fingerprint(self) -> str:
        """Source, files, labels, templates."""
        d = self.data
        return _sha1_text(self.kind, file_sha1(self.source), [str(f) for f in d.files], d.targets, d.classes,
                          d.folds, d.multi_label, self.templates)

    def describe(self) -> dict[str, Any]:
        """Adds sizes and templates."""
        return {**super().describe(), "n_clips": len(self.data.files), "n_classes": len(self.data.classes),
                "multi_label": self.data.multi_label, "templates": self.templates}

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """`evaluate_zeroshot`."""
        return evaluate_zeroshot(self.data, embedder.embed_audio, embedder.embed_text, self.templates)

    def write_artifacts(self, result: dict[str, Any], out_dir: Path, slug: str) -> dict[str, Any]:
        """Per-clip CSV: labels, prediction, rank of the true class."""
        name = f"{self.name}__{slug}.csv"
        _write_dict_rows(result["rows"], out_dir / name)
        return {**super().write_artifacts(result, out_dir, slug), "rows_csv": name}


class RetrievalBenchmark(Benchmark):
    """Audio-text retrieval both ways with the multi-caption protocol (R@1/5/10, mAP@10, medR)."""

    kind = "retrieval"
    columns = [("t2a_R@1", "t2a R@1"), ("t2a_mAP@10", "t2a mAP@10"), ("a2t_R@1", "a2t R@1"),
               ("a2t_mAP@10", "a2t mAP@10")]
    details = [(f"{d}_{m}", f"{d} {m}") for d in ("t2a", "a2t") for m in ("R@1", "R@5", "R@10", "mAP@10", "medR")]

    def __init__(self, name: str, records: Sequence[Mapping[str, Any]], source: str, missing: int = 0) -> None:
        """`records`: [{"audio": path, "captions": [str, ...]}, ...]; `missing`: clips left out (reported)."""
        super().__init__(name, source)
        if not records:
            raise ValueError(f"{source}: no clips to evaluate")
        self.files = [Path(r["audio"]) for r in records]
        self.captions = [str(c) for r in records for c in r["captions"]]
        self.owner = torch.tensor([i for i, r in enumerate(records) for _ in r["captions"]], dtype=torch.long)
        if not self.captions:
            raise ValueError(f"{source}: no captions")
        absent = [str(f) for f in self.files if not f.is_file()]
        if absent:
            more = f" (and {len(absent) - 5} more)" if len(absent) > 5 else ""
            raise FileNotFoundError(f"{source}: {len(absent)} audio file(s) not found: {', '.join(absent[:5])}{more}")
        self.missing = missing

    @classmethod
    def from_manifest(cls, path: str | os.PathLike, name: str = "retrieval") -> RetrievalBenchmark:
        """From a compclap JSONL manifest."""
        return cls(name, read_manifest(path), str(path))

    @classmethod
    def from_caption_csv(cls, csv_path: str | os.PathLike, audio_dir: str | os.PathLike, name: str = "retrieval",
                         skip_missing: bool = False) -> RetrievalBenchmark:
        """From an AudioCaps (youtube_id, caption) or Clotho (file_name, caption_1..5) CSV and its audio folder.

        Clips whose audio is not found are an error naming them, unless `skip_missing` (then they are
        counted in the results as ``n_missing``).
        """
        fmt, clips = read_caption_csv(csv_path)
        index = index_audio_dir(audio_dir)
        records, missing, empty = [], [], []
        for key, captions in clips.items():
            audio = find_audio(fmt, key, index)
            if audio is None:
                missing.append(key)
            elif not captions:
                empty.append(key)
            else:
                records.append({"audio": str(audio), "captions": captions})
        if empty:
            raise ValueError(f"{csv_path}: {len(empty)} clip(s) without any caption: {empty[:5]}")
        if missing and not skip_missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise FileNotFoundError(f"{csv_path}: no audio under {audio_dir} for {len(missing)} {fmt} clip(s): "
                                    f"{', '.join(missing[:5])}{more} (--skip-missing evaluates the others)")
        return cls(name, records, str(csv_path), missing=len(missing))

    def fingerprint(self) -> str:
        """Source, files, captions."""
        return _sha1_text(self.kind, [str(f) for f in self.files], self.captions, self.owner.tolist())

    def describe(self) -> dict[str, Any]:
        """Adds the sizes."""
        return {**super().describe(), "n_clips": len(self.files), "n_captions": len(self.captions),
                "n_missing": self.missing}

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """`retrieval_metrics` in percent (medR in ranks), computed on `device`."""
        audio = torch.as_tensor(embedder.embed_audio(self.files)).float().to(device)
        text = torch.as_tensor(embedder.embed_text(self.captions)).float().to(device)
        metrics = _percent_retrieval(retrieval_metrics(audio, text, self.owner.to(device)))
        return {**metrics, "n_clips": len(self.files), "n_captions": len(self.captions)}


def _write_dict_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
