"""ProLAP loss: every term against a plain per-pair loop, the inclusion closed form against numerical
integration, and 2-process DDP equal to one process (unequal clips and captions per rank)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from compclap.losses import ProbabilisticContrastiveLoss
from compclap.losses.probabilistic import inclusion_logit, inclusion_score
from ddp_helpers import run_ddp

# Clip i's captions; "a buzz" belongs to clips 0 and 2 (a true match for both), clip 3 has a single caption.
CAPTIONS = [["a buzz then a beep", "a buzz", "a beep"], ["a hum"], ["a buzz over a knock", "a buzz", "a knock"],
            ["a siren"], ["a bell then a hum", "a bell", "a hum"]]
TEXTS = [t for caps in CAPTIONS for t in caps]
OWNER = torch.tensor([i for i, caps in enumerate(CAPTIONS) for _ in caps])
IDS = torch.tensor([sorted(set(TEXTS)).index(t) for t in TEXTS])
# (specific, general): each clip's first caption inside its other captions
PAIRS = torch.tensor([(k0, k) for i, caps in enumerate(CAPTIONS) if len(caps) > 1
                      for k0 in [TEXTS.index(caps[0])] for k in range(k0 + 1, k0 + len(caps))])
DIM = 6


# ----------------------------------------------------------------------------------------- references
def _score_ref(m1, v1, m2, v2):
    """log ∫ p1^2 p2 without constants, one dimension at a time (v = log-variance)."""
    total = 0.0
    for d in range(m1.shape[0]):
        s1, s2 = torch.exp(v1[d]), torch.exp(v2[d])
        total = total - 0.5 * (v1[d] + torch.log(s1 / 2 + s2) + (m1[d] - m2[d]) ** 2 / (s1 / 2 + s2))
    return total


def _incl_ref(m1, v1, m2, v2, scale=1.0):
    return -F.logsigmoid(scale * (_score_ref(m1, v1, m2, v2) - _score_ref(m2, v2, m1, v1)))


def _reference(a, va, t, vt, ma, mva, mt, mvt, s, b, w):
    """Every term with plain loops over clips, captions and pairs."""
    n_clip, n_text = len(CAPTIONS), len(TEXTS)
    ppcl = 0.0
    for i in range(n_clip):
        for j in range(n_text):
            sign = 1.0 if TEXTS[j] in CAPTIONS[i] else -1.0
            logit = s * (a[i] @ t[j] - 0.5 * (va[i].exp().sum() + vt[j].exp().sum())) + b
            ppcl = ppcl - F.logsigmoid(sign * logit)
    out = {"ppcl_loss": ppcl / n_clip}
    out["inclusion_cross_loss"] = w["cross"] * sum(
        _incl_ref(a[OWNER[j]], va[OWNER[j]], t[j], vt[j]) for j in range(n_text)) / n_text
    out["inclusion_hierarchy_loss"] = w["hier"] * sum(
        _incl_ref(t[p], vt[p], t[q], vt[q]) for p, q in PAIRS.tolist()) / len(PAIRS)
    audio_in = sum(_incl_ref(a[i], va[i], ma[i], mva[i]) for i in range(n_clip)) / n_clip
    text_in = sum(_incl_ref(t[j], vt[j], mt[j], mvt[j]) for j in range(n_text)) / n_text
    out["inclusion_masked_loss"] = w["masked"] * (audio_in + text_in) / 2
    temp = w["temp"]
    rep_a = sum(-torch.log_softmax(torch.stack([ma[k] @ a[i].detach() / temp for k in range(n_clip)]), 0)[i]
                for i in range(n_clip)) / n_clip
    rep_t = 0.0
    for j in range(n_text):
        cols = [k for k in range(n_text) if k == j or TEXTS[k] != TEXTS[j]]
        logits = torch.stack([mt[k] @ t[j].detach() / temp for k in cols])
        rep_t = rep_t - torch.log_softmax(logits, 0)[cols.index(j)]
    out["mask_repulsive_loss"] = w["rep"] * (rep_a + rep_t / n_text) / 2
    kl = 0.0
    for mu, lv in [(a[i], va[i]) for i in range(n_clip)] + [(t[j], vt[j]) for j in range(n_text)]:
        for d in range(DIM):
            kl = kl + 0.5 * (lv[d].exp() + mu[d] ** 2 - 1 - lv[d])
    out["vib_loss"] = w["vib"] * kl / ((n_clip + n_text) * DIM)
    return out


WEIGHTS = {"cross": 0.7, "hier": 0.3, "masked": 0.5, "rep": 0.2, "temp": 0.5, "vib": 0.01}


def _loss():
    return ProbabilisticContrastiveLoss(cross_inclusion_weight=WEIGHTS["cross"],
                                        hierarchy_inclusion_weight=WEIGHTS["hier"],
                                        masked_inclusion_weight=WEIGHTS["masked"],
                                        mask_repulsive_weight=WEIGHTS["rep"], repulsive_temperature=WEIGHTS["temp"],
                                        vib_weight=WEIGHTS["vib"], init_scale=4.0, init_bias=-2.0)


def _gaussians(n, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, DIM, generator=g), dim=-1), torch.rand(n, DIM, generator=g) * 3 - 4


# ----------------------------------------------------------------------------------------- tests
def test_inclusion_score_is_the_log_integral_of_p1_squared_times_p2():
    x = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    normal = lambda m, v: torch.exp(-(x - m) ** 2 / (2 * v)) / math.sqrt(2 * math.pi * v)  # noqa: E731
    for m1, v1, m2, v2 in [(0.0, 1.0, 0.5, 2.0), (0.3, 0.2, -0.4, 0.05), (1.0, 3.0, 1.0, 3.0)]:
        integral = torch.trapezoid(normal(m1, v1) ** 2 * normal(m2, v2), x)
        const = -math.log(2) - 0.5 * math.log(math.pi) - 0.5 * math.log(2 * math.pi)
        args = (torch.tensor([[u]], dtype=torch.float64) for u in (m1, math.log(v1), m2, math.log(v2)))
        score = inclusion_score(*args)
        assert float(score) + const == pytest.approx(math.log(float(integral)), rel=1e-6, abs=1e-9)


def test_inclusion_logit_prefers_the_wider_gaussian_as_container():
    mu = torch.zeros(1, 4)
    narrow, wide = torch.full((1, 4), -3.0), torch.full((1, 4), -1.0)
    assert inclusion_logit(mu, narrow, mu, wide) > 0 > inclusion_logit(mu, wide, mu, narrow)
    other = torch.ones(1, 4)
    torch.testing.assert_close(inclusion_logit(mu, narrow, other, narrow), torch.zeros(1))  # equal widths: 0
    # closed form at equal means, r = s2 / s1 per dimension
    r = math.exp(2.0)
    torch.testing.assert_close(inclusion_logit(mu, narrow, mu, wide),
                               torch.tensor([4 * 0.5 * math.log((r + r * r / 2) / (r + 0.5))]))


def test_every_term_matches_per_pair_loops():
    a, va = _gaussians(len(CAPTIONS), 1)
    t, vt = _gaussians(len(TEXTS), 2)
    ma, mva = _gaussians(len(CAPTIONS), 3)
    mt, mvt = _gaussians(len(TEXTS), 4)
    loss = _loss()
    out = loss(a, t, audio_logvar=va, text_logvar=vt, text_owner=OWNER, text_ids=IDS, hierarchy_pairs=PAIRS,
               masked_audio_embeds=ma, masked_audio_logvar=mva, masked_text_embeds=mt, masked_text_logvar=mvt,
               logit_scale=torch.tensor(3.0))
    ref = _reference(a, va, t, vt, ma, mva, mt, mvt, 4.0, -2.0, WEIGHTS)
    assert {k for k in out if k.endswith("_loss")} == set(ref)
    for key, value in ref.items():
        torch.testing.assert_close(out[key], value.reshape(()).float(), atol=1e-5, rtol=1e-5, msg=key)


def test_defaults_switches_and_errors():
    loss = ProbabilisticContrastiveLoss()
    assert loss.scale().item() == pytest.approx(10.0) and loss.bias.item() == -10.0
    assert loss.vib_weight == 1e-5 and loss.text_mask_ratio == 0.75 and loss.uses_masked_views
    assert {n for n, _ in loss.named_parameters()} == {"log_scale", "bias"}
    a, va = _gaussians(3, 0)
    t, vt = _gaussians(3, 1)
    base = loss(a, t, audio_logvar=va, text_logvar=vt)
    assert {k for k in base if k.endswith("_loss")} == {"ppcl_loss", "inclusion_cross_loss", "vib_loss"}
    off = ProbabilisticContrastiveLoss(mask_repulsive_weight=0.0)
    views = off(a, t, audio_logvar=va, text_logvar=vt, masked_audio_embeds=a, masked_audio_logvar=va + 1)
    assert "inclusion_masked_loss" in views and "mask_repulsive_loss" not in views
    assert "masked_audio_similarity" in views  # the diagnostic is there either way
    assert not ProbabilisticContrastiveLoss(masked_inclusion_weight=0, mask_repulsive_weight=0).uses_masked_views
    assert not ProbabilisticContrastiveLoss(mask_share=0.0).uses_masked_views
    with pytest.raises(ValueError, match="uncertainty"):
        loss(a, t)
    with pytest.raises(ValueError, match="mask_ratio"):
        ProbabilisticContrastiveLoss(text_mask_ratio=1.0)


def test_ppcl_gradients_shrink_the_variance_of_a_matching_pair():
    a, va = _gaussians(1, 0)
    _, vt = _gaussians(1, 1)
    va.requires_grad_(True)
    loss = ProbabilisticContrastiveLoss(cross_inclusion_weight=0, vib_weight=0)
    loss(a, a.clone(), audio_logvar=va, text_logvar=vt)["ppcl_loss"].backward()
    assert (va.grad > 0).all()  # alone, a matching pair's logit rises as its variance falls


# ----------------------------------------------------------------------------------------- DDP
class _Setup(nn.Module):
    """Linear towers that emit unit means and log-variances, plus the loss (with its learnable s and b)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.audio, self.text = nn.Linear(5, 2 * DIM), nn.Linear(5, 2 * DIM)
        self.masked_audio, self.masked_text = nn.Linear(5, 2 * DIM), nn.Linear(5, 2 * DIM)
        self.loss = _loss()

    @staticmethod
    def _split(h):
        return F.normalize(h[:, :DIM], dim=-1), h[:, DIM:] - 2.0

    def forward(self, x, y, owner, ids, pairs):
        a, va = self._split(self.audio(x))
        t, vt = self._split(self.text(y))
        ma, mva = self._split(self.masked_audio(x))
        mt, mvt = self._split(self.masked_text(y))
        return self.loss(a, t, audio_logvar=va, text_logvar=vt, text_owner=owner, text_ids=ids, hierarchy_pairs=pairs,
                         masked_audio_embeds=ma, masked_audio_logvar=mva, masked_text_embeds=mt,
                         masked_text_logvar=mvt)


