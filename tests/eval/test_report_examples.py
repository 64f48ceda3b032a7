"""Report: CompA example heatmaps (one colour scale, colour bar, readable labels, why these rows), per-class
zero-shot table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from compclap.eval.report import per_class_table, render_report
from compclap.eval.report_compa import choose_compa_examples, plot_compa_examples

LONG = "a very long caption about a dog that barks loudly and then a cat that meows quietly in the rain"
FIELDS = ["row", "caption_0", "caption_1", "file_0", "file_1", "s00", "s01", "s10", "s11", "text", "audio", "group"]


def _rows_csv(path: Path, sims: list[tuple[float, float, float, float]]) -> str:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for i, (s00, s01, s10, s11) in enumerate(sims):
            writer.writerow({"row": i + 1, "caption_0": f"{LONG} {i}", "caption_1": f"the reverse of it {i}",
                             "file_0": f"some/dir/an_extremely_long_audio_file_name_number_{i}_a.wav",
                             "file_1": f"b{i}.wav", "s00": s00, "s01": s01, "s10": s10, "s11": s11,
                             "text": s00 > s10 and s11 > s01, "audio": s00 > s01 and s11 > s10,
                             "group": s00 > s10 and s11 > s01 and s00 > s01 and s11 > s10})
    return path.name


@pytest.fixture()
def payload(tmp_path: Path) -> dict:
    a = _rows_csv(tmp_path / "compa__a.csv", [(0.516783, 0.516787, 0.516785, 0.516784), (0.9, 0.1, 0.2, 0.8),
                                              (0.3, 0.3, 0.3, 0.3), (0.2, 0.5, 0.1, 0.6)])
    b = _rows_csv(tmp_path / "compa__b.csv", [(0.6, 0.1, 0.1, 0.7), (0.9, 0.1, 0.2, 0.8),
                                              (0.1, 0.2, 0.3, 0.4), (0.2, 0.5, 0.1, 0.6)])
    per_class = {"a": {"dog": {"n": 2, "top1": 50.0}, "cat": {"n": 1, "top1": 100.0}},
                 "b": {"dog": {"n": 2, "top1": 0.0}, "cat": {"n": 1, "top1": 0.0}}}
    return {"title": "t", "models": {"a": {"path": "a"}, "b": {"path": "b"}},
            "benchmarks": {"compa": {"kind": "compa", "columns": [("group", "group")], "details": [],
                                     "n_rows": 4, "source": "x.csv"},
                           "zs": {"kind": "zeroshot", "columns": [("top1", "top-1")], "details": [],
                                  "multi_label": False, "source": "labels.csv"}},
            "results": {m: {"compa": {"group": 25.0, "rows_csv": name},
                            "zs": {"top1": 33.3, "per_class": per_class[m]}} for m, name in (("a", a), ("b", b))}}


def test_examples_share_one_colour_scale_with_a_bar_and_readable_labels(tmp_path, payload, monkeypatch):
    import matplotlib.figure

    saved = []
    original = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, *a, **k: (saved.append(self), original(self, *a, **k))[1])
    path = plot_compa_examples(payload, "compa", tmp_path, tmp_path / "ex.png")
    assert path is not None and path.is_file()
    (fig,) = saved
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 3 * 2 and len({im.get_clim() for im in images}) == 1  # 3 rows x 2 models, one scale
    lo, hi = images[0].get_clim()
    assert lo <= 0.1 and hi >= 0.9  # the whole figure's range, not one matrix's
    assert any("colour scale" in ax.get_ylabel() or "one scale" in ax.get_ylabel() for ax in fig.axes)  # colour bar
    heat = [ax for ax in fig.axes if ax.images]
    assert all(ax.get_xlabel() == "audio" for ax in heat)
    assert any(ax.get_ylabel().startswith("caption") for ax in heat)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure was closed after saving: draw it again, as saved
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    for ax in heat:
        for label in ax.get_yticklabels() + ax.get_xticklabels():
            if label.get_text():
                box = label.get_window_extent(renderer)
                assert box.x0 >= -1 and box.x1 <= width + 1 and box.y0 >= -1, label.get_text()
                assert max(len(line) for line in label.get_text().split("\n")) <= 22
                assert label.get_text().count("\n") <= 2
        xs = [label.get_window_extent(renderer) for label in ax.get_xticklabels() if label.get_text()]
        assert len(xs) < 2 or xs[0].x1 <= xs[1].x0  # the two audio names do not overlap
    assert height > 0


def test_row_choice_is_explained_and_report_has_per_class_table(tmp_path, payload):
    examples = choose_compa_examples(payload, "compa", tmp_path)
    assert examples.chosen == [0, 1, 3]  # the row the models disagree on, then rows won most
    assert examples.note.startswith("Rows shown (CSV row ") and "differ" in examples.note and "of 4" in examples.note
    report = render_report(payload, tmp_path).read_text()
    assert examples.note in report and "examples_compa.png" in report
    table = per_class_table(payload, "zs")
    assert table.splitlines()[0] == "| class | clips | a top-1 | b top-1 |"
    assert "| dog | 2 | 50.0 | 0.0 |" in table and "| cat | 1 | 100.0 | 0.0 |" in table
    assert "Per class (top-1 accuracy" in report and table in report


def test_zeroshot_result_has_per_class_scores():
    import torch

    from compclap.eval.zeroshot import ZeroShotData, per_class_scores

    data = ZeroShotData(files=["a", "b", "c"], classes=["dog", "cat"], targets=[[0], [0], [1]], multi_label=False,
                        source="x")
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    assert per_class_scores(scores, data) == {"dog": {"n": 2, "top1": 50.0}, "cat": {"n": 1, "top1": 100.0}}
    multi = ZeroShotData(files=["a", "b", "c"], classes=["dog", "cat"], targets=[[0, 1], [0], [1]], multi_label=True,
                         source="x")
    out = per_class_scores(scores, multi)
    assert out["dog"]["n"] == 2 and out["cat"]["n"] == 2 and 0 < out["dog"]["AP"] <= 100
