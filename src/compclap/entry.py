"""The `compclap` console script: a thin dispatcher that imports only what the subcommand needs.

`compclap --help` and the argparse subcommands (evaluate, export, prepare) start without importing Lightning
(which costs ~10 s here); fit / validate / test / predict go to the LightningCLI in `compclap.cli`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

# Subcommand -> one-line help, in the order `compclap --help` lists them.
LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train or fine-tune (LightningCLI: --config conf/fit.yaml [--config FRAGMENT ...]; "
           "resume: --ckpt_path last)",
    "validate": "validation metrics (retrieval) of a checkpoint: --config ... --ckpt_path CKPT",
    "test": "test metrics of a checkpoint, with the CompA CSVs of model.compa_csvs: --config ... --ckpt_path CKPT",
    "predict": "embed --data.predict_manifest with a checkpoint; writes embeddings and their audio paths",
}
# Subcommands outside LightningCLI: name -> ("module:function" taking the remaining arguments, help).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "classify": ("compclap.classifier:main", "fine-tune an audio classifier on CLAP (fit|validate|test|predict)"),
    "evaluate": ("compclap.eval.cli:main", "{compa,zeroshot,retrieval,probe}: score checkpoints, write a report"),
    "export": ("compclap.models.export:main", "a checkpoint as a Hugging Face ClapModel (or compclap) directory"),
    "prepare": ("compclap.prepare:main", "data tools: manifest, negatives, compose, shards, synth-demo"),
}

__all__ = ["LAZY_COMMANDS", "LIGHTNING_COMMANDS", "main", "usage"]


def usage() -> str:
    """The `compclap --help` text: every subcommand with one line each."""
    commands = {**LIGHTNING_COMMANDS, **{name: help_ for name, (_, help_) in LAZY_COMMANDS.items()}}
    width = max(map(len, commands))
    lines = ["usage: compclap {" + ",".join(commands) + "} [-h] ...", "",
             "Fine-tune CLAP audio-text models for compositional reasoning (PyTorch Lightning).", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, help_ in commands.items()]
    lines += ["", "`compclap SUBCOMMAND --help` shows its options; `compclap fit --print_config` every fit option."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Any:
    """Entry point of the `compclap` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from compclap import __version__

        print(f"compclap {__version__}")
        return 0
    if args[0] in LAZY_COMMANDS:
        module, func = LAZY_COMMANDS[args[0]][0].split(":")
        return getattr(importlib.import_module(module), func)(args[1:])
    if args[0] not in LIGHTNING_COMMANDS and not args[0].startswith("-"):  # options before a subcommand: LightningCLI's
        print(f"compclap: unknown subcommand {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from compclap.cli import main as lightning_main

    return lightning_main(args)


if __name__ == "__main__":
    sys.exit(main())
