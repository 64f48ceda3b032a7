"""Training-at-scale switches: bf16, accumulation, activation checkpointing, compile, per-part/per-layer lr, schedule."""

from __future__ import annotations

import pytest
import torch

from compclap.cli import main
from compclap.lit_module import CompClapModule
from conftest import make_tiny_model, write_tiny_manifest
from test_training_cli import _config


def _fit(tmp_path, tokenizer_dir, *extra, n=8):
    train = write_tiny_manifest(tmp_path, "train", n)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    main(["fit", "--config", str(cfg), "--run_dir", str(tmp_path / "run"), *extra])
    return torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)


def test_bf16_mixed_precision_on_cpu(tmp_path, tokenizer_dir):
    ckpt = _fit(tmp_path, tokenizer_dir, "--trainer.precision=bf16-mixed", "--trainer.max_steps=2")
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert all(v.dtype != torch.bfloat16 for v in ckpt["state_dict"].values())  # master weights stay float32


def test_gradient_accumulation_counts_optimizer_steps(tmp_path, tokenizer_dir):
    ckpt = _fit(tmp_path, tokenizer_dir, "--trainer.accumulate_grad_batches=2", "--trainer.max_epochs=1", n=16)
    assert ckpt["global_step"] == 2  # 4 batches of 4, two per optimizer step


def test_activation_checkpointing_gives_the_same_gradients(tokenizer_dir):
    from compclap.models.training_aids import enable_activation_checkpointing

    torch.manual_seed(0)
    plain = make_tiny_model(tokenizer_dir)
    checkpointed = make_tiny_model(tokenizer_dir)
    checkpointed.load_state_dict(plain.state_dict())
    assert enable_activation_checkpointing(checkpointed) == 2 + 2  # two HTSAT stages, two RoBERTa layers
    waves, texts = torch.randn(3, 8000) * 0.1, ["a beep", "a hum", "a dog barks"]
    grads = []
    for model in (plain, checkpointed):
        model.train()
        torch.manual_seed(123)  # same dropout masks; checkpointing replays the RNG state when recomputing
        out = model(waves, texts)
        (out["audio_embeds"] @ out["text_embeds"].T).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_compiled_towers_match_eager(tokenizer_dir):
    torch.manual_seed(0)
    model = make_tiny_model(tokenizer_dir).eval()
    waves, texts = torch.randn(2, 8000) * 0.1, ["a beep", "a hum"]
    with torch.no_grad():
        eager = model(waves, texts)
    module = CompClapModule(model, compile=True)
    with torch.no_grad():
        compiled = module.model(waves, texts)
    torch.testing.assert_close(compiled["audio_embeds"], eager["audio_embeds"], atol=1e-5, rtol=1e-4)
    assert all(not k.startswith("_orig_mod") and "._orig_mod." not in k for k in module.state_dict())


class _FakeTrainer:
    estimated_stepping_batches = 100


def _optimizer(model, **kwargs):
    module = CompClapModule(model, lr=1e-3, weight_decay=0.1, **kwargs)
    module.trainer = None
    module._trainer = _FakeTrainer()  # configure_optimizers only reads estimated_stepping_batches
    return module, module.configure_optimizers()


def test_tower_lr_multipliers_and_layer_decay(tokenizer_dir):
    model = make_tiny_model(tokenizer_dir)
    module, conf = _optimizer(model, lr_multipliers={"audio": 0.1, "text": 0.5}, layer_decay=0.5)
    lr_of = {}
    for group in conf["optimizer"].param_groups:
        for p in group["params"]:
            lr_of[id(p)] = (group["initial_lr"], group["weight_decay"])
    enc = model.audio.backbone.audio_encoder
    assert lr_of[id(enc.layers[1].blocks[0].attention.self.query.weight)] == (pytest.approx(1e-4), 0.1)
    assert lr_of[id(enc.layers[0].blocks[0].attention.self.query.weight)][0] == pytest.approx(0.5e-4)
    assert lr_of[id(enc.patch_embed.proj.weight)][0] == pytest.approx(0.25e-4)  # stem: decay^2
    assert lr_of[id(enc.norm.weight)] == (pytest.approx(1e-4), 0.0)  # tail: no decay, norms: no weight decay
    text_layers = model.text.backbone.encoder.layer
    assert lr_of[id(text_layers[1].attention.self.query.weight)][0] == pytest.approx(5e-4)
    assert lr_of[id(model.text_projection.linear1.weight)][0] == pytest.approx(1e-3)  # heads at full lr
    assert lr_of[id(model.logit_scale)] == (pytest.approx(1e-3), 0.0)
    assert len(lr_of) == sum(1 for p in module.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="lr_multipliers"):
        CompClapModule(model, lr_multipliers={"vision": 1.0})


def test_warmup_then_cosine_schedule(tokenizer_dir):
    _, conf = _optimizer(make_tiny_model(tokenizer_dir), warmup_steps=10, min_lr_ratio=0.1)
    sched = conf["lr_scheduler"]["scheduler"]
    factor = sched.lr_lambdas[0]
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.55)
    assert factor(100) == pytest.approx(0.1)


def test_heads_only_stage_on_cached_audio_features(tmp_path, tokenizer_dir):
    """A frozen, feature-caching audio tower: its weights (the level grid's norm too) stay those it started from, the
    audio head learns, and the checkpoint loads back with the cache switched on."""
    from compclap.models.loading import load_model

    audio_args = "--model.model.init_args.audio.init_args"
    grid = [f"{audio_args}.temporal_bins=2", f"{audio_args}.level_bands=4"]
    start = _fit(tmp_path, tokenizer_dir, "--trainer.max_steps=1", *grid)
    run = tmp_path / "run" / "checkpoints" / "last.ckpt"
    start_path = tmp_path / "start.ckpt"
    run.rename(start_path)
    heads = _fit(tmp_path, tokenizer_dir, "--trainer.max_epochs=2", f"--model.init_from={start_path}",
                 f"{audio_args}.trainable_blocks=0", f"{audio_args}.cache_features=true", *grid)
    assert heads["global_step"] == 4
    tower = {k: v for k, v in heads["state_dict"].items() if k.startswith("model.audio.")}
    assert any("level_norm" in k for k in tower)
    for key, value in tower.items():
        assert torch.equal(value, start["state_dict"][key]), key
    assert not torch.equal(heads["state_dict"]["model.audio_projection.linear1.weight"],
                           start["state_dict"]["model.audio_projection.linear1.weight"])
    model = load_model(run)
    assert model.audio.cache_features and model.audio.trainable_blocks == 0
