"""The `compclap` dispatcher: every subcommand listed, --help fast because nothing heavy is imported."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from compclap.entry import LAZY_COMMANDS, LIGHTNING_COMMANDS, main, usage

COMPCLAP = Path(sys.executable).with_name("compclap")
PROBE = ("import sys; from compclap.entry import main\n"
         "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         "heavy = sorted(m for m in ('torch', 'lightning', 'transformers', 'spacy') if m in sys.modules)\n"
         "print('HEAVY', heavy)")


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "evaluate", "export", "prepare"):
        assert f"\n  {name} " in out, name
    assert set(LIGHTNING_COMMANDS) == {"fit", "validate", "test", "predict"}
    assert {"evaluate", "export", "prepare"} <= set(LAZY_COMMANDS)
    assert main([]) == 2 and "usage: compclap" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2 and "unknown subcommand 'frobnicate'" in capsys.readouterr().err
    assert usage().startswith("usage: compclap {fit,validate,test,predict,")


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"], ["evaluate", "compa", "--help"],
                                  ["prepare", "--help"], ["prepare", "manifest", "--help"]])
def test_help_imports_neither_torch_nor_lightning(argv):
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out[-400:]


def test_console_script_help_under_two_seconds():
    """The installed console script points at the dispatcher; --help and evaluate --help return in < 2 s."""
    if not COMPCLAP.is_file():
        pytest.skip(f"no console script at {COMPCLAP}")
    assert "compclap.entry" in COMPCLAP.read_text()
    for argv in (["--help"], ["evaluate", "--help"]):
        best = float("inf")
        for _ in range(2):  # the best of two: a loaded machine may stall one start
            start = time.perf_counter()
            done = subprocess.run([str(COMPCLAP), *argv], capture_output=True, text=True)
            best = min(best, time.perf_counter() - start)
        assert done.returncode == 0 and "usage: compclap" in done.stdout
        assert best < 2.0, (argv, best)


def test_eval_cli_cache_default_matches_the_runner():
    from compclap.eval import cli
    from compclap.eval.runner import DEFAULT_CACHE_DIR

    assert cli.DEFAULT_CACHE_DIR == DEFAULT_CACHE_DIR


def test_python_dash_m_compclap():
    done = subprocess.run([sys.executable, "-m", "compclap", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "prepare" in done.stdout
