"""Audio-side composition negatives: rendered "swapped" versions of a clip as extra text->audio columns.

A clip may come with K renderings of its events in another order (or with attributes swapped). For the
text row that describes the clip (its caption, or its full caption among its positives) those renderings
are hard negatives: "A then B" must prefer the A+B audio over the B+A audio. They stay with their clip
(local under DDP, like the text negatives) and enter only that one text row's softmax.
"""

from __future__ import annotations

import torch

from compclap.distributed import world_size

__all__ = ["audio_negative_columns", "audio_negative_accuracy"]


def audio_negative_columns(text_embeds: torch.Tensor, logit_scale: torch.Tensor, audio_negative_embeds: torch.Tensor,
                           audio_negative_mask: torch.Tensor | None,
                           audio_negative_text: torch.Tensor) -> torch.Tensor:
    """(M, K) logits of each local text row against its clip's audio negatives; -inf where there is none.

    Row audio_negative_text[b] gets logit_scale * text . audio_negative_embeds[b, k] for the valid k; every
    other slot (padding, rows without negatives) is an additive -inf. audio_negative_text[b] < 0: clip b's
    negatives are unused.
    """
    n_clip, k = audio_negative_embeds.shape[:2]
    device = text_embeds.device
    if audio_negative_mask is None:
        audio_negative_mask = torch.ones(n_clip, k, dtype=torch.bool, device=device)
    audio_negative_mask = audio_negative_mask.to(device)
    audio_negative_text = audio_negative_text.to(device).long()
    if audio_negative_mask.shape != (n_clip, k) or audio_negative_text.shape != (n_clip,):
        raise ValueError(f"audio negatives {tuple(audio_negative_embeds.shape)}, mask "
                         f"{tuple(audio_negative_mask.shape)} and text rows {tuple(audio_negative_text.shape)} "
                         "do not match")
    used = audio_negative_text >= 0
    rows = audio_negative_text[used]
    if rows.numel() and int(rows.max()) >= text_embeds.shape[0]:
        raise ValueError(f"audio_negative_text points past the {text_embeds.shape[0]} text rows")
    if rows.unique().numel() != rows.numel():
        raise ValueError("two clips send their audio negatives to the same text row")
    sims = logit_scale * torch.einsum("bd,bkd->bk", text_embeds[rows], audio_negative_embeds[used])
    sims = sims.masked_fill(~audio_negative_mask[used], float("-inf"))
    columns = text_embeds.new_full((text_embeds.shape[0], k), float("-inf"))
    return columns.index_copy(0, rows, sims)


def audio_negative_accuracy(own_logits: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Detached share (over every rank) of text rows with audio negatives that score their own audio above all."""
    with torch.no_grad():
        has = torch.isfinite(columns).any(1)
        best = columns.max(1).values if columns.shape[1] else own_logits.new_full(own_logits.shape, float("-inf"))
        counts = torch.stack([(has & (own_logits > best)).sum(), has.sum()]).to(torch.float32)
        if world_size() > 1:
            torch.distributed.all_reduce(counts)
        return counts[0] / counts[1].clamp_min(1.0)
