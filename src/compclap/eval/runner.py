"""Evaluation runner: benchmarks (CompA, zero-shot, retrieval) x models, cached embeddings, one report.

`run_suite` is what `compclap evaluate` and the demo call; `evaluate_model` / `markdown_table` are the
older single-model helpers (retrieval on a manifest plus CompA CSVs, a fixed-column table).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
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


class Embedder(Protocol):
    """What evaluation needs of a model: L2-normalised audio and text embeddings."""

    def embed_audio(self, items: list, sample_rate: int | None = None) -> torch.Tensor:
        """Embed audio files or arrays."""

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Embed captions."""


def evaluate_retrieval_manifest(model: Embedder, manifest: str | os.PathLike) -> dict[str, float]:
    """Retrieval both ways over every clip and all its captions (multi-caption protocol)."""
    records = read_manifest(manifest)
    audio = model.embed_audio([r["audio"] for r in records])
    captions = [c for r in records for c in r["captions"]]
    owner = torch.tensor([i for i, r in enumerate(records) for _ in r["captions"]], dtype=torch.long)
    return retrieval_metrics(audio, model.embed_text(captions), owner)


def evaluate_model(model: Embedder, retrieval_manifest: str | None = None,
                   compa_csvs: Mapping[str, str] | None = None, n_boot: int = 1000) -> dict[str, Any]:
    """Retrieval on a manifest plus CompA-style scores per CSV; returns {"retrieval": ..., "compa_<name>": ...}."""
    result: dict[str, Any] = {}
    if retrieval_manifest is not None:
        result["retrieval"] = evaluate_retrieval_manifest(model, retrieval_manifest)
    for name, csv_path in (compa_csvs or {}).items():
        result[f"compa_{name}"] = evaluate_compa(read_compa_csv(csv_path), model.embed_audio, model.embed_text,
                                                 n_boot=n_boot)
    return result


TABLE_COLUMNS = [("retrieval", "t2a_R@1", "t2a R@1"), ("retrieval", "t2a_mAP@10", "t2a mAP@10"),
                 ("retrieval", "a2t_R@1", "a2t R@1"), ("retrieval", "a2t_mAP@10", "a2t mAP@10"),
                 ("compa_order", "text", "order text"), ("compa_order", "audio", "order audio"),
                 ("compa_order", "group", "order group"), ("compa_attribute", "text", "attr text"),
                 ("compa_attribute", "audio", "attr audio"), ("compa_attribute", "group", "attr group")]


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per model: retrieval in percent, CompA scores in percent."""
    cols = [c for c in TABLE_COLUMNS if any(c[0] in r for r in results.values())]
    lines = ["| model | " + " | ".join(c[2] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, res in results.items():
        cells = []
        for group, key, _ in cols:
            value = res.get(group, {}).get(key)
            scale = 100.0 if group == "retrieval" else 1.0  # CompA scores are already percentages
            cells.append("-" if value is None else f"{value * scale:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# =========================================================================== evaluation suite
# Several models x several benchmarks -> one results.json, per-row CSVs and a Markdown report with plots.
# Embeddings go through an on-disk cache (`compclap.eval.cache`), so adding a model to a report only
# embeds with that model.

DEFAULT_CACHE_DIR = Path("checkpoints") / "embed_cache"
RESULTS_FILE = "results.json"


@dataclass
class ModelSpec:
    """One model to evaluate: a checkpoint path (loaded lazily with `load_model`) or an in-memory model.

    Args:
        name: row name in the report.
        path: anything `load_model` accepts (Lightning .ckpt, Hugging Face CLAP directory, ...).
        tokenizer: tokenizer directory passed to `load_model`.
        model: an already built model (instead of `path`).
        identity: cache identity; default: hash of the checkpoint files, or of the module's tensors.
    """

    name: str
    path: str | None = None
    tokenizer: str | None = None
    model: Any = None
    identity: str | None = None

    def __post_init__(self) -> None:
        """Exactly one of path and model."""
        if (self.path is None) == (self.model is None):
            raise ValueError(f"model {self.name!r}: give exactly one of `path` and `model`")


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
                "columns": [list(c) for c in self.columns], "details": [list(c) for c in self.details]}

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """Scores of one model (`embedder` has embed_audio / embed_text)."""
        raise NotImplementedError

    def write_artifacts(self, result: dict[str, Any], out_dir: Path, slug: str) -> dict[str, Any]:
        """Write per-row files from `result`; return it without bulky entries, with the files' names."""
        return {k: v for k, v in result.items() if k != "rows"}


