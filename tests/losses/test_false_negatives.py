"""False-negative masking in every loss: identical captions (same normalised identity) are never negatives of each
other's clips. Each loss against the per-row loop of loss_reference.py with duplicate captions in the batch (values
and gradients), the switch off (or all ids distinct) equals the plain loss bit for bit, and 2-process gloo DDP with
duplicates that span ranks equals one process on the concatenated batch."""

from __future__ import annotations

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from compclap.losses import (ContrastiveLoss, HardNegativeContrastiveLoss, ModularContrastiveLoss,
                             ProbabilisticContrastiveLoss)
from ddp_helpers import LinearTowers, run_ddp
from loss_reference import flat_positives, padded, reference, unit

DIM = 8
SCALE = torch.tensor(9.0)
# One caption per clip: clips 0 and 2 share a caption, so do 1 and 4.
CAPTION_IDS = [10, 11, 10, 12, 11, 13]
# Own text negatives: clip 0's first and clip 3's first equal their own caption (masked); clip 0's second and
# clip 5's equal *another* clip's caption, which is no reason to mask them.
NEGATIVE_IDS = [[10, 11], [20], [], [12, 21, 22], [23], [10]]


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def _assert_same(out, ref, tensors):
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    for g, r in zip(_grads(out, tensors), _grads(ref, tensors)):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-6)


