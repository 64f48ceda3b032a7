"""Cross-rank gathering for losses and metrics; a no-op in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0, keeping gradients to every rank's input.

    The backward of torch.distributed.nn's all_gather sums the incoming gradients across ranks, so
    each rank's features receive the gradient of every rank's loss term.
    """
    if world_size() == 1:
        return x
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0; only the local slice keeps its gradient."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank()] = x
    return torch.cat(parts, dim=0)


def gather_variable(x: torch.Tensor, with_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather tensors whose first dimension differs per rank; returns (concatenation, per-rank sizes)."""
    n = world_size()
    if n == 1:
        return x, torch.tensor([x.shape[0]], device=x.device)
    sizes = torch.tensor([x.shape[0]], device=x.device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(n)]
    dist.all_gather(all_sizes, sizes)
    all_sizes_t = torch.cat(all_sizes)
    longest = int(all_sizes_t.max())
    padded = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))], dim=0)
    gathered = gather_with_grad(padded) if with_grad else gather_no_grad(padded)
    chunks = gathered.split(longest, dim=0)
    return torch.cat([c[: int(s)] for c, s in zip(chunks, all_sizes_t)], dim=0), all_sizes_t
