"""Symmetric InfoNCE over the audio-text similarity matrix, DDP-aware."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compclap.distributed import gather_variable, rank
from compclap.losses.false_negatives import TextIdentity, apply_mask


class ContrastiveLoss(nn.Module):
    """CLIP/CLAP loss: cross-entropy of audio->text and text->audio logits, averaged.

    Under DDP every rank's features serve as negatives. With `gather_with_grad` (default) gradients flow
    back to the rank that produced each feature, so DDP-averaged gradients equal those of one process on
    the concatenated batch. `local_loss` computes only this rank's rows (cheaper, same gradients).
    Without `gather_with_grad` only the local slice carries gradient, so DDP-averaged gradients are the
    single-process ones divided by the world size (open_clip's behaviour; lower communication).

    False negatives: given `text_ids` (equal ids = the same normalised caption), another clip's caption
    identical to clip i's is masked out of i's audio->text softmax, and another clip whose caption is
    identical to caption m's is masked out of m's text->audio softmax. Masking (an additive -inf on those
    logits) rather than counting them as extra targets keeps every row a single-target cross-entropy; the
    target column itself always stays. The ids are gathered under DDP, so the masking is exact.
    """

    def __init__(self, gather_with_grad: bool = True, local_loss: bool = False,
                 false_negative_masking: bool = True) -> None:
        """Configure the loss.

        Args:
            gather_with_grad: gradients through other ranks' features.
            local_loss: only this rank's logits rows.
            false_negative_masking: mask identical captions of other clips (needs `text_ids`; off or without
                ids every caption is distinct, the plain loss).
        """
        super().__init__()
        self.gather_with_grad = gather_with_grad
        self.local_loss = local_loss
        self.false_negative_masking = false_negative_masking

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                text_ids: torch.Tensor | None = None, **_: object) -> dict[str, torch.Tensor]:
        """Loss for L2-normalised audio and text embeddings of matching pairs (B, D) each; text_ids (B,) optional."""
        if audio_embeds.shape != text_embeds.shape:
            raise ValueError(f"audio and text embeddings must match in shape, got {tuple(audio_embeds.shape)} "
                             f"and {tuple(text_embeds.shape)}")
        n_local, device = audio_embeds.shape[0], audio_embeds.device
        # Ranks may hold different batch sizes (clips that failed to decode are dropped).
        all_audio, sizes = gather_variable(audio_embeds, with_grad=self.gather_with_grad)
        all_text, _ = gather_variable(text_embeds, with_grad=self.gather_with_grad)
        n_all = all_audio.shape[0]
        identity = None
        if self.false_negative_masking and text_ids is not None:
            # One caption per clip: text j belongs to clip j of the global batch.
            identity = TextIdentity(text_ids, torch.arange(n_all, device=device), n_all)
        if self.local_loss:
            offset = int(sizes[:rank()].sum())
            rows = torch.arange(offset, offset + n_local, device=device)
            labels = rows
            logits_a2t = logit_scale * audio_embeds @ all_text.T
            logits_t2a = logit_scale * text_embeds @ all_audio.T
            if identity is not None:
                logits_a2t = apply_mask(logits_a2t, identity.clip_mask(rows))
                logits_t2a = apply_mask(logits_t2a, identity.text_mask(rows))
        else:
            labels = torch.arange(n_all, device=device)
            logits_a2t = logit_scale * all_audio @ all_text.T
            logits_t2a = logits_a2t.T
            if identity is not None:
                logits_a2t, logits_t2a = (apply_mask(logits_a2t, identity.clip_mask(labels)),
                                          apply_mask(logits_t2a, identity.text_mask(labels)))
        loss = (F.cross_entropy(logits_a2t, labels) + F.cross_entropy(logits_t2a, labels)) / 2
        return {"contrastive_loss": loss}