def _data():
    g = torch.Generator().manual_seed(5)
    return torch.randn(len(CAPTIONS), 5, generator=g), torch.randn(len(TEXTS), 5, generator=g)


def _step(model, x, y, owner, ids, pairs):
    out = model(x, y, owner, ids, pairs)
    terms = {k: v for k, v in out.items() if k.endswith("_loss")}
    sum(terms.values()).backward()
    return ({k: v.detach() for k, v in terms.items()},
            {k.removeprefix("module."): p.grad.clone() for k, p in model.named_parameters()})


def _ddp_rank(rank, world):
    x, y = _data()
    clips = [range(0, 2), range(2, 5)][rank]  # 2 clips (4 captions) on rank 0, 3 clips (7 captions) on rank 1
    texts = [k for k in range(len(TEXTS)) if int(OWNER[k]) in clips]
    first = texts[0]
    pairs = PAIRS[(PAIRS[:, 0] >= first) & (PAIRS[:, 0] <= texts[-1])] - first
    return _step(DistributedDataParallel(_Setup()), x[list(clips)], y[texts], OWNER[texts] - clips[0], IDS[texts],
                 pairs)


def test_ddp_two_processes_equal_single_process():
    x, y = _data()
    ref_terms, ref_grads = _step(_Setup(), x, y, OWNER, IDS, PAIRS)
    results = run_ddp(_ddp_rank, world=2)
    for key, value in ref_terms.items():
        torch.testing.assert_close(torch.stack([r[0][key] for r in results]).mean(), value, atol=1e-6, rtol=1e-6,
                                   msg=key)
    for _, grads in results:
        assert set(grads) == set(ref_grads)
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, atol=1e-6, rtol=1e-6, msg=name)


