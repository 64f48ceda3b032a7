"""Retrieval metrics: hand-computed cases (ties included), torchmetrics parity, chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP, RetrievalRecall

from compclap.eval import retrieval
from compclap.eval.retrieval import retrieval_metrics


def _exact(sim_text_audio: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings whose dot products are exactly the given (T, A) table (audio = one-hot rows)."""
    table = torch.tensor(sim_text_audio, dtype=torch.float32)
    return torch.eye(table.shape[1]), table


def test_hand_computed_with_ties() -> None:
    audio, text = _exact(
        [
            [0.9, 0.1, 0.2],  # clip 0: rank 1
            [0.5, 0.5, 0.1],  # clip 0, tied with clip 1 -> rank 2
            [0.3, 0.4, 0.7],  # clip 1: rank 2
            [0.2, 0.8, 0.8],  # clip 1, tied with clip 2 -> rank 2
            [0.1, 0.2, 0.7],  # clip 2: rank 1
        ]
    )
    owner = torch.tensor([0, 0, 1, 1, 2])
    m = retrieval_metrics(audio, text, owner, ks=(1, 2, 3), map_k=2)
    # t2a ranks [1, 2, 2, 2, 1]
    assert m["t2a_R@1"] == pytest.approx(0.4)
    assert m["t2a_R@2"] == pytest.approx(1.0)
    assert m["t2a_mAP@2"] == pytest.approx((1 + 0.5 + 0.5 + 0.5 + 1) / 5)
    assert m["t2a_medR"] == 2.0
    # a2t, clip 0: captions [.9 .5 | .3 .2 .1] -> positions 1, 2; best rank 1; AP@2 = 1.
    # clip 1: [.1 .2 | .5 .4 .8] relevant .8 (pos 1) and .4 (pos 3, behind .5); AP@2 = 1 (hits only).
    # clip 2: [.2 .1 .7 .8 | .7] the .7 tie goes to the non-relevant caption -> rank 3; AP@2 = 0.
    assert m["a2t_R@1"] == pytest.approx(2 / 3)
    assert m["a2t_R@2"] == pytest.approx(2 / 3)
    assert m["a2t_R@3"] == pytest.approx(1.0)
    assert m["a2t_mAP@2"] == pytest.approx(2 / 3)
    assert m["a2t_medR"] == 1.0
    m3 = retrieval_metrics(audio, text, owner, ks=(1,), map_k=3)
    assert m3["a2t_mAP@3"] == pytest.approx((1 + (1 + 2 / 3) / 2 + 1 / 3) / 3)
    assert m3["t2a_mAP@3"] == pytest.approx(0.7)


def test_key_names_and_types() -> None:
    audio, text = _exact([[1.0, 0.0], [0.0, 1.0]])
    m = retrieval_metrics(audio, text, torch.tensor([0, 1]))
    assert list(m) == [
        "a2t_R@1", "a2t_R@5", "a2t_R@10", "a2t_mAP@10", "a2t_medR",
        "t2a_R@1", "t2a_R@5", "t2a_R@10", "t2a_mAP@10", "t2a_medR",
    ]  # fmt: skip
    assert all(isinstance(v, float) for v in m.values())
    assert m["a2t_R@1"] == m["t2a_R@1"] == m["a2t_mAP@10"] == 1.0


def test_all_tied_is_worst_rank() -> None:
    # Every similarity equal: a tie is never a win, so each query ranks last.
    audio, text = _exact([[0.5, 0.5, 0.5]] * 3)
    m = retrieval_metrics(audio, text, torch.tensor([0, 1, 2]), ks=(1, 2, 3), map_k=3)
    assert m["t2a_R@1"] == m["t2a_R@2"] == 0.0 and m["t2a_R@3"] == 1.0
    assert m["t2a_medR"] == 3.0 and m["a2t_medR"] == 3.0
    assert m["t2a_mAP@3"] == pytest.approx(1 / 3) and m["a2t_mAP@3"] == pytest.approx(1 / 3)


def test_tie_among_relevant_captions_does_not_hurt() -> None:
    # Clip 0's two captions tie with each other: best rank stays 1, AP stays 1.
    audio, text = _exact([[0.5, 0.1], [0.5, 0.2], [0.1, 0.3]])
    m = retrieval_metrics(audio, text, torch.tensor([0, 0, 1]), ks=(1,), map_k=10)
    assert m["a2t_R@1"] == 1.0 and m["a2t_mAP@10"] == 1.0
    # ... but a non-relevant caption tied with them goes first: positions 2 and 3.
    audio, text = _exact([[0.5, 0.1], [0.5, 0.2], [0.5, 0.3]])
    m = retrieval_metrics(audio, text, torch.tensor([0, 0, 1]), ks=(1,), map_k=10)
    assert m["a2t_R@1"] == 0.5  # clip 1's only caption wins outright (0.3 is its best)
    assert m["a2t_mAP@10"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1.0) / 2)


def _random_case(seed: int, n_audio: int, n_text: int, dim: int = 6, empty: int = 0):
    g = torch.Generator().manual_seed(seed)
    # Non-negative vectors keep every similarity > 0: torchmetrics ignores targets whose score <= 0.
    audio = torch.nn.functional.normalize(torch.rand(n_audio, dim, generator=g), dim=1)
    text = torch.nn.functional.normalize(torch.rand(n_text, dim, generator=g), dim=1)
    owner = torch.randint(0, n_audio - empty, (n_text,), generator=g)
    return audio, text, owner


