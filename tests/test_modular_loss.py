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
