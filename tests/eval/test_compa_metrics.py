"""CompA scoring: 2-way and 3-way scores (ties lose), bootstrap CI, CSV parsing, evaluation."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compclap.eval.compa import (
    CompaRow,
    bootstrap_ci,
    compa_scores,
    compa_scores_nway,
    compa_separation,
    evaluate_compa,
    read_compa_csv,
    write_rows_csv,
)

# --------------------------------------------------------------------------- scores


def test_compa_scores_hand_cases() -> None:
    # rows: all correct | text only | audio only | tie on s00 vs s10 | tie on s00 vs s01
    s00 = [0.9, 0.6, 0.6, 0.5, 0.5]
    s01 = [0.1, 0.7, 0.2, 0.1, 0.5]
    s10 = [0.2, 0.1, 0.7, 0.5, 0.1]
    s11 = [0.8, 0.8, 0.8, 0.9, 0.9]
    out = compa_scores(s00, s01, s10, s11)
    assert out["text_rows"].tolist() == [True, True, False, False, True]
    assert out["audio_rows"].tolist() == [True, False, True, True, False]
    assert out["group_rows"].tolist() == [True, False, False, False, False]
    assert out["text"] == pytest.approx(60.0)
    assert out["audio"] == pytest.approx(60.0)
    assert out["group"] == pytest.approx(20.0)


def test_compa_scores_nan_never_wins() -> None:
    out = compa_scores([math.nan], [0.0], [0.0], [1.0])
    assert not out["text_rows"][0] and not out["audio_rows"][0]


def test_two_way_equals_nway() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=(50, 2, 2)).round(1)  # rounding creates ties
    a = compa_scores(s[:, 0, 0], s[:, 0, 1], s[:, 1, 0], s[:, 1, 1])
    b = compa_scores_nway(torch.tensor(s))
    for key in ("text", "audio", "group"):
        assert a[key] == b[key]
        assert (a[f"{key}_rows"] == b[f"{key}_rows"]).all()


def test_three_way() -> None:
    S = torch.tensor(
        [
            # diagonal dominant in rows and columns: all scores
            [[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.1, 0.7]],
            # column 2: caption 0 beats caption 2 on audio 2 -> text fails; rows fine -> audio ok
            [[0.95, 0.1, 0.9], [0.1, 0.8, 0.3], [0.2, 0.1, 0.85]],
            # tie in row 1 (caption 1: audio 1 vs audio 2) -> audio fails; columns fine
            [[0.9, 0.1, 0.2], [0.1, 0.5, 0.5], [0.2, 0.1, 0.7]],
        ]
    )
    out = compa_scores_nway(S)
    assert out["text_rows"].tolist() == [True, False, True]
    assert out["audio_rows"].tolist() == [True, True, False]
    assert out["group_rows"].tolist() == [True, False, False]
    assert out["group"] == pytest.approx(100 / 3)


def test_nway_shape_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        compa_scores_nway(torch.zeros(3, 2, 3))


def test_bootstrap_ci() -> None:
    values = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1])
    lo, hi = bootstrap_ci(values, n_boot=500, seed=1)
    assert 0.0 <= lo <= 70.0 <= hi <= 100.0
    assert (lo, hi) == bootstrap_ci(values, n_boot=500, seed=1)
    assert bootstrap_ci(np.ones(20)) == (100.0, 100.0)
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([])))


# --------------------------------------------------------------------------- CSV


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"RIFF")


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


ORDER_HEADER = [
    "pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file", "triplet_caption", "triplet_file",
]  # fmt: skip


def test_read_order_csv_with_triplets(tmp_path: Path) -> None:
    _touch(tmp_path, "a.wav", "a_rev.wav", "b.wav", "b_rev.wav", "b_trip.wav")
    path = _write(
        tmp_path / "order.csv",
        ORDER_HEADER,
        [
            ["dog then cat", "cat then dog", "a.wav", "a_rev.wav", "-", "-"],
            ["car then horn", "horn then car", "b.wav", "b_rev.wav", "car and horn", "b_trip.wav"],
            ["x then y", "y then x", "a.wav", "b.wav", "", ""],
        ],
    )
    rows = read_compa_csv(path)
    assert len(rows) == 3
    assert rows[0] == CompaRow(["dog then cat", "cat then dog"], [tmp_path / "a.wav", tmp_path / "a_rev.wav"])
    assert rows[1].triplet_caption == "car and horn" and rows[1].triplet_file == tmp_path / "b_trip.wav"
    assert rows[2].triplet_caption is None and rows[2].triplet_file is None


def test_read_csv_without_triplet_columns_and_audio_root(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    _touch(audio, "a.wav", "sub/b.wav")
    absolute = tmp_path / "elsewhere.wav"
    _touch(tmp_path, "elsewhere.wav")
    path = _write(
        tmp_path / "c.csv",
        ORDER_HEADER[:4],
        [["p", "r", "a.wav", "sub/b.wav"], ["p2", "r2", str(absolute), "a.wav"]],
    )
    rows = read_compa_csv(path, audio_root=audio)
    assert rows[0].files == [audio / "a.wav", audio / "sub" / "b.wav"]
    assert rows[1].files == [absolute, audio / "a.wav"]


@pytest.mark.parametrize("literal_suffix", [True, False])
def test_read_attribute_csv_prefers_dot1_columns(tmp_path: Path, literal_suffix: bool) -> None:
    # Released attribute CSVs repeat the file columns (pandas reads the repeats as `.1`); the
    # first pair holds YouTube ids that are not on disk, the second the local names.
    _touch(tmp_path, "loud_dog.wav", "loud_cat.wav")
    second = ["pair_file.1", "reversed_pair_file.1"] if literal_suffix else ["pair_file", "reversed_pair_file"]
    header = [*ORDER_HEADER[:4], *second, "triplet_caption", "triplet_file"]
    path = _write(
        tmp_path / "attr.csv",
        header,
        [
            [
                "a loud dog and a quiet cat", "a quiet dog and a loud cat",
                "YT1", "YT2", "loud_dog.wav", "loud_cat.wav", "-", "-",
            ]
        ],  # fmt: skip
    )
    (row,) = read_compa_csv(path)
    assert row.files == [tmp_path / "loud_dog.wav", tmp_path / "loud_cat.wav"]
    assert row.triplet_file is None


def test_missing_audio_file_names_file_and_row(tmp_path: Path) -> None:
    _touch(tmp_path, "a.wav", "a_rev.wav", "b.wav")
    path = _write(
        tmp_path / "order.csv",
        ORDER_HEADER,
        [["p", "r", "a.wav", "a_rev.wav", "-", "-"], ["p", "r", "b.wav", "b_rev.wav", "-", "-"]],
    )
    with pytest.raises(FileNotFoundError, match=r"row 2 \(line 3\).*b_rev\.wav"):
        read_compa_csv(path)


def test_missing_columns_error_lists_found_and_required(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", ["pair_caption", "pair_file", "other"], [["p", "a.wav", "x"]])
    with pytest.raises(ValueError) as info:
        read_compa_csv(path)
    message = str(info.value)
    assert "['reversed_pair_caption', 'reversed_pair_file']" in message
    assert "found columns ['pair_caption', 'pair_file', 'other']" in message
    assert "required ['pair_caption', 'reversed_pair_caption', 'pair_file', 'reversed_pair_file']" in message


def test_unreadable_and_half_triplet_csv(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read CompA CSV"):
        read_compa_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_compa_csv(tmp_path / "empty.csv")
    _touch(tmp_path, "a.wav", "b.wav")
    path = _write(tmp_path / "half.csv", ORDER_HEADER, [["p", "r", "a.wav", "b.wav", "third", "-"]])
    with pytest.raises(ValueError, match="row 1.*triplet"):
        read_compa_csv(path)


# --------------------------------------------------------------------------- evaluation


def _fake_embedders(vectors: dict[str, list[float]]):
    calls: dict[str, list] = {"audio": [], "text": []}

    def embed(kind: str, items: list) -> torch.Tensor:
        calls[kind].extend(items)
        rows = torch.tensor([vectors[Path(str(i)).name if kind == "audio" else i] for i in items])
        return torch.nn.functional.normalize(rows, dim=1)

    return (lambda items: embed("audio", items)), (lambda items: embed("text", items)), calls


def test_evaluate_compa_and_rows_csv(tmp_path: Path) -> None:
    f = tmp_path
    rows = [
        # right on both sides
        CompaRow(["A", "B"], [f / "a.wav", f / "b.wav"]),
        # captions swapped relative to the audio: every score fails
        CompaRow(["B", "A"], [f / "a.wav", f / "b.wav"]),
        # right, plus a triplet that is also right
        CompaRow(["A", "B"], [f / "a.wav", f / "b.wav"], triplet_caption="C", triplet_file=f / "c.wav"),
    ]
    vectors = {
        "a.wav": [1.0, 0.0, 0.0], "b.wav": [0.0, 1.0, 0.0], "c.wav": [0.0, 0.0, 1.0],
        "A": [1.0, 0.1, 0.0], "B": [0.1, 1.0, 0.0], "C": [0.0, 0.1, 1.0],
    }  # fmt: skip
    embed_audio, embed_text, calls = _fake_embedders(vectors)
    result = evaluate_compa(rows, embed_audio, embed_text, n_boot=200, seed=0, batch_size=2)
    assert sorted(Path(p).name for p in calls["audio"]) == ["a.wav", "b.wav", "c.wav"]
    assert sorted(calls["text"]) == ["A", "B", "C"]
    assert result["n_rows"] == 3
    for key in ("text", "audio", "group"):
        assert result[key] == pytest.approx(200 / 3)
        lo, hi = result[f"{key}_ci"]
        assert lo <= result[key] <= hi
    assert result["triplet"]["n_rows"] == 1 and result["triplet"]["group"] == 100.0
    first = result["rows"][0]
    assert first["s00"] > first["s10"] and first["text"] and first["triplet_group"] is None
    assert result["rows"][1]["group"] is False
    assert result["rows"][2]["triplet_text"] is True

    out = tmp_path / "rows.csv"
    write_rows_csv(result, out)
    with out.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3
    assert table[1]["caption_0"] == "B" and table[1]["group"] == "False"
    assert table[0]["triplet_caption"] == "" and table[2]["triplet_file"].endswith("c.wav")


def test_evaluate_compa_no_triplets_and_errors(tmp_path: Path) -> None:
    vectors = {"a.wav": [1.0, 0.0], "b.wav": [0.0, 1.0], "A": [1.0, 0.0], "B": [0.0, 1.0]}
    embed_audio, embed_text, _ = _fake_embedders(vectors)
    row = CompaRow(["A", "B"], [tmp_path / "a.wav", tmp_path / "b.wav"])
    result = evaluate_compa([row], embed_audio, embed_text, n_boot=10)
    assert result["triplet"] is None and result["group"] == 100.0
    with pytest.raises(ValueError, match="no CompA rows"):
        evaluate_compa([], embed_audio, embed_text)
    with pytest.raises(ValueError, match=r"expected \(N, D\)"):
        evaluate_compa([row], lambda items: torch.zeros(1, 2), embed_text)


def test_compa_scores_accepts_tensors() -> None:
    out = compa_scores(torch.tensor([0.9]), torch.tensor([0.1]), torch.tensor([0.2]), torch.tensor([0.8]))
    assert out["group"] == 100.0 and out["group_rows"].dtype == bool


def test_separation_margin_and_cosines_by_hand(tmp_path: Path) -> None:
    f = tmp_path
    rows = [CompaRow(["T1", "T2"], [f / "a1.wav", f / "a2.wav"]), CompaRow(["C", "D"], [f / "c.wav", f / "d.wav"])]
    vectors = {
        "a1.wav": [1.0, 0.0], "a2.wav": [0.6, 0.8], "T1": [0.8, 0.6], "T2": [0.0, 1.0],
        "c.wav": [0.0, 1.0], "d.wav": [1.0, 0.0], "C": [0.0, 1.0], "D": [1.0, 0.0],
    }  # fmt: skip
    embed_audio, embed_text, _ = _fake_embedders(vectors)
    result = evaluate_compa(rows, embed_audio, embed_text, n_boot=50)
    # Row 1: S = [[t1.a1, t1.a2], [t2.a1, t2.a2]] = [[0.8, 0.96], [0.0, 0.8]]
    #   margin = (0.8 + 0.8 - 0.96 - 0.0) / 2 = 0.32; cos(a1, a2) = 0.6; cos(t1, t2) = 0.6; every score lost.
    # Row 2: S = identity: margin 1, both cosines 0, every score won.
    first, second = result["rows"]
    assert first["margin"] == pytest.approx(0.32) and second["margin"] == pytest.approx(1.0)
    assert first["audio_cos"] == pytest.approx(0.6) and first["text_cos"] == pytest.approx(0.6)
    assert second["audio_cos"] == pytest.approx(0.0, abs=1e-7) and second["text_cos"] == pytest.approx(0.0, abs=1e-7)
    assert result["margin"] == pytest.approx(0.66)
    assert result["audio_cos"] == pytest.approx(0.3) and result["text_cos"] == pytest.approx(0.3)
    # The Winoground scores are what they were before the diagnostics existed.
    assert not first["text"] and not first["audio"] and second["group"]
    assert (result["text"], result["audio"], result["group"]) == (50.0, 50.0, 50.0)


def test_separation_is_zero_margin_for_a_text_tower_blind_to_order() -> None:
    same_text = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    audio = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    sims = same_text @ audio.transpose(1, 2)
    out = compa_separation(sims, audio, same_text)
    assert out["margin"][0] == pytest.approx(0.0) and out["text_cos"][0] == pytest.approx(1.0)
    assert out["audio_cos"][0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"\(R, 2, 2\)"):
        compa_separation(torch.zeros(1, 3, 3), audio, same_text)