def _torchmetrics_reference(audio, text, owner, ks, map_k) -> dict[str, float]:
    sims = audio @ text.T  # (A, T)
    target = owner[None, :] == torch.arange(audio.shape[0])[:, None]
    out = {}
    for prefix, preds, tgt in (("a2t", sims, target), ("t2a", sims.T, target.T)):
        index = torch.arange(preds.shape[0])[:, None].expand_as(preds).flatten()
        p, t = preds.flatten(), tgt.flatten()
        for k in ks:
            # a2t: a hit on any caption (hit rate); t2a has one relevant item, so both agree.
            out[f"{prefix}_R@{k}"] = RetrievalHitRate(top_k=k, empty_target_action="skip")(p, t, index).item()
            if prefix == "t2a":
                recall = RetrievalRecall(top_k=k, empty_target_action="skip")(p, t, index).item()
                assert recall == pytest.approx(out[f"{prefix}_R@{k}"])
        out[f"{prefix}_mAP@{map_k}"] = RetrievalMAP(top_k=map_k, empty_target_action="skip")(p, t, index).item()
    return out


def _brute_force_medr(audio, text, owner) -> tuple[float, float]:
    sims = (audio @ text.T).numpy()
    own = owner.numpy()
    t2a = [(sims[:, t] >= sims[own[t], t]).sum() for t in range(sims.shape[1])]
    a2t = []
    for a in range(sims.shape[0]):
        rel = own == a
        if rel.any():
            best = sims[a, rel].max()
            a2t.append(1 + (sims[a, ~rel] >= best).sum())
    return float(np.median(a2t)), float(np.median(t2a))


@pytest.mark.parametrize("seed", range(4))
def test_matches_torchmetrics(seed: int) -> None:
    audio, text, owner = _random_case(seed, n_audio=17, n_text=60, empty=2)
    ks, map_k = (1, 3, 5), 5
    ours = retrieval_metrics(audio, text, owner, ks=ks, map_k=map_k, chunk_size=4)
    ref = _torchmetrics_reference(audio, text, owner, ks, map_k)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key
    a2t_medr, t2a_medr = _brute_force_medr(audio, text, owner)
    assert ours["a2t_medR"] == a2t_medr and ours["t2a_medR"] == t2a_medr


def test_one_caption_per_clip_a2t_recall_is_torchmetrics_recall() -> None:
    audio, text, _ = _random_case(7, n_audio=20, n_text=20)
    owner = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    ours = retrieval_metrics(audio, text, owner, ks=(1, 5))
    sims = audio @ text.T
    target = owner[None, :] == torch.arange(20)[:, None]
    index = torch.arange(20)[:, None].expand(20, 20).flatten()
    for k in (1, 5):
        ref = RetrievalRecall(top_k=k)(sims.flatten(), target.flatten(), index).item()
        assert ours[f"a2t_R@{k}"] == pytest.approx(ref, abs=1e-6)


def test_negative_similarities_still_count_as_relevant() -> None:
    audio, text = _exact([[-0.2, -0.5], [-0.9, -0.1]])
    m = retrieval_metrics(audio, text, torch.tensor([0, 1]), ks=(1,))
    assert m["t2a_R@1"] == 1.0 and m["a2t_R@1"] == 1.0


def test_chunked_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(3)
    audio = torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=1)
    text = torch.nn.functional.normalize(torch.randn(150, 8, generator=g), dim=1)
    owner = torch.randint(0, 38, (150,), generator=g)
    full = retrieval_metrics(audio, text, owner, chunk_size=10_000)
    for chunk in (1, 3, 16):
        assert retrieval_metrics(audio, text, owner, chunk_size=chunk) == full
    # The memory caps (rows per block, columns per counting slice) must not change anything.
    monkeypatch.setattr(retrieval, "_MAX_BLOCK_ELEMENTS", 100)
    monkeypatch.setattr(retrieval, "_COUNT_SLICE_ELEMENTS", 7)
    assert retrieval_metrics(audio, text, owner, chunk_size=10_000) == full


def test_float64_and_more_items_than_k() -> None:
    audio, text, owner = _random_case(5, n_audio=4, n_text=6)
    m32 = retrieval_metrics(audio, text, owner, ks=(1, 10), map_k=10)
    m64 = retrieval_metrics(audio.double(), text.double(), owner, ks=(1, 10), map_k=10)
    assert m32 == m64
    assert m32["a2t_R@10"] == 1.0 and m32["t2a_R@10"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text_to_audio": torch.tensor([0, 5])}, "must lie in"),
        ({"text_to_audio": torch.tensor([0])}, "one entry per caption"),
        ({"text_to_audio": torch.tensor([0.0, 1.0])}, "integer tensor"),
        ({"text_embeds": torch.ones(2, 3)}, "embedding sizes differ"),
        ({"text_embeds": torch.full((2, 4), math.nan)}, "NaN"),
        ({"ks": (0,)}, "ks must be"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_input_errors(kwargs: dict, message: str) -> None:
    args = {
        "audio_embeds": torch.eye(4)[:3],
        "text_embeds": torch.eye(4)[:2],
        "text_to_audio": torch.tensor([0, 1]),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(**args)
