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
    # Missing audio is an error by default: reported, nothing written, exit 1.
    assert cli.main([*args, "--missing-report", str(report)]) == 1
    err = capsys.readouterr().err
    assert "for 5 of 6 clips" in err and ids[5] in err and "--allow-missing" in err
    assert not (tmp_path / "m.jsonl").exists() and report.read_text().split() == ids[1:]
    report.unlink()
    assert cli.main([*args, "--missing-report", str(report), "--allow-missing"]) == 0
    err = capsys.readouterr().err
    assert "missing audio for 5 clips" in err and ids[5] in err
    assert report.read_text().split() == ids[1:] and len((tmp_path / "m.jsonl").read_text().splitlines()) == 1

    empty = tmp_path / "empty_audio"
    empty.mkdir()
    args = ["--csv", str(csv_path), "--audio-dir", str(empty), "--output", str(tmp_path / "none.jsonl")]
    assert cli.main(args) == 1
    assert "no audio file under" in capsys.readouterr().err
    assert cli.main([*args, "--allow-missing"]) == 1
    assert "no audio found" in capsys.readouterr().err
    assert cli.main([*args[:2], "--audio-dir", str(tmp_path / "nope"), *args[4:]]) == 2
    assert "audio folder not found" in capsys.readouterr().err


def test_every_extension_soundfile_decodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """.oga / .ogg (Vorbis), .opus, .aiff are found; a clip whose only file soundfile cannot read is named."""
    from compclap.data.manifest_builder import AUDIO_EXTENSIONS

    for ext in (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".au"):
        assert ext in AUDIO_EXTENSIONS, ext
    assert (".opus" in AUDIO_EXTENSIONS) == ("OPUS" in sf.available_subtypes("OGG"))
    t = np.arange(800) / 8000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    audio = tmp_path / "sounds"
    audio.mkdir()
    sf.write(audio / "bell.oga", tone, 8000, format="OGG", subtype="VORBIS")
    sf.write(audio / "door.ogg", tone, 8000, format="OGG", subtype="VORBIS")
    sf.write(audio / "rain.aiff", tone, 8000, format="AIFF")
    (audio / "speech.m4a").write_bytes(b"not for libsndfile")
    path = tmp_path / "clotho.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "caption_1"])
        for name in ("bell.oga", "door.ogg", "rain.wav", "speech.wav"):
            writer.writerow([name, f"a {name.split('.')[0]} sound"])
    with pytest.raises(ValueError, match=r"1 of 4 clips: speech.wav\n  speech.wav: .*speech.m4a has an extension"):
        build_manifest(path, audio, tmp_path / "m.jsonl", allow_missing=False)
    assert not (tmp_path / "m.jsonl").exists()
    report = build_manifest(path, audio, tmp_path / "m.jsonl")
    assert report.missing == ["speech.wav"] and report.n_clips == 3
    lines = [json.loads(x)["audio"] for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines == ["sounds/bell.oga", "sounds/door.ogg", "sounds/rain.aiff"]
    from compclap.audio.io import load_audio

    for rel in lines:
        wave, sr = load_audio(tmp_path / rel)
        assert sr == 8000 and abs(len(wave) - 800) < 200


def test_prepare_subcommand_runs_the_same_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from compclap.prepare import TOOLS
    from compclap.prepare import main as prepare

    assert set(TOOLS) == {"manifest", "negatives", "compose", "shards", "synth-demo"}
    for name, (_, _, script) in TOOLS.items():
        assert (REPO / script).is_file(), script
    _wav(tmp_path / "audio" / "a.wav")
    path = tmp_path / "c.csv"
    path.write_text("file_name,caption_1\na.wav,a tone\n")
    assert prepare(["manifest", "--csv", str(path), "--audio-dir", str(tmp_path / "audio"),
                    "--output", str(tmp_path / "m.jsonl")]) == 0
    assert json.loads((tmp_path / "m.jsonl").read_text()) == {"audio": "audio/a.wav", "captions": ["a tone"]}
    assert prepare([]) == 2 and prepare(["nope"]) == 2
    assert "synth-demo" in capsys.readouterr().err
    assert prepare(["--help"]) == 0 and "negatives" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        prepare(["shards", "--help"])
    assert "compclap prepare shards" in capsys.readouterr().out
