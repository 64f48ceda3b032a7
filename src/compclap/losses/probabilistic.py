"""ProLAP: probabilistic language-audio pre-training loss (Gaussian embeddings, after ProLIP, Chun et al. 2024).

Every clip and caption is a Gaussian Z = N(mu, diag(sigma^2)) in the joint space (mu L2-normalised, log sigma^2
from the model's uncertainty heads). The terms, each returned under its own ``*_loss`` key:

**ppcl_loss** (probabilistic pairwise contrastive loss) on the closed-form sampled distance (CSD)
``CSD(Z1, Z2) = ||mu1 - mu2||^2 + sum(sigma1^2 + sigma2^2)``. With unit means, ``-CSD / 2 + 1 =
mu1 . mu2 - 0.5 * sum(sigma1^2 + sigma2^2)``, so the logit of a pair is
``s * (mu_a . mu_t - 0.5 * sum(sigma_a^2 + sigma_t^2)) + b`` with learnable s = exp(log_scale) (init 10,
clamped at `max_scale`) and b (init -10), SigLIP's initialisation. Sigmoid loss with z = +1 for a matching
pair and -1 otherwise: ``-(1 / N_audio) * sum_ij log sigmoid(z_ij * logit_ij)`` over every clip and every
caption of the (global) batch. A clip matches its own captions (with composed data: all its positives) and,
given `text_ids` (`compclap.text.identity.text_ids`, the normalised caption), any caption with the identity of
one of them: with a sigmoid loss every pair has its own term, so a false negative is turned into a positive
(z = +1) rather than masked out. `false_negative_masking=False` ignores `text_ids` (every caption distinct).

**Inclusion.** For diagonal Gaussians Z1, Z2 the inclusion score is ProLIP's sharpened overlap with n = 2,
the log of ``∫ p1(x)^2 p2(x) dx``: squaring p1 concentrates it on Z1's high-density region, and the
integral is large when Z2 has density there. Per dimension (s = sigma^2, d = mu1 - mu2), in closed form:

    log ∫ N(x; mu1, s1)^2 N(x; mu2, s2) dx
        = -log 2 - 1/2 log(pi) - 1/2 log(2 pi) - 1/2 [ log s1 + log(s1/2 + s2) + d^2 / (s1/2 + s2) ]

(``N(x; mu1, s1)^2 = N(x; mu1, s1/2) / (2 sqrt(pi s1))`` and the product of two Gaussians integrates to
``N(mu1; mu2, s1/2 + s2)``), summed over dimensions. Alone it favours narrow Z2 (a wide density is low
everywhere), so, as in ProLIP, the loss compares the two directions:
``D(Z1 ⊂ Z2) = I(Z1 ⊂ Z2) - I(Z2 ⊂ Z1)`` (the constants cancel), and ``loss = -log sigmoid(inclusion_scale
* D)``. With equal means D > 0 exactly when Z2 is the wider one (per dimension,
``1/2 log((r + r^2/2) / (r + 1/2))`` with r = s2 / s1); equal variances give D = 0 whatever the means, and
when Z2 is wider D also grows with the distance of the means (the inclusion term alone does not pull means
together: the pairwise term does, and for masked views the mask-repulsive term anchors them). The
test "Z1 ⊂ Z2" used in evaluation is D > 0. ProLIP's released code (`inclusion_test`) differs from this exact
closed form in three ways we do not copy: its two leading log terms are twice ours (as if a formula written in
log sigma had been given log sigma^2), both precisions are scaled by e^-10 (which all but removes the mean
terms), and the log-sigmoid is taken per dimension and averaged, where we sum the log-integral first.
Terms: **inclusion_cross_loss** (each clip inside each of its captions: a caption describes many sounds),
**inclusion_masked_loss** (intra-modal: the full view of a clip / caption inside its masked view, a partial
view being more general; mean of the audio and the text term) and **inclusion_hierarchy_loss** (intra-modal,
composed data: the full caption inside each of its sub-expression captions, e.g. "a buzz then a beep" inside
"a buzz"; pairs given as `hierarchy_pairs`).

**vib_loss**: variational information bottleneck, the KL of every (full-view) Gaussian to N(0, I),
``0.5 * (sigma^2 + mu^2 - 1 - log sigma^2)`` averaged over inputs and dimensions, times `vib_weight` (1e-5).

**mask_repulsive_loss** (our own design; ProLAP names such a term without a formula). Masked views appear
only in the inclusion term, which any wide Gaussian satisfies, so nothing stops the masked views of
different inputs from collapsing onto one broad "anything" Gaussian. The term asks each masked view to still
pick out its own input: for masked means m_j and (detached) full means f_i of one modality over the global
batch, ``-log softmax_j(m_j . f_i / repulsive_temperature)[i]``, averaged over inputs and over the two
modalities. Its gradient pushes the masked views of *other* inputs away from f_i (and the own masked view
towards it); a collapse costs log(N). Captions with the same text (`text_ids`) are left out of each other's
denominators. `mask_repulsive_weight=0` switches it off; the diagnostics `masked_audio_similarity` /
`audio_similarity` (mean cosine between views of different clips) measure what it does.

DDP: captions and masked views are gathered from every rank with gradients; each rank sums its own rows and
divides by global counts, times the world size (DDP averages gradients), so loss and gradients equal one
process on the whole batch. Each rank must pass the same set of optional inputs (the LightningModule's
masking decision is keyed on the global step, hence shared).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from compclap.distributed import gather_variable, rank, world_size

__all__ = ["ProbabilisticContrastiveLoss", "csd", "inclusion_logit", "inclusion_score", "vib_kl"]

_LOG2 = math.log(2.0)


def csd(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """Closed-form sampled distance of matching rows: ||mu1 - mu2||^2 + sum(sigma1^2 + sigma2^2), shape (...,)."""
    return (mu1 - mu2).pow(2).sum(-1) + (logvar1.exp() + logvar2.exp()).sum(-1)


def inclusion_score(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor,
                    logvar2: torch.Tensor) -> torch.Tensor:
    """log ∫ p1(x)^2 p2(x) dx without its constant (see the module docstring), summed over the last dimension."""
    log_spread = torch.logaddexp(logvar1 - _LOG2, logvar2)  # log(s1/2 + s2)
    return -0.5 * (logvar1 + log_spread + (mu1 - mu2).pow(2) * torch.exp(-log_spread)).sum(-1)


def inclusion_logit(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor,
                    logvar2: torch.Tensor) -> torch.Tensor:
    """D(Z1 ⊂ Z2) = I(Z1 ⊂ Z2) - I(Z2 ⊂ Z1): positive when Z1 is included in Z2."""
    return inclusion_score(mu1, logvar1, mu2, logvar2) - inclusion_score(mu2, logvar2, mu1, logvar1)


def vib_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mu, exp(logvar)) || N(0, 1)), same shape as mu."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar)


def _global_sum(value: torch.Tensor | float | int, device: torch.device) -> torch.Tensor:
    """Sum of a (detached) count or statistic over ranks."""
    total = torch.as_tensor(value, dtype=torch.float32, device=device).detach().clone()
    if world_size() > 1:
        dist.all_reduce(total)
    return total


class ProbabilisticContrastiveLoss(nn.Module):
    """ProLAP loss: probabilistic pairwise contrastive loss, inclusion, VIB and mask-repulsive terms.

    See the module docstring for every formula. The LightningModule reads the declared needs:
    `uses_uncertainty` (means and log-variances), `uses_positives` (a composed clip's multi-granular
    captions), `uses_masked_views` (masked audio/text views, with `audio_mask_ratio`, `text_mask_ratio`,
    applied on a `mask_share` of the training batches).
    """

    uses_uncertainty = True
    uses_positives = True

    def __init__(
        self,
        init_scale: float = 10.0,
        init_bias: float = -10.0,
        max_scale: float = 100.0,
        inclusion_scale: float = 1.0,
        cross_inclusion_weight: float = 1.0,
        masked_inclusion_weight: float = 1.0,
        hierarchy_inclusion_weight: float = 1.0,
        vib_weight: float = 1e-5,
        mask_repulsive_weight: float = 0.5,
        repulsive_temperature: float = 0.1,
        audio_mask_ratio: float = 0.75,
        text_mask_ratio: float = 0.75,
        mask_share: float = 1.0,
        false_negative_masking: bool = True,
    ) -> None:
        """Configure the terms.

        Args:
            init_scale: initial CSD logit scale s (SigLIP: 10); learnable, as log s.
            init_bias: initial logit bias b (SigLIP: -10); learnable.
            max_scale: s is clamped at this value.
            inclusion_scale: multiplies the inclusion logit D before the log-sigmoid.
            cross_inclusion_weight: weight of "clip inside each of its captions" (0: off).
            masked_inclusion_weight: weight of "full view inside masked view", audio and text (0: off).
            hierarchy_inclusion_weight: weight of "full caption inside its sub-expression captions" (0: off).
            vib_weight: weight of the KL to N(0, I) (ProLIP: 1e-5; 0: off).
            mask_repulsive_weight: weight of our mask-repulsive term (0: off).
            repulsive_temperature: softmax temperature of the mask-repulsive term.
            audio_mask_ratio: share of HTSAT patches replaced by the mask token in a masked audio view.
            text_mask_ratio: share of a caption's (non-special) tokens dropped in a masked text view.
            mask_share: share of training batches that get masked views (1: all; 0: none).
            false_negative_masking: use `text_ids` (identical captions match each other's clips and are left out
                of each other's mask-repulsive denominators); off: every caption is distinct.
        """
        super().__init__()
        for name, value in (("audio_mask_ratio", audio_mask_ratio), ("text_mask_ratio", text_mask_ratio)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 <= mask_share <= 1.0:
            raise ValueError(f"mask_share must be in [0, 1], got {mask_share}")
        if init_scale <= 0 or max_scale <= 0 or repulsive_temperature <= 0:
            raise ValueError("init_scale, max_scale and repulsive_temperature must be positive")
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.max_scale = max_scale
        self.inclusion_scale = inclusion_scale
        self.cross_inclusion_weight = cross_inclusion_weight
        self.masked_inclusion_weight = masked_inclusion_weight
        self.hierarchy_inclusion_weight = hierarchy_inclusion_weight
        self.vib_weight = vib_weight
        self.mask_repulsive_weight = mask_repulsive_weight
        self.repulsive_temperature = repulsive_temperature
        self.audio_mask_ratio = audio_mask_ratio
        self.text_mask_ratio = text_mask_ratio
        self.mask_share = mask_share
        self.false_negative_masking = false_negative_masking

    @property
    def uses_masked_views(self) -> bool:
        """Whether any term needs masked views (and some batches get them)."""
        return self.mask_share > 0 and (self.masked_inclusion_weight > 0 or self.mask_repulsive_weight > 0)

    def scale(self) -> torch.Tensor:
        """The CSD logit scale s = exp(log_scale), clamped at `max_scale`."""
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()

    def logits(self, audio: torch.Tensor, audio_logvar: torch.Tensor, text: torch.Tensor,
               text_logvar: torch.Tensor) -> torch.Tensor:
        """Pairwise logits (A, T): s * (mu_a . mu_t - 0.5 * sum(sigma_a^2 + sigma_t^2)) + b."""
        spread = audio_logvar.exp().sum(-1)[:, None] + text_logvar.exp().sum(-1)[None, :]
        return self.scale() * (audio @ text.T - 0.5 * spread) + self.bias

    def _inclusion(self, mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor,
                   logvar2: torch.Tensor) -> torch.Tensor:
        """Global mean over the rows of -log sigmoid(scale * D(Z1 ⊂ Z2)), this rank's share (see `_mean`)."""
        per_row = -F.logsigmoid(self.inclusion_scale * inclusion_logit(mu1, logvar1, mu2, logvar2))
        return self._mean(per_row.sum(), per_row.shape[0], mu1.device)

    @staticmethod
    def _mean(local_sum: torch.Tensor, local_count: int, device: torch.device) -> torch.Tensor:
        """This rank's share of a global mean: local_sum * world_size / global_count (DDP averages gradients)."""
        return local_sum * world_size() / _global_sum(local_count, device).clamp_min(1.0)

    def _repulsive(self, masked: torch.Tensor, full: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        """-log softmax_j(m_j . sg(f_i) / T)[i] over the gathered masked views, mean over inputs (this rank's share)."""
        all_masked, sizes = gather_variable(masked)
        offset = int(sizes[:rank()].sum())
        n = masked.shape[0]
        own = torch.arange(n, device=masked.device) + offset
        logits = full.detach() @ all_masked.T / self.repulsive_temperature
        if ids is not None:  # the same text in another row is not a competitor
            all_ids, _ = gather_variable(ids, with_grad=False)
            same = ids[:, None] == all_ids[None, :]
            same[torch.arange(n, device=masked.device), own] = False
            logits = logits.masked_fill(same, float("-inf"))
        per_row = F.cross_entropy(logits, own, reduction="none") if n else logits.new_zeros(0)
        return self._mean(per_row.sum(), n, masked.device)

    def forward(
        self,
        audio_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        audio_logvar: torch.Tensor | None = None,
        text_logvar: torch.Tensor | None = None,
        text_owner: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
        hierarchy_pairs: torch.Tensor | None = None,
        masked_audio_embeds: torch.Tensor | None = None,
        masked_audio_logvar: torch.Tensor | None = None,
        masked_text_embeds: torch.Tensor | None = None,
        masked_text_logvar: torch.Tensor | None = None,
        **_: object,
    ) -> dict[str, torch.Tensor]:
        """Loss terms for one (local) batch.

        Args:
            audio_embeds, audio_logvar: clips' unit means and log-variances (B, D).
            text_embeds, text_logvar: captions' unit means and log-variances (M, D).
            text_owner: (M,) clip of each caption (None: caption i belongs to clip i, M == B).
            text_ids: (M,) integer id of each caption's text; equal ids are the same text (None: all distinct).
            hierarchy_pairs: (P, 2) local caption indices (specific, general): specific must lie inside general.
            masked_audio_embeds, masked_audio_logvar: masked views of the clips, (B, D) each, or None.
            masked_text_embeds, masked_text_logvar: masked views of the captions, (M, D) each, or None.
        """
        if audio_logvar is None or text_logvar is None:
            raise ValueError("ProbabilisticContrastiveLoss needs audio_logvar and text_logvar: build the model with "
                             "uncertainty heads (CLAPDualEncoder(uncertainty=True))")
        n_audio, device = audio_embeds.shape[0], audio_embeds.device
        if text_owner is None:
            if text_embeds.shape[0] != n_audio:
                raise ValueError(f"without text_owner the number of captions ({text_embeds.shape[0]}) must equal "
                                 f"the number of clips ({n_audio})")
            text_owner = torch.arange(n_audio, device=device)
        text_owner = text_owner.to(device)
        if text_owner.shape[0] != text_embeds.shape[0]:
            raise ValueError(f"text_owner has {text_owner.shape[0]} entries for {text_embeds.shape[0]} captions")
        if not self.false_negative_masking:
            text_ids = None
        if text_ids is not None:
            text_ids = text_ids.to(device)
            if text_ids.shape[0] != text_embeds.shape[0]:
                raise ValueError(f"text_ids has {text_ids.shape[0]} entries for {text_embeds.shape[0]} captions")
        n_text = text_embeds.shape[0]
        out: dict[str, torch.Tensor] = {}

        # -- probabilistic pairwise contrastive loss: this rank's clips against every caption
        all_text, text_sizes = gather_variable(text_embeds)
        all_text_logvar, _ = gather_variable(text_logvar)
        text_offset = int(text_sizes[:rank()].sum())
        logits = self.logits(audio_embeds, audio_logvar, all_text, all_text_logvar)  # (B, M_all)
        positive = torch.zeros_like(logits, dtype=torch.bool)
        positive[text_owner, torch.arange(n_text, device=device) + text_offset] = True
        if text_ids is not None:
            all_ids, _ = gather_variable(text_ids, with_grad=False)
            owns = F.one_hot(text_owner, n_audio).T.float()  # (B, M)
            positive |= (owns @ (text_ids[:, None] == all_ids[None, :]).float()) > 0
        signs = positive.to(logits.dtype) * 2 - 1
        out["ppcl_loss"] = self._mean(-F.logsigmoid(signs * logits).sum(), n_audio, device)

        # -- inclusion: each clip inside each of its captions
        if self.cross_inclusion_weight > 0:
            out["inclusion_cross_loss"] = self.cross_inclusion_weight * self._inclusion(
                audio_embeds[text_owner], audio_logvar[text_owner], text_embeds, text_logvar)
        # -- inclusion: the full caption inside its sub-expression captions
        if self.hierarchy_inclusion_weight > 0 and hierarchy_pairs is not None:
            pairs = hierarchy_pairs.to(device).long().reshape(-1, 2)
            spec, gen = pairs[:, 0], pairs[:, 1]
            out["inclusion_hierarchy_loss"] = self.hierarchy_inclusion_weight * self._inclusion(
                text_embeds[spec], text_logvar[spec], text_embeds[gen], text_logvar[gen])
        # -- inclusion: full views inside masked views
        masked_audio = masked_audio_embeds is not None and masked_audio_logvar is not None
        masked_text = masked_text_embeds is not None and masked_text_logvar is not None
        if masked_audio and masked_audio_embeds.shape != audio_embeds.shape:
            raise ValueError("masked audio views must match the clips one to one")
        if masked_text and masked_text_embeds.shape != text_embeds.shape:
            raise ValueError("masked text views must match the captions one to one")
        n_views = int(masked_audio) + int(masked_text)
        if self.masked_inclusion_weight > 0 and n_views:
            parts = []
            if masked_audio:
                parts.append(self._inclusion(audio_embeds, audio_logvar, masked_audio_embeds, masked_audio_logvar))
            if masked_text:
                parts.append(self._inclusion(text_embeds, text_logvar, masked_text_embeds, masked_text_logvar))
            out["inclusion_masked_loss"] = self.masked_inclusion_weight * sum(parts) / n_views
        # -- ours: masked views of different inputs must not collapse
        if self.mask_repulsive_weight > 0 and n_views:
            parts = []
            if masked_audio:
                parts.append(self._repulsive(masked_audio_embeds, audio_embeds, None))
            if masked_text:
                parts.append(self._repulsive(masked_text_embeds, text_embeds, text_ids))
            out["mask_repulsive_loss"] = self.mask_repulsive_weight * sum(parts) / n_views
        # -- variational information bottleneck
        if self.vib_weight > 0:
            kl_sum = vib_kl(audio_embeds, audio_logvar).sum() + vib_kl(text_embeds, text_logvar).sum()
            count = (n_audio + n_text) * audio_embeds.shape[1]
            out["vib_loss"] = self.vib_weight * self._mean(kl_sum, count, device)

        # -- diagnostics (logged, not summed)
        with torch.no_grad():
            out["csd_scale"] = self.scale().detach()
            out["csd_bias"] = self.bias.detach()
            out["audio_logvar"] = audio_logvar.mean()
            out["text_logvar"] = text_logvar.mean()
            out["audio_similarity"] = _mean_offdiagonal_cosine(audio_embeds)
            if masked_audio:
                out["masked_audio_similarity"] = _mean_offdiagonal_cosine(masked_audio_embeds)
        return out


def _mean_offdiagonal_cosine(x: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between different rows of unit vectors x (N, D) (0 when N < 2)."""
    n = x.shape[0]
    if n < 2:
        return x.new_zeros(())
    total = x.sum(0)
    return ((total @ total) - (x * x).sum()) / (n * (n - 1))
