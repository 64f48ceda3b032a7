"""`compclap predict`: writes under the checkpoint's run (or --output), says where, rows carry audio paths."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from compclap.callbacks import DEFAULT_RUN_DIR, evaluation_run_dir
from compclap.cli import main
from tests.conftest import write_tiny_manifest
from tests.test_training_cli import _config


def test_predict_writes_into_the_run_with_audio_paths(tmp_path, tokenizer_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default run_dir (checkpoints/run) would be relative to here
    train = write_tiny_manifest(tmp_path, "train", 6)
    cfg = _config(tmp_path, tokenizer_dir, train, None)
    spec = yaml.safe_load(cfg.read_text())
    del spec["trainer"]["logger"]  # the default TensorBoard logger, as a user has it
    cfg.write_text(yaml.safe_dump(spec))
    main(["fit", "--config", str(cfg), "--trainer.max_steps=1", "--run_dir", "runs/my_run"])
    ckpt = Path("runs/my_run/checkpoints/last.ckpt")
    capsys.readouterr()

    main(["predict", "--config", str(cfg), "--data.predict_manifest", str(train), "--ckpt_path", str(ckpt)])
    out = tmp_path / "runs" / "my_run" / "predictions"
    printed = capsys.readouterr().out
    expected = "compclap predict: 6 clip and 12 caption embeddings -> runs/my_run/predictions/embeddings_rank0.pt"
    assert expected in printed
    assert not (tmp_path / DEFAULT_RUN_DIR).exists() and not (tmp_path / "checkpoints").exists()
    emb = torch.load(out / "embeddings_rank0.pt", weights_only=False)
    records = [json.loads(x) for x in train.read_text().splitlines()]
    expected = [str((train.parent / records[i]["audio"]).resolve()) for i in emb["index"].tolist()]
    assert [str(Path(a).resolve()) for a in emb["audio"]] == expected
    rows = [json.loads(x) for x in (out / "clips_rank0.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(6)) and [r["audio"] for r in rows] == emb["audio"]
    assert rows[0]["captions"] == records[rows[0]["index"]]["captions"]
    assert emb["audio_embeds"].shape == (6, 12) and emb["text_embeds"].shape == (12, 12)

    main(["predict", "--config", str(cfg), "--data.predict_manifest", str(train), "--ckpt_path", str(ckpt),
          "--output", "elsewhere"])
    assert "-> elsewhere/embeddings_rank0.pt" in capsys.readouterr().out
    assert (tmp_path / "elsewhere" / "clips_rank0.jsonl").is_file()


def test_evaluation_run_dir():
    assert evaluation_run_dir("test", DEFAULT_RUN_DIR, None) == DEFAULT_RUN_DIR
    assert evaluation_run_dir("fit", DEFAULT_RUN_DIR, __file__) == DEFAULT_RUN_DIR
    assert evaluation_run_dir("predict", "mine", __file__) == "mine"
    assert evaluation_run_dir("predict", DEFAULT_RUN_DIR, __file__) == str(Path(__file__).parent)
