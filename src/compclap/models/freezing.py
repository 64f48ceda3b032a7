"""Freeze a tower entirely or all but its last N blocks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def freeze_all_but_last(module: nn.Module, blocks: Sequence[nn.Module], trainable_blocks: int | None,
                        always_trainable: Sequence[nn.Module] = ()) -> None:
    """Freeze `module` except its last `trainable_blocks` blocks (None: leave all trainable; 0: freeze all).

    `always_trainable` (e.g. a final LayerNorm after the blocks) stays trainable whenever any block does.
    """
    if trainable_blocks is None:
        return
    if trainable_blocks < 0:
        raise ValueError(f"trainable_blocks must be >= 0 or None, got {trainable_blocks}")
    if trainable_blocks > len(blocks):
        raise ValueError(f"trainable_blocks={trainable_blocks} but the tower has only {len(blocks)} blocks")
    module.requires_grad_(False)
    if trainable_blocks == 0:
        return
    for block in list(blocks)[len(blocks) - trainable_blocks:]:
        block.requires_grad_(True)
    for extra in always_trainable:
        extra.requires_grad_(True)


def set_frozen_batchnorm_eval(module: nn.Module) -> None:
    """Keep BatchNorm layers whose parameters are frozen in eval mode so their running stats stay fixed."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()
