"""Evaluation runner: benchmarks (CompA, zero-shot, retrieval) x models, cached embeddings, one report.

`run_suite` is what `compclap evaluate` and the demo call; `evaluate_model` / `markdown_table` are the
older single-model helpers (retrieval on a manifest plus CompA CSVs, a fixed-column table).
"""

from __future__ import annotations

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
# The benchmark classes moved to `compclap.eval.benchmarks`; re-exported here, where users import them from.
from compclap.eval.benchmarks import Benchmark, CompaBenchmark, RetrievalBenchmark, ZeroShotBenchmark
from compclap.eval.compa import evaluate_compa, read_compa_csv
from compclap.eval.retrieval import retrieval_metrics, to_percent

__all__ = ["Benchmark", "CompaBenchmark", "Embedder", "ModelSpec", "RetrievalBenchmark", "ZeroShotBenchmark",
           "evaluate_model", "evaluate_retrieval_manifest", "markdown_table", "run_suite", "slugify"]


class Embedder(Protocol):
    """What evaluation needs of a model: L2-normalised audio and text embeddings."""

    def embed_audio(self, items: list, sample_rate: int | None = None) -> torch.Tensor:
        """Embed audio files or arrays."""

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Embed captions."""


def evaluate_retrieval_manifest(model: Embedder, manifest: str | os.PathLike) -> dict[str, float]:
    """Retrieval both ways over every clip and all its captions (multi-caption protocol), in percent (medR: a rank)."""
    records = read_manifest(manifest)
    audio = model.embed_audio([r["audio"] for r in records])
    captions = [c for r in records for c in r["captions"]]
    owner = torch.tensor([i for i, r in enumerate(records) for _ in r["captions"]], dtype=torch.long)
    return to_percent(retrieval_metrics(audio, model.embed_text(captions), owner))


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
            cells.append("-" if value is None else f"{value:.1f}")  # every score is in percent
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
              fresh: bool = False, plots: bool = True, log: Callable[[str], None] | None = print,
              replace: bool = False) -> dict[str, Any]:
    """Evaluate every model on every benchmark; write results.json, per-row CSVs, report.md and PNG plots.

    Results already in ``out_dir/results.json`` are kept (unless `fresh`) for models and benchmarks not
    evaluated now, so several runs (or subcommands) build one report; a model whose checkpoint changed
    or a benchmark whose definition changed drops its stale entries. A model name already in the report for
    another path is refused (ValueError) unless `replace`. A run directory stands for its best checkpoint, else
    its last.ckpt (compclap.models.run_dir); the file read is printed and recorded (`checkpoint`, `resolved_as`).
    `cache_dir=None` disables the embedding cache (an in-memory store in a temporary directory is used).
    Returns the results payload.
    """
    import tempfile

    from compclap.eval.cache import CachedEmbedder, EmbeddingCache, model_identity, module_identity
    from compclap.eval.report import format_value, lookup, render_report
    from compclap.models.run_dir import resolve_checkpoint

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

        _refuse_reused_names(payload, models, out / RESULTS_FILE, replace)
        used_slugs = {slugify(n) for n in payload["models"] if n not in names}
        embed_stats: dict[str, dict[str, int]] = {}
        for spec in models:
            resolved = resolve_checkpoint(spec.path) if spec.path is not None else None
            if resolved is not None:
                identity = spec.identity or model_identity(resolved.path, spec.tokenizer, cache=cache)
                path, tok, dev = str(resolved.path), spec.tokenizer, device
                say(f"[evaluate] {spec.name}: {resolved.describe()}")

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
                                            "source": os.path.abspath(spec.path) if spec.path else None,
                                            "checkpoint": str(resolved.path.resolve()) if resolved else None,
                                            "resolved_as": resolved.how if resolved else None,
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


def _refuse_reused_names(payload: Mapping[str, Any], models: Sequence[ModelSpec], where: Path, replace: bool) -> None:
    """A name that already labels another checkpoint's results in the report is an error (unless `replace`)."""
    for spec in models:
        old = payload["models"].get(spec.name)
        if old is None or spec.path is None or replace:
            continue
        old_source = old.get("source") or (os.path.abspath(old["path"]) if old.get("path") else None)
        if old_source is not None and old_source != os.path.abspath(spec.path):
            raise ValueError(f"model name {spec.name!r} already labels {old.get('path')} in {where}; evaluating "
                             f"{spec.path} under it would drop those results: choose another NAME "
                             "(--model OTHER=PATH), pass --replace to replace them, or --fresh to start a new report")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")