# ----------------------------------------------------------------------------------------- LightningModule wiring
def test_lightning_module_embeds_gaussians_masked_views_and_hierarchy(tokenizer_dir):
    from compclap.lit_module import CompClapModule
    from conftest import make_tiny_model

    torch.manual_seed(0)
    loss = ProbabilisticContrastiveLoss(mask_share=1.0)
    module = CompClapModule(make_tiny_model(tokenizer_dir, uncertainty=True), loss=loss)
    batch = {"waveforms": torch.randn(3, 8000) * 0.1, "captions": ["a beep then a hum", "a bell", "a knock"],
             "caption_owner": torch.arange(3),
             "positives": ["a beep then a hum", "a beep", "a hum", "a bell", "a knock then a beep", "a beep"],
             "positive_owner": torch.tensor([0, 0, 0, 1, 2, 2])}
    out = module._embed_train_batch(batch)
    assert out["text_embeds"].shape[0] == 6 and torch.equal(out["text_owner"], batch["positive_owner"])
    assert out["hierarchy_pairs"].tolist() == [[0, 1], [0, 2]]  # clip 2's caption is not among its positives
    assert out["text_ids"][1] != out["text_ids"][2]
    assert out["masked_audio_embeds"].shape == (3, 12) and out["masked_text_logvar"].shape == (6, 12)
    terms = loss(**out)
    assert {"inclusion_masked_loss", "inclusion_hierarchy_loss", "mask_repulsive_loss"} <= set(terms)
    sum(v for k, v in terms.items() if k.endswith("_loss")).backward()
    assert module.model.audio_mask_token.grad is not None and loss.log_scale.grad is not None
    assert any(p is loss.bias for p in module.parameters())  # the optimiser sees s and b

    # a deterministic model is a clear error; a share of 0 gives no masked views
    with pytest.raises(ValueError, match="uncertainty"):
        CompClapModule(make_tiny_model(tokenizer_dir), loss=loss)._embed_train_batch(batch)
    module.loss = ProbabilisticContrastiveLoss(mask_share=0.0)
    assert "masked_audio_embeds" not in module._embed_train_batch(batch)
