"""CompA-CLAP stage 3: the modular contrastive loss over multi-granular positives and hard negatives."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from compclap.distributed import gather_variable, rank, world_size


class ModularContrastiveLoss(nn.Module):
    """Each clip has P_i positive captions (the whole expression and its sub-expressions) and N_i negatives.

    Audio-to-text for clip i: mean over its positives of -log softmax over (all in-batch positives of all
    clips + i's own negatives); text-to-audio: every positive is classified to its own clip against all
    in-batch audio. Total = (a2t + t2a) / 2, a2t averaged over clips with at least one positive and t2a
    over positive captions. Counts vary per clip (negatives padded and masked with an additive -inf).
    Under DDP positives and audio are gathered with gradients, and each rank's sums are normalised by
    the global counts, so the DDP-averaged loss and gradients equal one process on the whole batch.
    """

    uses_negatives = True
    uses_positives = True

    def __init__(self, max_negatives: int | None = None, negative_kinds: list[str] | None = None) -> None:
        """max_negatives: at most this many negatives per caption (one caption per clip in training); negative_kinds: only these kinds (None: all)."""
        super().__init__()
        self.max_negatives = max_negatives
        self.negative_kinds = negative_kinds

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                text_owner: torch.Tensor | None = None, negative_embeds: torch.Tensor | None = None,
                negative_mask: torch.Tensor | None = None, **_: object) -> dict[str, torch.Tensor]:
        """audio (B, D); positives text_embeds (M, D) with text_owner (M,) = clip of each; negatives (B, K, D) + mask."""
        n_audio, device = audio_embeds.shape[0], audio_embeds.device
        if text_owner is None:  # one positive per clip, in clip order
            text_owner = torch.arange(n_audio, device=device)
        text_owner = text_owner.to(device)
        if text_owner.shape[0] != text_embeds.shape[0]:
            raise ValueError(f"text_owner has {text_owner.shape[0]} entries for {text_embeds.shape[0]} positives")
        all_audio, audio_sizes = gather_variable(audio_embeds)
        all_text, text_sizes = gather_variable(text_embeds)
        audio_offset = int(audio_sizes[:rank()].sum())
        text_offset = int(text_sizes[:rank()].sum())

        # audio -> text: rows are this rank's clips, columns all positives (+ own negatives)
        logits = logit_scale * audio_embeds @ all_text.T  # (B, M_all)
        if negative_embeds is not None and negative_embeds.shape[1] > 0:
            if negative_mask is None:
                negative_mask = torch.ones(negative_embeds.shape[:2], dtype=torch.bool, device=device)
            if negative_embeds.shape[:2] != negative_mask.shape or negative_embeds.shape[0] != n_audio:
                raise ValueError(f"negatives {tuple(negative_embeds.shape)} and mask {tuple(negative_mask.shape)} "
                                 f"do not match a batch of {n_audio}")
            own = logit_scale * torch.einsum("bd,bkd->bk", audio_embeds, negative_embeds)
            logits = torch.cat([logits, own + torch.zeros_like(own).masked_fill(~negative_mask, float("-inf"))], 1)
        log_probs = torch.log_softmax(logits, dim=1)
        local_cols = torch.arange(text_embeds.shape[0], device=device) + text_offset
        per_positive = -log_probs[text_owner, local_cols]  # (M,)
        counts = torch.bincount(text_owner, minlength=n_audio).to(per_positive.dtype)
        per_clip = torch.zeros(n_audio, dtype=per_positive.dtype, device=device).index_add_(0, text_owner, per_positive)
        has_pos = counts > 0
        a2t_sum = (per_clip[has_pos] / counts[has_pos]).sum()

        # text -> audio: each positive against all clips
        logits_t2a = logit_scale * text_embeds @ all_audio.T
        t2a_sum = -torch.log_softmax(logits_t2a, dim=1)[torch.arange(text_embeds.shape[0], device=device),
                                                        text_owner + audio_offset].sum()

        n_clips, n_pos = _global_count(has_pos.sum(), device), _global_count(text_embeds.shape[0], device)
        # DDP averages gradients over ranks, so each rank's share is scaled by the world size.
        scale = world_size()
        a2t = a2t_sum * scale / n_clips
        t2a = t2a_sum * scale / n_pos
        return {"modular_loss": (a2t + t2a) / 2, "a2t": a2t.detach(), "t2a": t2a.detach()}


def _global_count(local: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum of a count over ranks (at least 1, to keep an empty batch finite)."""
    total = torch.as_tensor(local, dtype=torch.float32, device=device).clone()
    if world_size() > 1:
        dist.all_reduce(total)
    return total.clamp_min(1.0)
