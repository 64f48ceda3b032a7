"""The offline demo: synthesise the demo world, fine-tune a small CLAP, evaluate, print a table.

Run with `python -m compclap.demo` (the README's first command does, after setting up).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
HEADS_STAGE = "+hard negatives, heads"  # stage 2 continued on cached tower features


def _synthesise(world: Path, seed: int) -> None:
    """Create the demo world unless it already exists."""
    if (world / "meta.json").is_file():
        print(f"[demo] using existing demo world in {world}")
        return
    from compclap.data.demo_world import DemoWorldConfig, build_demo_world

    t0 = time.time()
    build_demo_world(DemoWorldConfig(out=str(world), seed=seed))
    print(f"[demo] synthesised demo world in {world} ({time.time() - t0:.0f} s)")


def _write_hard_negatives(world: Path) -> Path:
    """The training clips plus their swapped renderings (train_swapped.jsonl), each caption with its hard negatives.

    Written once. The swapped renderings are clips of their own with their own true captions: were they only ever
    negatives, the loss could push every swapped rendering away from all texts (measured, seed 1: CompA-order
    group 20 -> 38 with them as clips)."""
    out = world / "train_hard_negatives.jsonl"
    if out.is_file():
        return out
    from compclap.data.manifest import read_manifest, write_manifest
    from compclap.text.negatives import HardNegativeRewriter

    t0 = time.time()
    records = read_manifest(world / "train.jsonl")
    if (world / "train_swapped.jsonl").is_file():
        records += read_manifest(world / "train_swapped.jsonl")
    captions = [c for r in records for c in r["captions"]]
    negatives = iter(HardNegativeRewriter(seed=0).rewrite_many(captions))
    for rec in records:
        _relative_paths(rec, world)
        rec["negatives"] = [next(negatives) for _ in rec["captions"]]
    write_manifest(records, out)
    with_any = sum(bool(n) for r in records for n in r["negatives"])
    print(f"[demo] hard negatives for {with_any}/{len(captions)} captions in {time.time() - t0:.0f} s -> {out}")
    return out


def _relative_paths(rec: dict, world: Path) -> None:
    """Write a record's audio paths (its negative audio too) relative to the world, so the world can move."""
    root = world.resolve()
    rec["audio"] = str(Path(rec["audio"]).relative_to(root))
    for negs in rec.get("negative_audio") or []:
        for neg in negs:
            neg["audio"] = str(Path(neg["audio"]).relative_to(root))


def _write_modular_manifest(world: Path, seed: int) -> Path:
    """Stage 3's clips: the composed clips (multi-granular positives) plus the world's own clips with their hard
    negatives, so that the compositional stage keeps seeing the caption distribution retrieval is scored on."""
    out = world / "modular_train.jsonl"
    if out.is_file():
        return out
    from compclap.data.manifest import read_manifest, write_manifest

    records = read_manifest(_write_compositions(world, seed)) + read_manifest(_write_hard_negatives(world))
    for rec in records:
        _relative_paths(rec, world)
    write_manifest(records, out)
    return out


def _write_compositions(world: Path, seed: int) -> Path:
    """Compose training clips from the demo world's single events (once)."""
    out = world / "composed"
    if (out / "train.jsonl").is_file():
        return out / "train.jsonl"
    from compclap.data.composer import ComposeConfig, compose

    t0 = time.time()
    # Absolute levels are kept (no overlay re-levelling or peak normalisation) so that the loudness words
    # of the event captions stay true; held-out pairs of the demo world stay out of training.
    compose(ComposeConfig(events=str(world / "events.jsonl"), out=str(out), num=1200, seed=seed, name="train",
                          exclude_pairs=str(world / "meta.json"), overlay_db=None, peak=None, max_seconds=4.0,
                          pad=True))
    print(f"[demo] composed training clips in {time.time() - t0:.0f} s -> {out / 'train.jsonl'}")
    return out / "train.jsonl"


def _write_prolap_manifest(world: Path, seed: int) -> Path:
    """ProLAP's training clips: the demo world's own clips (their captions) plus the composed clips (their full
    and sub-expression captions, which give the caption hierarchy), paths relative to the world (once)."""
    out = world / "prolap_train.jsonl"
    if out.is_file():
        return out
    from compclap.data.manifest import read_manifest, write_manifest

    records = read_manifest(world / "train.jsonl") + read_manifest(_write_compositions(world, seed))
    for rec in records:
        rec.pop("negative_audio", None)  # ProLAP's terms do not use them; loading them would only cost time
        _relative_paths(rec, world)
    write_manifest(records, out)
    return out


