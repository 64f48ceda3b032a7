"""Time of the probe benchmark (linear + MLP heads, zero-shot) on demo-sized or ESC-50-sized embeddings.

Usage: python benchmarks/bench_probe.py [--preset demo|esc50] [--models 5] [--noise 1.0]

`demo`: the demo's single-event probe (300 clips, 13 classes, 64-d embeddings, seeded 80/20 split) for 5 models;
`esc50`: 2,000 clips, 50 classes, 512-d, 5 folds. Embeddings are class centres plus Gaussian noise (`--noise`
relative to the centres' spread), so the heads train as long as on real embeddings of that difficulty. Prints one
JSON line: seconds per model and in total, and each model's accuracies.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from compclap.data.labelled import LabelledData, carve_validation
from compclap.eval.probe import ProbeBenchmark

PRESETS = {"demo": {"clips": 300, "classes": 13, "dim": 64, "folds": 0},
           "esc50": {"clips": 2000, "classes": 50, "dim": 512, "folds": 5}}


class _Embedder:
    """Fixed audio embeddings per file, random text embeddings."""

    def __init__(self, audio: torch.Tensor, name: str) -> None:
        """audio: (N, D), row i for file i."""
        self.audio, self.name = audio, name

    def embed_audio(self, items: list) -> torch.Tensor:
        """Rows in file order."""
        return self.audio[[int(Path(p).stem) for p in items]]

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Random unit vectors."""
        return torch.nn.functional.normalize(torch.randn(len(texts), self.audio.shape[1]), dim=-1)


def main() -> None:
    """Build the data, time `ProbeBenchmark.evaluate` for every model, print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--models", type=int, default=5)
    p.add_argument("--noise", type=float, default=1.0)
    args = p.parse_args()
    cfg = PRESETS[args.preset]
    n, c, d = cfg["clips"], cfg["classes"], cfg["dim"]
    labels = [i % c for i in range(n)]
    files = [Path(f"{i}.wav") for i in range(n)]
    if cfg["folds"]:
        data = LabelledData(files, [f"class {k}" for k in range(c)], [[y] for y in labels], False,
                            folds=[str(1 + (i // c) % cfg["folds"]) for i in range(n)], source="synthetic")
    else:
        _, test = carve_validation(range(n), labels, 0.2, [0, 1000])
        data = LabelledData(files, [f"class {k}" for k in range(c)], [[y] for y in labels], False,
                            splits=["test" if i in set(test) else "train" for i in range(n)], source="synthetic")
    bench = ProbeBenchmark(args.preset, data)
    bench.fingerprint = lambda: "synthetic"  # type: ignore[method-assign]  # no source file to hash
    times, scores = [], []
    for m in range(args.models):
        g = torch.Generator().manual_seed(m)
        centres = torch.randn(c, d, generator=g)
        audio = centres[torch.tensor(labels)] + args.noise * torch.randn(n, d, generator=g)
        t0 = time.perf_counter()
        result = bench.evaluate(_Embedder(audio, f"m{m}"))
        times.append(time.perf_counter() - t0)
        scores.append({k: round(result[k]["accuracy"], 1) for k in ("zeroshot", "linear", "mlp")})
    print(json.dumps({"benchmark": "probe", "preset": args.preset, "clips": n, "classes": c, "dim": d,
                      "models": args.models, "seconds_per_model": [round(t, 2) for t in times],
                      "seconds_total": round(sum(times), 2), "accuracy": scores,
                      "epochs": {k: result[k]["best_epoch"] for k in ("linear", "mlp")}}))


if __name__ == "__main__":
    main()
