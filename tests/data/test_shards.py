"""ShardDataModule: batch layout, URL forms, training streams, evaluation splits and 2-process DDP (gloo)."""

from __future__ import annotations

import io
import json
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tiny_manifest
from ddp_helpers import run_ddp

from compclap.data.datamodule import ManifestDataModule, TooManyBadFilesError
from compclap.data.shard_writer import write_shards
from compclap.data.shards import (ShardDataModule, eval_positions, eval_segments, expand_shards, shard_name,
                                  sizes_url, split_by_node)
from compclap.eval.retrieval import retrieval_metrics

SR, SECONDS = 8000, 1.0


def _make(root: Path, n: int, shard_size: int, bad: int = 0, extras: bool = False) -> tuple[Path, str]:
    """A tiny manifest (short tones at 8 kHz) and its shards; returns (manifest, brace pattern)."""
    manifest = write_tiny_manifest(root, "split", n, bad=bad)
    if extras:
        lines = [json.loads(x) for x in manifest.read_text().splitlines()]
        for i, rec in enumerate(lines):
            rec["negatives"] = [[{"text": f"not {c}", "kind": "order"}] for c in rec["captions"]]
            rec["positives"] = [f"part {i}", rec["captions"][0]]
        manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = write_shards(manifest, root / "shards", shard_size=shard_size, log=False)
    return manifest, report.pattern


def _dm(pattern: str | None = None, **kw) -> ShardDataModule:
    args = dict(val_shards=pattern, test_shards=pattern, train_shards=pattern, batch_size=4, eval_batch_size=3,
                num_workers=0, sample_rate=SR, clip_seconds=SECONDS, shuffle_buffer=8)
    args.update(kw)
    return ShardDataModule(**args)


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    """11 clips in shards of 3 (3 + 3 + 3 + 2), with negatives and positives."""
    root = tmp_path_factory.mktemp("shards")
    manifest, pattern = _make(root, 11, 3, extras=True)
    return root, manifest, pattern


def test_url_helpers(tmp_path):
    assert expand_shards("a/shard-{000000..000002}.tar") == [f"a/shard-00000{i}.tar" for i in range(3)]
    assert expand_shards(["x/{a,b}.tar", "y.tar"]) == ["x/a.tar", "x/b.tar", "y.tar"]
    assert shard_name("pipe:aws s3 cp s3://bucket/train/shard-000007.tar -") == "shard-000007.tar"
    assert sizes_url("pipe:aws s3 cp s3://bucket/train/shard-000007.tar -") == "pipe:aws s3 cp s3://bucket/train/sizes.json -"
    assert sizes_url("file:///data/val/shard-000001.tar") == "file:///data/val/sizes.json"
    assert sizes_url("/data/val/shard-000001.tar") == "/data/val/sizes.json"
    urls = [f"s{i}.tar" for i in range(5)]
    assert split_by_node(urls, 1, 2) == ["s1.tar", "s3.tar"]
    with pytest.warns(UserWarning, match="every rank draws from all"):
        assert split_by_node(urls[:1], 1, 2) == urls[:1]


@pytest.mark.parametrize("total,world,bs,workers", [(11, 2, 3, 2), (11, 4, 2, 3), (3, 4, 2, 1), (20, 3, 5, 2),
                                                    (7, 1, 8, 4)])
