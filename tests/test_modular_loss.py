"""Modular contrastive loss: per-sample loop reference and 2-process DDP equality (variable P and N)."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from compclap.losses import ModularContrastiveLoss
from ddp_helpers import LinearTowers, run_ddp


def _reference(audio, positives, negatives, scale):
    """positives[i] / negatives[i]: lists of embeddings of clip i. Plain loops, no masking tricks."""
    all_pos = torch.stack([p for ps in positives for p in ps])
    a2t_terms, t2a_terms = [], []
    for i, ps in enumerate(positives):
        if not ps:
            continue
        cols = [scale * (audio[i] @ x) for x in all_pos] + [scale * (audio[i] @ x) for x in negatives[i]]
        logits = torch.stack(cols)
        start = sum(len(q) for q in positives[:i])
        a2t_terms.append(torch.stack([-torch.log_softmax(logits, 0)[start + j] for j in range(len(ps))]).mean())
        for p in ps:
            t2a_terms.append(-torch.log_softmax(scale * (p @ audio.T), 0)[i])
    return (torch.stack(a2t_terms).mean() + torch.stack(t2a_terms).mean()) / 2


def _flat(positives, negatives, dim):
    text = torch.stack([p for ps in positives for p in ps])
    owner = torch.tensor([i for i, ps in enumerate(positives) for _ in ps])
    k = max(len(n) for n in negatives)
    neg = torch.zeros(len(negatives), k, dim)
    mask = torch.zeros(len(negatives), k, dtype=torch.bool)
    for i, ns in enumerate(negatives):
        for j, v in enumerate(ns):
            neg[i, j], mask[i, j] = v, True
    return text, owner, neg, mask


def _case(seed=0, p_counts=(1, 3, 2, 0, 4), n_counts=(2, 0, 5, 1, 3), dim=8):
    g = torch.Generator().manual_seed(seed)
    unit = lambda *s: F.normalize(torch.randn(*s, dim, generator=g), dim=-1)  # noqa: E731
    audio = unit(len(p_counts))
    positives = [list(unit(c)) if c else [] for c in p_counts]
    negatives = [list(unit(c)) if c else [] for c in n_counts]
    return audio, positives, negatives


def test_matches_per_sample_loop():
    audio, positives, negatives = _case()
    text, owner, neg, mask = _flat(positives, negatives, audio.shape[1])
    scale = torch.tensor(12.0)
    out = ModularContrastiveLoss()(audio, text, scale, text_owner=owner, negative_embeds=neg, negative_mask=mask)
    torch.testing.assert_close(out["modular_loss"], _reference(audio, positives, negatives, scale),
                               atol=1e-6, rtol=1e-6)


def test_one_positive_no_negatives_is_the_standard_loss():
    from compclap.losses import ContrastiveLoss

    audio, positives, _ = _case(p_counts=(1, 1, 1, 1), n_counts=(0, 0, 0, 0))
    text = torch.stack([p[0] for p in positives])
    scale = torch.tensor(10.0)
    torch.testing.assert_close(ModularContrastiveLoss()(audio, text, scale)["modular_loss"],
                               ContrastiveLoss()(audio, text, scale)["contrastive_loss"])


def test_owner_length_mismatch_is_an_error():
    audio, positives, negatives = _case()
    text, owner, _, _ = _flat(positives, negatives, audio.shape[1])
    with pytest.raises(ValueError, match="text_owner"):
        ModularContrastiveLoss()(audio, text, torch.tensor(1.0), text_owner=owner[:-1])


# 6 clips; rank 0 gets clips 0-2 (5 positives), rank 1 clips 3-5 (3 positives): unequal counts per rank.
OWNER = torch.tensor([0, 0, 1, 2, 2, 3, 4, 5])
SPLIT_TEXT = [slice(0, 5), slice(5, 8)]
NEG_MASK = torch.tensor([[1, 1], [0, 0], [1, 0], [1, 1], [1, 0], [0, 0]], dtype=torch.bool)


def _data():
    g = torch.Generator().manual_seed(5)
    return torch.randn(6, 5, generator=g), torch.randn(8, 5, generator=g), torch.randn(6, 2, 5, generator=g)


def _step(model, x, y, z, owner, mask):
    a, t, n = model(x, y, z)
    loss = ModularContrastiveLoss()(a, t, torch.tensor(8.0), text_owner=owner, negative_embeds=n,
                                    negative_mask=mask)["modular_loss"]
    loss.backward()
    return loss.detach(), {k.removeprefix("module."): p.grad.clone() for k, p in model.named_parameters()}


def _ddp_rank(rank, world):
    x, y, z = _data()
    clips = slice(3 * rank, 3 * rank + 3)
    ts = SPLIT_TEXT[rank]
    return _step(DistributedDataParallel(LinearTowers()), x[clips], y[ts], z[clips], OWNER[ts] - 3 * rank, NEG_MASK[clips])


def test_ddp_two_processes_equal_single_process():
    x, y, z = _data()
    ref_loss, ref_grads = _step(LinearTowers(), x, y, z, OWNER, NEG_MASK)
    results = run_ddp(_ddp_rank, world=2)
    torch.testing.assert_close(torch.stack([r[0] for r in results]).mean(), ref_loss, atol=1e-6, rtol=1e-6)
    for _, grads in results:
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------- CompA's visible set
def _compa_stage3(audio, blocks, positive_list, negative_list, scale):
    """CompA's stage-3 loss, transcribed from Sreyan88/CompA src-stage3/laion_clap/clap_module/loss.py (ClipLoss
    with build_mask and AudioToTextCrossEntropyLoss, one process) as slow loops; its `logits * -1e5` for hidden
    texts is replaced by an additive -inf.

    blocks[j] = clip j's texts in CompA's layout: [full caption, positive_list[j] more positives,
    negative_list[j] negatives]; hard_samples[j] = positive_list[j] + negative_list[j].
    """
    text = [x for b in blocks for x in b]
    hard_samples = [p + n for p, n in zip(positive_list, negative_list)]
    index_map = [0]
    for j in range(len(hard_samples) - 1):
        index_map.append(index_map[j] + hard_samples[j] + 1)
    index_range = [(x, x + y) for x, y in zip(index_map, hard_samples)]

    def block_of(i):  # find_hard_samples
        return next(j for j, (x, y) in enumerate(index_range) if x <= i <= y)

    def visible(i, k):  # build_mask: a block's first row to every clip, its other rows to their own clip only
        j = block_of(i)
        return i == index_range[j][0] or k == j

    n_clip = len(blocks)
    a2t = []
    for k in range(n_clip):  # AudioToTextCrossEntropyLoss: targets start .. start + positive_list[k]
        row = torch.stack([scale * (audio[k] @ text[i]) if visible(i, k) else torch.tensor(float("-inf"))
                           for i in range(len(text))])
        log_p = torch.log_softmax(row, 0)
        start = index_range[k][0]
        a2t.append(torch.stack([-log_p[t] for t in range(start, start + positive_list[k] + 1)]).mean())
    t2a = []
    for j, (x, y) in enumerate(index_range):  # only_positive rows, labels repeat_interleave(positive_list + 1)
        for i in range(x, y - negative_list[j] + 1):
            row = torch.stack([scale * (text[i] @ audio[k]) for k in range(n_clip)])
            t2a.append(-torch.log_softmax(row, 0)[j])
    return (torch.stack(a2t).mean() + torch.stack(t2a).mean()) / 2


def _compa_case(extra=(2, 0, 1, 3), negs=(1, 2, 0, 2)):
    g = torch.Generator().manual_seed(9)
    unit = lambda *s: F.normalize(torch.randn(*s, 8, generator=g), dim=-1)  # noqa: E731
    audio = unit(len(extra)).requires_grad_(True)
    blocks = [list(unit(1 + p + n)) for p, n in zip(extra, negs)]
    return audio, blocks, list(extra), list(negs)


def test_compa_visible_texts_match_compas_stage3_formula():
    audio, blocks, extra, negs = _compa_case()
    scale = torch.tensor(11.0)
    positives = [b[:1 + p] for b, p in zip(blocks, extra)]
    negatives = [b[1 + p:] for b, p in zip(blocks, extra)]
    text, owner, neg, mask = _flat(positives, negatives, 8)
    text.requires_grad_(True)
    neg.requires_grad_(True)
    # CompA's function sees the very same tensors, in its own layout
    rows = iter(range(text.shape[0]))
    compa_blocks = []
    for i, (p, n) in enumerate(zip(extra, negs)):
        compa_blocks.append([text[next(rows)] for _ in range(1 + p)] + [neg[i, j] for j in range(n)])
    ref = _compa_stage3(audio, compa_blocks, extra, negs, scale)
    ours = ModularContrastiveLoss(visible_texts="compa")(audio, text, scale, text_owner=owner, negative_embeds=neg,
                                                         negative_mask=mask)["modular_loss"]
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    for g_ours, g_ref in zip(torch.autograd.grad(ours, (audio, text, neg), retain_graph=True),
                             torch.autograd.grad(ref, (audio, text, neg))):
        torch.testing.assert_close(g_ours, g_ref, atol=1e-6, rtol=1e-6)
    # the visible set matters: the default (all positives) is another number
    default = ModularContrastiveLoss()(audio, text, scale, text_owner=owner, negative_embeds=neg, negative_mask=mask)
    assert (default["modular_loss"] - ours).abs() > 1e-3


def test_compa_full_caption_index_picks_the_full_caption_anywhere_among_the_positives():
    audio, blocks, extra, negs = _compa_case()
    scale = torch.tensor(11.0)
    positives = [b[:1 + p] for b, p in zip(blocks, extra)]
    negatives = [b[1 + p:] for b, p in zip(blocks, extra)]
    text, owner, neg, mask = _flat(positives, negatives, 8)
    first = ModularContrastiveLoss(visible_texts="compa")(audio, text, scale, text_owner=owner, negative_embeds=neg,
                                                          negative_mask=mask)["modular_loss"]
    moved = [ps[1:] + ps[:1] for ps in positives]  # the full caption last in each clip
    text2, owner2, _, _ = _flat(moved, negatives, 8)
    ends = torch.cumsum(torch.tensor([len(ps) for ps in moved]), 0) - 1
    last = ModularContrastiveLoss(visible_texts="compa")(audio, text2, scale, text_owner=owner2, negative_embeds=neg,
                                                         negative_mask=mask, full_caption_index=ends)["modular_loss"]
    torch.testing.assert_close(last, first, atol=1e-6, rtol=1e-6)
    wrong = ModularContrastiveLoss(visible_texts="compa")(audio, text2, scale, text_owner=owner2, negative_embeds=neg,
                                                          negative_mask=mask)["modular_loss"]
    assert (wrong - first).abs() > 1e-4  # without the index the first positive is taken as the full caption


def test_unknown_visible_texts_is_an_error():
    with pytest.raises(ValueError, match="visible_texts"):
        ModularContrastiveLoss(visible_texts="some")