def _pairs(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = unit(g, len(CAPTION_IDS), DIM).requires_grad_(True)
    t = unit(g, len(CAPTION_IDS), DIM).requires_grad_(True)
    negs = [[unit(g, DIM) for _ in ids] for ids in NEGATIVE_IDS]
    return a, t, negs


# ----------------------------------------------------------------------------------------- ContrastiveLoss
@pytest.mark.parametrize("local_loss", [False, True])
def test_contrastive_matches_loop_with_duplicate_captions(local_loss):
    a, t, _ = _pairs()
    ids = torch.tensor(CAPTION_IDS)
    out = ContrastiveLoss(local_loss=local_loss)(a, t, SCALE, text_ids=ids)["contrastive_loss"]
    ref = reference(a, [[x] for x in t], SCALE, pos_ids=[[x] for x in CAPTION_IDS])[0]
    _assert_same(out, ref, (a, t))
    plain = ContrastiveLoss()(a, t, SCALE)["contrastive_loss"]
    assert (out - plain).abs() > 1e-3  # the duplicates really change the loss


def test_contrastive_switch_off_or_distinct_ids_is_the_plain_loss_bit_for_bit():
    a, t, _ = _pairs()
    plain = ContrastiveLoss()(a, t, SCALE)["contrastive_loss"]
    off = ContrastiveLoss(false_negative_masking=False)(a, t, SCALE, text_ids=torch.tensor(CAPTION_IDS))
    distinct = ContrastiveLoss()(a, t, SCALE, text_ids=torch.arange(len(CAPTION_IDS)) * 7)
    assert torch.equal(off["contrastive_loss"], plain) and torch.equal(distinct["contrastive_loss"], plain)
    torch.testing.assert_close(plain, reference(a, [[x] for x in t], SCALE)[0], atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------- hard negatives
def test_hard_negative_matches_loop_with_duplicates_and_own_negatives():
    a, t, negs = _pairs(1)
    emb, mask, neg_ids = padded(negs, DIM, NEGATIVE_IDS)
    emb.requires_grad_(True)
    out = HardNegativeContrastiveLoss()(a, t, SCALE, negative_embeds=emb, negative_mask=mask,
                                        text_ids=torch.tensor(CAPTION_IDS), negative_ids=neg_ids)
    ref_negs = [[emb[i, k] for k in range(len(x))] for i, x in enumerate(NEGATIVE_IDS)]
    ref = reference(a, [[x] for x in t], SCALE, negatives=ref_negs, pos_ids=[[x] for x in CAPTION_IDS],
                    neg_ids=NEGATIVE_IDS)[0]
    _assert_same(out["hard_negative_loss"], ref, (a, t, emb))


def test_hard_negative_switch_off_is_the_plain_loss_bit_for_bit():
    a, t, negs = _pairs(1)
    emb, mask, neg_ids = padded(negs, DIM, NEGATIVE_IDS)
    plain = HardNegativeContrastiveLoss()(a, t, SCALE, negative_embeds=emb, negative_mask=mask)
    off = HardNegativeContrastiveLoss(false_negative_masking=False)(
        a, t, SCALE, negative_embeds=emb, negative_mask=mask, text_ids=torch.tensor(CAPTION_IDS),
        negative_ids=neg_ids)
    on = HardNegativeContrastiveLoss()(a, t, SCALE, negative_embeds=emb, negative_mask=mask,
                                       text_ids=torch.tensor(CAPTION_IDS), negative_ids=neg_ids)
    assert torch.equal(off["hard_negative_loss"], plain["hard_negative_loss"])
    assert (on["hard_negative_loss"] - plain["hard_negative_loss"]).abs() > 1e-3


# ----------------------------------------------------------------------------------------- modular
# Composed clips reuse leaf captions: "a buzz" (101) belongs to clips 0 and 2, "a beep" (102) to 0 and 5,
# "a hum" (103) to 1 and 4, "a knock" (105) to 2 and 5; clip 3 has no positives.
POS_IDS = [[100, 101, 102], [103], [104, 101, 105], [], [106, 107, 103], [108, 105, 102]]
# Own negatives equal to an own positive (masked): clip 0's 102, clip 2's 101, clip 4's 103; clip 4's 100 is
# another clip's caption (kept).
MOD_NEG_IDS = [[200, 102], [], [201, 101], [202], [103, 100], [203]]


def _modular_case(seed=2):
    g = torch.Generator().manual_seed(seed)
    audio = unit(g, len(POS_IDS), DIM).requires_grad_(True)
    positives = [list(unit(g, len(x), DIM)) if x else [] for x in POS_IDS]
    negatives = [list(unit(g, len(x), DIM)) if x else [] for x in MOD_NEG_IDS]
    text, owner, ids = flat_positives(positives, POS_IDS)
    text.requires_grad_(True)
    emb, mask, neg_ids = padded(negatives, DIM, MOD_NEG_IDS)
    emb.requires_grad_(True)
    # the reference sees the very tensors the loss gets, so gradients are comparable
    ref_pos, start = [], 0
    for x in POS_IDS:
        ref_pos.append([text[start + j] for j in range(len(x))])
        start += len(x)
    ref_neg = [[emb[i, k] for k in range(len(x))] for i, x in enumerate(MOD_NEG_IDS)]
    return audio, text, owner, ids, emb, mask, neg_ids, ref_pos, ref_neg


@pytest.mark.parametrize("visible", ["all_positives", "compa"])
def test_modular_matches_loop_with_shared_leaf_captions(visible):
    audio, text, owner, ids, emb, mask, neg_ids, ref_pos, ref_neg = _modular_case()
    out = ModularContrastiveLoss(visible_texts=visible)(audio, text, SCALE, text_owner=owner, negative_embeds=emb,
                                                         negative_mask=mask, text_ids=ids, negative_ids=neg_ids)
    ref, a2t, t2a, _ = reference(audio, ref_pos, SCALE, negatives=ref_neg, pos_ids=POS_IDS, neg_ids=MOD_NEG_IDS,
                                 visible=visible)
    torch.testing.assert_close(out["a2t"], a2t.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out["t2a"], t2a.detach(), atol=1e-6, rtol=1e-6)
    _assert_same(out["modular_loss"], ref, (audio, text, emb))


@pytest.mark.parametrize("visible", ["all_positives", "compa"])
def test_modular_switch_off_is_the_unmasked_loss_bit_for_bit(visible):
    audio, text, owner, ids, emb, mask, neg_ids, ref_pos, ref_neg = _modular_case()
    kwargs = dict(text_owner=owner, negative_embeds=emb, negative_mask=mask)
    plain = ModularContrastiveLoss(visible_texts=visible)(audio, text, SCALE, **kwargs)["modular_loss"]
    off = ModularContrastiveLoss(visible_texts=visible, false_negative_masking=False)(
        audio, text, SCALE, text_ids=ids, negative_ids=neg_ids, **kwargs)["modular_loss"]
    assert torch.equal(off, plain)
    ref = reference(audio, ref_pos, SCALE, negatives=ref_neg, visible=visible, mask_false_negatives=False)[0]
    torch.testing.assert_close(plain, ref, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------- ProLAP
def test_prolap_switch_off_ignores_text_ids():
    g = torch.Generator().manual_seed(4)
    a, t = unit(g, 3, DIM), unit(g, 4, DIM)
    va, vt = torch.rand(3, DIM, generator=g) - 3, torch.rand(4, DIM, generator=g) - 3
    owner, ids = torch.tensor([0, 0, 1, 2]), torch.tensor([5, 6, 6, 7])  # clip 1's caption is also clip 0's
    kwargs = dict(audio_logvar=va, text_logvar=vt, text_owner=owner, masked_text_embeds=t.flip(0),
                  masked_text_logvar=vt)
    plain = ProbabilisticContrastiveLoss()(a, t, **kwargs)
    off = ProbabilisticContrastiveLoss(false_negative_masking=False)(a, t, text_ids=ids, **kwargs)
    on = ProbabilisticContrastiveLoss()(a, t, text_ids=ids, **kwargs)
    for key in ("ppcl_loss", "mask_repulsive_loss"):
        assert torch.equal(off[key], plain[key]) and not torch.equal(on[key], plain[key]), key


# ----------------------------------------------------------------------------------------- DDP
# Contrastive: 8 pairs split 5 + 3 (4 + 4 for local_loss, whose local means assume equal halves); ids 0 and 1
# occur on both ranks either way.
C_IDS = torch.tensor([0, 1, 2, 3, 4, 0, 5, 1])
C_SPLIT = {"contrastive": [slice(0, 5), slice(5, 8)], "contrastive:local": [slice(0, 4), slice(4, 8)]}
# Hard negatives: 4 + 4; clip 5's first negative is its own caption (id 4), clip 1's another clip's (id 0).
H_IDS = torch.tensor([0, 1, 2, 3, 0, 4, 1, 5])
H_NEG_IDS = torch.tensor([[7, 8], [0, 9], [10, -1], [11, 12], [13, -1], [4, 14], [15, 16], [-1, -1]])
H_MASK = H_NEG_IDS >= 0
# Modular: 6 clips, 3 + 3; 5 positives on rank 0, 4 on rank 1; ids 20 and 21 occur on both ranks.
M_OWNER = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4, 5])
M_IDS = torch.tensor([20, 21, 22, 23, 24, 21, 25, 20, 26])
M_TEXT_SPLIT = [slice(0, 5), slice(5, 9)]
M_NEG_IDS = torch.tensor([[21, 30], [31, -1], [-1, -1], [32, 33], [20, -1], [34, 35]])  # 0's 21, 4's 20: own
M_MASK = M_NEG_IDS >= 0


def _data():
    g = torch.Generator().manual_seed(7)
    return (torch.randn(8, 5, generator=g), torch.randn(9, 5, generator=g), torch.randn(8, 2, 5, generator=g))


def _step(model, scenario, rank=None):
    """(loss, grads) of one scenario; rank None: one process on the whole batch."""
    x, y, z = _data()
    if scenario.startswith("contrastive"):
        sl = slice(None) if rank is None else C_SPLIT[scenario][rank]
        a, t, _ = model(x[sl], y[:8][sl], z[:1])
        loss = ContrastiveLoss(local_loss=scenario.endswith("local"))(a, t, SCALE, text_ids=C_IDS[sl])
    elif scenario == "hard_negative":
        sl = slice(None) if rank is None else slice(4 * rank, 4 * rank + 4)
        a, t, n = model(x[sl], y[:8][sl], z[sl])
        loss = HardNegativeContrastiveLoss()(a, t, SCALE, negative_embeds=n, negative_mask=H_MASK[sl],
                                             text_ids=H_IDS[sl], negative_ids=H_NEG_IDS[sl])
    else:
        clips = slice(None, 6) if rank is None else slice(3 * rank, 3 * rank + 3)
        ts = slice(None) if rank is None else M_TEXT_SPLIT[rank]
        owner = M_OWNER[ts] - (0 if rank is None else 3 * rank)
        a, t, n = model(x[clips], y[ts], z[clips])
        loss = ModularContrastiveLoss(visible_texts=scenario.split(":")[1])(
            a, t, SCALE, text_owner=owner, negative_embeds=n, negative_mask=M_MASK[clips], text_ids=M_IDS[ts],
            negative_ids=M_NEG_IDS[clips])
    value = next(v for k, v in loss.items() if k.endswith("_loss"))
    value.backward()
    return value.detach(), {k.removeprefix("module."): p.grad.clone() for k, p in model.named_parameters()}


SCENARIOS = ["contrastive", "contrastive:local", "hard_negative", "modular:all_positives", "modular:compa"]


def _ddp_rank(rank, world):
    return {s: _step(DistributedDataParallel(LinearTowers()), s, rank) for s in SCENARIOS}


@pytest.fixture(scope="module")
def ddp_results():
    """One 2-process run of every scenario."""
    return run_ddp(_ddp_rank, world=2)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ddp_two_processes_equal_single_process(ddp_results, scenario):
    ref_loss, ref_grads = _step(LinearTowers(), scenario)
    losses = torch.stack([r[scenario][0] for r in ddp_results])
    if scenario == "contrastive":  # every rank computes the global loss
        torch.testing.assert_close(losses, ref_loss.expand(2), atol=1e-5, rtol=1e-5)
    else:  # the mean of the ranks' shares is the global loss (equal halves)
        torch.testing.assert_close(losses.mean(), ref_loss, atol=1e-5, rtol=1e-5)
    for r in ddp_results:
        for name, g in ref_grads.items():
            torch.testing.assert_close(r[scenario][1][name], g, atol=1e-5, rtol=1e-5, msg=f"{scenario} {name}")
    # the masking matters in this batch: without ids the single-process loss differs
    assert not torch.allclose(ref_loss, _unmasked(scenario), atol=1e-4)


def _unmasked(scenario):
    x, y, z = _data()
    a, t, n = LinearTowers()(x, y, z)
    if scenario.startswith("contrastive"):
        return ContrastiveLoss()(a[:8], t[:8], SCALE)["contrastive_loss"].detach()
    if scenario == "hard_negative":
        return HardNegativeContrastiveLoss()(a, t[:8], SCALE, negative_embeds=n, negative_mask=H_MASK)[
            "hard_negative_loss"].detach()
    return ModularContrastiveLoss(visible_texts=scenario.split(":")[1])(
        a[:6], t, SCALE, text_owner=M_OWNER, negative_embeds=n[:6], negative_mask=M_MASK)["modular_loss"].detach()
