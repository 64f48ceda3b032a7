"""False-negative masks shared by the contrastive losses: a text identical to one of a clip's positives is never
that clip's negative, in either direction.

Identities are the ids of `compclap.text.identity.text_ids` (normalised captions). The masks are boolean, True
where a logit must be excluded; the losses apply them as an additive -inf (`masked_fill`), never by
multiplication, and never on a row's own target column. Under DDP the ids are gathered (without gradient)
alongside the features, so the masks are those of one process on the whole batch.
"""

from __future__ import annotations

import torch

from compclap.distributed import gather_variable, rank

__all__ = ["TextIdentity", "own_negative_false_negatives", "apply_mask"]


def apply_mask(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """logits with -inf where mask is True (the additive -inf mask; None: unchanged)."""
    return logits if mask is None else logits.masked_fill(mask, float("-inf"))


class TextIdentity:
    """The identities of every positive text of the global batch, and which clip owns a text of each identity."""

    def __init__(self, text_ids: torch.Tensor, all_owner: torch.Tensor, n_audio_all: int) -> None:
        """Gather the ids.

        Args:
            text_ids: (M,) id of each local positive text (equal ids: the same caption).
            all_owner: (M_all,) global clip index of each gathered positive text (rank order).
            n_audio_all: number of clips in the global batch.
        """
        device = all_owner.device
        all_ids, sizes = gather_variable(text_ids.to(device), with_grad=False)
        if all_ids.shape[0] != all_owner.shape[0]:
            raise ValueError(f"text_ids has {all_ids.shape[0]} entries for {all_owner.shape[0]} positive texts")
        self.text_offset = int(sizes[:rank()].sum())
        self.n_local = int(text_ids.shape[0])
        self.all_owner = all_owner
        # Compact codes keep the lookup table at (clips x distinct texts) instead of (texts x texts).
        _, self.codes = torch.unique(all_ids, return_inverse=True)
        n_codes = int(self.codes.max()) + 1 if self.codes.numel() else 0
        self.has_text = torch.zeros(n_audio_all, n_codes, dtype=torch.bool, device=device)
        self.has_text[all_owner, self.codes] = True  # clip k has a positive text of identity c

    def clip_mask(self, clips: torch.Tensor) -> torch.Tensor:
        """(len(clips), M_all): gathered texts of other clips whose identity is one of these (global) clips' texts."""
        same = self.has_text[clips][:, self.codes]
        return same & (self.all_owner[None, :] != clips[:, None])

    def text_mask(self, texts: torch.Tensor | None = None) -> torch.Tensor:
        """(len(texts), B_all): clips other than a text's owner that have a positive text of the same identity.

        texts: global indices of gathered texts (None: this rank's texts).
        """
        if texts is None:
            texts = torch.arange(self.n_local, device=self.codes.device) + self.text_offset
        same = self.has_text[:, self.codes[texts]].T
        own = torch.arange(self.has_text.shape[0], device=same.device)[None, :] == self.all_owner[texts][:, None]
        return same & ~own


def own_negative_false_negatives(text_ids: torch.Tensor, text_owner: torch.Tensor, n_audio: int,
                                 negative_ids: torch.Tensor) -> torch.Tensor:
    """(B, K) True where clip b's own negative k has the identity of one of b's (local) positive texts."""
    negative_ids = negative_ids.to(text_ids.device)
    if negative_ids.shape[0] != n_audio:
        raise ValueError(f"negative_ids has {negative_ids.shape[0]} rows for a batch of {n_audio}")
    equal = (text_ids[:, None] == negative_ids[text_owner]).to(torch.float32)  # (M, K)
    hits = torch.zeros(n_audio, negative_ids.shape[1], device=text_ids.device).index_add_(0, text_owner, equal)
    return hits > 0
