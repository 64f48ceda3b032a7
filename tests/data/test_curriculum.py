"""Curriculum: which stage manifest an epoch trains on, and the Lightning callback that switches it (also on resume)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import write_tiny_manifest
from torch import nn

from compclap.data.curriculum import CurriculumCallback, CurriculumManifests, stage_for_epoch, stage_manifests
from compclap.data.datamodule import ManifestDataModule

pytestmark = pytest.mark.filterwarnings("ignore:You passed in a .val_dataloader. but have no .validation_step.")


def test_stage_for_epoch():
    assert [stage_for_epoch(e, 1, 3) for e in range(6)] == [0, 1, 2, 2, 2, 2]
    assert [stage_for_epoch(e, [2, 1, 3], 3) for e in range(8)] == [0, 0, 1, 2, 2, 2, 2, 2]
    assert [stage_for_epoch(e, 2, 2) for e in range(5)] == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError):
        stage_for_epoch(0, [1, 1], 3)
    with pytest.raises(ValueError):
        stage_for_epoch(0, [0, 1], 2)
    with pytest.raises(ValueError):
        stage_for_epoch(-1, 1, 2)


def test_manifests_from_directory_in_stage_order(tmp_path):
    for k in (1, 2, 10):
        (tmp_path / f"train_stage{k}.jsonl").write_text("{}\n")
    (tmp_path / "val_stage1.jsonl").write_text("{}\n")
    (tmp_path / "train.jsonl").write_text("{}\n")
    found = stage_manifests(tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in found] == ["train_stage1.jsonl", "train_stage2.jsonl", "train_stage10.jsonl"]
    cur = CurriculumManifests.from_directory(tmp_path, epochs_per_stage=[1, 2, 1])
    assert [cur.manifest(e).rsplit("/", 1)[-1] for e in range(5)] == [
        "train_stage1.jsonl", "train_stage2.jsonl", "train_stage2.jsonl", "train_stage10.jsonl", "train_stage10.jsonl"]
    with pytest.raises(FileNotFoundError):
        stage_manifests(tmp_path, name="test")


class _Recorder(L.LightningModule):
    """Trains a single weight; remembers how many clips each epoch's training set had."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(1, 1)
        self.sizes: dict[int, int] = {}

    def on_train_epoch_start(self) -> None:
        self.sizes[self.current_epoch] = len(self.trainer.train_dataloader.dataset)

    def training_step(self, batch, batch_idx):
        return self.w(batch["waveforms"].mean(1, keepdim=True)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer(callback, max_epochs: int) -> L.Trainer:
    return L.Trainer(max_epochs=max_epochs, callbacks=[callback], reload_dataloaders_every_n_epochs=1,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, accelerator="cpu", devices=1)


def _datamodule(first: str) -> ManifestDataModule:
    return ManifestDataModule(train_manifest=first, batch_size=2, num_workers=0, sample_rate=8000,
                              clip_seconds=0.25, drop_last=False)


def test_callback_switches_stage_by_epoch_and_after_resume(tmp_path):
    # stage sizes 2, 4, 6 clips tell the stages apart
    stages = [str(write_tiny_manifest(tmp_path / f"s{k}", f"train_stage{k}", 2 * k)) for k in (1, 2, 3)]
    model = _Recorder()
    trainer = _trainer(CurriculumCallback(stages, epochs_per_stage=[1, 2, 1]), max_epochs=2)
    trainer.fit(model, datamodule=_datamodule(stages[0]))
    assert model.sizes == {0: 2, 1: 4}
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)

    resumed = _Recorder()
    trainer = _trainer(CurriculumCallback(stages, epochs_per_stage=[1, 2, 1]), max_epochs=5)
    trainer.fit(resumed, datamodule=_datamodule(stages[0]), ckpt_path=str(ckpt))
    assert resumed.sizes == {2: 4, 3: 6, 4: 6}  # stage 2 continues, then stage 3 for good


def test_callback_needs_reloading_dataloaders(tmp_path):
    stages = [str(write_tiny_manifest(tmp_path, "train_stage1", 2))]
    trainer = L.Trainer(max_epochs=1, callbacks=[CurriculumCallback(stages)], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu", devices=1)
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs"):
        trainer.fit(_Recorder(), datamodule=_datamodule(stages[0]))
