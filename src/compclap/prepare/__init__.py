"""`compclap prepare`: the data-preparation tools of an installed package (the data_prep/*.py scripts call them).

    compclap prepare manifest   --csv train.csv --audio-dir audio/train --output data/train.jsonl
    compclap prepare negatives  --manifest --input data/train.jsonl --output data/train_hn.jsonl
    compclap prepare compose    --events events.jsonl --out data/composed --num 5000
    compclap prepare shards     --manifest data/train.jsonl --out data/shards/train
    compclap prepare synth-demo --out demo_world

This module imports only argparse: each tool's own module (and torch, spaCy, ...) is imported when it runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

# subcommand -> (module, one-line help, the checkout script it replaces)
TOOLS: dict[str, tuple[str, str, str]] = {
    "manifest": ("compclap.prepare.manifest", "AudioCaps/Clotho caption CSV + audio folder -> JSONL manifest",
                 "data_prep/build_manifest.py"),
    "negatives": ("compclap.prepare.negatives", "order/attribute hard negatives for captions or a manifest",
                  "data_prep/hard_negatives.py"),
    "compose": ("compclap.prepare.compose", "compose multi-event clips from single events (expression trees)",
                "data_prep/compose.py"),
    "shards": ("compclap.prepare.shards", "write a manifest as webdataset tar shards", "data_prep/make_shards.py"),
    "synth-demo": ("compclap.prepare.synth_demo", "synthesise the offline demo world", "data_prep/synth_demo.py"),
}

__all__ = ["TOOLS", "main", "usage"]


def usage() -> str:
    """The `compclap prepare --help` text."""
    width = max(map(len, TOOLS))
    lines = ["usage: compclap prepare {" + ",".join(TOOLS) + "} [-h] ...", "",
             (__doc__ or "").split("\n\n")[0], "", "tools:"]
    lines += [f"  {name:<{width}}  {help_}  (= {script})" for name, (_, help_, script) in TOOLS.items()]
    lines += ["", "`compclap prepare TOOL --help` shows a tool's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Any:
    """Run `compclap prepare TOOL ARGS...`; returns the tool's exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in TOOLS:
        print(f"compclap prepare: unknown tool {name!r}; choose one of {', '.join(TOOLS)}\n\n{usage()}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(TOOLS[name][0])
    result = module.main(rest, prog=f"compclap prepare {name}")
    return result if isinstance(result, int) else 0  # compose / synth-demo return their summary
