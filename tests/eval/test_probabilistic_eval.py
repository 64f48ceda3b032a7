"""ProLAP evaluation: CSD retrieval against brute force, inclusion pass rate, Pearson r, traversal, benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compclap.eval.probabilistic import (
    ProbabilisticBenchmark,
    audio_traversal,
    csd_retrieval_metrics,
    hierarchy_pairs,
    inclusion_pass_rate,
    pearson_r,
)
from conftest import make_tiny_model, write_tiny_manifest


def _gaussians(n, dim, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=-1), torch.rand(n, dim, generator=g) * 4 - 5


def test_csd_retrieval_ranks_by_the_closed_form_sampled_distance():
    a, va = _gaussians(7, 5, 0)
    t, vt = _gaussians(12, 5, 1)
    owner = torch.tensor([0, 0, 1, 2, 2, 3, 4, 5, 5, 6, 6, 1])
    got = csd_retrieval_metrics(a, va, t, vt, owner)
    csd = torch.tensor([[float((a[i] - t[j]).pow(2).sum() + (va[i].exp() + vt[j].exp()).sum())
                         for j in range(12)] for i in range(7)], dtype=torch.float64)
    # t2a: rank of the own clip among all clips by CSD (smaller is better; ties rank ahead)
    ranks = [int((csd[:, j] <= csd[owner[j], j]).sum()) for j in range(12)]
    for k in (1, 5):
        assert got[f"t2a_R@{k}"] == pytest.approx(np.mean([r <= k for r in ranks]))
    # a2t: best rank of any own caption, counting only other clips' captions ahead of it
    best = []
    for i in range(7):
        own = [j for j in range(12) if owner[j] == i]
        top = min(csd[i, j] for j in own)
        best.append(1 + sum(1 for j in range(12) if owner[j] != i and csd[i, j] <= top))
    assert got["a2t_R@1"] == pytest.approx(np.mean([b <= 1 for b in best]))
    assert got["a2t_medR"] == pytest.approx(float(np.median(best)))


def test_inclusion_pass_rate_and_pearson():
    mu = F.normalize(torch.randn(4, 6), dim=-1)
    wide, narrow = torch.full((4, 6), -1.0), torch.full((4, 6), -4.0)
    assert inclusion_pass_rate(mu, wide, mu, narrow)["pass_rate"] == 1.0
    assert inclusion_pass_rate(mu, narrow, mu, wide)["pass_rate"] == 0.0
    x, y = [1, 2, 3, 4, 7], [2.0, 1.0, 4.0, 3.0, 9.0]
    assert pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert np.isnan(pearson_r([1, 1, 1], [1, 2, 3]))


def test_hierarchy_pairs_from_composed_records():
    records = [{"audio": "a", "captions": ["A buzz then a beep"],
                "positives": ["A buzz then a beep", "A buzz", "A beep"]},
               {"audio": "b", "captions": ["A hum"]},
               {"audio": "c", "captions": ["A beep over a hum"], "positives": ["A beep over a hum", "A beep"]},
               {"audio": "d", "captions": ["A buzz then a beep"], "positives": ["A buzz then a beep", "A buzz"]}]
    assert hierarchy_pairs(records) == [("A buzz", "A buzz then a beep"), ("A beep", "A buzz then a beep"),
                                        ("A beep", "A beep over a hum")]


def test_audio_traversal_goes_from_the_clip_to_the_root():
    gallery = ["specific", "middle", "general"]
    means = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), dim=-1)
    logvar = torch.log(torch.tensor([[0.1] * 3, [0.5] * 3, [1.0] * 3]))
    steps = audio_traversal(torch.tensor([1.0, 0.0, 0.1]), means, logvar, gallery, torch.tensor([0.0, 1.0, 0.0]), 4)
    assert [s["t"] for s in steps] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [s["caption"] for s in steps] == ["specific", "specific", "middle", "general", "general"]
    assert steps[-1]["uncertainty"] == pytest.approx(3.0)


def test_benchmark_in_the_suite_reports_prolap_rows_and_traversals(tokenizer_dir, tmp_path):
    from compclap.eval.runner import ModelSpec, RetrievalBenchmark, run_suite

    manifest = write_tiny_manifest(tmp_path, "test", 6)
    composed = tmp_path / "composed.jsonl"
    composed.write_text("".join(json.dumps(r) + "\n" for r in [
        {"audio": "x.wav", "captions": ["a high beep followed by a soft hum"],
         "positives": ["a high beep followed by a soft hum", "a high beep", "a soft hum"]},
        {"audio": "y.wav", "captions": ["a dog barks while a man speaks"],
         "positives": ["a dog barks while a man speaks", "a dog barks"]}]))
    bench = ProbabilisticBenchmark.from_manifests(manifest, composed, name="prolap", extra_captions=["a beep"],
                                                  traversal_clips=2, traversal_steps=3)
    assert len(bench.hierarchy) == 3
    torch.manual_seed(0)
    prob = make_tiny_model(tokenizer_dir, uncertainty=True).eval()
    with torch.no_grad():
        prob.text_logvar_head.weight.normal_(0, 0.5)
    det = make_tiny_model(tokenizer_dir).eval()
    payload = run_suite([ModelSpec("det", model=det), ModelSpec("prolap", model=prob)],
                        [RetrievalBenchmark.from_manifest(manifest), bench], tmp_path / "report", cache_dir=None,
                        progress=False, plots=False, log=None)
    assert payload["results"]["det"]["prolap"] == {"applicable": False}
    res = payload["results"]["prolap"]["prolap"]
    assert res["inclusion"]["n_pairs"] == 3 and 0.0 <= res["inclusion"]["pass_rate"] <= 100.0
    assert -1.0 <= res["length_uncertainty_r"] <= 1.0 and res["n_captions_r"] == 12 + 3 + 1
    # cosine retrieval of the means inside the benchmark equals the standard retrieval benchmark
    for key in ("t2a_R@1", "a2t_mAP@10"):
        assert res["cosine"][key] == pytest.approx(payload["results"]["prolap"]["retrieval"][key])
    assert len(res["traversal"]) == 2 and len(res["traversal"][0]["steps"]) == 4
    report = (tmp_path / "report" / "report.md").read_text()
    assert "### prolap: prolap" in report and "nearest caption" in report and "ProLAP metrics" in report
    summary = report.split("## Summary")[1].split("##")[0]
    assert "prolap CSD t2a R@1" in summary and "prolap len/unc r" in summary
