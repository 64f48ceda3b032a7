"""Audio negatives in the training pipeline: manifest paths, dataset crops, collate shapes and masks, data module options."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from compclap.audio.io import load_audio
from compclap.audio.transforms import crop_or_pad
from compclap.data.datamodule import ManifestDataModule
from compclap.data.datasets import ManifestDataset, collate_clips
from compclap.data.manifest import ManifestError, read_manifest
from compclap.data.shards import decode_sample

SR = 8000
N = SR  # the model looks at 1 s


def _write(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = 0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))
    sf.write(path, wave.astype(np.float32), SR)  # 16-bit FLAC: every decode gives the same samples


@pytest.fixture()
def manifest(tmp_path) -> Path:
    """Four clips: two negatives (one of them a copy of the clip), one negative that is missing, none, no field."""
    _write(tmp_path / "audio" / "long.flac", 1.5, 0)  # longer than the model input: randomly cropped
    (tmp_path / "swapped").mkdir()
    (tmp_path / "swapped" / "long_copy.flac").write_bytes((tmp_path / "audio" / "long.flac").read_bytes())
    _write(tmp_path / "swapped" / "long_other.flac", 1.5, 1)
    for i in range(3):
        _write(tmp_path / "audio" / f"{i}.flac", 1.0, 10 + i)
    _write(tmp_path / "swapped" / "0_order.flac", 0.5, 20)  # shorter than the clip: padded like a clip
    lines = [
        {"audio": "audio/long.flac", "captions": ["a then b"],
         "negative_audio": [[{"audio": "swapped/long_copy.flac", "kind": "order"},
                             {"audio": str(tmp_path / "swapped" / "long_other.flac"), "kind": "attribute"}]]},
        {"audio": "audio/0.flac", "captions": ["c then d", "c before d"],
         "negative_audio": [[{"audio": "swapped/0_order.flac", "kind": "order"},
                             {"audio": "swapped/missing.flac", "kind": "order"}],
                            [{"audio": "swapped/0_order.flac", "kind": "order"}]]},
        {"audio": "audio/1.flac", "captions": ["e"], "negative_audio": [[]]},
        {"audio": "audio/2.flac", "captions": ["f"]},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_manifest_resolves_negative_audio_paths_and_checks_their_shape(manifest, tmp_path):
    recs = read_manifest(manifest)
    assert recs[0]["negative_audio"][0][0] == {"audio": str(tmp_path / "swapped" / "long_copy.flac"), "kind": "order"}
    assert recs[0]["negative_audio"][0][1]["audio"] == str(tmp_path / "swapped" / "long_other.flac")  # absolute kept
    bad = tmp_path / "bad.jsonl"
    for value in ([[{"audio": "x.flac", "kind": "order"}], []], [["x.flac"]], {"audio": "x"}):
        bad.write_text(json.dumps({"audio": "a.flac", "captions": ["one"], "negative_audio": value}) + "\n")
        with pytest.raises(ManifestError, match="negative_audio"):
            read_manifest(bad)


def test_negatives_take_the_clip_crop_and_a_broken_one_is_dropped(manifest):
    recs = read_manifest(manifest)
    ds = ManifestDataset(recs, SR, N, train=True)
    for seed in range(5):
        item = ds[(0, seed)]
        # The clip itself is what it was before audio negatives existed (same draws, same order).
        rng = np.random.default_rng(seed)
        np.testing.assert_array_equal(item["waveform"], crop_or_pad(load_audio(recs[0]["audio"], SR)[0], N, rng))
        copy, other = item["negative_waveforms"]
        np.testing.assert_array_equal(copy, item["waveform"])  # a copy of the clip: the very same crop
        assert other.shape == (N,) and not np.allclose(other, copy)
    with pytest.warns(UserWarning, match="missing.flac"):
        picks = {len(ds[(1, seed)]["negative_waveforms"]) for seed in range(8)}
    assert picks == {1}  # caption 0 keeps its readable negative only; caption 1 has one
    short = ds[(1, 0)]["negative_waveforms"][0]
    wave = load_audio(recs[1]["negative_audio"][1][0]["audio"], SR)[0]
    np.testing.assert_array_equal(short, crop_or_pad(wave, N))  # padded as a short clip would be
    assert ds[(2, 0)]["negative_waveforms"] == [] and ds[(3, 0)]["negative_waveforms"] == []


def test_collate_pads_to_the_largest_count_and_masks(manifest):
    ds = ManifestDataset(read_manifest(manifest), SR, N, train=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = collate_clips([ds[(i, 0)] for i in range(4)])
    negw, mask = batch["negative_waveforms"], batch["negative_waveform_mask"]
    assert negw.shape == (4, 2, N) and negw.dtype.is_floating_point and str(negw.dtype) == "torch.float32"
    assert mask.tolist() == [[True, True], [True, False], [False, False], [False, False]]
    assert negw[~mask].abs().sum() == 0 and negw[mask].abs().sum() > 0
    assert (negw[0, 0] == batch["waveforms"][0]).all()

    # K = 0 still gives both keys; so does a batch whose clips all failed to decode.
    batch = collate_clips([ds[(2, 0)], ds[(3, 0)]])
    assert batch["negative_waveforms"].shape == (2, 0, N) and batch["negative_waveform_mask"].shape == (2, 0)
    broken = ManifestDataset([{"audio": "/nonexistent.flac", "captions": ["x"], "negative_audio": [[]]}], SR, N, True)
    with pytest.warns(UserWarning, match="skipping clip"):
        batch = collate_clips([broken[(0, 0)]])
    assert batch["negative_waveforms"].shape[:2] == (0, 0) and batch["negative_waveform_mask"].shape == (0, 0)

    # Evaluation datasets never load them; manifests without the field give batches without the keys.
    assert "negative_waveforms" not in collate_clips([ManifestDataset(read_manifest(manifest), SR, N, False)[0]])
    plain = ManifestDataset([{k: v for k, v in r.items() if k != "negative_audio"} for r in read_manifest(manifest)],
                            SR, N, train=True)
    assert "negative_waveforms" not in collate_clips([plain[(0, 0)]])


def _module(manifest: Path, **kwargs) -> ManifestDataModule:
    return ManifestDataModule(train_manifest=str(manifest), val_manifest=str(manifest), batch_size=4, num_workers=0,
                              sample_rate=SR, clip_seconds=1.0, drop_last=False, **kwargs)


def test_data_module_options(manifest):
    dm = _module(manifest)
    dm.setup("fit")
    assert "negative_audio" in dm.datasets["fit"].records[0]
    assert all("negative_audio" not in r for r in dm.datasets["validate"].records)  # evaluation drops the field
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = next(iter(dm.train_dataloader()))
        assert batch["negative_waveforms"].shape[:2] == batch["negative_waveform_mask"].shape
        assert batch["negative_waveform_mask"].sum() > 0
        assert "negative_waveforms" not in next(iter(dm.val_dataloader()))

    dm = _module(manifest, max_audio_negatives=1)
    dm.setup("fit")
    assert [len(n) for n in dm.datasets["fit"].records[0]["negative_audio"]] == [1]
    assert dm.datasets["fit"].records[0]["negative_audio"][0][0]["kind"] == "order"  # the first ones are kept

    dm = _module(manifest, audio_negatives=False)
    dm.setup("fit")
    assert all("negative_audio" not in r for r in dm.datasets["fit"].records)
    assert not dm.datasets["fit"].has_audio_negatives
    with pytest.raises(ValueError, match="max_audio_negatives"):
        _module(manifest, max_audio_negatives=-1)


def test_decoded_audio_cache_gives_the_same_items_and_decodes_each_file_once(manifest, monkeypatch):
    import compclap.data.datasets as datasets

    recs = read_manifest(manifest)
    plain = ManifestDataset(recs, SR, N, train=True)
    cached = ManifestDataset(recs, SR, N, train=True, cache_decoded=True)
    decoded: list[str] = []  # files the cached dataset decoded
    real_load = datasets.load_audio

    def counting_load(path: str, sr: int):
        decoded.append(path)
        return real_load(path, sr)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the missing negative
        for epoch in range(3):
            for index in range(len(recs)):
                want = plain[(index, epoch)]
                monkeypatch.setattr(datasets, "load_audio", counting_load)
                got = cached[(index, epoch)]
                monkeypatch.setattr(datasets, "load_audio", real_load)
                np.testing.assert_array_equal(got["waveform"], want["waveform"])  # the same random crops
                assert len(got["negative_waveforms"]) == len(want["negative_waveforms"])
                for g, w in zip(got["negative_waveforms"], want["negative_waveforms"]):
                    np.testing.assert_array_equal(g, w)
    files = [p for p in decoded if not p.endswith("missing.flac")]
    assert len(files) == len(set(files)) >= 5  # each file once (which negatives are met depends on the captions)
    from compclap.audio.io import AudioDecodeError

    missing = str(manifest.parent / "swapped" / "missing.flac")
    for _ in range(2):  # a failure is not kept: it fails (and is counted) each time
        with pytest.raises(AudioDecodeError):
            cached._decode(missing)
    assert missing not in cached._decoded
    dm = _module(manifest, cache_decoded_audio=True)
    dm.setup("fit")
    assert dm.datasets["fit"]._decoded == {} and dm.datasets["validate"]._decoded is None


def test_shards_ignore_negative_audio_with_a_warning():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(N, np.float32), SR, format="FLAC")
    meta = {"index": 0, "captions": ["a then b"], "negative_audio": [[{"audio": "/x.flac", "kind": "order"}]]}
    sample = {"json": json.dumps(meta).encode(), "flac": buf.getvalue()}
    with pytest.warns(UserWarning, match="negative_audio"):
        item = decode_sample(sample, SR, N, train=True, rng=np.random.default_rng(0))
    assert "negative_waveforms" not in item and item["captions"] == ["a then b"]
