"""Training aids on the towers: activation checkpointing and per-parameter learning-rate scales."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn


def enable_activation_checkpointing(module: nn.Module) -> int:
    """Recompute the activations of every transformers block (HTSAT stages, RoBERTa/BERT/GPT-2/T5 layers) in backward.

    Works on towers whose model class does not advertise gradient checkpointing (transformers' ClapAudioModel)
    by switching the blocks themselves. Returns the number of blocks switched.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    count = 0
    for sub in module.modules():
        if isinstance(sub, GradientCheckpointingLayer):
            sub.gradient_checkpointing = True
            sub._gradient_checkpointing_func = partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)
            count += 1
    return count


def layer_lr_scales(tower: nn.Module, decay: float) -> dict[int, float]:
    """Layer-wise learning-rate decay: parameter id -> scale (top block 1, each block below x decay, stem x decay^n).

    Modules after the blocks (final norm, pooler) keep scale 1.
    """
    blocks, tail = tower.block_structure()
    n = len(blocks)
    scales = {id(p): decay ** n for p in tower.parameters()}  # stem: embeddings, patch embedding, BN
    for i, block in enumerate(blocks):
        for p in block.parameters():
            scales[id(p)] = decay ** (n - 1 - i)
    for module in tail:
        for p in module.parameters():
            scales[id(p)] = 1.0
    return scales
