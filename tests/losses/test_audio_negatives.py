"""Audio-side composition negatives: a clip's rendered swapped versions as extra text->audio columns of its
(full) caption. Loop reference (values, gradients, diagnostic) for the hard-negative and modular losses, and
2-process gloo DDP equal to one process (the negatives stay local)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from compclap.losses import HardNegativeContrastiveLoss, ModularContrastiveLoss
from ddp_helpers import run_ddp
from loss_reference import flat_positives, padded, reference, unit

DIM = 8
SCALE = torch.tensor(7.0)
AUDIO_NEG_COUNTS = [2, 0, 1, 3, 1]  # clip 1 has none


def _audio_negs(g, counts=AUDIO_NEG_COUNTS):
    return [[unit(g, DIM) for _ in range(c)] for c in counts]


def _with_grad(*tensors):
    return [t.requires_grad_(True) for t in tensors]


def _assert_same(ours, ref, tensors):
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    for a, b in zip(torch.autograd.grad(ours, tensors, retain_graph=True), torch.autograd.grad(ref, tensors)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_flags_declare_the_need():
    assert not HardNegativeContrastiveLoss().uses_audio_negatives
    assert ModularContrastiveLoss(audio_negatives=True, max_audio_negatives=2).uses_audio_negatives
    assert HardNegativeContrastiveLoss(audio_negatives=True).max_audio_negatives is None


def test_hard_negative_with_audio_negatives_matches_loop():
    g = torch.Generator().manual_seed(0)
    n = len(AUDIO_NEG_COUNTS)
    audio, text = _with_grad(unit(g, n, DIM), unit(g, n, DIM))
    ids = [3, 4, 3, 5, 6]  # clips 0 and 2 share their caption: masking and audio negatives together
    emb, mask, _ = padded(_audio_negs(g), DIM)
    emb.requires_grad_(True)
    emb_garbage = emb.detach().clone()
    emb_garbage[~mask] = 3.0  # padding slots must not matter
    out = HardNegativeContrastiveLoss(audio_negatives=True)(
        audio, text, SCALE, text_ids=torch.tensor(ids), audio_negative_embeds=emb, audio_negative_mask=mask,
        audio_negative_text=torch.arange(n))
    ref_negs = [[emb[i, k] for k in range(c)] for i, c in enumerate(AUDIO_NEG_COUNTS)]
    ref, _, t2a, acc = reference(audio, [[t] for t in text], SCALE, pos_ids=[[x] for x in ids], audio_negs=ref_negs)
    _assert_same(out["hard_negative_loss"], ref, (audio, text, emb))
    torch.testing.assert_close(out["t2a"], t2a.detach(), atol=1e-6, rtol=1e-6)
    acc_out = out["t2a_audio_negative_acc"]
    assert acc_out.item() == pytest.approx(acc) and not acc_out.requires_grad
    default_rows = HardNegativeContrastiveLoss()(audio, text, SCALE, text_ids=torch.tensor(ids),
                                                 audio_negative_embeds=emb_garbage, audio_negative_mask=mask)
    torch.testing.assert_close(default_rows["hard_negative_loss"], out["hard_negative_loss"])
    without = HardNegativeContrastiveLoss()(audio, text, SCALE, text_ids=torch.tensor(ids))
    assert (without["hard_negative_loss"] - out["hard_negative_loss"]).abs() > 1e-3
    assert "t2a_audio_negative_acc" not in without


@pytest.mark.parametrize("full", [None, [1, 0, 2, 0, 0]])
def test_modular_audio_negatives_go_to_the_full_caption(full):
    g = torch.Generator().manual_seed(1)
    pos_ids = [[1, 2, 3], [4], [5, 2, 6], [7], [8, 4]]  # "2" and "4" shared between clips
    audio = unit(g, len(pos_ids), DIM).requires_grad_(True)
    positives = [list(unit(g, len(x), DIM)) for x in pos_ids]
    negatives = [list(unit(g, c, DIM)) for c in (1, 0, 2, 1, 0)]
    text, owner, ids = flat_positives(positives, pos_ids)
    text.requires_grad_(True)
    neg, neg_mask, _ = padded(negatives, DIM)
    aneg, amask, _ = padded(_audio_negs(g), DIM)
    aneg.requires_grad_(True)
    starts = torch.tensor([0, 3, 4, 7, 8])
    kwargs = {} if full is None else {"full_caption_index": starts + torch.tensor(full)}
    out = ModularContrastiveLoss(audio_negatives=True)(
        audio, text, SCALE, text_owner=owner, negative_embeds=neg, negative_mask=neg_mask, text_ids=ids,
        audio_negative_embeds=aneg, audio_negative_mask=amask, **kwargs)
    ref_pos = [[text[int(starts[i]) + j] for j in range(len(x))] for i, x in enumerate(pos_ids)]
    ref_aneg = [[aneg[i, k] for k in range(c)] for i, c in enumerate(AUDIO_NEG_COUNTS)]
    ref, _, _, acc = reference(audio, ref_pos, SCALE, negatives=negatives, pos_ids=pos_ids, full=full,
                               audio_negs=ref_aneg)
    _assert_same(out["modular_loss"], ref, (audio, text, aneg))
    assert out["t2a_audio_negative_acc"].item() == pytest.approx(acc)


def test_two_clips_on_one_text_row_is_an_error():
    g = torch.Generator().manual_seed(2)
    a, t = unit(g, 3, DIM), unit(g, 3, DIM)
    emb, mask, _ = padded(_audio_negs(g, [1, 1, 0]), DIM)
    with pytest.raises(ValueError, match="same text row"):
        HardNegativeContrastiveLoss()(a, t, SCALE, audio_negative_embeds=emb, audio_negative_mask=mask,
                                      audio_negative_text=torch.tensor([0, 0, 1]))


# ----------------------------------------------------------------------------------------- DDP
class _Towers(nn.Module):
    """Seeded linear towers; audio negatives go through the audio tower."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.audio, self.text = nn.Linear(5, 4), nn.Linear(5, 4)

    def forward(self, x, y, w):
        a = F.normalize(self.audio(x), dim=-1)
        return a, F.normalize(self.text(y), dim=-1), F.normalize(self.audio(w), dim=-1)


