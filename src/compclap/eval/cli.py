"""`compclap evaluate {compa,zeroshot,retrieval,probe}`: score checkpoints and write one report.

Examples::

    compclap evaluate compa --model base=clap-htsat-unfused --model ours=checkpoints/run/checkpoints/last.ckpt \\
        --csv order=CompA_order.csv --csv attribute=CompA_attribute.csv --audio-root compa_audio --out reports/compa
    compclap evaluate zeroshot --model ours=last.ckpt --esc50 ESC-50-master --out reports/compa
    compclap evaluate retrieval --model ours=last.ckpt --csv clotho_captions_evaluation.csv \\
        --audio-dir clotho/evaluation --out reports/compa
    compclap evaluate probe --model ours=last.ckpt --esc50 ESC-50-master --out reports/compa

Every run writes (or extends) ``OUT/results.json`` and ``OUT/report.md`` with PNG plots and per-row CSVs;
results of earlier runs into the same folder are kept, so the subcommands build one page.
Embeddings are cached (``--cache``) by file content and model identity: re-running after adding a model
only embeds with the new model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compclap.eval.runner import ModelSpec

# = compclap.eval.runner.DEFAULT_CACHE_DIR (a test checks): not imported, so that --help never loads torch.
DEFAULT_CACHE_DIR = Path("checkpoints") / "embed_cache"

__all__ = ["main", "parse_model_args"]


def parse_model_args(values: list[str], tokenizer: str | None = None) -> list[ModelSpec]:
    """``--model PATH`` or ``--model NAME=PATH`` -> ModelSpecs with unique names.

    ``NAME=PATH`` is recognised when PATH exists and the whole string does not. Unnamed models are named by
    the file stem (directory name), with parent folders prepended until names are unique.
    """
    from compclap.eval.runner import ModelSpec
    from compclap.models.run_dir import checkpoint_exists

    specs: list[tuple[str | None, str]] = []
    for value in values:
        name, path = None, value
        if "=" in value and not checkpoint_exists(value):
            head, tail = value.split("=", 1)
            if head:
                name, path = head, tail
        if not path.strip():
            raise ValueError(f"--model {value!r}: empty checkpoint path")
        if not checkpoint_exists(path):
            raise FileNotFoundError(f"--model {value}: checkpoint not found: {path}")
        specs.append((name, path))
    names = {i: n for i, (n, _) in enumerate(specs) if n is not None}
    auto = [i for i, (n, _) in enumerate(specs) if n is None]
    depth = dict.fromkeys(auto, 1)
    for _ in range(32):
        names.update({i: _auto_name(specs[i][1], depth[i]) for i in auto})
        taken = list(names.values())
        clash = [i for i in auto if taken.count(names[i]) > 1]
        if not clash:
            break
        for i in clash:
            depth[i] += 1
    out = [ModelSpec(name=names[i], path=path, tokenizer=tokenizer) for i, (_, path) in enumerate(specs)]
    seen = [m.name for m in out]
    dupes = sorted({n for n in seen if seen.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate model names {dupes}: name them with --model NAME=PATH")
    return out


def _auto_name(path: str, depth: int) -> str:
    """The file stem (directory name) with its last depth-1 parent folders."""
    p = Path(os.path.abspath(path))
    leaf = p.stem if p.is_file() else p.name
    parents = list(p.parent.parts[1:])
    return "/".join([*parents[max(0, len(parents) - depth + 1):], leaf] if depth > 1 else [leaf])


def _named(value: str) -> tuple[str | None, str]:
    if "=" in value and not Path(value).exists():
        head, tail = value.split("=", 1)
        if head and tail:
            return head, tail
    return None, value


def _label_source(p: argparse.ArgumentParser, esc50_help: str, csv_help: str) -> None:
    """The labelled-audio options zero-shot and the probes share: --esc50 | --csv, --audio-root, --label-sep."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--esc50", metavar="DIR", help=esc50_help)
    src.add_argument("--csv", metavar="FILE", help=csv_help)
    p.add_argument("--audio-root", default=None, metavar="DIR", help="folder the CSV's paths are relative to")
    p.add_argument("--label-sep", default=";", help="separator of the labels column (default: %(default)s)")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("models and output")
    g.add_argument("--model", action="append", required=True, metavar="[NAME=]PATH",
                   help="checkpoint to evaluate (repeatable): a compclap .ckpt or run directory (its best checkpoint, "
                        "else last.ckpt; RUN_DIR/last, RUN_DIR/best), a Hugging Face CLAP directory, or any format "
                        "load_model accepts; NAME labels its row in the report (one NAME per checkpoint)")
    g.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="tokenizer directory passed to load_model (checkpoints that carry none)")
    g.add_argument("--out", type=Path, default=Path("reports") / "evaluate", metavar="DIR",
                   help="output folder: results.json, report.md, PNG plots, per-row CSVs (default: %(default)s)")
    g.add_argument("--cache", type=Path, default=Path(os.environ.get("COMPCLAP_EMBED_CACHE", DEFAULT_CACHE_DIR)),
                   metavar="DIR", help="embedding cache folder (default: $COMPCLAP_EMBED_CACHE or %(default)s)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    g.add_argument("--fresh", action="store_true",
                   help="start a new report instead of adding to OUT/results.json")
    g.add_argument("--replace", action="store_true",
                   help="let --model NAME=PATH replace the results of an earlier NAME that read another checkpoint "
                        "(without it such a reused name is an error)")
    g.add_argument("--title", default="compclap evaluation", help="report title")
    g.add_argument("--batch-size", type=int, default=32, help="clips/texts per model call (default: %(default)s)")
    g.add_argument("--device", default="cpu", help="torch device for the models, e.g. cuda (default: %(default)s)")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")

    parser = argparse.ArgumentParser(prog="compclap evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="{compa,zeroshot,retrieval,probe}")

    p = sub.add_parser("compa", parents=[common], help="CompA-order / CompA-attribute text, audio, group scores")
    p.add_argument("--csv", action="append", required=True, metavar="[NAME=]FILE",
                   help="CompA CSV (repeatable), e.g. order=CompA_order.csv; benchmark name compa_NAME "
                        "(default: the file stem)")
    p.add_argument("--audio-root", default=None, metavar="DIR",
                   help="folder the CSV's file names are relative to (default: each CSV's folder)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")

    p = sub.add_parser("zeroshot", parents=[common], help="zero-shot classification (ESC-50 or a label CSV)")
    _label_source(p, "ESC-50 folder (meta/esc50.csv, audio/)",
                  "label CSV: path,label (single-label) or path,labels with ';'-separated labels (multi-label); "
                  "optional fold column")
    p.add_argument("--template", action="append", default=None, metavar="TEXT",
                   help="prompt template with {label} (repeatable; embeddings averaged over templates; "
                        "default: 'This is a sound of {label}.')")
    p.add_argument("--name", default=None, help="benchmark name (default: esc50 or zeroshot_<csv stem>)")

    p = sub.add_parser("retrieval", parents=[common], help="audio-text retrieval, multi-caption protocol")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="AudioCaps (youtube_id,caption) or Clotho (file_name,caption_1..5) CSV")
    src.add_argument("--manifest", metavar="FILE", help="compclap JSONL manifest")
    p.add_argument("--audio-dir", default=None, metavar="DIR", help="audio folder of --csv")
    p.add_argument("--skip-missing", action="store_true",
                   help="evaluate the clips whose audio exists (their count is reported) instead of failing")
    p.add_argument("--name", default=None, help="benchmark name (default: retrieval_<file stem>)")

    p = sub.add_parser("probe", parents=[common], help="linear / MLP probes on frozen audio embeddings (CLAP 2022 "
                                                        "protocol), beside zero-shot and fine-tuned classifiers")
    _label_source(p, "ESC-50 folder (meta/esc50.csv, audio/): 5-fold protocol",
                  "label CSV: path,label (or path,labels, multi-label) with a split (train/val/test) or fold column")
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="share of the training clips kept for early stopping (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation carving and the heads")
    p.add_argument("--hidden-dim", type=int, default=512, help="MLP hidden width (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="MLP probe learning rate (default: %(default)s)")
    p.add_argument("--linear-lr", type=float, default=1e-2, help="linear probe learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="probe weight decay (default: %(default)s)")
    p.add_argument("--max-epochs", type=int, default=300, help="probe epochs at most (default: %(default)s)")
    p.add_argument("--patience", type=int, default=30,
                   help="stop after this many epochs without a better validation score (default: %(default)s)")
    p.add_argument("--no-zeroshot", action="store_true", help="leave out the zero-shot column")
    p.add_argument("--template", action="append", default=None, metavar="TEXT",
                   help="zero-shot prompt template with {label} (repeatable)")
    p.add_argument("--name", default=None, help="benchmark name (default: probe_esc50 or probe_<csv stem>)")
    return parser


def _benchmarks(args: argparse.Namespace) -> list:
    from compclap.eval.runner import CompaBenchmark, RetrievalBenchmark, ZeroShotBenchmark
    from compclap.eval.zeroshot import DEFAULT_TEMPLATES, read_esc50, read_label_csv

    if args.benchmark == "compa":
        out = []
        for value in args.csv:
            name, path = _named(value)
            stem = name or Path(path).stem
            bench = stem if stem.lower().startswith("compa") else f"compa_{stem}"
            out.append(CompaBenchmark(bench, path, audio_root=args.audio_root, n_boot=args.n_boot, seed=args.seed))
        return out
    if args.benchmark == "zeroshot":
        templates = args.template or list(DEFAULT_TEMPLATES)
        if args.esc50:
            return [ZeroShotBenchmark(args.name or "esc50", read_esc50(args.esc50), templates)]
        data = read_label_csv(args.csv, audio_root=args.audio_root, label_sep=args.label_sep)
        return [ZeroShotBenchmark(args.name or f"zeroshot_{Path(args.csv).stem}", data, templates)]
    if args.benchmark == "probe":
        return [_probe_benchmark(args)]
    if args.manifest:
        return [RetrievalBenchmark.from_manifest(args.manifest, name=args.name or f"retrieval_{Path(args.manifest).stem}")]
    if args.audio_dir is None:
        raise ValueError("retrieval --csv needs --audio-dir (the folder holding the clips)")
    return [RetrievalBenchmark.from_caption_csv(args.csv, args.audio_dir, skip_missing=args.skip_missing,
                                                name=args.name or f"retrieval_{Path(args.csv).stem}")]


def _probe_benchmark(args: argparse.Namespace) -> Any:
    """The probe benchmark; --model paths that are fine-tuned classifier checkpoints get their head scored too."""
    from compclap.classifier import is_classifier_checkpoint
    from compclap.eval.probe import ProbeBenchmark, ProbeConfig
    from compclap.eval.zeroshot import DEFAULT_TEMPLATES

    config = ProbeConfig(hidden_dim=args.hidden_dim, lr=args.lr, linear_lr=args.linear_lr,
                         weight_decay=args.weight_decay, max_epochs=args.max_epochs, patience=args.patience, val_fraction=args.val_fraction,
                         seed=args.seed)
    models = parse_model_args(args.model, tokenizer=args.tokenizer)
    classifiers = {m.name: m.path for m in models if m.path is not None and is_classifier_checkpoint(m.path)}
    name = args.name or ("probe_esc50" if args.esc50 else f"probe_{Path(args.csv).stem}")
    return ProbeBenchmark.from_source(name, csv_path=args.csv, esc50=args.esc50, audio_root=args.audio_root,
                                      label_sep=args.label_sep, config=config, zeroshot=not args.no_zeroshot,
                                      templates=args.template or list(DEFAULT_TEMPLATES), classifiers=classifiers)


def main(argv: list[str] | None = None) -> int:
    """Run `compclap evaluate`; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)  # before any heavy import: fast --help
    from compclap.audio.io import AudioDecodeError
    from compclap.data.manifest import ManifestError
    from compclap.eval.runner import run_suite

    if args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        models = parse_model_args(args.model, tokenizer=args.tokenizer)
        benchmarks = _benchmarks(args)
        run_suite(models, benchmarks, args.out, cache_dir=None if args.no_cache else args.cache,
                  batch_size=args.batch_size, device=args.device, progress=not args.no_progress, title=args.title,
                  fresh=args.fresh, plots=not args.no_plots, replace=args.replace)
    except (ValueError, FileNotFoundError, NotADirectoryError, AudioDecodeError, ManifestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((args.out / "report.md").read_text().split("## Summary", 1)[-1].split("\n## ", 1)[0].strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
