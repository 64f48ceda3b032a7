"""The commands the README and the issue promise: fit --print_config, and fit.yaml's fast_dev_run on a demo world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compclap.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_print_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "seed_everything" in capsys.readouterr().out


def test_fit_yaml_fast_dev_run_on_a_tiny_demo_world(tmp_path, monkeypatch):
    from compclap.data.demo_world import DemoWorldConfig, build_demo_world

    build_demo_world(DemoWorldConfig(out=str(tmp_path / "demo_world"), num_train=12, num_val=4, num_test=4,
                                     num_compa=4, num_events=8, workers=1, tokenizer_vocab=300))
    monkeypatch.chdir(tmp_path)  # fit.yaml's paths (demo_world/..., checkpoints/...) are relative
    main(["fit", "--config", str(REPO / "conf" / "fit.yaml"), "--trainer.fast_dev_run=true",
          "--data.num_workers=0", "--trainer.enable_progress_bar=false"])
    main(["test", "--config", str(REPO / "conf" / "fit.yaml"), "--trainer.fast_dev_run=true",
          "--data.num_workers=0", "--trainer.enable_progress_bar=false"])
    assert json.loads((tmp_path / "demo_world" / "meta.json").read_text())["seed"] == 0
