"""Evaluate an embedding model on a manifest (retrieval) and CompA CSVs, and render a comparison table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

import torch

from compclap.data.manifest import read_manifest
from compclap.eval.compa import evaluate_compa, read_compa_csv
from compclap.eval.retrieval import retrieval_metrics


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
