"""Non-finite guard: skipped and counted NaN steps, a diverged run stops, no NaN checkpoint, bounded temperature,
embed_* and evaluate refuse NaNs."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from compclap.cli import main
from compclap.nonfinite import NonFiniteCheckpointError, NonFiniteGuard, NonFiniteTrainingError
from conftest import make_tiny_model, write_tiny_manifest
from test_training_cli import _config


def _finite(ckpt: dict) -> bool:
    return all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


class InjectNaN(L.Callback):
    """Turn one clip of the batch at global step `step` into NaNs; record what the guard did."""

    seen: dict = {}

    def __init__(self, step: int) -> None:
        """step: global step whose batch gets a NaN clip."""
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        """Poison the batch and keep a copy of the weights."""
        if trainer.global_step == self.step:
            batch["waveforms"][0] = float("nan")
            InjectNaN.seen["before"] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Compare the weights after the poisoned step; record the counter."""
        if "before" in InjectNaN.seen and "after" not in InjectNaN.seen:
            InjectNaN.seen["after"] = {k: v.clone() for k, v in pl_module.state_dict().items()}
            InjectNaN.seen["loss"] = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
        InjectNaN.seen["counter"] = float(trainer.callback_metrics["train/nonfinite_steps"])
        InjectNaN.seen["step"] = trainer.global_step


def test_a_nan_batch_is_skipped_counted_and_training_continues(tmp_path, tokenizer_dir):
    cfg = _config(tmp_path, tokenizer_dir, write_tiny_manifest(tmp_path, "train", 8), None)
    InjectNaN.seen.clear()
    main(["fit", "--config", str(cfg), "--trainer.max_steps=5", "--run_dir", str(tmp_path / "run"),
          "--trainer.callbacks+=test_nonfinite.InjectNaN", "--trainer.callbacks.step=2"])
    seen = InjectNaN.seen
    assert math.isnan(seen["loss"]) and seen["counter"] == 1.0 and seen["step"] == 5
    for key, value in seen["before"].items():  # no update, BatchNorm statistics restored
        assert torch.equal(value, seen["after"][key]), key
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 5 and _finite(ckpt)
    assert any(not torch.equal(ckpt["state_dict"][k], v) for k, v in seen["after"].items())  # trained on after it


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tokenizer_dir):
    cfg = _config(tmp_path, tokenizer_dir, write_tiny_manifest(tmp_path, "train", 8), None)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(NonFiniteTrainingError, match=r"stopped at step \d+: 3 consecutive steps") as info:
        main(["fit", "--config", str(cfg), "--model.lr=1e8", "--trainer.max_steps=40", "--run_dir",
              str(tmp_path / "run"), "--trainer.callbacks.save_on_exception=true"])
    message = str(info.value)
    if last.exists():
        ckpt = torch.load(last, weights_only=True)
        assert _finite(ckpt)
        assert str(last) in message
        assert ckpt["global_step"] < int(message.split("stopped at step ")[1].split(":")[0])  # not overwritten
    else:
        assert "none (nothing was saved yet)" in message


def test_a_checkpoint_with_nan_weights_is_refused(tokenizer_dir):
    from compclap.lit_module import CompClapModule

    module = CompClapModule(make_tiny_model(tokenizer_dir))
    module.on_save_checkpoint({})  # finite: fine
    with torch.no_grad():
        module.model.audio_projection.linear1.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteCheckpointError, match="audio_projection.linear1.weight"):
        module.on_save_checkpoint({})


def test_guard_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_consecutive_nonfinite"):
        NonFiniteGuard(0)


def test_logit_scale_is_bounded_both_ways(tokenizer_dir):
    model = make_tiny_model(tokenizer_dir)
    with torch.no_grad():
        model.logit_scale.fill_(-5520.0)
    assert float(model.scale()) == pytest.approx(1.0)
    model.clamp_logit_scale_()
    assert float(model.logit_scale) == 0.0
    with torch.no_grad():
        model.logit_scale.fill_(9.0)
    assert float(model.scale()) == pytest.approx(100.0)
    model.clamp_logit_scale_()
    assert float(model.logit_scale) == pytest.approx(math.log(100))
    with pytest.raises(ValueError, match="min_logit_scale"):
        make_tiny_model(tokenizer_dir, min_logit_scale=200.0)


def test_embed_refuses_nan_input_and_nan_weights(tokenizer_dir):
    model = make_tiny_model(tokenizer_dir)
    wave = torch.randn(8000) * 0.1
    bad = wave.clone()
    bad[10] = float("nan")
    with pytest.raises(ValueError, match="audio item 1 has non-finite samples"):
        model.embed_audio([wave.numpy(), bad.numpy()])
    assert torch.isfinite(model.embed_text(["a dog barks"])).all()
    with torch.no_grad():
        model.text_projection.linear1.weight.fill_(float("nan"))
        model.audio_projection.linear1.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite text embeddings"):
        model.embed_text(["a dog barks"])
    with pytest.raises(ValueError, match="non-finite audio embeddings"):
        model.embed_audio([wave.numpy()])


def test_evaluate_refuses_a_checkpoint_with_nan_weights(tmp_path, tokenizer_dir, capsys):
    from compclap.eval.cli import main as evaluate

    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=1", "--run_dir", str(tmp_path / "run")])
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)
    for key, value in ckpt["state_dict"].items():  # what a diverged run without the guard left behind
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(ckpt, tmp_path / "nan.ckpt")
    status = evaluate(["retrieval", "--model", f"nan={tmp_path / 'nan.ckpt'}", "--manifest", str(train), "--out",
                       str(tmp_path / "report"), "--no-cache", "--no-plots", "--no-progress"])
    assert status == 2
    assert "non-finite audio embeddings" in capsys.readouterr().err
    assert not (tmp_path / "report" / "results.json").exists()


def test_the_embedding_cache_refuses_and_never_stores_nans(tmp_path):
    from compclap.eval.cache import CachedEmbedder

    class NaNEmbedder:
        """Not a compclap model: only the cache stands between its NaNs and a report."""

        def embed_audio(self, items):
            return torch.full((len(items), 4), float("nan"))

        def embed_text(self, texts):
            return torch.full((len(texts), 4), float("nan"))

    embedder = CachedEmbedder(NaNEmbedder(), "nan-embedder", tmp_path / "cache", progress=False)
    with pytest.raises(ValueError, match="non-finite text embeddings"):
        embedder.embed_text(["a dog barks"])
    assert embedder.cache.get("nan-embedder", "text", [embedder.text_key("a dog barks")]) == {}
