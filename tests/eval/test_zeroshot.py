"""Zero-shot classification: metrics against hand-computed cases and torchmetrics, readers, templates."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compclap.eval.zeroshot import (
    ZeroShotData,
    class_embeddings,
    evaluate_zeroshot,
    multilabel_average_precision,
    read_esc50,
    read_label_csv,
    target_ranks,
    topk_accuracy,
)

# --------------------------------------------------------------------------- metrics


def test_topk_hand_cases_ties_lose() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, 0.1], [0.1, 0.3, 0.6]])
    targets = torch.tensor([0, 1, 1])
    # row 1: its class ties with class 0 -> rank 2 (a tie is not a win); row 2: class 2 is above.
    assert target_ranks(scores, targets).tolist() == [1, 2, 2]
    acc = topk_accuracy(scores, targets, ks=(1, 2, 5))
    assert acc == {"top1": pytest.approx(100 / 3), "top2": pytest.approx(100.0)}  # top5 > 3 classes: omitted


def test_topk_rejects_nan_and_bad_targets() -> None:
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        target_ranks(torch.zeros(1, 2), torch.tensor([2]))


def test_average_precision_hand_cases() -> None:
    # class 0: positives at positions 1 and 3 -> (1/1 + 2/3) / 2; class 1: a positive tied with a
    # negative ranks behind it -> 1/2; class 2: no positive -> NaN and left out of the mean.
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.5, 0.2], [0.7, 0.1, 0.3], [0.6, 0.0, 0.4]])
    targets = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
    mean_ap, per_class = multilabel_average_precision(scores, targets)
    assert per_class[0] == pytest.approx((1 + 2 / 3) / 2)
    assert per_class[1] == pytest.approx(0.5)
    assert np.isnan(per_class[2])
    assert mean_ap == pytest.approx(100 * ((1 + 2 / 3) / 2 + 0.5) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_torchmetrics(seed: int) -> None:
    from torchmetrics.functional.classification import multilabel_average_precision as tm_map

    gen = torch.Generator().manual_seed(seed)
    n, c = 40, 7
    scores = torch.rand(n, c, generator=gen) * 2 - 1  # cosine-like, negatives included
    targets = torch.rand(n, c, generator=gen) < 0.3
    targets[0] = True  # every class has a positive
    mean_ap, per_class = multilabel_average_precision(scores, targets)
    # torchmetrics ranks probabilities; sigmoid is monotone, so AP is the same on the raw scores.
    ref_per_class = tm_map(torch.sigmoid(scores * 10), targets.long(), num_labels=c, average="none")
    np.testing.assert_allclose(per_class, ref_per_class.numpy(), rtol=1e-6, atol=1e-6)
    ref = tm_map(torch.sigmoid(scores * 10), targets.long(), num_labels=c, average="macro")
    assert mean_ap == pytest.approx(100 * float(ref), abs=1e-4)


def test_class_embeddings_average_templates() -> None:
    vectors = {"a dog": [1.0, 0.0], "a cat": [0.0, 1.0], "the dog": [3.0, 3.0], "the cat": [2.0, 0.0]}

    def embed_text(texts: list[str]) -> torch.Tensor:
        return torch.tensor([vectors[t] for t in texts])

    out = class_embeddings(embed_text, ["dog", "cat"], ["a {label}", "the {label}"])
    dog = F.normalize(torch.tensor([1.0, 0.0]) + F.normalize(torch.tensor([3.0, 3.0]), dim=0), dim=0)
    torch.testing.assert_close(out[0], dog)
    torch.testing.assert_close(out[1], torch.tensor([0.5, 0.5]).div(0.5**0.5))
    with pytest.raises(ValueError, match=r"\{label\}"):
        class_embeddings(embed_text, ["dog"], ["no placeholder"])
    with pytest.raises(ValueError, match="at least one"):
        class_embeddings(embed_text, ["dog"], [])


# --------------------------------------------------------------------------- readers


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _esc50(root: Path) -> Path:
    rows = [  # 2 folds x 3 classes; targets deliberately not in category order
        ["1-a.wav", "1", "2", "dog", "True", "x", "A"],
        ["1-b.wav", "1", "0", "chirping_birds", "False", "x", "A"],
        ["1-c.wav", "1", "1", "rain", "False", "x", "A"],
        ["2-a.wav", "2", "2", "dog", "True", "x", "A"],
        ["2-b.wav", "2", "0", "chirping_birds", "False", "x", "A"],
        ["2-c.wav", "2", "1", "rain", "False", "x", "A"],
    ]
    _write_csv(root / "meta" / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"],
               rows)
    _touch(root / "audio", *(r[0] for r in rows))
    return root


def test_read_esc50(tmp_path: Path) -> None:
    data = read_esc50(_esc50(tmp_path))
    assert data.classes == ["chirping birds", "rain", "dog"]  # ordered by target, underscores -> spaces
    assert data.targets[:3] == [[2], [0], [1]]
    assert data.folds == ["1", "1", "1", "2", "2", "2"]
    assert data.files[0] == tmp_path / "audio" / "1-a.wav" and not data.multi_label


def test_read_esc50_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an ESC-50 folder"):
        read_esc50(tmp_path)
    root = _esc50(tmp_path / "e")
    (root / "audio" / "2-c.wav").unlink()
    with pytest.raises(FileNotFoundError, match="2-c.wav"):
        read_esc50(root)
    _write_csv(tmp_path / "f" / "meta" / "esc50.csv", ["filename", "fold", "category"], [["a.wav", "1", "dog"]])
    with pytest.raises(ValueError, match=r"lacks columns \['target'\]"):
        read_esc50(tmp_path / "f")


def test_read_label_csv_single_and_multi(tmp_path: Path) -> None:
    _touch(tmp_path / "audio", "a.wav", "b.wav", "c.wav")
    single = _write_csv(tmp_path / "single.csv", ["path", "label"], [["a.wav", "dog"], ["b.wav", "cat"]])
    data = read_label_csv(single, audio_root=tmp_path / "audio")
    assert data.classes == ["cat", "dog"] and data.targets == [[1], [0]] and not data.multi_label
    assert data.folds is None and data.files[0] == tmp_path / "audio" / "a.wav"

    multi = _write_csv(tmp_path / "audio" / "multi.csv", ["path", "labels", "fold"],
                       [["a.wav", "dog; cat", "1"], ["b.wav", "rain", "1"], ["c.wav", "dog;dog", "2"]])
    data = read_label_csv(multi)  # paths relative to the CSV's folder
    assert data.multi_label and data.classes == ["cat", "dog", "rain"]
    assert data.targets == [[1, 0], [2], [1]] and data.folds == ["1", "1", "2"]


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["file_path", "label"], [["a.wav", "dog"]], r"lacks columns: one of \['path'"),
        (["path", "category"], [["a.wav", "dog"]], "'label' \\(single-label\\) or 'labels'"),
        (["path", "labels"], [["a.wav", "dog"], ["b.wav", " ; "]], "line 3: empty label set"),
        (["path", "label"], [["a.wav", "dog"], ["b.wav", ""]], "line 3: empty label set"),
        (["path", "label"], [["a.wav", "dog"], ["b.wav", "dog"]], "at least 2 classes"),
        (["path", "label"], [], "no rows"),
    ],
)
def test_read_label_csv_errors(tmp_path: Path, header: list[str], rows: list[list[str]], message: str) -> None:
    _touch(tmp_path, "a.wav", "b.wav")
    with pytest.raises(ValueError, match=message):
        read_label_csv(_write_csv(tmp_path / "x.csv", header, rows))


def test_read_label_csv_unreadable_and_missing_audio(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read label CSV"):
        read_label_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_label_csv(tmp_path / "empty.csv")
    _touch(tmp_path, "a.wav")
    path = _write_csv(tmp_path / "m.csv", ["path", "label"], [["a.wav", "dog"], ["gone.wav", "cat"]])
    with pytest.raises(FileNotFoundError, match="gone.wav"):
        read_label_csv(path)


# --------------------------------------------------------------------------- evaluation


def _fake(vectors: dict[str, list[float]]):
    def embed_audio(items: list) -> torch.Tensor:
        return F.normalize(torch.tensor([vectors[Path(i).name] for i in items]), dim=1)

    def embed_text(texts: list[str]) -> torch.Tensor:
        return F.normalize(torch.tensor([vectors[t] for t in texts]), dim=1)

    return embed_audio, embed_text


def test_evaluate_esc50_per_fold(tmp_path: Path) -> None:
    data = read_esc50(_esc50(tmp_path))
    prompts = {"This is a sound of chirping birds.": [1.0, 0, 0], "This is a sound of rain.": [0, 1.0, 0],
               "This is a sound of dog.": [0, 0, 1.0]}
    clips = {  # fold 1 all right; fold 2: one right, one wrong, one tied (a tie is a miss)
        "1-a.wav": [0, 0, 1.0], "1-b.wav": [1.0, 0, 0], "1-c.wav": [0, 1.0, 0.1],
        "2-a.wav": [0, 0, 1.0], "2-b.wav": [0, 1.0, 0], "2-c.wav": [0, 1.0, 1.0],
    }
    embed_audio, embed_text = _fake({**prompts, **clips})
    result = evaluate_zeroshot(data, embed_audio, embed_text)
    assert result["folds"]["1"]["top1"] == pytest.approx(100.0)
    assert result["folds"]["2"]["top1"] == pytest.approx(100 / 3)
    assert result["top1"] == pytest.approx((100 + 100 / 3) / 2)
    assert result["pooled_top1"] == pytest.approx(400 / 6)
    assert "top5" not in result and result["n_classes"] == 3 and result["n_clips"] == 6
    rows = {Path(r["file"]).name: r for r in result["rows"]}
    assert rows["2-c.wav"]["rank"] == 2 and rows["2-c.wav"]["correct"] is False
    assert rows["2-b.wav"]["predicted"] == "rain" and rows["2-b.wav"]["labels"] == "chirping birds"


def test_evaluate_multilabel(tmp_path: Path) -> None:
    files = [tmp_path / f"{i}.wav" for i in range(3)]
    data = ZeroShotData(files=files, classes=["a", "b"], targets=[[0], [0, 1], [1]], multi_label=True)
    vectors = {"s a": [1.0, 0.0], "s b": [0.0, 1.0], "0.wav": [1.0, 0.1], "1.wav": [1.0, 1.0], "2.wav": [0.2, 1.0]}
    embed_audio, embed_text = _fake(vectors)
    result = evaluate_zeroshot(data, embed_audio, embed_text, templates=["s {label}"])
    assert result["mAP"] == pytest.approx(100.0) and result["n_classes_scored"] == 2
    assert result["multi_label"] and result["folds"] is None and "top1" not in result
