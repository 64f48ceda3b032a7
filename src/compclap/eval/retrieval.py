"""Audio-text retrieval metrics (R@k, mAP@k, median rank) with the multi-caption protocol.

AudioCaps and Clotho carry several captions per clip, so the two directions are asymmetric:

* text-to-audio: every caption is a query with exactly one relevant clip (its own).
* audio-to-text: every clip is a query whose relevant items are *all* of its captions.

Everything is computed from blocks of ``rows x N`` similarities (a chunk of queries against all
items), so memory stays bounded: neither the full ``A x T`` similarity matrix nor any flattened
``A x T`` index/target tensor is ever built.

Rank and tie conventions (a tie is never a win):

* t2a rank of a caption = number of clips whose similarity is ``>=`` the similarity of its own
  clip (its own clip included), i.e. a clip tied with the right one ranks ahead of it.
* a2t best rank of a clip = 1 + number of *non-relevant* captions whose similarity is ``>=`` that
  of the clip's best-scoring caption. Its other captions never push it down.
* a2t AP@k follows ``torchmetrics.functional.retrieval_average_precision(top_k=k)``: sort the
  clip's relevant captions by similarity (descending); the i-th of them (1-based) sits at position
  ``p_i = i + #{non-relevant captions with similarity >= its similarity}``; then
  ``AP@k = mean over {i : p_i <= k} of i / p_i`` and 0 when no relevant caption is in the top k.
  The denominator is therefore the number of relevant captions *retrieved* in the top k (this is
  how torchmetrics 1.9 defines it), not ``min(k, n_relevant)``. Ties between a relevant and a
  non-relevant caption put the non-relevant one first; ties among relevant captions do not matter
  (swapping two relevant items leaves the positions of relevant items unchanged).
* R@k: t2a counts a caption as a hit when its clip's rank <= k; a2t counts a clip as a hit when
  *any* of its captions is in the top k (torchmetrics' ``RetrievalHitRate``, which differs from
  ``RetrievalRecall`` = share of the clip's captions retrieved).
* medR: median of the 1-based ranks (t2a rank of each caption; a2t best rank of each clip); for
  an even count it is the mean of the two middle ranks (``numpy.median``), hence a float.
* Clips without any caption are not a2t queries (they have nothing to retrieve; torchmetrics'
  ``empty_target_action="skip"``) but still take part as distractors in t2a.

Unlike torchmetrics, a relevant item with a similarity <= 0 still counts as relevant
(torchmetrics' functional retrieval metrics silently drop targets whose prediction is not
positive, which is wrong for cosine similarities).

Ties are detected on the float similarities the matrix product yields; embeddings that are equal
only up to rounding may or may not tie.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["retrieval_metrics", "to_percent"]

# Upper bound on the elements of one similarity block (2**27 float32 = 512 MiB): the number of
# queries per chunk is lowered below `chunk_size` when the item axis is very long.
_MAX_BLOCK_ELEMENTS = 2**27
# Counting works on column slices of this many elements: reducing a whole block at once would
# materialise a bool and an integer copy of it (a 1024 x 100,000 block: +0.9 GiB).
_COUNT_SLICE_ELEMENTS = 2**22


def retrieval_metrics(
    audio_embeds: Tensor,
    text_embeds: Tensor,
    text_to_audio: Tensor,
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Multi-caption retrieval metrics (a2t and t2a R@k, mAP@map_k, medR) from L2-normalised embeddings.

    R@k and mAP are fractions here; every log, table and report shows them in percent (`to_percent`).
    """
    ks = _check_inputs(audio_embeds, text_embeds, text_to_audio, ks, map_k, chunk_size)
    # Half precision matmuls are slow or unsupported on CPU and coarse enough to create ties.
    dtype = torch.promote_types(audio_embeds.dtype, torch.float32)
    audio = audio_embeds.detach().to(dtype)
    text = text_embeds.detach().to(dtype)
    owner = text_to_audio.detach().to(device=audio.device, dtype=torch.long)
    k_max = max(max(ks), map_k)

    with torch.no_grad():
        a2t_best_rank, a2t_ap = _audio_to_text(audio, text, owner, k_max, map_k, chunk_size)
        t2a_rank = _text_to_audio(audio, text, owner, chunk_size)

    out: dict[str, float] = {}
    for prefix, ranks, ap in (
        ("a2t", a2t_best_rank, a2t_ap),
        ("t2a", t2a_rank, _single_relevant_ap(t2a_rank, map_k)),
    ):
        for k in ks:
            out[f"{prefix}_R@{k}"] = (ranks <= k).double().mean().item()
        out[f"{prefix}_mAP@{map_k}"] = ap.double().mean().item()
        out[f"{prefix}_medR"] = _median(ranks)
    return out


