"""End-to-end through the `compclap` CLI: fast_dev_run, exact resume from last.ckpt, init_from, bad audio."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import lightning as L

from compclap.cli import main
from conftest import TINY_AUDIO, TINY_FRONTEND, TINY_TEXT, write_tiny_manifest


class SimulatedCrash(RuntimeError):
    """Raised by CrashAtStep to interrupt a run."""


class CrashAtStep(L.Callback):
    """Kill the run when it reaches `step` (after the epoch-end checkpoint was written)."""

    def __init__(self, step: int) -> None:
        """step: global step at which to crash."""
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Raise once the global step is reached."""
        if trainer.global_step >= self.step:
            raise SimulatedCrash(f"simulated crash at step {trainer.global_step}")


def _config(tmp: Path, tokenizer_dir: Path, train: Path, val: Path | None, crash_at: int | None = None,
            name: str = "fit.yaml", **data) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"save_last": True, "save_top_k": 1}}]},
        "model": {
            "model": {"class_path": "compclap.models.CLAPDualEncoder", "init_args": {
                "embed_dim": 12,
                "audio": {"class_path": "compclap.models.HTSATAudioEncoder",
                          "init_args": {"config": {**TINY_AUDIO, "hidden_dropout_prob": 0.1, "drop_path_rate": 0.1}, **TINY_FRONTEND}},
                "text": {"class_path": "compclap.models.HFTextEncoder",
                         "init_args": {"tokenizer": str(tokenizer_dir), "config": TINY_TEXT, "max_length": 32}}}},  # dropout 0.1: resume must restore RNG
            "lr": 1e-3, "warmup_steps": 1},
        "data": {"train_manifest": str(train), "val_manifest": str(val) if val else None,
                 "batch_size": 4, "num_workers": 0, **data},
    }
    if crash_at is not None:
        cfg["trainer"]["callbacks"].append({"class_path": "test_training_cli.CrashAtStep",
                                            "init_args": {"step": crash_at}})
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_fast_dev_run(tmp_path, tokenizer_dir):
    train = write_tiny_manifest(tmp_path, "train", 8)
    val = write_tiny_manifest(tmp_path, "val", 6, seed=1)
    cfg = _config(tmp_path, tokenizer_dir, train, val)
    main(["fit", "--config", str(cfg), "--trainer.fast_dev_run=true", "--run_dir", str(tmp_path / "run")])


def test_resume_from_last_gives_identical_weights(tmp_path, tokenizer_dir):
    train = write_tiny_manifest(tmp_path, "train", 8)  # 2 steps per epoch at batch size 4
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    crashing = _config(tmp_path, tokenizer_dir, train, None, crash_at=2, name="crash.yaml")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main(["fit", "--config", str(cfg), "--trainer.max_steps=4", "--run_dir", str(straight)])
    with pytest.raises(SimulatedCrash):
        main(["fit", "--config", str(crashing), "--trainer.max_steps=4", "--run_dir", str(resumed)])
    after_two = _weights(resumed)
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    main(["fit", "--config", str(cfg), "--trainer.max_steps=4", "--run_dir", str(resumed), "--ckpt_path", "last"])
    a, b = _weights(straight), _weights(resumed)
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    assert any(not torch.equal(after_two[k], b[k]) for k in b)  # the resumed run really trained on
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_init_from_loads_weights_only(tmp_path, tokenizer_dir):
    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=2", "--run_dir", str(tmp_path / "stage1")])
    stage1 = _weights(tmp_path / "stage1")
    main(["fit", "--config", str(cfg), "--trainer.max_steps=1", "--model.lr=0", "--model.warmup_steps=0",
          "--model.init_from", str(tmp_path / "stage1" / "checkpoints"), "--run_dir", str(tmp_path / "stage2")])
    stage2 = torch.load(tmp_path / "stage2" / "checkpoints" / "last.ckpt", weights_only=False)
    assert stage2["global_step"] == 1  # a fresh run: step counter and optimiser restart
    assert stage2["state_dict"].keys() == stage1.keys()
    for key, value in stage1.items():
        if "batch_norm.running" not in key and "num_batches_tracked" not in key:  # BN statistics still move
            torch.testing.assert_close(stage2["state_dict"][key], value)  # lr 0: weights are stage 1's


def test_bad_audio_is_skipped_and_counted(tmp_path, tokenizer_dir):
    train = write_tiny_manifest(tmp_path, "train", 8, bad=1)
    cfg = _config(tmp_path, tokenizer_dir, train, None, max_skipped_fraction=0.2)
    with pytest.warns(UserWarning, match="skipping clip"):
        main(["fit", "--config", str(cfg), "--trainer.max_epochs=1", "--run_dir", str(tmp_path / "run")])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_too_many_bad_files_stop_the_run_naming_them(tmp_path, tokenizer_dir):
    from compclap.data import TooManyBadFilesError

    train = write_tiny_manifest(tmp_path, "train", 8, bad=2)
    cfg = _config(tmp_path, tokenizer_dir, train, None)  # default max_skipped_fraction: 1%
    with pytest.raises(TooManyBadFilesError, match=r"train_00[67]\.wav"):
        main(["fit", "--config", str(cfg), "--trainer.max_epochs=1", "--run_dir", str(tmp_path / "run")])


