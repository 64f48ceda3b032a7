"""Optimiser and schedule (compclap.optim): warm-up ratio and clamp, any torch.optim class, --optimizer refused."""

from __future__ import annotations

import warnings

import pytest
import torch

from compclap.cli import main
from compclap.lit_module import CompClapModule
from compclap.optim import MAX_WARMUP_FRACTION, cli_optimizer_error, resolve_warmup
from conftest import make_tiny_model, write_tiny_manifest
from test_training_cli import _config


class _FakeTrainer:
    def __init__(self, total: float = 8) -> None:
        self.estimated_stepping_batches = total


def _configure(model, total: float = 8, **kwargs):
    module = CompClapModule(model, lr=1e-5, weight_decay=0.1, **kwargs)
    module._trainer = _FakeTrainer(total)
    return module, module.configure_optimizers()


def test_warmup_steps_longer_than_a_quarter_of_the_run_are_clamped_with_a_warning(tokenizer_dir):
    # The case: warmup_steps 500, lr 1e-5, an 8-step run; the peak lr used to be 1.4e-7.
    with pytest.warns(UserWarning, match=r"warmup_steps=500 is more than 25% of this run's 8 optimizer steps: "
                                         r"warming up over 2 steps"):
        _, conf = _configure(make_tiny_model(tokenizer_dir), total=8, warmup_steps=500)
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(8):
        lrs.append(max(g["lr"] for g in opt.param_groups))
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5e-5) and lrs[1] == pytest.approx(1e-5)  # peak reached at step 2
    assert max(lrs) == pytest.approx(1e-5)


def test_warmup_within_the_limit_is_kept_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_warmup(100, 25, None) == 25
        assert resolve_warmup(2, 1, None) == 1  # at least one step is always allowed
        assert resolve_warmup(None, 500, None) == 500  # unknown length: nothing to clamp against
    assert MAX_WARMUP_FRACTION == 0.25


def test_warmup_ratio_follows_the_run_and_wins_over_warmup_steps(tokenizer_dir):
    assert resolve_warmup(160, 50, 0.05) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ratio is never clamped nor warned about
        _, conf = _configure(make_tiny_model(tokenizer_dir), total=200, warmup_steps=500, warmup_ratio=0.1)
    factor = conf["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert factor(0) == pytest.approx(1 / 20) and factor(19) == pytest.approx(1.0) and factor(20) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="warmup_ratio"):
        CompClapModule(make_tiny_model(tokenizer_dir), warmup_ratio=1.5)


def test_sgd_gets_the_parameter_groups_and_the_schedule(tokenizer_dir):
    model = make_tiny_model(tokenizer_dir)
    module, conf = _configure(model, total=100, optimizer="torch.optim.SGD", optimizer_args={"momentum": 0.9},
                              lr_multipliers={"audio": 0.1}, layer_decay=0.5, warmup_steps=10)
    opt = conf["optimizer"]
    assert type(opt) is torch.optim.SGD and all(g["momentum"] == 0.9 for g in opt.param_groups)
    lr_of = {id(p): (g["initial_lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    enc = model.audio.backbone.audio_encoder
    assert lr_of[id(enc.layers[1].blocks[0].attention.self.query.weight)] == (pytest.approx(1e-6), 0.1)
    assert lr_of[id(enc.patch_embed.proj.weight)][0] == pytest.approx(0.25e-6)  # layer decay kept
    assert lr_of[id(model.logit_scale)] == (pytest.approx(1e-5), 0.0)  # heads: full lr, no decay
    assert conf["lr_scheduler"]["scheduler"].lr_lambdas[0](0) == pytest.approx(0.1)  # warm-up kept
    assert module.hparams.optimizer == "torch.optim.SGD"  # stored as a name: checkpoints import nothing else


def test_bad_optimizer_options_are_refused_when_the_module_is_built(tokenizer_dir):
    model = make_tiny_model(tokenizer_dir)
    with pytest.raises(ValueError, match="torch.optim optimizer class"):
        CompClapModule(model, optimizer="mypackage.MyOptimizer")
    with pytest.raises(ValueError, match="use model.lr"):
        CompClapModule(model, optimizer="SGD", optimizer_args={"lr": 0.1})
    with pytest.raises(ValueError, match="SGD takes no argument 'eps'"):
        CompClapModule(model, optimizer="SGD", optimizer_args={"eps": 1e-6})
    with pytest.raises(ValueError, match="SGD takes no betas"):
        CompClapModule(model, optimizer="SGD", betas=(0.8, 0.9))


def test_lightning_cli_optimizer_flags_are_refused_with_a_pointer(tmp_path, tokenizer_dir, capsys):
    assert "--model.optimizer" in cli_optimizer_error(["fit", "--optimizer", "torch.optim.SGD"])
    assert cli_optimizer_error(["fit", "--lr_scheduler.class_path=x"]).startswith("compclap does not take "
                                                                               "LightningCLI's --lr_scheduler")
    assert cli_optimizer_error(["fit", "--model.optimizer", "SGD"]) is None
    yaml_cfg = tmp_path / "opt.yaml"
    yaml_cfg.write_text("optimizer:\n  class_path: torch.optim.SGD\n")
    assert "optimizer: (in" in cli_optimizer_error(["fit", "--config", str(yaml_cfg)])

    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg), "--optimizer", "torch.optim.SGD", "--run_dir", str(tmp_path / "run")])
    assert "--model.optimizer SGD" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_fit_with_model_optimizer_sgd(tmp_path, tokenizer_dir):
    train = write_tiny_manifest(tmp_path, "train", 8)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    main(["fit", "--config", str(cfg), "--trainer.max_steps=2", "--run_dir", str(tmp_path / "run"),
          "--model.optimizer", "SGD", "--model.optimizer_args", "{momentum: 0.9, nesterov: true}",
          "--model.weight_decay", "0.01"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["optimizer"] == "SGD"
    (state,) = ckpt["optimizer_states"]
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in state["param_groups"])
    assert len(state["param_groups"]) >= 2 and ckpt["lr_schedulers"]  # groups (decay / no decay) and schedule