def _check_inputs(
    audio: Tensor, text: Tensor, owner: Tensor, ks: Sequence[int], map_k: int, chunk_size: int
) -> tuple[int, ...]:
    if audio.ndim != 2 or text.ndim != 2:
        raise ValueError(
            f"audio_embeds and text_embeds must be 2-D (N, D); got shapes {tuple(audio.shape)} "
            f"and {tuple(text.shape)}"
        )
    if audio.shape[1] != text.shape[1]:
        raise ValueError(
            f"embedding sizes differ: audio {audio.shape[1]} vs text {text.shape[1]}"
        )
    if audio.shape[0] == 0 or text.shape[0] == 0:
        raise ValueError(
            f"need at least one clip and one caption; got {audio.shape[0]} clips and "
            f"{text.shape[0]} captions"
        )
    if audio.device != text.device:
        raise ValueError(f"audio_embeds on {audio.device} but text_embeds on {text.device}")
    if owner.ndim != 1 or owner.shape[0] != text.shape[0]:
        raise ValueError(
            f"text_to_audio must be 1-D with one entry per caption ({text.shape[0]}); "
            f"got shape {tuple(owner.shape)}"
        )
    if owner.dtype.is_floating_point or owner.dtype.is_complex or owner.dtype == torch.bool:
        raise ValueError(f"text_to_audio must be an integer tensor, got {owner.dtype}")
    lo, hi = int(owner.min()), int(owner.max())
    if lo < 0 or hi >= audio.shape[0]:
        raise ValueError(
            f"text_to_audio values must lie in [0, {audio.shape[0]}); got min {lo}, max {hi}"
        )
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be non-empty positive integers, got {ks}")
    if map_k < 1:
        raise ValueError(f"map_k must be a positive integer, got {map_k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    if not bool(torch.isfinite(audio).all()) or not bool(torch.isfinite(text).all()):
        # NaN compares false with everything, which would silently turn into perfect ranks.
        raise ValueError("embeddings contain NaN or infinite values")
    return ks


def _rows_per_chunk(chunk_size: int, n_items: int) -> int:
    return max(1, min(chunk_size, _MAX_BLOCK_ELEMENTS // max(n_items, 1)))


def _text_to_audio(audio: Tensor, text: Tensor, owner: Tensor, chunk_size: int) -> Tensor:
    """1-based pessimistic rank of each caption's own clip among all clips, shape (T,)."""
    n_text = text.shape[0]
    ranks = torch.empty(n_text, dtype=torch.long, device=audio.device)
    step = _rows_per_chunk(chunk_size, audio.shape[0])
    for start in range(0, n_text, step):
        stop = min(start + step, n_text)
        sims = text[start:stop] @ audio.T
        positive = sims.gather(1, owner[start:stop, None])
        # `>=` counts the positive itself plus every clip tied with it: ties rank ahead.
        ranks[start:stop] = _count_at_least(sims, positive)
        # Free the block before the next product is allocated, or two blocks coexist at the peak.
        del sims
    return ranks


def _count_at_least(sims: Tensor, threshold: Tensor) -> Tensor:
    """Per row, how many entries of sims (R, N) are >= threshold (R, 1), as int64 (R,)."""
    counts = torch.zeros(sims.shape[0], dtype=torch.long, device=sims.device)
    width = max(1, _COUNT_SLICE_ELEMENTS // max(sims.shape[0], 1))
    for start in range(0, sims.shape[1], width):
        # int32 partial sums are exact: a slice has far fewer than 2**31 columns.
        counts += (sims[:, start : start + width] >= threshold).sum(1, dtype=torch.int32)
    return counts


def _single_relevant_ap(ranks: Tensor, k: int) -> Tensor:
    """AP@k with one relevant item: 1/rank inside the top k, else 0."""
    zero = torch.zeros((), dtype=torch.double, device=ranks.device)
    return torch.where(ranks <= k, 1.0 / ranks.double(), zero)


def _audio_to_text(
    audio: Tensor, text: Tensor, owner: Tensor, k_max: int, map_k: int, chunk_size: int
) -> tuple[Tensor, Tensor]:
    """Best 1-based rank and AP@map_k of each clip that has captions; shapes (A',), (A',)."""
    n_audio, n_text = audio.shape[0], text.shape[0]
    device = audio.device
    # CSR layout of captions grouped by clip: captions of clip a are order[offsets[a]:offsets[a+1]].
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=n_audio)
    offsets = torch.zeros(n_audio + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    top_n = min(k_max, n_text)

    best_ranks: list[Tensor] = []
    aps: list[Tensor] = []
    step = _rows_per_chunk(chunk_size, n_text)
    neg_inf = float("-inf")
    for start in range(0, n_audio, step):
        stop = min(start + step, n_audio)
        n_rel = counts[start:stop]
        has_caption = n_rel > 0
        if not bool(has_caption.any()):
            continue
        width = int(n_rel.max())
        slot = torch.arange(width, device=device)
        valid = slot[None, :] < n_rel[:, None]
        rows, slots = valid.nonzero(as_tuple=True)
        cols = order[offsets[start:stop][rows] + slots]

        sims = audio[start:stop] @ text.T
        relevant = torch.full((stop - start, width), neg_inf, dtype=sims.dtype, device=device)
        relevant[rows, slots] = sims[rows, cols]
        relevant = relevant.sort(dim=1, descending=True).values
        # From here on `sims` holds only the non-relevant captions (relevant ones can never win).
        sims[rows, cols] = neg_inf

        best = relevant[:, :1]
        best_rank = 1 + _count_at_least(sims, best)

        # Only positions <= map_k matter for AP, so the top-k non-relevant scores are enough to
        # count, for each relevant caption, how many non-relevant ones rank ahead of it.
        top = sims.topk(top_n, dim=1).values
        ahead = (top[:, None, :] >= relevant[:, :, None]).sum(-1)
        index = torch.arange(1, width + 1, device=device)
        position = index[None, :] + ahead
        hit = valid & (position <= map_k)
        precision = torch.where(hit, index[None, :].double() / position.double(), 0.0)
        n_hit = hit.sum(1)
        ap = precision.sum(1) / n_hit.clamp(min=1)

        best_ranks.append(best_rank[has_caption])
        aps.append(ap[has_caption])
        del sims, top
    return torch.cat(best_ranks), torch.cat(aps)


def _median(ranks: Tensor) -> float:
    values = ranks.double().sort().values
    n = values.numel()
    return float((values[(n - 1) // 2] + values[n // 2]) / 2)


def to_percent(metrics: dict[str, float]) -> dict[str, float]:
    """R@k and mAP in percent, medR unchanged (a rank): the unit of every compclap log, table and report."""
    return {k: (float(v) if k.endswith("medR") else 100.0 * float(v)) for k, v in metrics.items()}
