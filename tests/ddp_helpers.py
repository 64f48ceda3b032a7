"""Run a function in N gloo processes on CPU and collect what each rank returns."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn: Callable, args: tuple, out_dir: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.save(fn(rank, world, *args), Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # nobody tears the group down while a peer still talks to it
    finally:
        dist.destroy_process_group()


def run_ddp(fn: Callable, world: int = 2, args: tuple = (), attempts: int = 2) -> list:
    """Spawn `world` processes running fn(rank, world, *args) under gloo; return their results in rank order.

    A launch that dies (e.g. the chosen port was taken meanwhile) is retried once on a new port; results are
    only compared by the caller, so a retry cannot hide a wrong number.
    """
    for attempt in range(attempts):
        with tempfile.TemporaryDirectory() as out_dir:
            try:
                mp.spawn(_worker, args=(world, _free_port(), fn, args, out_dir), nprocs=world, join=True)
            except mp.ProcessExitedException:
                if attempt + 1 == attempts:
                    raise
                continue
            return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world)]
    raise AssertionError("unreachable")


class LinearTowers(torch.nn.Module):
    """Two seeded linear 'towers' (5 -> 4): audio features, and text features for positives and negatives."""

    def __init__(self) -> None:
        """Deterministic weights (seed 0)."""
        super().__init__()
        torch.manual_seed(0)
        self.audio, self.text = torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)

    def forward(self, x, y, z):
        """Normalised audio embeddings of x, text embeddings of y (positives) and z (negatives)."""
        norm = torch.nn.functional.normalize
        return norm(self.audio(x), dim=-1), norm(self.text(y), dim=-1), norm(self.text(z), dim=-1)