def test_eval_plan_covers_every_clip_with_equal_counts_per_rank(total, world, bs, workers):
    sizes = [min(3, total - 3 * i) for i in range(-(-total // 3))]
    sizes.insert(1, 0)  # an empty shard is skipped
    per_rank = -(-total // world)
    seen = []
    for rank in range(world):
        positions = []
        for worker in range(workers):
            start, stop = eval_positions(total, rank, world, bs, worker, workers)
            for shard, lo, hi in eval_segments(sizes, start, stop):
                assert 0 <= lo < hi <= sizes[shard]
                positions += [sum(sizes[:shard]) + p for p in range(lo, hi)]
        assert len(positions) == per_rank  # equal counts per rank
        seen += positions
    assert sorted(set(seen)) == list(range(total))  # every clip, at least once
    assert len(seen) - total == world * per_rank - total  # duplicates are only the padding


def test_val_batches_equal_the_manifest_datamodule(shard_set):
    root, manifest, pattern = shard_set
    dm = _dm(pattern)
    dm.setup("validate")
    loader = dm.val_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 4  # ceil(11 / 3)
    ref_dm = ManifestDataModule(val_manifest=str(manifest), eval_batch_size=3, num_workers=0, sample_rate=SR,
                                clip_seconds=SECONDS)
    ref_dm.setup("validate")
    ref = list(ref_dm.val_dataloader())
    assert len(ref) == len(batches)
    for ours, theirs in zip(batches, ref):
        assert set(ours) == set(theirs) == {"skipped", "index", "waveforms", "captions", "caption_owner"}
        assert torch.equal(ours["index"], theirs["index"])
        assert torch.equal(ours["waveforms"], theirs["waveforms"])  # 16-bit wav -> FLAC: lossless, head crop
        assert ours["captions"] == theirs["captions"]
        assert torch.equal(ours["caption_owner"], theirs["caption_owner"])


def test_file_and_pipe_urls_give_the_same_batches(shard_set):
    root, _, pattern = shard_set
    shards = root / "shards"
    forms = {"local": pattern, "file": f"file://{shards}/shard-{{000000..000003}}.tar",
             "pipe": f"pipe:cat {shards}/shard-{{000000..000003}}.tar",
             "list": [str(p) for p in sorted(shards.glob("shard-*.tar"))]}
    results = {}
    for name, spec in forms.items():
        dm = _dm(spec)
        dm.setup("test")
        results[name] = [(b["index"].tolist(), b["captions"], b["waveforms"]) for b in dm.test_dataloader()]
    for name, batches in results.items():
        for (i1, c1, w1), (i2, c2, w2) in zip(batches, results["local"]):
            assert i1 == i2 and c1 == c2 and torch.equal(w1, w2), name


def test_pipe_closed_early_is_quiet(shard_set):
    """Rank 0 of 2 stops halfway through a shard: the `pipe:` command dies of SIGPIPE without an error."""
    root, _, _ = shard_set
    dm = _dm(f"pipe:cat {root}/shards/shard-{{000000..000003}}.tar", eval_batch_size=2)
    dm.trainer = None
    dm.setup("validate")
    dm._rank_world = lambda: (0, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        indices = [i for b in dm.val_dataloader() for i in b["index"].tolist()]
    assert indices == list(range(6))


def test_train_batches_streams_and_epochs(shard_set):
    _, _, pattern = shard_set
    dm = _dm(pattern, epoch_length=10, num_workers=2, seed=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 2  # 10 clips per epoch per rank -> 2 full batches of 4
    epochs = [list(loader) for _ in range(2)]
    for batches in epochs:
        assert len(batches) == 2
        for b in batches:
            assert b["waveforms"].shape == (4, int(SR * SECONDS))
            assert len(b["captions"]) == 4 and b["caption_owner"].tolist() == [0, 1, 2, 3]  # one caption per clip
            assert len(b["negatives"]) == 4 and all(n[0]["text"] == f"not {c}"
                                                   for n, c in zip(b["negatives"], b["captions"]))
            assert b["positive_owner"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    order = [[b["index"].tolist() for b in batches] for batches in epochs]
    assert order[0] != order[1]  # a new shuffle every epoch
    again = _dm(pattern, epoch_length=10, num_workers=2, seed=3)
    again.setup("fit")
    assert [b["index"].tolist() for b in again.train_dataloader()] == order[0]  # same seed, same stream
    # Without an explicit epoch length, an epoch is the shards' total (from sizes.json) per rank.
    derived = _dm(pattern, epoch_length=None)
    derived.setup("fit")
    assert len(derived.train_dataloader()) == 11 // 4
    none = _dm(pattern, epoch_length=8, hard_negatives="none")
    none.setup("fit")
    assert all("negatives" not in b for b in none.train_dataloader())


def test_training_ranks_read_disjoint_shards(shard_set):
    _, _, pattern = shard_set
    seen = []
    for rank in range(2):
        dm = _dm(pattern, epoch_length=12)
        dm.setup("fit")
        dm._rank_world = lambda rank=rank: (rank, 2)
        seen.append({i for b in dm.train_dataloader() for i in b["index"].tolist()})
    # shards 0 and 2 (clips 0-2, 6-8) go to rank 0, shards 1 and 3 (3-5, 9-10) to rank 1
    assert seen[0] <= {0, 1, 2, 6, 7, 8} and seen[1] <= {3, 4, 5, 9, 10}


def _corrupt_one_clip(shards: Path, name: str, key: str) -> None:
    """Replace one clip's FLAC bytes with garbage, keeping the tar valid."""
    path = shards / name
    with tarfile.open(path) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(path, "w") as tf:
        for member, data in members:
            if member.name == f"{key}.flac":
                data = b"not a flac file" * 10
                member.size = len(data)
            tf.addfile(member, io.BytesIO(data))


def test_bad_clips_are_skipped_and_counted(tmp_path, monkeypatch):
    _, pattern = _make(tmp_path, 8, 4)
    _corrupt_one_clip(tmp_path / "shards", "shard-000001.tar", "000000005")
    dm = _dm(pattern, eval_batch_size=4, max_skipped_fraction=0.5)
    dm.setup("validate")
    with pytest.warns(UserWarning, match="skipping clip"):
        batches = list(dm.val_dataloader())
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 6, 7]]
    assert batches[1]["skipped"] == [f"{tmp_path}/shards/shard-000001.tar#000000005"]
    assert dm.on_after_batch_transfer(batches[1], 0)["skipped_total"] == 1
    strict = _dm(pattern, eval_batch_size=4, max_skipped_fraction=0.01)
    strict.setup("validate")
    strict._loader("validate")
    # what the trainer's state says during validation
    monkeypatch.setattr("compclap.data.shards.current_split", lambda trainer: "validate")
    with pytest.raises(TooManyBadFilesError, match="000000005"):
        strict.on_after_batch_transfer(batches[1], 0)


def test_wrong_sizes_are_an_error(tmp_path):
    _, pattern = _make(tmp_path, 4, 2)
    (tmp_path / "shards" / "sizes.json").write_text(json.dumps({"shard-000000.tar": 3, "shard-000001.tar": 2}))
    dm = _dm(pattern)
    dm.setup("validate")
    with pytest.raises(ValueError, match="holds 2 samples but its sizes.json says 3"):
        list(dm.val_dataloader())
    missing = _dm(str(tmp_path / "elsewhere" / "shard-000000.tar"))
    with pytest.raises(FileNotFoundError, match="sizes"):
        missing.setup("validate")


@pytest.mark.parametrize("src_sr,dst_sr,seconds,clip", [(8000, 8000, 2.3, 8000), (44100, 48000, 1.7, 48000),
                                                        (48000, 16000, 1.3, 16000), (22050, 16000, 0.4, 16000)])
def test_load_clip_decodes_only_the_crop_with_the_same_result(tmp_path, src_sr, dst_sr, seconds, clip):
    """Reading only the cropped frames equals decoding, resampling and cropping the whole file."""
    import soundfile as sf

    from compclap.audio.io import load_audio, load_clip
    from compclap.audio.transforms import crop_or_pad

    rng = np.random.default_rng(0)
    t = np.arange(int(src_sr * seconds)) / src_sr
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.05 * rng.standard_normal(len(t))], 1)
    path = tmp_path / "clip.flac"
    sf.write(path, stereo.astype(np.float32), src_sr)
    whole, _ = load_audio(path, dst_sr)
    for seed in (None, 0, 1, 2):
        ours = load_clip(path.read_bytes(), dst_sr, clip, None if seed is None else np.random.default_rng(seed))
        ref = crop_or_pad(whole, clip, None if seed is None else np.random.default_rng(seed))
        assert ours.shape == (clip,) and ours.dtype == np.float32
        if src_sr == dst_sr:
            np.testing.assert_array_equal(ours, ref)
        else:
            np.testing.assert_allclose(ours, ref, atol=1e-5)


# ------------------------------------------------------------------------------ 2 processes (gloo) over shards
def _fake_embeddings(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic embeddings from content: a fixed projection of the audio, a caption hash for the text."""
    proj = torch.randn(int(SR * SECONDS), 8, generator=torch.Generator().manual_seed(0))
    audio = torch.nn.functional.normalize(batch["waveforms"] @ proj, dim=1)
    text = torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(zlib.crc32(c.encode())))
                        for c in batch["captions"]])
    text = torch.nn.functional.normalize(text + audio[batch["caption_owner"]], dim=1)
    return audio, text


def _val_rank(rank: int, world: int, pattern: str) -> dict:
    dm = _dm(pattern, num_workers=1 if rank == 0 else 0)  # workers do not change what a rank reads
    dm.setup("validate")
    loader = dm.val_dataloader()
    out = {"len": len(loader), "batches": 0, "index": [], "audio": [], "text": [], "text_clip": [], "text_pos": []}
    for batch in loader:
        audio, text = _fake_embeddings(batch)
        owner = batch["caption_owner"]
        out["batches"] += 1
        out["index"] += batch["index"].tolist()
        out["audio"].append(audio)
        out["text"].append(text)
        out["text_clip"] += batch["index"][owner].tolist()
        out["text_pos"] += (torch.arange(len(owner)) - torch.searchsorted(owner, owner)).tolist()
    return out


def _first(keys: list) -> list[int]:
    """Positions of the first occurrence of every key, in order."""
    seen: dict = {}
    for pos, key in enumerate(keys):
        seen.setdefault(key, pos)
    return list(seen.values())


def _metrics(results: list[dict]) -> dict[str, float]:
    """Gather ranks in rank order, keep the first copy of every clip and caption (as the LightningModule does), score."""
    index = [i for r in results for i in r["index"]]
    audio = torch.cat([a for r in results for a in r["audio"]])
    text = torch.cat([t for r in results for t in r["text"]])
    text_key = [(c, p) for r in results for c, p in zip(r["text_clip"], r["text_pos"])]
    clips, captions = _first(index), _first(text_key)
    row = {index[pos]: k for k, pos in enumerate(clips)}
    return retrieval_metrics(audio[clips], text[captions], torch.tensor([row[text_key[k][0]] for k in captions]))


def test_ddp_validation_over_shards_matches_one_process(shard_set):
    _, _, pattern = shard_set
    single = _val_rank(0, 1, pattern)
    ranks = run_ddp(_val_rank, world=2, args=(pattern,))
    # every rank runs the same number of batches and sees ceil(11 / 2) = 6 clips
    assert [r["len"] for r in ranks] == [r["batches"] for r in ranks] == [2, 2]
    assert [len(r["index"]) for r in ranks] == [6, 6]
    first, second = set(ranks[0]["index"]), set(ranks[1]["index"])
    assert first | second == set(range(11)) == set(single["index"])
    assert first & second == {0}  # the only overlap is the documented padding: rank 1 repeats clip 0
    ours, ref = _metrics(ranks), _metrics([single])
    assert ours.keys() == ref.keys() and len(ref) >= 8
    for key in ref:
        assert ours[key] == pytest.approx(ref[key]), key


# ------------------------------------------------------------------------------ through Lightning
def test_lightning_fit_and_validate_on_shards(shard_set, tokenizer_dir, tmp_path):
    import lightning as L
    from conftest import make_tiny_model

    from compclap.lit_module import CompClapModule

    _, manifest, pattern = shard_set
    torch.manual_seed(0)
    module = CompClapModule(make_tiny_model(tokenizer_dir), lr=1e-3)
    kw = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False, default_root_dir=tmp_path)
    dm = _dm(pattern, epoch_length=8)
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((trainer.current_epoch, batch["index"].tolist()))

    trainer = L.Trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[Record()], **kw)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 4 and [e for e, _ in seen] == [0, 0, 1, 1]  # 8 clips per epoch, batches of 4
    assert [i for e, i in seen if e == 0] != [i for e, i in seen if e == 1]
    assert "val/t2a_R@1" in trainer.callback_metrics

    # Validation over shards gives the metrics of validation over the manifest the shards were written from.
    ours = L.Trainer(**kw).validate(module, datamodule=_dm(pattern), verbose=False)[0]
    ref_dm = ManifestDataModule(val_manifest=str(manifest), eval_batch_size=3, num_workers=0, sample_rate=SR,
                                clip_seconds=SECONDS)
    ref = L.Trainer(**kw).validate(module, datamodule=ref_dm, verbose=False)[0]
    assert ours.keys() == ref.keys() and "val/a2t_mAP@10" in ours
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_eval_workers_split_whole_batches(shard_set):
    _, _, pattern = shard_set
    batches = {}
    for workers in (0, 3):
        dm = _dm(pattern, num_workers=workers)
        dm.setup("test")
        loader = dm.test_dataloader()
        batches[workers] = sorted(b["index"].tolist() for b in loader)
        assert len(batches[workers]) == len(loader) == 4
    assert batches[0] == batches[3] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]


def test_compclap_fit_selects_shards_by_class_path(shard_set, tokenizer_dir, tmp_path):
    """`compclap fit` with `data: {class_path: compclap.data.shards.ShardDataModule}` (needs the CLI's subclass mode)."""
    import yaml
    from conftest import TINY_AUDIO, TINY_FRONTEND, TINY_TEXT

    from compclap.cli import main

    _, _, pattern = shard_set
    cfg = {"seed_everything": 0,
           "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                       "enable_model_summary": False, "enable_checkpointing": False},
           "model": {"model": {"class_path": "compclap.models.CLAPDualEncoder", "init_args": {
               "embed_dim": 12,
               "audio": {"class_path": "compclap.models.HTSATAudioEncoder",
                         "init_args": {"config": TINY_AUDIO, **TINY_FRONTEND}},
               "text": {"class_path": "compclap.models.HFTextEncoder",
                        "init_args": {"tokenizer": str(tokenizer_dir), "config": TINY_TEXT, "max_length": 32}}}}},
           "data": {"class_path": "compclap.data.shards.ShardDataModule",
                    "init_args": {"train_shards": pattern, "val_shards": pattern, "batch_size": 4,
                                  "num_workers": 0, "epoch_length": 8}}}
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(path), "--trainer.fast_dev_run=true", "--run_dir", str(tmp_path / "run")])
