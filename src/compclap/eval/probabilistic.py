"""Evaluation of probabilistic (ProLAP) models: CSD retrieval, inclusion of general in specific captions,
caption length vs uncertainty, and audio traversals towards a root embedding.

* **CSD retrieval.** Pairs are ranked by -CSD/2 = mu_a . mu_t - 0.5 * sum(sigma_a^2) - 0.5 * sum(sigma_t^2) - 1
  (unit means). That is a dot product of augmented vectors, ``[mu_a, -0.5 * sum(sigma_a^2), 1] .
  [mu_t, 1, -0.5 * sum(sigma_t^2)]``, so `retrieval_metrics` (which ranks by dot products and needs no unit
  norm) scores it unchanged: same multi-caption protocol and tie rules as the cosine numbers. For a caption
  query the caption's own variance is a constant and drops out; uncertain clips rank lower.
* **Inclusion pass rate.** On (general, specific) caption pairs, e.g. a composed clip's sub-expression
  caption ("A short loud low buzz") and its full caption ("A short loud low buzz followed by a soft beep"):
  the share of pairs with D(specific ⊂ general) > 0 (`compclap.losses.probabilistic.inclusion_logit`).
* **Length vs uncertainty.** Pearson r between a caption's length in words and its uncertainty, the total
  variance sum(sigma^2) (the quantity the CSD adds); ProLAP reports r = -0.43 on AudioCaps (longer, more
  specific captions are more certain).
* **Audio traversal.** From a clip's mean, step along the great circle towards a root embedding (by default
  the empty caption, the most general text there is; or the normalised mean of all caption means) and list,
  at each step, the caption whose mean is nearest (cosine) and its uncertainty: a probabilistic model should
  move from specific to general (more uncertain) captions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from compclap.data.manifest import read_manifest
from compclap.eval.retrieval import retrieval_metrics
from compclap.eval.benchmarks import Benchmark
from compclap.losses.probabilistic import inclusion_logit

__all__ = ["ProbabilisticBenchmark", "audio_traversal", "caption_length", "csd_retrieval_metrics", "hierarchy_pairs",
           "inclusion_pass_rate", "pearson_r", "total_variance"]


def total_variance(logvar: torch.Tensor) -> torch.Tensor:
    """Uncertainty of each Gaussian: sum of its variances, (N,)."""
    return logvar.double().exp().sum(-1)


def csd_retrieval_metrics(audio_mu: torch.Tensor, audio_logvar: torch.Tensor, text_mu: torch.Tensor,
                          text_logvar: torch.Tensor, text_to_audio: torch.Tensor, **kwargs: Any) -> dict[str, float]:
    """`retrieval_metrics` with pairs ranked by -CSD/2 (augmented dot products; see the module docstring)."""
    a_var, t_var = total_variance(audio_logvar), total_variance(text_logvar)
    ones_a, ones_t = torch.ones_like(a_var), torch.ones_like(t_var)
    audio = torch.cat([audio_mu.double(), (-0.5 * a_var)[:, None], ones_a[:, None]], dim=1)
    text = torch.cat([text_mu.double(), ones_t[:, None], (-0.5 * t_var)[:, None]], dim=1)
    return retrieval_metrics(audio, text, text_to_audio, **kwargs)


def inclusion_pass_rate(general_mu: torch.Tensor, general_logvar: torch.Tensor, specific_mu: torch.Tensor,
                        specific_logvar: torch.Tensor) -> dict[str, float]:
    """Share of pairs (rows) where the specific Gaussian lies inside the general one (D > 0), and the mean D."""
    d = inclusion_logit(specific_mu.double(), specific_logvar.double(), general_mu.double(), general_logvar.double())
    return {"pass_rate": float((d > 0).double().mean()), "mean_logit": float(d.mean()), "n_pairs": int(d.numel())}


def caption_length(text: str) -> int:
    """Length of a caption in words."""
    return len(text.split())


def pearson_r(x: Sequence[float] | torch.Tensor, y: Sequence[float] | torch.Tensor) -> float:
    """Pearson correlation of two equally long sequences (NaN when either is constant)."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError(f"need two sequences of equal length >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x - x.mean(), y - y.mean()
    denom = (x.norm() * y.norm()).item()
    return float((x @ y).item() / denom) if denom > 0 else float("nan")


