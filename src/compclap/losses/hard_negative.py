"""CompA-CLAP stage 2: contrastive loss with each caption's own composition-aware hard negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compclap.distributed import gather_variable, rank
from compclap.losses.audio_negatives import audio_negative_accuracy, audio_negative_columns
from compclap.losses.false_negatives import TextIdentity, apply_mask, own_negative_false_negatives


class HardNegativeContrastiveLoss(nn.Module):
    """Audio-to-text over all in-batch positives plus this sample's own negatives; text-to-audio standard.

    Negatives arrive padded, (B, K, D) with a (B, K) validity mask; padding and other samples' negatives
    are excluded with an additive -inf mask. (CompA's code multiplied logits by -1e5, which turns negative
    similarities into huge positive logits.) Under DDP, positives are gathered from every rank with
    gradients; negatives stay with their sample. Each rank computes its own rows, so DDP-averaged gradients
    equal those of one process on the concatenated batch.

    False negatives (`false_negative_masking`, given `text_ids`): another clip's caption with the same
    identity as clip b's caption is masked (additive -inf) out of b's audio->text softmax, another clip with
    an identical caption out of caption b's text->audio softmax, and one of b's own negatives identical to its
    caption (`negative_ids`) out of b's softmax; the target column always stays. Ids are gathered under DDP.

    Audio negatives (`audio_negatives`): clip b's rendered swapped versions (B, K, D) become extra columns of
    caption b's text->audio softmax (local, like the text negatives); "t2a_audio_negative_acc" reports the
    share of captions that score their own audio above all their audio negatives.
    """

    uses_negatives = True

    def __init__(self, max_negatives: int | None = None, negative_kinds: list[str] | None = None,
                 false_negative_masking: bool = True, audio_negatives: bool = False,
                 max_audio_negatives: int | None = None) -> None:
        """Configure the loss.

        Args:
            max_negatives: keep at most this many text negatives per caption.
            negative_kinds: only text negatives of these kinds (None: all).
            false_negative_masking: mask texts identical to a clip's caption out of its negatives (needs `text_ids`).
            audio_negatives: ask for each clip's rendered swapped audio as text->audio negatives of its caption
                (the training manifest needs a `negative_audio` field).
            max_audio_negatives: keep at most this many audio negatives per clip (None: all).
        """
        super().__init__()
        self.max_negatives = max_negatives
        self.negative_kinds = negative_kinds
        self.false_negative_masking = false_negative_masking
        self.uses_audio_negatives = audio_negatives
        self.max_audio_negatives = max_audio_negatives

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                negative_embeds: torch.Tensor | None = None, negative_mask: torch.Tensor | None = None,
                text_ids: torch.Tensor | None = None, negative_ids: torch.Tensor | None = None,
                audio_negative_embeds: torch.Tensor | None = None, audio_negative_mask: torch.Tensor | None = None,
                audio_negative_text: torch.Tensor | None = None, **_: object) -> dict[str, torch.Tensor]:
        """Loss for matching (B, D) audio/text embeddings.

        Args:
            negative_embeds, negative_mask: each caption's text negatives (B, K, D) and validity (B, K).
            text_ids: (B,) identity of each caption (`compclap.text.identity.text_ids`; None: all distinct).
            negative_ids: (B, K) identity of each text negative (None: none equals a caption).
            audio_negative_embeds, audio_negative_mask: each clip's audio negatives (B, K', D), validity (B, K').
            audio_negative_text: (B,) caption row that gets clip b's audio negatives (None: caption b).
        """
        if audio_embeds.shape != text_embeds.shape:
            raise ValueError(f"audio and text embeddings must match in shape, got {tuple(audio_embeds.shape)} "
                             f"and {tuple(text_embeds.shape)}")
        n_local, device = audio_embeds.shape[0], audio_embeds.device
        # Ranks may hold different batch sizes (clips that failed to decode are dropped).
        all_audio, sizes = gather_variable(audio_embeds)
        all_text, _ = gather_variable(text_embeds)
        labels = torch.arange(n_local, device=device) + int(sizes[:rank()].sum())
        mask_a2t = mask_t2a = None
        if self.false_negative_masking and text_ids is not None:
            text_ids = text_ids.to(device)
            n_all = all_audio.shape[0]
            identity = TextIdentity(text_ids, torch.arange(n_all, device=device), n_all)
            mask_a2t, mask_t2a = identity.clip_mask(labels), identity.text_mask()
        logits_a2t = apply_mask(logit_scale * audio_embeds @ all_text.T, mask_a2t)  # (B, N)
        if negative_embeds is not None and negative_embeds.shape[1] > 0:
            if negative_mask is None:
                negative_mask = torch.ones(negative_embeds.shape[:2], dtype=torch.bool, device=negative_embeds.device)
            if negative_embeds.shape[:2] != negative_mask.shape or negative_embeds.shape[0] != n_local:
                raise ValueError(f"negatives {tuple(negative_embeds.shape)} and mask {tuple(negative_mask.shape)} "
                                 f"do not match a batch of {n_local}")
            excluded = ~negative_mask.to(device)
            if self.false_negative_masking and text_ids is not None and negative_ids is not None:
                excluded = excluded | own_negative_false_negatives(
                    text_ids, torch.arange(n_local, device=device), n_local, negative_ids)
            own = logit_scale * torch.einsum("bd,bkd->bk", audio_embeds, negative_embeds)
            additive = torch.zeros_like(own).masked_fill(excluded, float("-inf"))
            logits_a2t = torch.cat([logits_a2t, own + additive], dim=1)
        logits_t2a = apply_mask(logit_scale * text_embeds @ all_audio.T, mask_t2a)
        out: dict[str, torch.Tensor] = {}
        if audio_negative_embeds is not None:
            if audio_negative_text is None:
                audio_negative_text = torch.arange(n_local, device=device)
            columns = audio_negative_columns(text_embeds, logit_scale, audio_negative_embeds, audio_negative_mask,
                                             audio_negative_text)
            out["t2a_audio_negative_acc"] = audio_negative_accuracy(
                logits_t2a[torch.arange(n_local, device=device), labels], columns)
            logits_t2a = torch.cat([logits_t2a, columns], dim=1)
        a2t = F.cross_entropy(logits_a2t, labels)
        t2a = F.cross_entropy(logits_t2a, labels)
        return {"hard_negative_loss": (a2t + t2a) / 2, "a2t": a2t.detach(), "t2a": t2a.detach(), **out}