class CompaBenchmark(Benchmark):
    """CompA-order / CompA-attribute CSV: text, audio and group scores with bootstrap intervals."""

    kind = "compa"
    columns = [("text", "text"), ("audio", "audio"), ("group", "group")]
    details = [("text", "text"), ("text_ci", "text 95% CI"), ("audio", "audio"), ("audio_ci", "audio 95% CI"),
               ("group", "group"), ("group_ci", "group 95% CI"), ("n_rows", "rows"),
               ("triplet.text", "3-way text"), ("triplet.audio", "3-way audio"), ("triplet.group", "3-way group"),
               ("triplet.n_rows", "3-way rows")]

    def __init__(self, name: str, csv_path: str | os.PathLike, audio_root: str | os.PathLike | None = None,
                 n_boot: int = 1000, seed: int = 0) -> None:
        """Parse the CSV now: a malformed file or a missing clip fails before any model is loaded."""
        super().__init__(name, str(csv_path))
        self.rows = read_compa_csv(csv_path, audio_root=audio_root)
        if not self.rows:
            raise ValueError(f"CompA CSV {csv_path} has no rows")
        self.n_boot, self.seed = n_boot, seed

    def fingerprint(self) -> str:
        """CSV content, resolved files, bootstrap settings."""
        return _sha1_text(self.kind, file_sha1(self.source), [[str(f) for f in r.files] for r in self.rows],
                          [str(r.triplet_file) for r in self.rows], self.n_boot, self.seed)

    def describe(self) -> dict[str, Any]:
        """Adds the row counts."""
        n_trip = sum(r.triplet_file is not None for r in self.rows)
        return {**super().describe(), "n_rows": len(self.rows), "n_triplet_rows": n_trip}

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