def _write_eval_compositions(world: Path, seed: int) -> Path:
    """Held-out compositions (another random stream than training) whose (sub-expression caption, full caption)
    pairs test ProLAP's inclusion of general in specific captions (once)."""
    out = world / "composed_test"
    if (out / "test.jsonl").is_file():
        return out / "test.jsonl"
    from compclap.data.composer import ComposeConfig, compose

    compose(ComposeConfig(events=str(world / "events.jsonl"), out=str(out), num=150, seed=seed, name="test",
                          overlay_db=None, peak=None, max_seconds=4.0, pad=True))
    return out / "test.jsonl"


def _event_phrases(world: Path) -> list[str]:
    """The most general captions of the demo world: one bare phrase per event type ("a beep")."""
    meta = json.loads((world / "meta.json").read_text())
    return [phrase[:1].upper() + phrase[1:] for phrase in (meta.get("event_types") or {}).values()]


def _fit(stage: str, config: Path, run_dir: Path, world: Path, max_epochs: int | None,
         train_manifest: Path, seed: int, init_from: Path | None = None) -> Path:
    """Train one stage through the `compclap fit` CLI.

    Returns the best checkpoint by validation retrieval for the first stage, and the last one for the
    compositional stages, whose goal (order/attribute sensitivity) validation retrieval does not measure.
    """
    from compclap.cli import main as cli_main

    args = ["fit", "--config", str(REPO / "conf" / "fit.yaml"), "--config", str(config), "--run_dir", str(run_dir),
            "--data.train_manifest", str(train_manifest), "--data.val_manifest", str(world / "val.jsonl"),
            "--data.test_manifest", str(world / "test.jsonl"),
            "--model.compa_csvs", json.dumps({"order": str(world / "compa_order.csv"),
                                              "attribute": str(world / "compa_attribute.csv")}),
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--seed_everything={seed}", f"--data.seed={seed}"]
    if max_epochs is not None:
        args.append(f"--trainer.max_epochs={max_epochs}")
    if init_from is not None:
        args += ["--model.init_from", str(init_from)]
    t0 = time.time()
    print(f"[demo] stage {stage}: training ({config.name}) ...", flush=True)
    cli_main(args)
    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    print(f"[demo] stage {stage}: trained in {time.time() - t0:.0f} s -> {run_dir}", flush=True)
    return best[-1] if best and init_from is None else run_dir / "checkpoints" / "last.ckpt"


def main(argv: list[str] | None = None) -> dict:
    """Synthesise, fine-tune, evaluate, report; returns the evaluation payload (results per model and benchmark)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, default=REPO / "demo_world", help="demo world folder")
    p.add_argument("--runs", type=Path, default=REPO / "checkpoints", help="where runs (logs, checkpoints) go")
    p.add_argument("--report", type=Path, default=REPO / "reports" / "demo", help="where the report goes")
    p.add_argument("--max-epochs", type=int, default=None, help="override the configs' epoch count")
    p.add_argument("--seed", type=int, default=0, help="one seed for the world, the compositions and training")
    p.add_argument("--skip-prolap", action="store_true", help="leave out the ProLAP stage")
    args = p.parse_args(argv)
    t_start = time.time()
    _synthesise(args.world, args.seed)
    experiment = REPO / "conf" / "experiment"

    def fit(stage: str, config: str, run: str, manifest: Path, init_from: Path | None = None) -> Path:
        return _fit(stage, experiment / config, args.runs / run, args.world, args.max_epochs, manifest, args.seed,
                    init_from=init_from)

    checkpoints = {}
    checkpoints["standard"] = fit("standard", "demo_standard.yaml", "demo_standard", args.world / "train.jsonl")
    hard_negatives = _write_hard_negatives(args.world)
    checkpoints["+hard negatives"] = fit("hard negatives", "demo_hard_negatives.yaml", "demo_hard_negatives",
                                         hard_negatives, init_from=checkpoints["standard"])
    # The same objective for many more steps on the frozen towers' cached features (a step costs the heads only).
    checkpoints[HEADS_STAGE] = fit("heads", "demo_heads.yaml", "demo_heads", hard_negatives,
                                   init_from=checkpoints["+hard negatives"])
    checkpoints["+modular"] = fit("modular", "demo_modular.yaml", "demo_modular",
                                  _write_modular_manifest(args.world, args.seed),
                                  init_from=checkpoints["+hard negatives"])
    if not args.skip_prolap:
        # ProLAP, a fourth loss variant: a sibling of the CompA-CLAP stages that also starts from the standard stage.
        checkpoints["ProLAP"] = fit("ProLAP", "demo_prolap.yaml", "demo_prolap",
                                    _write_prolap_manifest(args.world, args.seed), init_from=checkpoints["standard"])

    # The table goes through the evaluation suite (`compclap evaluate`): same metrics, cached embeddings,
    # results.json, report.md with plots and per-row CompA CSVs.
    from compclap.data.labelled import write_labels_from_jsonl
    from compclap.eval.attribute_probe import AttributeProbeBenchmark
    from compclap.eval.diagnostics import OrderProbeBenchmark
    from compclap.eval.probe import ProbeBenchmark
    from compclap.eval.probabilistic import ProbabilisticBenchmark
    from compclap.eval.report import diagnostics_table, summary_table
    from compclap.eval.runner import CompaBenchmark, ModelSpec, RetrievalBenchmark, run_suite

    world = args.world
    print("[demo] evaluating ...", flush=True)
    benchmarks = [RetrievalBenchmark.from_manifest(world / "test.jsonl", name="retrieval"),
                  CompaBenchmark("compa_order", world / "compa_order.csv"),
                  CompaBenchmark("compa_attribute", world / "compa_attribute.csv"),
                  # The same kind of rows built from pairs seen in training: held-out vs seen tells
                  # generalisation apart from fitting.
                  CompaBenchmark("compa_order_train", world / "compa_order_train.csv", train_of="compa_order"),
                  CompaBenchmark("compa_attribute_train", world / "compa_attribute_train.csv",
                                 train_of="compa_attribute"),
                  OrderProbeBenchmark(world / "train.jsonl", [world / "val.jsonl", world / "test.jsonl"],
                                      name="order_probe"),
                  AttributeProbeBenchmark(world / "train.jsonl", [world / "val.jsonl", world / "test.jsonl"],
                                          name="attribute_probe"),
                  # Supervised probes (CLAP 2022 protocol) on the single-event clips, labelled by event type (seeded
                  # 80/20 split), beside zero-shot on the same held-out clips.
                  ProbeBenchmark.from_source("probe_events", csv_path=write_labels_from_jsonl(
                      world / "events.jsonl", world / "events_labels.csv", test_fraction=0.2, seed=args.seed))]
    if not args.skip_prolap:
        benchmarks.append(ProbabilisticBenchmark.from_manifests(world / "test.jsonl",
                                                                _write_eval_compositions(world, args.seed),
                                                                name="prolap", extra_captions=_event_phrases(world)))
    first = next(iter(checkpoints.values()))
    models = [ModelSpec("untrained (same init)", model=_untrained_like(first, args.seed))]
    models += [ModelSpec(name, path=str(ckpt)) for name, ckpt in checkpoints.items()]
    payload = run_suite(models, benchmarks, args.report, cache_dir=args.runs / "embed_cache", title="compclap demo",
                        description="Test split of the demo world (held-out compositions); CompA-style order and "
                                    "attribute benchmarks (held-out pairs, and pairs seen in training).",
                        fresh=True, progress=False)
    print("\n" + summary_table(payload) + "\n")
    diagnostics = diagnostics_table(payload)
    if diagnostics:
        print(diagnostics + "\n")
    _print_prolap(payload)
    print("[demo] checkpoints: " + ", ".join(str(c) for c in checkpoints.values()))
    print(f"[demo] TensorBoard logs: tensorboard --logdir {args.runs}")
    print(f"[demo] report: {args.report / 'report.md'}")
    print(f"[demo] total wall time {time.time() - t_start:.0f} s")
    return payload


def _print_prolap(payload: dict) -> None:
    """The ProLAP-only metrics in one line per probabilistic model."""
    for name, results in payload["results"].items():
        res = results.get("prolap") or {}
        if not res.get("applicable"):
            continue
        inc = res.get("inclusion", {})
        print(f"[demo] {name}: inclusion test passed by {inc.get('pass_rate', float('nan')):.1f}% of "
              f"{inc.get('n_pairs', 0)} (sub-expression, full caption) pairs; caption length vs uncertainty "
              f"r = {res['length_uncertainty_r']:.2f} over {res['n_captions_r']} captions "
              "(ProLAP on AudioCaps: -0.43); "
              f"t2a R@1 {res['csd']['t2a_R@1']:.1f} by CSD vs {res['cosine']['t2a_R@1']:.1f} by cosine; "
              "audio traversals in the report")


def _untrained_like(ckpt: Path, seed: int = 0):
    """The model a run started from (same config and seed), for a before/after row."""
    import lightning as L
    from lightning.pytorch.cli import instantiate_module

    from compclap.models.dual_encoder import CLAPDualEncoder
    from compclap.models.registry import check_checkpoint

    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    check_checkpoint(loaded, str(ckpt))
    hparams = loaded["hyper_parameters"]
    L.seed_everything(seed, verbose=False)
    return instantiate_module(CLAPDualEncoder, hparams["model"]["init_args"]).eval()


if __name__ == "__main__":
    main()