def hierarchy_pairs(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(general, specific) caption pairs of composed clips: each sub-expression caption in `positives` against the
    clip's full caption (its first caption); duplicates removed, order kept."""
    pairs: dict[tuple[str, str], None] = {}
    for rec in records:
        captions, positives = rec.get("captions") or [], rec.get("positives") or []
        if not captions:
            continue
        full = captions[0]
        for general in positives:
            if general != full:
                pairs[(general, full)] = None
    return list(pairs)


def audio_traversal(audio_mu: torch.Tensor, gallery_mu: torch.Tensor, gallery_logvar: torch.Tensor,
                    gallery: Sequence[str], root: torch.Tensor, steps: int = 8) -> list[dict[str, Any]]:
    """Nearest caption (cosine of means) at `steps` + 1 points from the clip's mean (t = 0) to the root (t = 1)."""
    start, end = F.normalize(audio_mu.double(), dim=-1), F.normalize(root.double(), dim=-1)
    means = F.normalize(gallery_mu.double(), dim=-1)
    unc = total_variance(gallery_logvar)
    out = []
    for k in range(steps + 1):
        t = k / steps
        point = F.normalize((1 - t) * start + t * end, dim=-1)
        sims = means @ point
        j = int(sims.argmax())
        out.append({"t": round(t, 4), "caption": gallery[j], "cosine": float(sims[j]), "uncertainty": float(unc[j])})
    return out


class ProbabilisticBenchmark(Benchmark):
    """ProLAP metrics for models with uncertainty heads; other models get "-" (not applicable).

    Args:
        name: report section.
        records: retrieval clips, [{"audio": path, "captions": [...]}, ...] (e.g. the test split).
        source: where `records` came from.
        hierarchy: (general, specific) caption pairs (`hierarchy_pairs` of a composed manifest).
        extra_captions: more captions for the traversal gallery and the length/uncertainty correlation
            (e.g. bare event names, "a beep").
        traversal_clips: number of clips (evenly spaced over `records`) traversed in the report.
        traversal_steps: steps from the clip to the root.
        root: "empty" (the empty caption's mean) or "mean" (normalised mean of all gallery caption means).
    """

    kind = "probabilistic"
    columns = [("csd.t2a_R@1", "CSD t2a R@1"), ("csd.a2t_R@1", "CSD a2t R@1"),
               ("inclusion.pass_rate", "inclusion pass"), ("length_uncertainty_r_text", "len/unc r")]
    details = [(f"{m}.{d}_{k}", f"{label} {d} {k}") for m, label in (("csd", "CSD"), ("cosine", "cos"))
               for d in ("t2a", "a2t") for k in ("R@1", "R@5", "mAP@10")]
    details += [("inclusion.pass_rate", "inclusion pass"), ("inclusion.mean_logit", "mean D"),
                ("inclusion.n_pairs", "pairs"), ("length_uncertainty_r_text", "len/unc r"),
                ("n_captions_r", "captions (r)"), ("mean_text_uncertainty_text", "text unc"),
                ("mean_audio_uncertainty_text", "audio unc")]

    def __init__(self, name: str, records: Sequence[Mapping[str, Any]], source: str,
                 hierarchy: Sequence[tuple[str, str]] = (), extra_captions: Sequence[str] = (),
                 traversal_clips: int = 3, traversal_steps: int = 8, root: str = "empty") -> None:
        """See the class docstring."""
        super().__init__(name, source)
        if not records:
            raise ValueError(f"{source}: no clips to evaluate")
        if root not in ("mean", "empty"):
            raise ValueError(f"root must be 'mean' or 'empty', got {root!r}")
        self.files = [Path(r["audio"]) for r in records]
        self.clip_captions = [list(r["captions"]) for r in records]
        self.captions = [str(c) for caps in self.clip_captions for c in caps]
        self.owner = torch.tensor([i for i, caps in enumerate(self.clip_captions) for _ in caps], dtype=torch.long)
        self.hierarchy = [(str(g), str(s)) for g, s in hierarchy]
        self.extra_captions = [str(c) for c in extra_captions]
        self.traversal_clips, self.traversal_steps, self.root = traversal_clips, traversal_steps, root

    @classmethod
    def from_manifests(cls, retrieval_manifest: str | os.PathLike, hierarchy_manifest: str | os.PathLike | None = None,
                       name: str = "prolap", **kwargs: Any) -> ProbabilisticBenchmark:
        """Clips from a manifest; (general, specific) pairs from a composed manifest with `positives`."""
        pairs = hierarchy_pairs(read_manifest(hierarchy_manifest, require_captions=False)) if hierarchy_manifest else []
        source = str(retrieval_manifest) + (f" + {hierarchy_manifest}" if hierarchy_manifest else "")
        return cls(name, read_manifest(retrieval_manifest), source, hierarchy=pairs, **kwargs)

    def fingerprint(self) -> str:
        """Clips, captions, pairs and traversal settings."""
        payload = [self.kind, [str(f) for f in self.files], self.captions, self.hierarchy, self.extra_captions,
                   self.traversal_clips, self.traversal_steps, self.root]
        return hashlib.sha1(json.dumps(payload).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """Adds sizes and a one-line description for the report."""
        return {**super().describe(), "n_clips": len(self.files), "n_captions": len(self.captions),
                "n_pairs": len(self.hierarchy),
                "description": (f"ProLAP metrics (models with uncertainty heads): retrieval ranked by the CSD and by "
                                f"the cosine of the means over {len(self.files)} clips and {len(self.captions)} captions; "
                                f"inclusion test D(specific ⊂ general) > 0 on {len(self.hierarchy)} (sub-expression, "
                                f"full caption) pairs; Pearson r of caption length (words) and total variance; "
                                f"traversals of {self.traversal_clips} clips towards "
                                f"{'the empty caption' if self.root == 'empty' else 'the mean caption embedding'}")}

    def evaluate(self, embedder: Any, device: str = "cpu") -> dict[str, Any]:
        """All ProLAP metrics, or {"applicable": False} for a deterministic model."""
        model = getattr(embedder, "model", embedder)
        if not getattr(model, "uncertainty", False):
            return {"applicable": False}
        a_mu, a_lv = model.embed_audio(self.files, return_uncertainty=True)
        t_mu, t_lv = model.embed_text(self.captions, return_uncertainty=True)
        result: dict[str, Any] = {"applicable": True}
        pct = lambda m: {k: (v if k.endswith("medR") else 100.0 * v) for k, v in m.items()}  # noqa: E731
        result["csd"] = pct(csd_retrieval_metrics(a_mu, a_lv, t_mu, t_lv, self.owner))
        result["cosine"] = pct(retrieval_metrics(a_mu, t_mu, self.owner))

        # every distinct caption once: the test captions, both sides of the pairs, the extra captions
        pair_captions = [c for pair in self.hierarchy for c in pair]
        gallery = list(dict.fromkeys(self.captions + pair_captions + self.extra_captions))
        index = {c: i for i, c in enumerate(gallery)}
        g_mu, g_lv = model.embed_text(gallery, return_uncertainty=True)
        if self.hierarchy:
            gen = torch.tensor([index[g] for g, _ in self.hierarchy])
            spec = torch.tensor([index[s] for _, s in self.hierarchy])
            inc = inclusion_pass_rate(g_mu[gen], g_lv[gen], g_mu[spec], g_lv[spec])
            result["inclusion"] = {**inc, "pass_rate": 100.0 * inc["pass_rate"]}
        unc = total_variance(g_lv)
        r = pearson_r([caption_length(c) for c in gallery], unc) if len(gallery) > 1 else float("nan")
        result["length_uncertainty_r"] = r
        result["length_uncertainty_r_text"] = f"{r:.2f}"
        result["n_captions_r"] = len(gallery)
        result["mean_text_uncertainty"] = float(unc.mean())
        result["mean_audio_uncertainty"] = float(total_variance(a_lv).mean())
        for key in ("mean_text_uncertainty", "mean_audio_uncertainty"):  # tables print floats with one decimal
            result[f"{key}_text"] = f"{result[key]:.3g}"

        root = (F.normalize(g_mu.double(), dim=-1).mean(0) if self.root == "mean"
                else model.embed_text([""], return_uncertainty=True)[0][0])
        n = min(self.traversal_clips, len(self.files))
        picks = [round(i * (len(self.files) - 1) / max(1, n - 1)) for i in range(n)] if n > 1 else [0][:n]
        result["traversal"] = [{"audio": str(self.files[i]), "caption": self.clip_captions[i][0],
                                "audio_uncertainty": float(total_variance(a_lv[i:i + 1])[0]),
                                "steps": audio_traversal(a_mu[i], g_mu, g_lv, gallery, root, self.traversal_steps)}
                               for i in picks]
        return result

    def write_artifacts(self, result: dict[str, Any], out_dir: Path, slug: str) -> dict[str, Any]:
        """The traversals as a Markdown file that the report includes (`notes_md`)."""
        kept = super().write_artifacts(result, out_dir, slug)
        if not result.get("traversal"):
            return kept
        name = f"{self.name}__{slug}_traversal.md"
        (Path(out_dir) / name).write_text(traversal_markdown(result["traversal"], self.root))
        return {**kept, "notes_md": name}


def traversal_markdown(traversals: Sequence[Mapping[str, Any]], root: str = "empty") -> str:
    """Markdown: one table per clip, the caption retrieved at each step towards the root."""
    from compclap.eval.report import _table

    target = "the empty caption" if root == "empty" else "the mean of all caption means"
    parts = [f"Audio traversal: from each clip's mean towards {target} (the root); at each step the nearest caption "
             "(cosine of means) and its uncertainty (total variance).", ""]
    for trav in traversals:
        parts += [f"**{Path(trav['audio']).name}**: \"{trav['caption']}\" (audio uncertainty "
                  f"{trav['audio_uncertainty']:.3g})", ""]
        rows = [[f"{s['t']:.2f}", s["caption"], f"{s['cosine']:.3f}", f"{s['uncertainty']:.3g}"] for s in trav["steps"]]
        parts += [_table(["t", "nearest caption", "cosine", "uncertainty"], rows, numeric=False), ""]
    return "\n".join(parts)
