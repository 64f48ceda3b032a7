"""Manifest builder: AudioCaps (real val captions) and Clotho CSVs, missing-audio reporting, CLI."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from compclap.data.manifest_builder import build_manifest, detect_format, read_caption_csv
from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]
VAL_CSV = SHARED_DATA / "audiocaps" / "val.csv"


def _load_cli():
    spec = importlib.util.spec_from_file_location("build_manifest_cli", REPO / "data_prep" / "build_manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, dtype=np.float32), 16000, format=path.suffix[1:].upper())


@pytest.fixture()
def audiocaps_slice(tmp_path: Path) -> tuple[Path, list[str], dict[str, list[str]]]:
    """A val.csv slice of 6 clips (all 5 captions each, original row order)."""
    if not VAL_CSV.is_file():
        pytest.skip(f"{VAL_CSV} not available")
    with VAL_CSV.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids = list(dict.fromkeys(r["youtube_id"] for r in rows))[:6]
    chosen = [r for r in rows if r["youtube_id"] in ids]
    expected = {i: [r["caption"].strip() for r in chosen if r["youtube_id"] == i] for i in ids}
    path = tmp_path / "val_slice.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(chosen)
    return path, ids, expected


def test_audiocaps_manifest(tmp_path: Path, audiocaps_slice) -> None:
    csv_path, ids, expected = audiocaps_slice
    audio = tmp_path / "data" / "audio"
    _wav(audio / f"{ids[0]}.wav")
    _wav(audio / "sub" / f"Y{ids[1]}.flac")
    _wav(audio / f"{ids[2]}.flac")
    _wav(audio / f"{ids[2]}.wav")  # .wav is preferred over .flac for the same clip
    _wav(audio / f"{ids[3]}.ogg")
    (audio / f"{ids[4]}.txt").write_text("not audio")
    output = tmp_path / "data" / "val.jsonl"

    report = build_manifest(csv_path, audio, output)
    assert report.format == "audiocaps"
    assert report.missing == [ids[4], ids[5]]
    assert report.n_clips == 4 and report.n_captions == sum(len(expected[i]) for i in ids[:4])

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["audio"] for line in lines] == [
        f"audio/{ids[0]}.wav",
        f"audio/sub/Y{ids[1]}.flac",
        f"audio/{ids[2]}.wav",
        f"audio/{ids[3]}.ogg",
    ]
    for line, clip in zip(lines, ids):
        assert line["captions"] == expected[clip]
        assert len(line["captions"]) == 5  # AudioCaps val: five captions per clip
        assert (output.parent / line["audio"]).is_file()


def test_audio_outside_manifest_folder_is_absolute(tmp_path: Path, audiocaps_slice) -> None:
    csv_path, ids, _ = audiocaps_slice
    _wav(tmp_path / "audio" / f"{ids[0]}.wav")
    output = tmp_path / "manifests" / "m.jsonl"
    build_manifest(csv_path, tmp_path / "audio", output, fmt="audiocaps")
    (line,) = [json.loads(x) for x in output.read_text().splitlines()]
    assert Path(line["audio"]).is_absolute() and Path(line["audio"]) == (tmp_path / "audio" / f"{ids[0]}.wav").absolute()


def test_clotho_manifest(tmp_path: Path) -> None:
    path = tmp_path / "clotho.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", *(f"caption_{i}" for i in range(1, 6))])
        writer.writerow(["rain on roof.wav", "rain falls", "drops hit a roof", "a storm", "water", "rain"])
        writer.writerow(["birds 01.wav", "birds sing", "", "chirping", "birds", "tweets"])
        writer.writerow(["gone.wav", "a", "b", "c", "d", "e"])
    _wav(tmp_path / "dev" / "rain on roof.wav")
    _wav(tmp_path / "dev" / "birds 01.flac")  # matched by stem when the extension differs
    report = build_manifest(path, tmp_path / "dev", tmp_path / "clotho.jsonl")
    assert report.format == "clotho" and report.missing == ["gone.wav"]
    lines = [json.loads(x) for x in (tmp_path / "clotho.jsonl").read_text().splitlines()]
    assert lines == [
        {"audio": "dev/rain on roof.wav", "captions": ["rain falls", "drops hit a roof", "a storm", "water", "rain"]},
        {"audio": "dev/birds 01.flac", "captions": ["birds sing", "chirping", "birds", "tweets"]},
    ]


def test_format_detection_and_errors(tmp_path: Path) -> None:
    assert detect_format(["audiocap_id", "youtube_id", "start_time", "caption"]) == "audiocaps"
    assert detect_format(["file_name", "caption_1", "caption_2"]) == "clotho"
    with pytest.raises(ValueError, match=r"found columns|from its columns \['a', 'b'\]"):
        detect_format(["a", "b"])
    path = tmp_path / "x.csv"
    path.write_text("youtube_id,text\nabc,hello\n")
    with pytest.raises(ValueError, match=r"lacks columns \['caption'\]"):
        read_caption_csv(path, fmt="audiocaps")


def test_cli(tmp_path: Path, audiocaps_slice, capsys: pytest.CaptureFixture[str]) -> None:
    cli = _load_cli()
    csv_path, ids, _ = audiocaps_slice
    audio = tmp_path / "audio"
    _wav(audio / f"{ids[0]}.wav")
    report = tmp_path / "missing.txt"
    args = ["--csv", str(csv_path), "--audio-dir", str(audio), "--output", str(tmp_path / "m.jsonl")]
    assert cli.main([*args, "--missing-report", str(report)]) == 0
    err = capsys.readouterr().err
    assert "missing audio for 5 clips" in err and ids[5] in err
    assert report.read_text().split() == ids[1:]

    empty = tmp_path / "empty_audio"
    empty.mkdir()
    args = ["--csv", str(csv_path), "--audio-dir", str(empty), "--output", str(tmp_path / "none.jsonl")]
    assert cli.main(args) == 1
    assert "no audio found" in capsys.readouterr().err
    assert cli.main([*args[:2], "--audio-dir", str(tmp_path / "nope"), *args[4:]]) == 2
    assert "audio folder not found" in capsys.readouterr().err
