"""Shard lists as make_shards wrote them: folders, the printed pattern, a clear error for a wrong one, too few
shards for ranks x workers, pin_memory only on CUDA."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_tiny_manifest

from compclap.data.shard_specs import check_local_shards, check_shard_count, use_pin_memory
from compclap.data.shards import ShardDataModule, expand_shards
from compclap.prepare import main as prepare

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    manifest = write_tiny_manifest(root, "train", 6)
    assert prepare(["shards", "--manifest", str(manifest), "--out", str(root / "train"), "--shard-size", "2"]) == 0
    return root / "train"


def test_make_shards_prints_the_pattern_and_the_folder_works(shards, tmp_path, capsys):
    manifest = write_tiny_manifest(tmp_path, "val", 3)
    assert prepare(["shards", "--manifest", str(manifest), "--out", str(tmp_path / "val"), "--shard-size", "2"]) == 0
    out = capsys.readouterr().out
    assert f"--data.val_shards '{tmp_path / 'val'}/shard-{{000000..000001}}.tar'" in out
    names = [str(shards / f"shard-00000{i}.tar") for i in range(3)]
    assert expand_shards(str(shards)) == names == expand_shards(f"{shards}/shard-{{000000..000002}}.tar")
    assert expand_shards([str(shards), str(tmp_path / "val")])[3:] == [str(tmp_path / "val" / "shard-000000.tar"),
                                                                        str(tmp_path / "val" / "shard-000001.tar")]
    assert expand_shards(f"file://{shards}") == [f"file://{n}" for n in names]


def test_a_pattern_that_does_not_match_names_what_was_written(shards):
    wrong = f"{shards}/shard-{{000000..000099}}.tar"  # the README's old 100-shard example
    with pytest.raises(FileNotFoundError, match=r"97 of the 100 shards .* holds '.*shard-\{000000\.\.000002\}\.tar'"):
        check_local_shards(expand_shards(wrong), wrong)
    check_local_shards(expand_shards(str(shards)), str(shards))
    check_local_shards(["pipe:cat /nowhere/shard-000000.tar"], "pipe:...")  # remote: not checked here
    dm = ShardDataModule(train_shards=wrong, epoch_length=4, num_workers=0)
    with pytest.raises(FileNotFoundError, match="pass that pattern, or the folder"):
        dm.setup("fit")


def test_too_few_shards_for_ranks_and_workers_warns(shards):
    with pytest.warns(UserWarning, match=r"3 training shard\(s\) for 2 rank\(s\) x 2 DataLoader worker\(s\) = 4"):
        assert not check_shard_count(3, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_shard_count(4, 2, 2) and check_shard_count(3, 1, 0)
    dm = ShardDataModule(train_shards=str(shards), val_shards=str(shards), batch_size=2, num_workers=4,
                         sample_rate=8000, clip_seconds=0.5)
    dm.setup("fit")
    with pytest.warns(UserWarning, match="Write at least 4 shards"):
        loader = dm.train_dataloader()
    assert loader.pin_memory is (torch.cuda.is_available())


def test_pin_memory_only_on_cuda():
    assert use_pin_memory(False) is False
    assert use_pin_memory(None) is torch.cuda.is_available()

    class CPUAccelerator:
        pass

    class Trainer:
        accelerator = CPUAccelerator()

    assert use_pin_memory(True, Trainer()) is False and use_pin_memory(None, Trainer()) is False


def test_shards_yaml_defaults_are_the_folders_the_readme_writes():
    data = yaml.safe_load((REPO / "conf" / "data" / "shards.yaml").read_text())["data"]["init_args"]
    readme = (REPO / "README.md").read_text()
    for split in ("train", "val"):
        assert data[f"{split}_shards"] == f"data/my_corpus/shards/{split}"
        assert f"--out data/my_corpus/shards/{split}" in readme
    assert data["pin_memory"] is None
