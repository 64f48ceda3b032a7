"""CompA-CLAP stage 2: contrastive loss with each caption's own composition-aware hard negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compclap.distributed import gather_variable, rank


class HardNegativeContrastiveLoss(nn.Module):
    """Audio-to-text over all in-batch positives plus this sample's own negatives; text-to-audio standard.

    Negatives arrive padded, (B, K, D) with a (B, K) validity mask; padding and other samples' negatives
    are excluded with an additive -inf mask. (CompA's code multiplied logits by -1e5, which turns negative
    similarities into huge positive logits.) Under DDP, positives are gathered from every rank with
    gradients; negatives stay with their sample. Each rank computes its own rows, so DDP-averaged gradients
    equal those of one process on the concatenated batch.
    """

    uses_negatives = True

    def __init__(self, max_negatives: int | None = None, negative_kinds: list[str] | None = None) -> None:
        """max_negatives: keep at most this many negatives per caption; negative_kinds: only these kinds (None: all)."""
        super().__init__()
        self.max_negatives = max_negatives
        self.negative_kinds = negative_kinds

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                negative_embeds: torch.Tensor | None = None, negative_mask: torch.Tensor | None = None,
                **_: object) -> dict[str, torch.Tensor]:
        """Loss for matching (B, D) audio/text embeddings and per-sample negatives (B, K, D) with mask (B, K)."""
        if audio_embeds.shape != text_embeds.shape:
            raise ValueError(f"audio and text embeddings must match in shape, got {tuple(audio_embeds.shape)} "
                             f"and {tuple(text_embeds.shape)}")
        n_local = audio_embeds.shape[0]
        # Ranks may hold different batch sizes (clips that failed to decode are dropped).
        all_audio, sizes = gather_variable(audio_embeds)
        all_text, _ = gather_variable(text_embeds)
        labels = torch.arange(n_local, device=audio_embeds.device) + int(sizes[:rank()].sum())
        logits_a2t = logit_scale * audio_embeds @ all_text.T  # (B, N)
        if negative_embeds is not None and negative_embeds.shape[1] > 0:
            if negative_mask is None:
                negative_mask = torch.ones(negative_embeds.shape[:2], dtype=torch.bool, device=negative_embeds.device)
            if negative_embeds.shape[:2] != negative_mask.shape or negative_embeds.shape[0] != n_local:
                raise ValueError(f"negatives {tuple(negative_embeds.shape)} and mask {tuple(negative_mask.shape)} "
                                 f"do not match a batch of {n_local}")
            own = logit_scale * torch.einsum("bd,bkd->bk", audio_embeds, negative_embeds)
            additive = torch.zeros_like(own).masked_fill(~negative_mask, float("-inf"))
            logits_a2t = torch.cat([logits_a2t, own + additive], dim=1)
        logits_t2a = logit_scale * text_embeds @ all_audio.T
        a2t = F.cross_entropy(logits_a2t, labels)
        t2a = F.cross_entropy(logits_t2a, labels)
        return {"hard_negative_loss": (a2t + t2a) / 2, "a2t": a2t.detach(), "t2a": t2a.detach()}
