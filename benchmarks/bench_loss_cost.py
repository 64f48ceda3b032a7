"""Cost of the compositional losses: step time and peak memory of hard-negative and modular vs standard.

Same model and batch for every variant; K negatives per clip (default 3) for the hard-negative and modular
losses and P positives per clip (default 3) for the modular one. Each variant runs in its own process so that
peak RSS (VmHWM, reset before the timed steps) is its own. Prints one JSON line with the ratios.

    .venv/bin/python benchmarks/bench_loss_cost.py [--batch 16] [--negatives 3] [--positives 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_hf_clap_dir, reset_peak, status_kib  # noqa: E402

LOSSES = {"standard": "ContrastiveLoss", "hard_negative": "HardNegativeContrastiveLoss",
          "modular": "ModularContrastiveLoss"}


def _run_variant(variant: str, clap_dir: str, batch: int, negatives: int, positives: int, steps: int) -> dict:
    """Time `steps` training steps of one loss variant in this process."""
    import compclap.losses as losses
    from compclap.lit_module import CompClapModule
    from compclap.models.dual_encoder import CLAPDualEncoder

    torch.manual_seed(0)
    module = CompClapModule(CLAPDualEncoder(hf_pretrained=clap_dir), loss=getattr(losses, LOSSES[variant])()).train()
    opt = torch.optim.AdamW(module._param_groups(), lr=1e-5)
    rng = np.random.default_rng(0)
    captions = [f"a loud dog barks followed by a car engine number {i}" for i in range(batch)]
    data = {"waveforms": torch.from_numpy((0.1 * rng.standard_normal((batch, 480_000))).astype(np.float32)),
            "captions": captions}
    if variant != "standard":
        data["negatives"] = [[{"text": f"{c} variant {k}", "kind": "order"} for k in range(negatives)] for c in captions]
    if variant == "modular":
        data["positives"] = [f"{c} part {j}" for c in captions for j in range(positives)]
        data["positive_owner"] = torch.arange(batch).repeat_interleave(positives)

    def step() -> None:
        terms = module.loss(**module._embed_train_batch(data))
        sum(v for k, v in terms.items() if k.endswith("_loss")).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up (allocations, optimiser state)
    base = status_kib("VmRSS")
    reset_peak()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), "peak_extra_mib": (status_kib("VmHWM") - base) / 1024}


def main(argv: list[str] | None = None) -> dict:
    """Run every variant in a subprocess and print the ratios to the standard loss."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--negatives", type=int, default=3)
    p.add_argument("--positives", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--variant", choices=sorted(LOSSES), help=argparse.SUPPRESS)
    p.add_argument("--clap-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variant:  # child process
        print(json.dumps(_run_variant(args.variant, args.clap_dir, args.batch, args.negatives, args.positives,
                                      args.steps)))
        return {}
    clap_dir = str(make_hf_clap_dir("small"))
    results = {}
    for variant in LOSSES:
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--clap-dir", clap_dir,
                              "--batch", str(args.batch), "--negatives", str(args.negatives),
                              "--positives", str(args.positives), "--steps", str(args.steps)],
                             check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    std = results["standard"]
    summary = {"benchmark": "loss_cost", "batch": args.batch, "negatives": args.negatives, "positives": args.positives,
               **{f"{v}_step_s": round(r["step_s"], 4) for v, r in results.items()},
               **{f"{v}_peak_extra_mib": round(r["peak_extra_mib"], 1) for v, r in results.items()},
               **{f"{v}_time_ratio": round(results[v]["step_s"] / std["step_s"], 3) for v in ("hard_negative", "modular")},
               **{f"{v}_memory_ratio": round(results[v]["peak_extra_mib"] / max(std["peak_extra_mib"], 1e-9), 3)
                  for v in ("hard_negative", "modular")}}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
