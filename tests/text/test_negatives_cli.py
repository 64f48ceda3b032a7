"""`data_prep/hard_negatives.py` and `benchmarks/bench_hard_negatives.py` end to end on small files."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(rel: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cli():
    return _load("data_prep/hard_negatives.py", "hard_negatives_cli")


def _read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_txt_input_one_line_per_valid_caption(cli, tmp_path, capsys):
    src = tmp_path / "caps.txt"
    src.write_text("A man speaks followed by a dog barking\n\n   \nA loud alarm beeps\nA cat purrs\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli.main(["--input", str(src), "--output", str(out), "--n-process", "1"]) == 0
    rows = _read(out)
    assert [r["caption"] for r in rows] == ["A man speaks followed by a dog barking", "A loud alarm beeps",
                                            "A cat purrs"]
    assert rows[0]["negatives"][0] == {"text": "A dog barks followed by a man speaking", "kind": "order"}
    assert rows[1]["negatives"][0] == {"text": "A quiet alarm beeps", "kind": "attribute"}
    assert rows[2]["negatives"] == []
    err = capsys.readouterr().err
    assert "caps.txt:2: empty caption" in err and "caps.txt:3: empty caption" in err


def test_csv_and_jsonl_inputs_and_options(cli, tmp_path, capsys):
    src = tmp_path / "caps.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["audiocap_id", "caption"])
        w.writerow([1, "A dog barks, then a loud cat meows"])
        w.writerow([2, ""])
        w.writerow([3, "Birds chirp"])
    out = tmp_path / "o.jsonl"
    assert cli.main(["--input", str(src), "--output", str(out), "--kinds", "order", "--max-per-kind", "1",
                     "--n-process", "1"]) == 0
    rows = _read(out)
    assert [r["caption"] for r in rows] == ["A dog barks, then a loud cat meows", "Birds chirp"]
    assert rows[0]["negatives"] == [{"text": "A loud cat meows, then a dog barks", "kind": "order"}]
    assert "caps.csv:3: empty caption" in capsys.readouterr().err

    src = tmp_path / "caps.jsonl"
    src.write_text('{"caption": "A dog barks then a cat meows"}\n{"caption": 5}\nnot json\n\n'
                   '{"caption": ""}\n{"text": "no caption"}\n', encoding="utf-8")
    assert cli.main(["--input", str(src), "--output", str(out), "--n-process", "1", "--seed", "3"]) == 0
    rows = _read(out)
    assert len(rows) == 1 and rows[0]["negatives"][0]["text"] == "A cat meows then a dog barks"
    err = capsys.readouterr().err
    for msg in ("caps.jsonl:2: caption is not a string", "caps.jsonl:3: invalid JSON", "caps.jsonl:5: empty caption",
                "caps.jsonl:6: missing caption"):
        assert msg in err


def test_manifest_mode_adds_parallel_negatives(cli, tmp_path, capsys):
    src = tmp_path / "manifest.jsonl"
    src.write_text(json.dumps({"audio": "a.wav", "captions": ["A dog barks then a cat meows", 3, "A loud bang"],
                               "duration": 10.0}) + "\n" + json.dumps({"audio": "b.wav", "captions": []}) + "\n"
                   + "broken\n", encoding="utf-8")
    out = tmp_path / "m.jsonl"
    assert cli.main(["--input", str(src), "--output", str(out), "--n-process", "1"]) == 0  # detected
    rows = _read(out)
    assert len(rows) == 2 and rows[0]["audio"] == "a.wav" and rows[0]["duration"] == 10.0
    negs = rows[0]["negatives"]
    assert len(negs) == 3 and negs[1] == []
    assert negs[0][0] == {"text": "A cat meows then a dog barks", "kind": "order"}
    assert negs[2][0] == {"text": "A quiet bang", "kind": "attribute"}
    assert rows[1]["negatives"] == []
    err = capsys.readouterr().err
    assert "manifest.jsonl:1: captions[1]" in err and "manifest.jsonl:3: invalid JSON" in err
    # explicit flag on a file that would not be detected gives the same result
    assert cli.main(["--input", str(src), "--output", str(out), "--manifest", "--n-process", "1"]) == 0
    assert _read(out) == rows


def test_usage_errors(cli, tmp_path, capsys):
    assert cli.main(["--input", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o.jsonl")]) == 2
    src = tmp_path / "caps.tsv"
    src.write_text("a\n", encoding="utf-8")
    assert cli.main(["--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    src = tmp_path / "caps.txt"
    src.write_text("a dog barks\n", encoding="utf-8")
    assert cli.main(["--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--kinds", "colour"]) == 2
    assert "unknown negative kind" in capsys.readouterr().err


def test_benchmark_prints_one_json_line(tmp_path, capsys):
    src = tmp_path / "train.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["audiocap_id", "caption"])
        for i, c in enumerate(["A man speaks followed by a dog barking", "A car honks then a door slams",
                               "A loud alarm beeps", "Rain falls"]):
            w.writerow([i, c])
    bench = _load("benchmarks/bench_hard_negatives.py", "bench_hard_negatives")
    report = bench.main(["--input", str(src), "--n-process", "1"])
    line = capsys.readouterr().out.strip().splitlines()
    assert len(line) == 1 and json.loads(line[0]) == report
    assert report["captions"] == 4 and report["order_coverage"] == 1.0 and report["captions_per_s"] > 0
