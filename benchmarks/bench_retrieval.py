"""Time and memory of `compclap.eval.retrieval.retrieval_metrics` on random embeddings.

Usage: python benchmarks/bench_retrieval.py [--clips 20000] [--captions 100000] [--dim 512]

Prints one JSON line. Memory is read from /proc/self/status (Linux only):
`peak_extra_rss_mib` = VmHWM after the call - VmRSS just before it, i.e. the most resident memory
the call added on top of the inputs. The high-water mark is first reset by writing "5" to
/proc/self/clear_refs so that the temporaries of building the inputs do not mask the call's own
peak; `hwm_reset` says whether that worked (if not, the figure is a lower bound, as the call's
peak may hide under the earlier one). Freed memory that the allocator keeps counts as resident,
so the figure errs on the high side otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from compclap.eval.retrieval import retrieval_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import reset_peak as _reset_peak  # noqa: E402
from _common import status_kib as _status_kib  # noqa: E402



def _random_unit_rows(n: int, dim: int, generator: torch.Generator, block: int = 8192) -> torch.Tensor:
    """Random L2-normalised rows, built in blocks so the inputs' temporaries stay small."""
    out = torch.empty(n, dim)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = torch.randn(stop - start, dim, generator=generator)
        out[start:stop] = torch.nn.functional.normalize(rows, dim=1)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark once and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--captions", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(args.seed)
    audio = _random_unit_rows(args.clips, args.dim, generator)
    text = _random_unit_rows(args.captions, args.dim, generator)
    # Captions dealt round-robin: captions/clips captions per clip, as in AudioCaps/Clotho.
    text_to_audio = torch.arange(args.captions) % args.clips

    reset = _reset_peak()
    rss_before = _status_kib("VmRSS")
    start = time.perf_counter()
    metrics = retrieval_metrics(audio, text, text_to_audio, chunk_size=args.chunk_size)
    wall = time.perf_counter() - start
    hwm_after = _status_kib("VmHWM")

    result = {
        "clips": args.clips,
        "captions": args.captions,
        "dim": args.dim,
        "chunk_size": args.chunk_size,
        "torch_threads": torch.get_num_threads(),
        "wall_s": round(wall, 2),
        "peak_extra_rss_mib": round((hwm_after - rss_before) / 1024, 1),
        "inputs_mib": round((audio.numel() + text.numel()) * 4 / 2**20, 1),
        "hwm_reset": reset,
        "metrics": {k: round(v, 5) for k, v in metrics.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