def slugify(name: str) -> str:
    """A file-name-safe version of a model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "model"


def _load_previous(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or not all(isinstance(payload.get(k), dict)
                                                for k in ("models", "benchmarks", "results")):
        return None  # not written by the evaluation suite (e.g. an older demo format): start over
    return payload


def run_suite(models: Sequence[ModelSpec], benchmarks: Sequence[Benchmark], out_dir: str | os.PathLike,
              cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR, batch_size: int = 32, device: str = "cpu",
              progress: bool = True, title: str = "compclap evaluation", description: str = "",
              fresh: bool = False, plots: bool = True, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Evaluate every model on every benchmark; write results.json, per-row CSVs, report.md and PNG plots.

    Results already in ``out_dir/results.json`` are kept (unless `fresh`) for models and benchmarks not
    evaluated now, so several runs (or subcommands) build one report; a model whose checkpoint changed
    or a benchmark whose definition changed drops its stale entries. `cache_dir=None` disables the
    embedding cache (an in-memory store in a temporary directory is used). Returns the results payload.
    """
    import tempfile

    from compclap.eval.cache import CachedEmbedder, EmbeddingCache, model_identity, module_identity
    from compclap.eval.report import format_value, lookup, render_report

    if not models:
        raise ValueError("no models to evaluate")
    if not benchmarks:
        raise ValueError("no benchmarks to run")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    bench_names = [b.name for b in benchmarks]
    if len(set(bench_names)) != len(bench_names):
        raise ValueError(f"benchmark names must be unique, got {bench_names}")
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tmp = tempfile.TemporaryDirectory() if cache_dir is None else None
    cache = EmbeddingCache(tmp.name if tmp is not None else cache_dir)
    try:
        previous = None if fresh else _load_previous(out / RESULTS_FILE)
        payload: dict[str, Any] = previous or {"models": {}, "benchmarks": {}, "results": {}}
        payload.update({"title": title, "description": description or payload.get("description", ""),
                        "units": "scores in percent; medR is a median rank"})
        for bench in benchmarks:
            desc = bench.describe()
            old = payload["benchmarks"].get(bench.name)
            if old is not None and old.get("fingerprint") != desc["fingerprint"]:
                say(f"[evaluate] benchmark {bench.name} changed: dropping its earlier results")
                for res in payload["results"].values():
                    res.pop(bench.name, None)
            payload["benchmarks"][bench.name] = desc

        used_slugs = {slugify(n) for n in payload["models"] if n not in names}
        embed_stats: dict[str, dict[str, int]] = {}
        for spec in models:
            if spec.path is not None:
                identity = spec.identity or model_identity(spec.path, spec.tokenizer, cache=cache)
                path, tok, dev = spec.path, spec.tokenizer, device

                def loader(path: str = path, tok: str | None = tok, dev: str = dev) -> Any:
                    from compclap.models.loading import load_model

                    say(f"[evaluate] loading {path}")
                    return load_model(path, tokenizer=tok, map_location=dev)

                source: Any = loader
            else:
                if spec.identity is None and not isinstance(spec.model, torch.nn.Module):
                    raise ValueError(f"model {spec.name!r}: give `identity` for a model that is not an nn.Module")
                identity = spec.identity or module_identity(spec.model)
                source = spec.model
            cache.describe_model(identity, spec.path or spec.name)
            old = payload["models"].get(spec.name)
            if old is not None and old.get("identity") != identity:
                say(f"[evaluate] model {spec.name} changed: dropping its earlier results")
                payload["results"].pop(spec.name, None)
            slug = slugify(spec.name)
            base, k = slug, 2
            while slug in used_slugs:
                slug, k = f"{base}_{k}", k + 1
            used_slugs.add(slug)
            payload["models"][spec.name] = {"path": str(spec.path) if spec.path else None,
                                            "tokenizer": spec.tokenizer, "identity": identity, "slug": slug}

            embedder = CachedEmbedder(source, identity, cache, batch_size=batch_size, progress=progress,
                                      name=spec.name)
            results = payload["results"].setdefault(spec.name, {})
            for bench in benchmarks:
                t0 = time.time()
                result = bench.evaluate(embedder, device=device)
                results[bench.name] = bench.write_artifacts(result, out, slug)
                head = ", ".join(f"{label} {format_value(lookup(results[bench.name], key))}" for key, label in bench.columns)
                say(f"[evaluate] {spec.name} | {bench.name}: {head} ({time.time() - t0:.1f} s)")
            stats = dict(embedder.stats)
            stats["model_loaded"] = int(embedder.model_loaded)
            embed_stats[spec.name] = stats
            say(f"[evaluate] {spec.name}: embedded {stats['audio_computed']} clips and {stats['text_computed']} "
                f"texts; {stats['audio_hits']} clips and {stats['text_hits']} texts from the cache")
            del embedder
        payload["last_run"] = {"models": names, "benchmarks": bench_names, "embedding": embed_stats,
                               "cache": str(cache.path) if tmp is None else None,
                               "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        # Earlier models and benchmarks keep their places; new ones are appended (dict insertion order).
        (out / RESULTS_FILE).write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
        render_report(payload, out, plots=plots)
        say(f"[evaluate] wrote {out / RESULTS_FILE} and {out / 'report.md'}")
        return payload
    finally:
        cache.close()
        if tmp is not None:
            tmp.cleanup()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")