AMASK = torch.tensor([[1, 1], [0, 0], [1, 0], [1, 1], [0, 0], [1, 0]], dtype=torch.bool)
OWNER = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4, 5])  # 6 positives on rank 0, 4 on rank 1
TEXT_SPLIT = [slice(0, 6), slice(6, 10)]
IDS = torch.tensor([1, 2, 3, 4, 2, 5, 6, 1, 3, 7])  # duplicates across ranks as well


def _data():
    g = torch.Generator().manual_seed(4)
    return torch.randn(6, 5, generator=g), torch.randn(10, 5, generator=g), torch.randn(6, 2, 5, generator=g)


def _step(model, kind, rank=None):
    """(loss, diagnostic, grads); rank None: one process on the whole batch."""
    x, y, w = _data()
    clips = slice(None) if rank is None else slice(3 * rank, 3 * rank + 3)
    if kind == "modular":
        ts = slice(None) if rank is None else TEXT_SPLIT[rank]
        a, t, n = model(x[clips], y[ts], w[clips])
        out = ModularContrastiveLoss(audio_negatives=True)(
            a, t, SCALE, text_owner=OWNER[ts] - (0 if rank is None else 3 * rank), text_ids=IDS[ts],
            audio_negative_embeds=n, audio_negative_mask=AMASK[clips])
    else:  # one caption per clip
        a, t, n = model(x[clips], y[:6][clips], w[clips])
        out = HardNegativeContrastiveLoss(audio_negatives=True)(
            a, t, SCALE, text_ids=IDS[:6][clips], audio_negative_embeds=n, audio_negative_mask=AMASK[clips])
    value = out[f"{kind}_loss"]
    value.backward()
    return (value.detach(), out["t2a_audio_negative_acc"],
            {k.removeprefix("module."): p.grad.clone() for k, p in model.named_parameters()})


def _ddp_rank(rank, world):
    return {kind: _step(DistributedDataParallel(_Towers()), kind, rank) for kind in ("hard_negative", "modular")}


@pytest.fixture(scope="module")
def ddp_results():
    """One 2-process run of both losses."""
    return run_ddp(_ddp_rank, world=2)


@pytest.mark.parametrize("kind", ["hard_negative", "modular"])
def test_ddp_two_processes_equal_single_process(ddp_results, kind):
    ref_loss, ref_acc, ref_grads = _step(_Towers(), kind)
    torch.testing.assert_close(torch.stack([r[kind][0] for r in ddp_results]).mean(), ref_loss, atol=1e-5, rtol=1e-5)
    for r in ddp_results:
        torch.testing.assert_close(r[kind][1], ref_acc)  # the diagnostic is reduced over ranks
        for name, g in ref_grads.items():
            torch.testing.assert_close(r[kind][2][name], g, atol=1e-5, rtol=1e-5, msg=f"{kind} {name}")
