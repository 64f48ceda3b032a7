"""A slow, obvious per-row reference for every contrastive loss (plain Python loops, no masks or indexing tricks).

A batch is given clip by clip: clip i has positive texts positives[i] (embeddings) with identities pos_ids[i]
(any hashable; None: every text distinct), its own text negatives negatives[i] with identities neg_ids[i], and
optionally audio negatives audio_negs[i] that enter the text->audio softmax of its positive full[i]. The loss is
(mean over clips with positives of the mean over their positives of -log p(a2t) + mean over all positives of
-log p(t2a)) / 2, which is ContrastiveLoss (one positive, no negatives), HardNegativeContrastiveLoss (one
positive) and ModularContrastiveLoss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference(audio, positives, scale, negatives=None, pos_ids=None, neg_ids=None, visible="all_positives",
              full=None, audio_negs=None, mask_false_negatives=True):
    """Returns (loss, a2t, t2a, audio-negative accuracy or None)."""
    n = len(positives)
    negatives = negatives or [[] for _ in range(n)]
    full = full or [0] * n
    audio_negs = audio_negs or [[] for _ in range(n)]

    def ident(i, j):
        return pos_ids[i][j] if pos_ids is not None else ("text", i, j)

    def identities_of(i):
        return {ident(i, j) for j in range(len(positives[i]))}

    a2t_terms = []
    for i in range(n):
        if not positives[i]:
            continue
        mine = identities_of(i)
        cols, targets = [], []
        for c in range(n):
            for j, text in enumerate(positives[c]):
                if c != i:
                    if visible == "compa" and j != full[c]:
                        continue  # CompA: only the other clips' full captions
                    if mask_false_negatives and ident(c, j) in mine:
                        continue  # the same text as one of mine: not my negative
                else:
                    targets.append(len(cols))
                cols.append(scale * (audio[i] @ text))
        for k, text in enumerate(negatives[i]):
            if mask_false_negatives and neg_ids is not None and neg_ids[i][k] in mine:
                continue
            cols.append(scale * (audio[i] @ text))
        log_p = torch.log_softmax(torch.stack(cols), 0)
        a2t_terms.append(torch.stack([-log_p[t] for t in targets]).mean())

    t2a_terms, wins, with_negs = [], 0, 0
    for i in range(n):
        for j, text in enumerate(positives[i]):
            cols, target = [], None
            for k in range(n):
                if k != i and mask_false_negatives and ident(i, j) in identities_of(k):
                    continue
                if k == i:
                    target = len(cols)
                cols.append(scale * (text @ audio[k]))
            own = cols[target]
            extra = [scale * (text @ v) for v in audio_negs[i]] if j == full[i] else []
            if extra:
                with_negs += 1
                wins += int(all(own > e for e in extra))
            t2a_terms.append(-torch.log_softmax(torch.stack(cols + extra), 0)[target])
    a2t, t2a = torch.stack(a2t_terms).mean(), torch.stack(t2a_terms).mean()
    return (a2t + t2a) / 2, a2t, t2a, (wins / with_negs if with_negs else None)


def unit(g, *shape):
    """Random unit vectors along the last dimension."""
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def padded(per_clip, dim, ids=None):
    """Lists of per-clip vectors -> (B, K, D) zeros-padded, (B, K) mask, (B, K) ids (-1 in padding)."""
    k = max((len(x) for x in per_clip), default=0)
    emb = torch.zeros(len(per_clip), k, dim)
    mask = torch.zeros(len(per_clip), k, dtype=torch.bool)
    out_ids = torch.full((len(per_clip), k), -1, dtype=torch.long)
    for i, xs in enumerate(per_clip):
        for j, v in enumerate(xs):
            emb[i, j], mask[i, j] = v, True
            if ids is not None:
                out_ids[i, j] = ids[i][j]
    return emb, mask, out_ids


def flat_positives(positives, pos_ids=None):
    """Per-clip positives -> text (M, D), owner (M,), ids (M,) (None without pos_ids)."""
    text = torch.stack([p for ps in positives for p in ps])
    owner = torch.tensor([i for i, ps in enumerate(positives) for _ in ps])
    ids = None if pos_ids is None else torch.tensor([x for xs in pos_ids for x in xs])
    return text, owner, ids