def _add_negatives(manifest: Path) -> None:
    import json

    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    for i, rec in enumerate(lines):
        # a varying number of negatives per caption, including none
        rec["negatives"] = [[{"text": f"{c} reversed {j}", "kind": "order"} for j in range(i % 3)]
                            for c in rec["captions"]]
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_hard_negative_loss_trains_from_manifest_negatives(tmp_path, tokenizer_dir):
    train = write_tiny_manifest(tmp_path, "train", 8)
    _add_negatives(train)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=2", "--run_dir", str(tmp_path / "run"),
          "--model.loss", "compclap.losses.HardNegativeContrastiveLoss", "--model.loss.max_negatives=1"])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_hard_negative_loss_without_negatives_is_a_clear_error(tmp_path, tokenizer_dir):
    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    with pytest.raises(ValueError, match="no \"negatives\" field"):
        main(["fit", "--config", str(cfg), "--trainer.max_steps=1", "--run_dir", str(tmp_path / "run"),
              "--model.loss", "compclap.losses.HardNegativeContrastiveLoss"])


def test_flatten_negatives_keeps_order_kinds_and_cap():
    from compclap.data import flatten_negatives

    negs = [[{"text": "a", "kind": "order"}, {"text": "b", "kind": "attribute"}, {"text": "c", "kind": "order"}],
            [], [{"text": "d", "kind": "attribute"}]]
    texts, mask = flatten_negatives(negs, max_negatives=2)
    assert texts == ["a", "b", "d"] and mask.tolist() == [[True, True], [False, False], [True, False]]
    texts, mask = flatten_negatives(negs, kinds=["order"])
    assert texts == ["a", "c"] and mask.tolist() == [[True, True], [False, False], [False, False]]


def test_negatives_rewritten_on_the_fly_are_cached(tmp_path, monkeypatch):
    import json

    from compclap.data import ManifestDataModule

    manifest = write_tiny_manifest(tmp_path, "train", 6)
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    lines[0]["captions"] = ["a dog barks followed by a man speaking"]
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    dm = ManifestDataModule(train_manifest=str(manifest), sample_rate=8000, clip_seconds=1.0, num_workers=0,
                            hard_negatives="rewrite", rewriter={"kinds": ["order"]})
    dm.prepare_data()
    dm.setup("fit")
    rec = dm.datasets["fit"].records[0]
    assert any(n["kind"] == "order" and n["text"].lower().startswith("a man speaks") for n in rec["negatives"][0])
    cache = list(tmp_path.glob("train.negatives-*.jsonl"))
    assert len(cache) == 1 and len(cache[0].read_text().splitlines()) == len({c for x in lines for c in x["captions"]})

    import compclap.text.negatives as negatives_module

    def _fail(*args, **kwargs):
        raise AssertionError("cached captions must not be rewritten again")

    monkeypatch.setattr(negatives_module.HardNegativeRewriter, "rewrite_many", _fail)
    again = ManifestDataModule(train_manifest=str(manifest), sample_rate=8000, clip_seconds=1.0, num_workers=0,
                               hard_negatives="rewrite", rewriter={"kinds": ["order"]})
    again.setup("fit")
    assert again.datasets["fit"].records[0]["negatives"] == rec["negatives"]


def test_modular_loss_trains_on_positives_and_negatives(tmp_path, tokenizer_dir):
    import json

    train = write_tiny_manifest(tmp_path, "train", 8)
    _add_negatives(train)
    lines = [json.loads(x) for x in train.read_text().splitlines()]
    for i, rec in enumerate(lines):
        rec["positives"] = rec["captions"][: 1 + i % 2]  # one or two positives per clip
    train.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=2", "--run_dir", str(tmp_path / "run"),
          "--model.loss", "compclap.losses.ModularContrastiveLoss"])
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_collate_flattens_positives_with_owners():
    import numpy as np

    from compclap.data import collate_clips

    items = [{"index": 0, "path": "a", "waveform": np.zeros(4, np.float32), "captions": ["x"], "positives": ["x", "x1"]},
             {"index": 1, "path": "b", "waveform": np.zeros(4, np.float32), "captions": ["y"]},
             {"index": 2, "path": "c", "error": "cannot decode"}]
    batch = collate_clips(items)
    assert batch["positives"] == ["x", "x1", "y"] and batch["positive_owner"].tolist() == [0, 0, 1]
    assert batch["skipped"] == ["c"] and batch["waveforms"].shape == (2, 4)


def test_predict_writes_embeddings(tmp_path, tokenizer_dir):
    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=1", "--run_dir", str(tmp_path / "run")])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out_dir = tmp_path / "pred"
    main(["predict", "--config", str(cfg), "--data.predict_manifest", str(train), "--ckpt_path", str(ckpt),
          "--run_dir", str(tmp_path / "run"), "--trainer.callbacks+=compclap.callbacks.EmbeddingWriter",
          f"--trainer.callbacks.output_dir={out_dir}"])
    emb = torch.load(out_dir / "embeddings_rank0.pt", weights_only=False)
    assert emb["audio_embeds"].shape == (8, 12) and sorted(emb["index"].tolist()) == list(range(8))
    assert emb["text_embeds"].shape == (16, 12) and len(emb["captions"]) == 16
    torch.testing.assert_close(emb["audio_embeds"].norm(dim=-1), torch.ones(8))
