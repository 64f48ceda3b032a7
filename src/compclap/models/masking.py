"""Partial views of an input for ProLAP's inclusion loss: random token masks, masked HTSAT, masked text pooling.

A masked (partial) view of a clip or a caption carries less information than the full input, so in the
joint space it should be a wider Gaussian that includes the full view (see compclap.losses.probabilistic).

* Text: a random share of a caption's content tokens (special tokens such as <s>, </s>, [CLS] or GPT-2's
  end-of-text are never masked) is removed from the attention mask: masked tokens neither attend nor are
  attended to, and mean pooling averages the unmasked tokens only (CLS/pooler/EOS pooling read a special
  token, which is always kept). Position ids are unchanged, so the view equals the caption with those
  words deleted but the others in place (`HFTextEncoder.forward(texts, mask_ratio=...)`).
* Audio (HTSAT): a random share of the patch embeddings is replaced by a learnable mask token (a forward
  hook on ``audio_encoder.patch_embed``), and the pooled output averages the final-stage tokens weighted
  by the share of *visible* patches in each token's receptive block (a forward hook on the final
  ``audio_encoder.norm``; HTSAT merges 2x2 tokens per stage, so a final token covers a block of patches).
  Without masking the weights are all 1 and the result equals HTSAT's own average pooling. A tower with a
  level grid (`level_bands`) also has the same share of the grid's cells set to 0 (their normalised mean).

Every random choice takes an optional ``torch.Generator`` (drawn on the CPU), so masks are reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["random_token_mask", "masked_htsat_pooled"]


def random_token_mask(maskable: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose round(ratio * n) of the n maskable positions of each row (at most n - 1: one always stays visible).

    maskable: (B, L) bool, True where a token may be masked. Returns (B, L) bool, True = masked, on the
    device of `maskable`; random draws come from `generator` (CPU) when given.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    maskable = maskable.bool()
    if ratio == 0.0 or maskable.numel() == 0:
        return torch.zeros_like(maskable)
    n = maskable.sum(1)
    n_mask = torch.minimum(torch.round(n.double() * ratio).long(), (n - 1).clamp_min(0))
    # Random scores for maskable positions, +inf elsewhere: the n_mask smallest scores of a row are masked.
    scores = torch.rand(maskable.shape, generator=generator).to(maskable.device)
    scores = scores.masked_fill(~maskable, float("inf"))
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return (ranks < n_mask[:, None]) & maskable


def masked_htsat_pooled(audio: nn.Module, waveforms: torch.Tensor, mask_token: torch.Tensor, ratio: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Pooled HTSAT features (B, hidden) of a masked view of each clip.

    audio: an HTSATAudioEncoder (its `backbone` is transformers' ClapAudioModel); mask_token: (C,) with C the
    patch embedding size; ratio: share of patches replaced by the token. With ratio 0 the result equals
    `audio(waveforms)`.
    """
    encoder = getattr(getattr(audio, "backbone", None), "audio_encoder", None)
    if encoder is None or not hasattr(encoder, "patch_embed"):
        raise NotImplementedError(f"audio masking needs an HTSAT tower, got {type(audio).__name__}")
    grid = tuple(encoder.patch_embed.grid_size)
    final = tuple(encoder.input_resolutions[-1])
    if grid[0] % final[0] or grid[1] % final[1]:
        raise ValueError(f"HTSAT patch grid {grid} is not a multiple of its final token grid {final}")
    state: dict[str, torch.Tensor] = {}

    def replace_patches(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        batch, length, _ = output.shape
        if length != grid[0] * grid[1]:
            raise ValueError(f"HTSAT patch embedding has {length} tokens, expected {grid[0]} x {grid[1]}")
        mask = random_token_mask(torch.ones(batch, length, dtype=torch.bool, device=output.device), ratio, generator)
        state["mask"] = mask
        return torch.where(mask[..., None], mask_token.to(output.dtype), output)

    def keep_final(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        state["final"] = output

    handles = [encoder.patch_embed.register_forward_hook(replace_patches),
               encoder.norm.register_forward_hook(keep_final)]
    try:
        pooled = audio(waveforms)
    finally:
        for handle in handles:
            handle.remove()
    if getattr(audio, "temporal_bins", 0):
        # Per-segment means in time order: the final tokens' image layout does not map one to one onto time
        # segments, so the masked view keeps the tower's own pooling (mask tokens included in the means).
        return _mask_level_grid(pooled, getattr(audio, "level_features", 0), ratio, generator)
    hidden, mask = state["final"], state["mask"]
    visible = (~mask).to(hidden.dtype).view(mask.shape[0], 1, *grid)
    weights = F.avg_pool2d(visible, kernel_size=(grid[0] // final[0], grid[1] // final[1])).flatten(1)
    if weights.shape[1] != hidden.shape[1]:
        raise ValueError(f"HTSAT final stage has {hidden.shape[1]} tokens, expected {weights.shape[1]}")
    return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-6)


def _mask_level_grid(pooled: torch.Tensor, cells: int, ratio: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Hide the same share of the level grid's cells (the last `cells` features) as of the patches.

    The grid is read from the unmasked log-mel, so without this the partial view would still carry every
    segment's level; a hidden cell is set to 0, the batch-normalised mean, i.e. "no information".
    """
    if not cells or ratio == 0.0:
        return pooled
    hidden = random_token_mask(torch.ones(pooled.shape[0], cells, dtype=torch.bool, device=pooled.device), ratio,
                               generator)
    grid = pooled[:, -cells:].masked_fill(hidden, 0.0)
    return torch.cat([pooled[:, :-cells], grid], dim=1)
