"""What wins in `compclap fit|validate|test|predict`: the command line, then --config files, then the checkpoint.

LightningCLI (2.6) merges a `--ckpt_path` file's hyper-parameters *over* the parsed config, so
`compclap test --ckpt_path X --model.compa_csvs '{order: o.csv}'` silently tested with the checkpoint's
`compa_csvs: null`. Here the checkpoint's hyper-parameters become the parser's defaults instead and the command
line is parsed again, so jsonargparse's own order holds: command-line arguments > --config files > checkpoint
hyper-parameters > defaults (the approach of Lightning PR #21455). Two exceptions, both about weights:

- `model.model`, the network, is the architecture the checkpoint carries (`compclap_architecture`, written by
  every compclap checkpoint; see models/embedded.py): the weights fit no other, and the sources a config names
  (`hf_pretrained`, `pretrained`, tokenizer folders) are never opened, so a run still tests after its source
  folder moved. Checkpoints written before that entry existed keep the old rule (their stored config, with
  command-line and --config values on top, so a moved source can be pointed at with
  `--model.model.init_args.hf_pretrained NEW_PATH`).
- `model.init_from` is dropped: the checkpoint's weights replace whatever it would load.

`--run_dir` given on the command line wins over any --config file's `run_dir`, before or after it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI


SUBCOMMANDS = ("fit", "validate", "test", "predict")


def command_line(args: ArgsType) -> list[str] | None:
    """The argument list LightningCLI parses (sys.argv when `args` is None; None for dict/Namespace args)."""
    if args is None:
        return sys.argv[1:]
    return [str(a) for a in args] if isinstance(args, (list, tuple)) else None


def explicit_option(argv: Sequence[str], name: str) -> str | None:
    """The last value given on the command line as `--name VALUE` or `--name=VALUE`, or None."""
    value = None
    for i, token in enumerate(argv):
        if token == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith(f"--{name}="):
            value = token.split("=", 1)[1]
    return value


def run_dir_last(argv: Sequence[str]) -> list[str]:
    """`argv` with its `--run_dir` options moved to the end, so no --config file given after them overrides them."""
    kept, moved, i = [], [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--run_dir" and i + 1 < len(argv):
            moved += [token, argv[i + 1]]
            i += 2
            continue
        (moved if token.startswith("--run_dir=") else kept).append(token)
        i += 1
    return kept + moved


def _checkpoint_hparams(path: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(hyper-parameters without `_instantiator`, embedded architecture spec or None) of a checkpoint file."""
    import torch

    from compclap.models.embedded import stored_architecture
    from compclap.models.registry import check_checkpoint

    try:  # memory-mapped: the weights are not read here
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError):  # not a zip-format file: no mmap
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    check_checkpoint(ckpt, str(path))  # before jsonargparse imports any class path the hyper-parameters name
    hparams = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
    hparams.pop("_instantiator", None)
    return hparams, stored_architecture(ckpt, str(path))


def _set_checkpoint_defaults(cli: LightningCLI, subcommand: str, ckpt_path: str) -> dict[str, Any] | None:
    """Make a checkpoint's hyper-parameters the `model.*` defaults of a subcommand; returns its embedded spec."""
    hparams, spec = _checkpoint_hparams(ckpt_path)
    if spec is not None:
        hparams["model"] = spec
    subparser = cli._subcommand_parsers[subcommand]
    ignored = []
    for key, value in hparams.items():
        try:
            subparser.set_defaults({f"model.{key}": value})
        except (KeyError, ValueError, TypeError):  # an option this version no longer has
            ignored.append(key)
    if ignored:
        print(f"compclap: {ckpt_path}: ignoring stored hyper-parameters this version does not know: {ignored}",
              file=sys.stderr)
    return spec


def _parse(cli: LightningCLI, parser: LightningArgumentParser, args: ArgsType, argv: list[str] | None) -> None:
    cli.config = parser.parse_args(argv) if argv is not None else parser.parse_object(args)


def _ckpt_file(cli: LightningCLI) -> tuple[str | None, str | None]:
    subcommand = cli.config.get("subcommand")
    ckpt_path = cli.config[subcommand].get("ckpt_path") if subcommand else None
    return subcommand, str(ckpt_path) if ckpt_path and Path(ckpt_path).is_file() else None


def parse_with_priority(cli: LightningCLI, parser: LightningArgumentParser, args: ArgsType) -> None:
    """Parse into `cli.config`: command line > --config files > checkpoint hyper-parameters (see module doc)."""
    argv = command_line(args)
    early: tuple[str, str] | None = None
    spec = None
    if argv is not None:
        argv = run_dir_last(argv)
        # A --ckpt_path on the command line sets the defaults before the first parse, so --print_config shows them.
        subcommand = next((t for t in argv if t in SUBCOMMANDS), None)
        ckpt_path = explicit_option(argv, "ckpt_path")
        if subcommand and ckpt_path and Path(ckpt_path).is_file():
            early = (subcommand, ckpt_path)
            spec = _set_checkpoint_defaults(cli, subcommand, ckpt_path)
    _parse(cli, parser, args, argv)
    subcommand, ckpt_path = _ckpt_file(cli)
    if ckpt_path is None:
        return
    if early != (subcommand, ckpt_path):  # named in a --config file (or args given as a dict): parse again
        spec = _set_checkpoint_defaults(cli, subcommand, ckpt_path)
        _parse(cli, parser, args, argv)
    model_cfg = cli.config[subcommand]["model"]
    if spec is not None:
        if any(t.startswith("--model.model") for t in argv or []):
            print(f"compclap: --model.model options are not used with --ckpt_path {ckpt_path}: the architecture "
                  "comes from the checkpoint", file=sys.stderr)
        model_cfg["model"] = None
        cli.config = parser.parse_object({subcommand: {"model": {"model": spec}}}, cli.config)
        model_cfg = cli.config[subcommand]["model"]
    if model_cfg.get("init_from") is not None:
        model_cfg["init_from"] = None  # the checkpoint's weights replace whatever it would load
