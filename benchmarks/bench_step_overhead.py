"""Step overhead: a compclap training step vs a bare transformers ClapModel step on the same batch and weights.

Both sides start from the same Hugging Face ClapModel directory. The bare step is
ClapModel(input_ids, attention_mask, input_features, return_loss=True) + backward + AdamW step, with
features precomputed by ClapFeatureExtractor outside the timed region. The compclap step is the
LightningModule's embedding + loss + backward + AdamW step from raw waveforms, i.e. it also computes the
log-mel front end on the device inside the step. Prints one JSON line (median of timed steps).

    .venv/bin/python benchmarks/bench_step_overhead.py [--size small|laion] [--batch 8] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_hf_clap_dir  # noqa: E402


def _median_step(step, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    """Time both steps and print the ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=["small", "laion"], default="small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["32", "bf16"], default="32")
    args = p.parse_args(argv)

    from transformers import ClapFeatureExtractor, ClapModel

    from compclap.lit_module import CompClapModule
    from compclap.models.dual_encoder import CLAPDualEncoder
    from compclap.text.tokenizer import load_tokenizer

    clap_dir = make_hf_clap_dir(args.size)
    device = torch.device(args.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    rng = np.random.default_rng(0)
    waves = (0.1 * rng.standard_normal((args.batch, 480_000))).astype(np.float32)
    texts = [f"a loud dog barks followed by a car engine number {i}" for i in range(args.batch)]

    # bare transformers
    bare = ClapModel.from_pretrained(clap_dir).to(device).train()
    fe = ClapFeatureExtractor.from_pretrained(clap_dir)
    feats = fe(list(waves), sampling_rate=48_000, return_tensors="pt")["input_features"].float().to(device)
    tok = load_tokenizer(clap_dir)(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    tok = {k: v.to(device) for k, v in tok.items()}
    bare_opt = torch.optim.AdamW(bare.parameters(), lr=1e-5)

    def bare_step() -> None:
        with autocast:
            loss = bare(input_features=feats, **tok, return_loss=True).loss
        loss.backward()
        bare_opt.step()
        bare_opt.zero_grad(set_to_none=True)

    # compclap
    module = CompClapModule(CLAPDualEncoder(hf_pretrained=str(clap_dir)), lr=1e-5).to(device).train()
    ours_opt = torch.optim.AdamW(module._param_groups(), lr=1e-5)
    batch = {"waveforms": torch.from_numpy(waves).to(device), "captions": texts}

    def ours_step() -> None:
        with autocast:
            terms = module.loss(**module._embed_train_batch(batch))
            loss = sum(v for k, v in terms.items() if k.endswith("_loss"))
        loss.backward()
        ours_opt.step()
        ours_opt.zero_grad(set_to_none=True)

    t_bare = _median_step(bare_step, args.steps)
    t_ours = _median_step(ours_step, args.steps)
    result = {"benchmark": "step_overhead", "size": args.size, "device": str(device), "precision": args.precision,
              "batch": args.batch, "bare_transformers_s": round(t_bare, 4), "compclap_s": round(t_ours, 4),
              "ratio": round(t_ours / t_bare, 3), "compclap_samples_per_s": round(args.batch / t_ours, 2),
              "torch_threads": torch.get_num_threads()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
