"""Hard-negative contrastive loss: per-sample loop reference, the masking bug CompA had, 2-process DDP."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from compclap.losses import HardNegativeContrastiveLoss
from ddp_helpers import LinearTowers, run_ddp


def _reference(a, t, negs, scale):
    """Plain loop: a2t softmax over all positives + own valid negatives; t2a standard."""
    n = a.shape[0]
    a2t = t2a = 0.0
    for i in range(n):
        own = [scale * (a[i] @ x) for x in negs[i]]
        logits = torch.cat([scale * (a[i] @ t.T), torch.stack(own)]) if own else scale * (a[i] @ t.T)
        a2t = a2t - torch.log_softmax(logits, 0)[i]
        t2a = t2a - torch.log_softmax(scale * (t[i] @ a.T), 0)[i]
    return (a2t / n + t2a / n) / 2


def _padded(negs, dim):
    k = max(len(x) for x in negs)
    emb = torch.zeros(len(negs), k, dim)
    mask = torch.zeros(len(negs), k, dtype=torch.bool)
    for i, x in enumerate(negs):
        for j, v in enumerate(x):
            emb[i, j], mask[i, j] = v, True
    return emb, mask


def _random_case(seed=0, n=6, dim=8, counts=(3, 0, 1, 2, 3, 1)):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    t = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    negs = [[F.normalize(torch.randn(dim, generator=g), dim=0) for _ in range(c)] for c in counts]
    return a, t, negs


def test_matches_per_sample_loop_with_variable_negative_counts():
    a, t, negs = _random_case()
    emb, mask = _padded(negs, a.shape[1])
    scale = torch.tensor(20.0)
    out = HardNegativeContrastiveLoss()(a, t, scale, negative_embeds=emb, negative_mask=mask)
    torch.testing.assert_close(out["hard_negative_loss"], _reference(a, t, negs, scale), atol=1e-6, rtol=1e-6)


def test_without_negatives_equals_standard_contrastive_loss():
    from compclap.losses import ContrastiveLoss

    a, t, _ = _random_case()
    scale = torch.tensor(14.0)
    torch.testing.assert_close(HardNegativeContrastiveLoss()(a, t, scale)["hard_negative_loss"],
                               ContrastiveLoss()(a, t, scale)["contrastive_loss"])


def test_padding_slots_have_no_effect_on_loss_or_gradients():
    a, t, negs = _random_case()
    emb, mask = _padded(negs, a.shape[1])
    garbage = emb.clone()
    garbage[~mask] = 5.0  # huge values in padding slots
    losses, grads = [], []
    for e in (emb, garbage):
        a_ = a.clone().requires_grad_(True)
        loss = HardNegativeContrastiveLoss()(a_, t, torch.tensor(20.0), negative_embeds=e,
                                             negative_mask=mask)["hard_negative_loss"]
        loss.backward()
        losses.append(loss.detach())
        grads.append(a_.grad)
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_multiplicative_masking_bug_is_caught():
    """CompA multiplied masked logits by -1e5: a negative similarity becomes a huge positive logit."""
    a, t, negs = _random_case(counts=(2, 2, 2, 2, 2, 2))
    emb, mask = _padded(negs, a.shape[1])
    # Make every negative point away from its own audio, so its similarity is negative.
    emb = -a[:, None, :].expand_as(emb).clone()
    scale = torch.tensor(20.0)
    # The buggy construction: all samples' negatives as columns, others' multiplied by -1e5.
    all_negs = emb.reshape(-1, emb.shape[-1])
    logits = scale * a @ torch.cat([t, all_negs]).T
    owner = torch.arange(a.shape[0]).repeat_interleave(emb.shape[1])
    keep = torch.cat([torch.ones(a.shape[0], a.shape[0], dtype=torch.bool), owner[None, :] == torch.arange(6)[:, None]], 1)
    buggy_logits = torch.where(keep, logits, logits * -1e5)
    labels = torch.arange(a.shape[0])
    buggy = (F.cross_entropy(buggy_logits, labels) + F.cross_entropy(scale * t @ a.T, labels)) / 2
    ours = HardNegativeContrastiveLoss()(a, t, scale, negative_embeds=emb, negative_mask=mask)["hard_negative_loss"]
    reference = _reference(a, t, [list(x) for x in emb], scale)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-6)
    assert (buggy - reference).abs() > 1.0  # the bug is not a rounding difference: the test would catch it


def test_mask_shape_errors():
    a, t, negs = _random_case()
    emb, mask = _padded(negs, a.shape[1])
    with pytest.raises(ValueError, match="do not match"):
        HardNegativeContrastiveLoss()(a, t, torch.tensor(1.0), negative_embeds=emb, negative_mask=mask[:, :1])


def _ddp_data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.randn(8, 3, 5, generator=g)


MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1]],
                    dtype=torch.bool)


def _step(model, x, y, z, mask):
    a, t, n = model(x, y, z)
    loss = HardNegativeContrastiveLoss()(a, t, torch.tensor(10.0), negative_embeds=n,
                                         negative_mask=mask)["hard_negative_loss"]
    loss.backward()
    return loss.detach(), {k.removeprefix("module."): p.grad.clone() for k, p in model.named_parameters()}


def _ddp_rank(rank, world):
    x, y, z = _ddp_data()
    sl = slice(rank * 4, rank * 4 + 4)
    return _step(DistributedDataParallel(LinearTowers()), x[sl], y[sl], z[sl], MASK[sl])


def test_ddp_two_processes_equal_single_process():
    x, y, z = _ddp_data()
    ref_loss, ref_grads = _step(LinearTowers(), x, y, z, MASK)
    results = run_ddp(_ddp_rank, world=2)
    torch.testing.assert_close(torch.stack([r[0] for r in results]).mean(), ref_loss, atol=1e-6, rtol=1e-6)
    for _, grads in results:
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, atol=1e-6, rtol=1e-6)
