"""Linear / MLP probes: separable data, XOR, the fold protocol on an ESC-50 layout, multi-label mAP, the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from compclap.data.labelled import (LabelledData, carve_validation, classifier_split, protocol_splits, read_labelled,
                                    write_labels_from_jsonl)
from compclap.eval.probe import ProbeBenchmark, ProbeConfig, classification_score, fit_probe

SR = 8000
FAST = ProbeConfig(hidden_dim=64, max_epochs=200, patience=30)


class FakeEmbedder:
    """Embeddings looked up by file name (audio) and fixed random vectors (text)."""

    def __init__(self, table: dict[str, torch.Tensor], name: str = "fake") -> None:
        """table: file name -> embedding."""
        self.table, self.name = table, name
        self.audio_calls = 0

    def embed_audio(self, items):
        """Rows of the table, in order."""
        self.audio_calls += 1
        return torch.stack([self.table[Path(i).name] for i in items])

    def embed_text(self, texts):
        """A deterministic vector per text."""
        dim = next(iter(self.table.values())).shape[0]
        return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(
            int(hashlib.sha1(t.encode()).hexdigest()[:8], 16))) for t in texts])


def _clusters(n: int, n_classes: int, dim: int, seed: int, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.arange(n) % n_classes
    return centers[y] + noise * torch.randn(n, dim, generator=g), y


def _xor(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()


# ------------------------------------------------------------------------------------------- heads


def test_linear_probe_separates_separable_classes_perfectly() -> None:
    tx, ty = _clusters(200, 5, 16, 0)
    vx, vy = _clusters(40, 5, 16, 1)
    sx, sy = _clusters(100, 5, 16, 2)
    fitted = fit_probe(tx, ty, vx, vy, "linear", 5, config=FAST)
    assert classification_score(fitted.head(sx).detach(), sy, False) == 100.0
    again = fit_probe(tx, ty, vx, vy, "linear", 5, config=FAST)  # seeded: the same head twice
    assert all(torch.equal(a, b) for a, b in zip(fitted.head.state_dict().values(), again.head.state_dict().values()))


def test_mlp_beats_linear_on_xor() -> None:
    (tx, ty), (vx, vy), (sx, sy) = _xor(400, 0), _xor(100, 1), _xor(300, 2)
    linear = classification_score(fit_probe(tx, ty, vx, vy, "linear", 2, config=FAST).head(sx).detach(), sy, False)
    mlp = classification_score(fit_probe(tx, ty, vx, vy, "mlp", 2, config=FAST).head(sx).detach(), sy, False)
    assert linear < 75.0 and mlp > 90.0, (linear, mlp)


def test_early_stopping_keeps_the_best_validation_epoch() -> None:
    tx, ty = _clusters(60, 3, 8, 0, noise=2.0)
    vx, vy = _clusters(30, 3, 8, 1, noise=2.0)
    fitted = fit_probe(tx, ty, vx, vy, "mlp", 3, config=ProbeConfig(hidden_dim=64, max_epochs=400, patience=5))
    assert fitted.epochs < 400 and fitted.best_epoch == fitted.epochs - 5


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_map_matches_torchmetrics(seed: int) -> None:
    from torchmetrics.classification import MultilabelAveragePrecision

    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(60, 6, generator=g)
    targets = (torch.rand(60, 6, generator=g) < 0.3).long()
    targets[0] = 1  # every class has a positive
    expected = MultilabelAveragePrecision(num_labels=6, average="macro")(scores, targets)
    assert classification_score(scores, targets, True) == pytest.approx(float(expected) * 100, abs=1e-4)


# ------------------------------------------------------------------------------------------- protocol


def _tone(path: Path, freq: float, seconds: float = 0.25) -> None:
    t = np.arange(int(SR * seconds)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)


@pytest.fixture()
def esc50(tmp_path) -> Path:
    """A tiny ESC-50 layout: 3 classes x 3 folds x 4 clips."""
    root = tmp_path / "ESC-50"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    for fold in (1, 2, 3):
        for target, category in enumerate(["dog", "rain", "church_bells"]):
            for k in range(4):
                name = f"{fold}-{target}{k}-A-{target}.wav"
                _tone(root / "audio" / name, 200.0 * (target + 1) + 10 * k)
                rows.append([name, fold, target, category, "False", "src", "A"])
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


def test_folds_train_on_the_others_and_test_on_each(esc50) -> None:
    data = read_labelled(esc50=esc50)
    assert data.classes == ["dog", "rain", "church bells"] and data.folds is not None
    splits = protocol_splits(data, val_fraction=0.25, seed=0)
    assert [s.name for s in splits] == ["1", "2", "3"]
    for split in splits:
        fold_items = [i for i, f in enumerate(data.folds) if f == split.name]
        assert split.test == fold_items
        assert sorted(split.train + split.val) == [i for i, f in enumerate(data.folds) if f != split.name]
        assert not set(split.train) & set(split.val)
        assert sorted(data.targets[i][0] for i in split.val) == [0, 0, 1, 1, 2, 2]  # stratified: 25% of 8 per class
    assert protocol_splits(data, 0.25, seed=0)[0].val == splits[0].val  # seeded
    assert protocol_splits(data, 0.25, seed=1)[0].val != splits[0].val
    assert classifier_split(data, val_fraction=0.25).test == splits[-1].test  # the classifier's default: last fold
    assert classifier_split(data, "2", 0.25).val == splits[1].val  # the same partition as the probe's


def test_probe_benchmark_on_esc50_folds(esc50, monkeypatch) -> None:
    import compclap.eval.probe as probe

    data = read_labelled(esc50=esc50)
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=torch.Generator().manual_seed(5)) * 3
    table = {f.name: centers[t[0]] + 0.2 * torch.randn(8, generator=g) for f, t in zip(data.files, data.targets)}
    seen: list[tuple[set, int]] = []
    real = probe.fit_probe

    def spy(train_x, *args, **kwargs):
        seen.append(({tuple(r.tolist()) for r in train_x}, len(train_x)))
        return real(train_x, *args, **kwargs)

    monkeypatch.setattr(probe, "fit_probe", spy)
    bench = ProbeBenchmark("probe_esc50", data, config=FAST)
    embedder = FakeEmbedder(table)
    result = bench.evaluate(embedder)
    assert embedder.audio_calls == 1  # every clip embedded once, for every fold and head
    for part in ("linear", "mlp"):
        assert set(result[part]["folds"]) == {"1", "2", "3"}
        assert result[part]["accuracy"] == pytest.approx(np.mean(list(result[part]["folds"].values())))
        assert result[part]["accuracy"] == 100.0
        assert set(result[part]["per_class"]) == {"dog", "rain", "church bells"}
    assert 0 <= result["zeroshot"]["accuracy"] <= 100
    # No test clip was ever a training clip: fold k's probes never saw fold k's embeddings.
    normed = {f: torch.nn.functional.normalize(v, dim=0) for f, v in table.items()}
    assert len(seen) == 6
    for (train_rows, n), split in zip(seen, bench.splits * 2):
        test_rows = {tuple(normed[data.files[i].name].tolist()) for i in split.test}
        assert n == len(split.train) == 24 - len(split.val) and not train_rows & test_rows
    assert bench.columns[:3] == [("zeroshot.accuracy", "zero-shot acc"), ("linear.accuracy", "linear acc"),
                                 ("mlp.accuracy", "MLP acc")]
    assert len(result["rows"]) == len(data.files)


def _split_csv(root: Path, multi: bool = False, with_val: bool = False) -> Path:
    (root / "clips").mkdir(parents=True, exist_ok=True)
    lines = [["path", "labels" if multi else "label", "split"]]
    names = ["beep", "hum", "siren"]
    for i in range(30):
        _tone(root / "clips" / f"c{i}.wav", 100.0 + 37 * i)
        label = ";".join(names[j] for j in range(3) if (i >> j) & 1) or names[i % 3] if multi else names[i % 3]
        split = "test" if i % 5 == 0 else ("val" if with_val and i % 5 == 1 else "train")
        lines.append([f"clips/c{i}.wav", label, split])
    path = root / ("multi.csv" if multi else "single.csv")
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(lines)
    return path


def test_split_csv_uses_its_val_rows_or_carves_them(tmp_path) -> None:
    carved = read_labelled(_split_csv(tmp_path / "a"))
    assert carved.splits is not None and carved.folds is None
    (split,) = protocol_splits(carved, val_fraction=0.2)
    assert split.test == list(range(0, 30, 5)) and len(split.val) == 6 and len(split.train) == 18  # 2 of 8 per class
    given = read_labelled(_split_csv(tmp_path / "b", with_val=True))
    (split,) = protocol_splits(given, val_fraction=0.2)
    assert split.val == list(range(1, 30, 5))


def test_multilabel_probe_reports_map(tmp_path) -> None:
    data = read_labelled(_split_csv(tmp_path, multi=True))
    assert data.multi_label and data.classes == ["beep", "hum", "siren"]
    g = torch.Generator().manual_seed(0)
    table = {f.name: data.target_tensor([i])[0] * 3 + 0.3 * torch.randn(3, generator=g)
             for i, f in enumerate(data.files)}
    bench = ProbeBenchmark("probe_multi", data, config=FAST, zeroshot=False)
    result = bench.evaluate(FakeEmbedder(table))
    assert [c[0] for c in bench.columns] == ["linear.mAP", "mlp.mAP"]
    assert result["linear"]["mAP"] == pytest.approx(100.0)
    assert set(result["linear"]["per_class"]) == set(data.classes)


def test_labels_csv_from_events_is_a_stratified_seeded_split(tmp_path) -> None:
    (tmp_path / "audio").mkdir()
    events = []
    for i in range(50):
        _tone(tmp_path / "audio" / f"{i}.wav", 300.0)
        events.append({"audio": f"audio/{i}.wav", "label": ["noise_burst", "beep"][i % 2], "captions": ["x"]})
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    out = write_labels_from_jsonl(tmp_path / "events.jsonl", tmp_path / "labels.csv", test_fraction=0.2, seed=3)
    data = read_labelled(out)
    assert data.classes == ["beep", "noise burst"]
    test = [i for i, s in enumerate(data.splits) if s == "test"]
    assert len(test) == 10 and sorted(data.targets[i][0] for i in test) == [0] * 5 + [1] * 5
    assert data.files[0] == tmp_path / "audio" / "0.wav"
    again = write_labels_from_jsonl(tmp_path / "events.jsonl", tmp_path / "again.csv", test_fraction=0.2, seed=3)
    assert again.read_text() == out.read_text()


def test_carve_validation_edge_cases() -> None:
    assert carve_validation([0, 1, 2], [0, 1, 2], 0.1, 0)[1] != []  # tiny sets still get one val item
    assert carve_validation([0, 1], [0, 0], 0.0, 0) == ([0, 1], [])
    with pytest.raises(ValueError, match="val_fraction"):
        carve_validation([0], [0], 1.0, 0)


def test_a_csv_without_split_or_fold_is_refused(tmp_path) -> None:
    _tone(tmp_path / "a.wav", 200.0)
    _tone(tmp_path / "b.wav", 300.0)
    (tmp_path / "l.csv").write_text("path,label\na.wav,x\nb.wav,y\n")
    with pytest.raises(ValueError, match="neither a 'split'"):
        read_labelled(tmp_path / "l.csv")
    (tmp_path / "s.csv").write_text("path,label,split\na.wav,x,train\nb.wav,y,holdout\n")
    with pytest.raises(ValueError, match="'holdout' is not one of"):
        read_labelled(tmp_path / "s.csv")


# ------------------------------------------------------------------------------------------- CLI


def test_evaluate_probe_cli_end_to_end(tmp_path, tokenizer_dir, capsys) -> None:
    from compclap.eval.cli import main
    from tests.eval.test_evaluate_cli import _save_tiny_clap

    labels = _split_csv(tmp_path / "data")
    model_a = _save_tiny_clap(tmp_path / "model_A", tokenizer_dir, 0)
    model_b = _save_tiny_clap(tmp_path / "model_B", tokenizer_dir, 1)
    out = tmp_path / "report"
    args = ["probe", "--model", f"A={model_a}", "--model", f"B={model_b}", "--csv", str(labels), "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--no-progress", "--hidden-dim", "32", "--max-epochs", "50"]
    assert main(args) == 0
    payload = json.loads((out / "results.json").read_text())
    desc = payload["benchmarks"]["probe_single"]
    assert desc["kind"] == "probe" and desc["n_classes"] == 3 and desc["folds"] == ["test"]
    for model in ("A", "B"):
        res = payload["results"][model]["probe_single"]
        for part in ("zeroshot", "linear", "mlp"):
            assert 0 <= res[part]["accuracy"] <= 100
        assert (out / res["rows_csv"]).is_file() and (out / res["clips_csv"]).is_file()
    report = (out / "report.md").read_text()
    assert "probe_single zero-shot acc" in report and "probe_single linear acc" in report
    assert "| *chance* |" in report and (out / "bars_probe_single.png").read_bytes()[:4] == b"\x89PNG"
    assert "| A |" in capsys.readouterr().out
    # A second run only reads the cache.
    assert main(args) == 0
    stats = json.loads((out / "results.json").read_text())["last_run"]["embedding"]
    assert stats["A"]["audio_computed"] == 0 and stats["A"]["model_loaded"] == 0
