"""Symmetric InfoNCE over the audio-text similarity matrix, DDP-aware."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compclap.distributed import gather_variable, rank


class ContrastiveLoss(nn.Module):
    """CLIP/CLAP loss: cross-entropy of audio->text and text->audio logits, averaged.

    Under DDP every rank's features serve as negatives. With `gather_with_grad` (default) gradients flow
    back to the rank that produced each feature, so DDP-averaged gradients equal those of one process on
    the concatenated batch. `local_loss` computes only this rank's rows (cheaper, same gradients).
    Without `gather_with_grad` only the local slice carries gradient, so DDP-averaged gradients are the
    single-process ones divided by the world size (open_clip's behaviour; lower communication).
    """

    def __init__(self, gather_with_grad: bool = True, local_loss: bool = False) -> None:
        """gather_with_grad: gradients through other ranks' features; local_loss: only this rank's logits rows."""
        super().__init__()
        self.gather_with_grad = gather_with_grad
        self.local_loss = local_loss

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                **_: object) -> dict[str, torch.Tensor]:
        """Loss for L2-normalised audio and text embeddings of matching pairs (B, D) each."""
        if audio_embeds.shape != text_embeds.shape:
            raise ValueError(f"audio and text embeddings must match in shape, got {tuple(audio_embeds.shape)} "
                             f"and {tuple(text_embeds.shape)}")
        n_local = audio_embeds.shape[0]
        # Ranks may hold different batch sizes (clips that failed to decode are dropped).
        all_audio, sizes = gather_variable(audio_embeds, with_grad=self.gather_with_grad)
        all_text, _ = gather_variable(text_embeds, with_grad=self.gather_with_grad)
        if self.local_loss:
            offset = int(sizes[:rank()].sum())
            labels = torch.arange(offset, offset + n_local, device=audio_embeds.device)
            logits_a2t = logit_scale * audio_embeds @ all_text.T
            logits_t2a = logit_scale * text_embeds @ all_audio.T
        else:
            labels = torch.arange(all_audio.shape[0], device=audio_embeds.device)
            logits_a2t = logit_scale * all_audio @ all_text.T
            logits_t2a = logits_a2t.T
        loss = (F.cross_entropy(logits_a2t, labels) + F.cross_entropy(logits_t2a, labels)) / 2
        return {"contrastive_loss": loss}
