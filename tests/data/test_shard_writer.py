"""Manifest -> webdataset shards: content, sizes.json, bad clips, resampling/trimming, determinism, CLI."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import write_tiny_manifest

from compclap.data.manifest import read_manifest
from compclap.data.shard_writer import write_shards

REPO = Path(__file__).resolve().parents[2]


def _load_cli():
    spec = importlib.util.spec_from_file_location("make_shards_cli", REPO / "data_prep" / "make_shards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_extras(manifest: Path) -> Path:
    """Add negatives (parallel to captions), positives and an expression to every line."""
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    for i, rec in enumerate(lines):
        rec["negatives"] = [[{"text": f"neg {i} {j}", "kind": "order"}] for j in range(len(rec["captions"]))]
        rec["positives"] = [f"pos {i}", rec["captions"][0]]
        rec["expression"] = {"op": "+", "args": [f"e{i}", "x"]}
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


def _members(tar_path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(tar_path) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]


def test_shards_hold_flac_and_json_and_leave_bad_clips_out(tmp_path):
    manifest = _with_extras(write_tiny_manifest(tmp_path, "train", 11, bad=2))
    records = read_manifest(manifest)
    log = io.StringIO()
    report = write_shards(manifest, tmp_path / "out", shard_size=4, log=log)

    assert report.shards == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    sizes = json.loads((tmp_path / "out" / "sizes.json").read_text())
    assert sizes == {"shard-000000.tar": 4, "shard-000001.tar": 4, "shard-000002.tar": 1} == report.sizes
    info = json.loads((tmp_path / "out" / "info.json").read_text())
    assert info["written"] == 9 and info["clips"] == 11 and info["pattern"].endswith("shard-{000000..000002}.tar")
    assert [s["index"] for s in info["skipped"]] == [9, 10]
    assert "train_009.wav" in log.getvalue() and "left out" in log.getvalue()

    seen = []
    for name in report.shards:
        members = _members(tmp_path / "out" / name)
        assert [m[0].split(".", 1)[1] for m in members] == ["flac", "json"] * (len(members) // 2)
        for (fname, flac), (jname, payload) in zip(members[::2], members[1::2]):
            meta = json.loads(payload)
            assert fname.split(".")[0] == jname.split(".")[0] == f"{meta['index']:09d}"
            rec = records[meta["index"]]
            for key in ("captions", "negatives", "positives", "expression"):
                assert meta[key] == rec[key]
            assert meta["source"] == rec["audio"]
            wave, sr = sf.read(io.BytesIO(flac), dtype="float32")
            src, src_sr = sf.read(rec["audio"], dtype="float32")
            assert sr == src_sr == meta["sample_rate"] and len(wave) == meta["num_samples"]
            np.testing.assert_array_equal(wave, src)  # 16-bit wav -> 16-bit FLAC is lossless
            seen.append(meta["index"])
    assert seen == list(range(9))


def test_resample_trim_and_size_limits(tmp_path):
    manifest = write_tiny_manifest(tmp_path, "val", 5)
    report = write_shards(manifest, tmp_path / "out", shard_size=100, sample_rate=16000, max_seconds=0.5,
                          bits=24, log=False)
    assert report.sizes == {"shard-000000.tar": 5}
    members = _members(tmp_path / "out" / "shard-000000.tar")
    for (_, flac), (_, payload) in zip(members[::2], members[1::2]):
        info = sf.info(io.BytesIO(flac))
        meta = json.loads(payload)
        assert info.samplerate == meta["sample_rate"] == 16000 and info.subtype == "PCM_24"
        assert info.frames == meta["num_samples"] == 8000  # every tiny clip is longer than 0.5 s

    small = write_shards(manifest, tmp_path / "small", shard_size=100, max_shard_bytes=1, log=False)
    assert list(small.sizes.values()) == [1] * 5  # a byte limit below one clip: one clip per shard


def test_output_is_deterministic_and_independent_of_workers(tmp_path):
    manifest = write_tiny_manifest(tmp_path, "train", 9, bad=1)
    one = write_shards(manifest, tmp_path / "w1", shard_size=3, workers=1, log=False)
    two = write_shards(manifest, tmp_path / "w2", shard_size=3, workers=2, log=False)
    assert one.sizes == two.sizes
    for name in one.shards:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        write_shards(manifest, tmp_path / "w1", shard_size=100, log=False)
    again = write_shards(manifest, tmp_path / "w1", shard_size=100, overwrite=True, log=False)
    assert sorted(p.name for p in (tmp_path / "w1").glob("*.tar")) == again.shards == ["shard-000000.tar"]


def test_cli(tmp_path, capsys):
    cli = _load_cli()
    manifest = write_tiny_manifest(tmp_path, "train", 4, bad=1)
    assert cli.main(["--manifest", str(manifest), "--out", str(tmp_path / "s"), "--shard-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "skipped clip 3" in err and "3 of 4 clips in 2 shard(s)" in err
    assert json.loads((tmp_path / "s" / "sizes.json").read_text()) == {"shard-000000.tar": 2, "shard-000001.tar": 1}

    all_bad = write_tiny_manifest(tmp_path / "bad", "x", 2, bad=2)
    assert cli.main(["--manifest", str(all_bad), "--out", str(tmp_path / "b")]) == 1
    assert cli.main(["--manifest", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "m")]) == 2
