"""CompA-CLAP stage 3: the modular contrastive loss over multi-granular positives and hard negatives."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from compclap.distributed import gather_variable, rank, world_size
from compclap.losses.audio_negatives import audio_negative_accuracy, audio_negative_columns
from compclap.losses.false_negatives import TextIdentity, apply_mask, own_negative_false_negatives

VISIBLE_TEXTS = ("all_positives", "compa")


class ModularContrastiveLoss(nn.Module):
    """Each clip has P_i positive captions (the whole expression and its sub-expressions) and N_i negatives.

    Audio-to-text for clip i: mean over its positives of -log softmax over the visible texts; text-to-audio:
    every positive is classified to its own clip against all in-batch audio. Total = (a2t + t2a) / 2, a2t
    averaged over clips with at least one positive and t2a over positive captions. Counts vary per clip
    (negatives padded and masked with an additive -inf). Under DDP positives and audio are gathered with
    gradients, and each rank's sums are normalised by the global counts, so the DDP-averaged loss and
    gradients equal one process on the whole batch.

    Visible texts of clip i (`visible_texts`): "all_positives" = all in-batch positives of all clips + i's
    own negatives; "compa" = CompA's stage-3 code: only the other clips' full captions (each clip's first
    positive, or `full_caption_index`) + all of i's own texts (positives and negatives). The others are
    masked with an additive -inf (CompA multiplied them by -1e5, which flips negative similarities into huge
    logits).

    False negatives (`false_negative_masking`, given `text_ids`): a text of another clip with the identity of
    one of clip i's positives is masked (additive -inf) out of i's audio->text softmax, as is one of i's own
    negatives with such an identity (`negative_ids`); positive m's text->audio softmax masks every clip other
    than its owner that has a positive of m's identity. Target columns always stay. Ids are gathered under DDP.

    Audio negatives (`audio_negatives`): clip b's rendered swapped versions (B, K, D) become extra columns of
    the text->audio softmax of its full caption (`audio_negative_text`, default its first positive); they
    stay local. "t2a_audio_negative_acc" reports the share of such captions that prefer their own audio.
    """

    uses_negatives = True
    uses_positives = True

    def __init__(self, max_negatives: int | None = None, negative_kinds: list[str] | None = None,
                 false_negative_masking: bool = True, visible_texts: str = "all_positives",
                 audio_negatives: bool = False, max_audio_negatives: int | None = None) -> None:
        """Configure the loss.

        Args:
            max_negatives: at most this many text negatives per caption (one caption per clip in training).
            negative_kinds: only text negatives of these kinds (None: all).
            false_negative_masking: mask texts identical to one of a clip's positives out of its negatives
                (needs `text_ids`).
            visible_texts: "all_positives" (every in-batch positive + own negatives) or "compa" (other clips'
                full captions + all own texts, as CompA's stage-3 code).
            audio_negatives: ask for each clip's rendered swapped audio as text->audio negatives of its full
                caption (the training manifest needs a `negative_audio` field).
            max_audio_negatives: keep at most this many audio negatives per clip (None: all).
        """
        super().__init__()
        if visible_texts not in VISIBLE_TEXTS:
            raise ValueError(f"visible_texts must be one of {VISIBLE_TEXTS}, got {visible_texts!r}")
        self.max_negatives = max_negatives
        self.negative_kinds = negative_kinds
        self.false_negative_masking = false_negative_masking
        self.visible_texts = visible_texts
        self.uses_audio_negatives = audio_negatives
        self.max_audio_negatives = max_audio_negatives

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                text_owner: torch.Tensor | None = None, negative_embeds: torch.Tensor | None = None,
                negative_mask: torch.Tensor | None = None, text_ids: torch.Tensor | None = None,
                negative_ids: torch.Tensor | None = None, full_caption_index: torch.Tensor | None = None,
                audio_negative_embeds: torch.Tensor | None = None, audio_negative_mask: torch.Tensor | None = None,
                audio_negative_text: torch.Tensor | None = None, **_: object) -> dict[str, torch.Tensor]:
        """Loss for clips (B, D) and their positives text_embeds (M, D).

        Args:
            text_owner: (M,) local clip of each positive (None: one positive per clip, in clip order).
            negative_embeds, negative_mask: each clip's text negatives (B, K, D) and validity (B, K).
            text_ids: (M,) identity of each positive (`compclap.text.identity.text_ids`; None: all distinct).
            negative_ids: (B, K) identity of each text negative (None: none equals a positive).
            full_caption_index: (B,) local index of each clip's full caption among the positives (None: its
                first positive); used by visible_texts="compa" and as the default `audio_negative_text`.
            audio_negative_embeds, audio_negative_mask: each clip's audio negatives (B, K', D), validity (B, K').
            audio_negative_text: (B,) positive row that gets clip b's audio negatives (None: its full caption).
        """
        n_audio, device = audio_embeds.shape[0], audio_embeds.device
        if text_owner is None:  # one positive per clip, in clip order
            text_owner = torch.arange(n_audio, device=device)
        text_owner = text_owner.to(device)
        n_text = text_embeds.shape[0]
        if text_owner.shape[0] != n_text:
            raise ValueError(f"text_owner has {text_owner.shape[0]} entries for {n_text} positives")
        all_audio, audio_sizes = gather_variable(audio_embeds)
        all_text, text_sizes = gather_variable(text_embeds)
        audio_offset = int(audio_sizes[:rank()].sum())
        text_offset = int(text_sizes[:rank()].sum())
        clips = torch.arange(n_audio, device=device) + audio_offset
        fn_masking = self.false_negative_masking and text_ids is not None
        compa = self.visible_texts == "compa"
        if full_caption_index is None and (compa or audio_negative_embeds is not None):
            full_caption_index = first_text_of_clip(text_owner, n_audio)

        # audio -> text: rows are this rank's clips, columns all positives (+ own negatives)
        excluded = None  # (B, M_all), True: not in the row's softmax
        identity = None
        if fn_masking or compa:
            all_owner, _ = gather_variable(text_owner + audio_offset, with_grad=False)
        if compa:
            is_full = torch.zeros(n_text, dtype=torch.long, device=device)
            full = full_caption_index.to(device).long()
            is_full[full[full >= 0]] = 1
            all_full = gather_variable(is_full, with_grad=False)[0].bool()
            excluded = ~(all_full[None, :] | (all_owner[None, :] == clips[:, None]))
        if fn_masking:
            text_ids = text_ids.to(device)
            identity = TextIdentity(text_ids, all_owner, int(audio_sizes.sum()))
            same = identity.clip_mask(clips)
            excluded = same if excluded is None else excluded | same
        logits = apply_mask(logit_scale * audio_embeds @ all_text.T, excluded)  # (B, M_all)
        if negative_embeds is not None and negative_embeds.shape[1] > 0:
            if negative_mask is None:
                negative_mask = torch.ones(negative_embeds.shape[:2], dtype=torch.bool, device=device)
            if negative_embeds.shape[:2] != negative_mask.shape or negative_embeds.shape[0] != n_audio:
                raise ValueError(f"negatives {tuple(negative_embeds.shape)} and mask {tuple(negative_mask.shape)} "
                                 f"do not match a batch of {n_audio}")
            neg_excluded = ~negative_mask.to(device)
            if fn_masking and negative_ids is not None:
                neg_excluded = neg_excluded | own_negative_false_negatives(text_ids, text_owner, n_audio, negative_ids)
            own = logit_scale * torch.einsum("bd,bkd->bk", audio_embeds, negative_embeds)
            logits = torch.cat([logits, own + torch.zeros_like(own).masked_fill(neg_excluded, float("-inf"))], 1)
        log_probs = torch.log_softmax(logits, dim=1)
        local_cols = torch.arange(n_text, device=device) + text_offset
        per_positive = -log_probs[text_owner, local_cols]  # (M,)
        counts = torch.bincount(text_owner, minlength=n_audio).to(per_positive.dtype)
        per_clip = torch.zeros(n_audio, dtype=per_positive.dtype, device=device).index_add_(0, text_owner, per_positive)
        has_pos = counts > 0
        a2t_sum = (per_clip[has_pos] / counts[has_pos]).sum()

        # text -> audio: each positive against all clips (+ its clip's audio negatives, for the full caption)
        logits_t2a = logit_scale * text_embeds @ all_audio.T
        if identity is not None:
            logits_t2a = apply_mask(logits_t2a, identity.text_mask())
        rows = torch.arange(n_text, device=device)
        out: dict[str, torch.Tensor] = {}
        if audio_negative_embeds is not None:
            if audio_negative_text is None:
                audio_negative_text = full_caption_index
            columns = audio_negative_columns(text_embeds, logit_scale, audio_negative_embeds, audio_negative_mask,
                                             audio_negative_text)
            out["t2a_audio_negative_acc"] = audio_negative_accuracy(logits_t2a[rows, text_owner + audio_offset],
                                                                    columns)
            logits_t2a = torch.cat([logits_t2a, columns], dim=1)
        t2a_sum = -torch.log_softmax(logits_t2a, dim=1)[rows, text_owner + audio_offset].sum()

        n_clips, n_pos = _global_count(has_pos.sum(), device), _global_count(n_text, device)
        # DDP averages gradients over ranks, so each rank's share is scaled by the world size.
        scale = world_size()
        a2t = a2t_sum * scale / n_clips
        t2a = t2a_sum * scale / n_pos
        return {"modular_loss": (a2t + t2a) / 2, "a2t": a2t.detach(), "t2a": t2a.detach(), **out}


def first_text_of_clip(text_owner: torch.Tensor, n_audio: int) -> torch.Tensor:
    """(B,) local index of each clip's first text in `text_owner` order (-1 for a clip without texts)."""
    n_text = text_owner.shape[0]
    first = torch.full((n_audio,), n_text, dtype=torch.long, device=text_owner.device)
    first = first.scatter_reduce(0, text_owner.long(), torch.arange(n_text, device=text_owner.device), reduce="amin")
    return first.masked_fill(first == n_text, -1)


def _global_count(local: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum of a count over ranks (at least 1, to keep an empty batch finite)."""
    total = torch.as_tensor(local, dtype=torch.float32, device=device).clone()
    if world_size() > 1:
        dist.all_reduce(total)
    return total.clamp_min(1.0)
