"""Symmetric InfoNCE: reference values and 2-process DDP equality with one process on the whole batch."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from compclap.losses import ContrastiveLoss
from ddp_helpers import run_ddp

GLOBAL_BATCH, DIM_IN, DIM = 8, 6, 5


def _reference_loss(a, t, scale):
    n = a.shape[0]
    total = 0.0
    for i in range(n):  # plain per-sample loop, both directions
        la = scale * (a[i] @ t.T)
        lt = scale * (t[i] @ a.T)
        total += -torch.log_softmax(la, 0)[i] - torch.log_softmax(lt, 0)[i]
    return total / (2 * n)


def test_matches_per_sample_reference():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(7, 4), dim=-1)
    t = F.normalize(torch.randn(7, 4), dim=-1)
    scale = torch.tensor(14.0)
    out = ContrastiveLoss()(a, t, scale)
    assert set(out) == {"contrastive_loss"}
    torch.testing.assert_close(out["contrastive_loss"], _reference_loss(a, t, scale), atol=1e-6, rtol=1e-6)


class _Towers(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.audio = nn.Linear(DIM_IN, DIM)
        self.text = nn.Linear(DIM_IN, DIM)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x, y):
        return F.normalize(self.audio(x), dim=-1), F.normalize(self.text(y), dim=-1), self.logit_scale.exp()


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, DIM_IN, generator=g), torch.randn(GLOBAL_BATCH, DIM_IN, generator=g)


def _loss_and_grads(model, loss_fn, x, y):
    a, t, s = model(x, y)
    loss = loss_fn(a, t, s)["contrastive_loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _ddp_rank(rank, world, gather_with_grad, local_loss):
    x, y = _data()
    per = GLOBAL_BATCH // world
    model = DistributedDataParallel(_Towers())
    loss, grads = _loss_and_grads(model, ContrastiveLoss(gather_with_grad, local_loss),
                                  x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per])
    return loss, {n.removeprefix("module."): g for n, g in grads.items()}


@pytest.mark.parametrize("local_loss", [False, True])
def test_ddp_two_processes_equal_single_process(local_loss):
    x, y = _data()
    ref_loss, ref_grads = _loss_and_grads(_Towers(), ContrastiveLoss(), x, y)
    results = run_ddp(_ddp_rank, world=2, args=(True, local_loss))
    for loss, grads in results:
        if not local_loss:  # each rank computes the global loss
            torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-5)
    if local_loss:  # the mean of the ranks' local losses is the global loss
        torch.testing.assert_close(torch.stack([r[0] for r in results]).mean(), ref_loss, atol=1e-5, rtol=1e-5)


def test_ddp_without_gradient_through_gather_scales_by_world_size():
    x, y = _data()
    _, ref_grads = _loss_and_grads(_Towers(), ContrastiveLoss(), x, y)
    results = run_ddp(_ddp_rank, world=2, args=(False, False))
    for _, grads in results:
        torch.testing.assert_close(grads["audio.weight"], ref_grads["audio.weight"] / 2, atol=1e-5, rtol=1e-5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must match in shape"):
        ContrastiveLoss()(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(1.0))


def _uneven_rank(rank, world):
    x, y = _data()
    part = slice(0, 5) if rank == 0 else slice(5, GLOBAL_BATCH)  # 5 + 3 rows: a clip failed to decode somewhere
    return _loss_and_grads(DistributedDataParallel(_Towers()), ContrastiveLoss(), x[part], y[part])


def test_ddp_uneven_batches_gather_every_feature():
    x, y = _data()
    ref_loss, ref_grads = _loss_and_grads(_Towers(), ContrastiveLoss(), x, y)
    for loss, grads in run_ddp(_uneven_rank, world=2):
        torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)  # every rank sees all 8 pairs
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[f"module.{name}"], g, atol=1e-5, rtol=1e-5)
