"""The `compclap` command: LightningCLI subcommands (fit, validate, test, predict), classify, evaluate and export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from compclap.lit_module import CompClapModule


class CompClapCLI(LightningCLI):
    """LightningCLI with the data's audio rate/length linked to the model and one `--run_dir` for outputs."""

    def add_arguments_to_parser(self, parser) -> None:
        """Link data preprocessing to the model and add --run_dir."""
        parser.add_argument("--run_dir", type=str, default="checkpoints/run",
                            help="Folder for this run's TensorBoard logs and checkpoints (last.ckpt for resume).")
        data = "data"
        if self.subclass_mode_data:
            # `data` is any LightningDataModule chosen by class_path (compclap.data.shards.ShardDataModule streams
            # webdataset shards); a config without one gets a ManifestDataModule, so manifest configs stay as they are.
            parser.set_defaults({"data": {"class_path": "compclap.data.datamodule.ManifestDataModule"}})
            data = "data.init_args"
        parser.link_arguments("model", f"{data}.sample_rate",
                              compute_fn=lambda m: m.model.frontend_config.sample_rate, apply_on="instantiate")
        parser.link_arguments("model", f"{data}.clip_seconds",
                              compute_fn=lambda m: m.model.frontend_config.clip_seconds, apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse the command line, then refuse a --ckpt_path whose stored config names classes outside the registry.

        The checkpoint's hyper-parameters become the parser's defaults (compclap.cli_ckpt, which checks them against
        compclap.models.registry before any class path they name is imported).
        """
        import sys

        from compclap.optim import cli_optimizer_error

        # Where LightningCLI's optimizer options are off (compclap fit), say what to use instead of them.
        argv = sys.argv[1:] if args is None else args if isinstance(args, list) else []
        refused = None if self.auto_configure_optimizers else cli_optimizer_error(argv)
        if refused:
            parser.error(refused)
        from compclap.cli_ckpt import parse_with_priority

        parse_with_priority(self, parser, args)  # command line > --config > checkpoint; a --run_dir flag wins
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            from compclap.models.registry import check_checkpoint_file

            check_checkpoint_file(ckpt_path)

    def _parse_ckpt_path(self) -> None:
        """Done in parse_arguments (compclap.cli_ckpt): Lightning's version lets the checkpoint override the command
        line."""

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        """Lightning's subcommand parser; predict also takes --output (the embeddings' folder)."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument("--output", type=Optional[str], default=None,
                                help="Folder for the embeddings (default: RUN_DIR/predictions; RUN_DIR defaults to "
                                     "the --ckpt_path's run folder).")
        return parser

    def before_instantiate_classes(self) -> None:
        """Point default_root_dir (hence the default TensorBoard logger) and checkpoints at --run_dir.

        ModelCheckpoint gets a fixed dirpath (not the logger's versioned folder) so `--ckpt_path last`
        finds the previous run's last.ckpt. validate/test/predict of a checkpoint without a --run_dir write into
        that checkpoint's run folder (compclap.callbacks.evaluation_run_dir).
        """
        from compclap.callbacks import evaluation_run_dir

        cfg = self.config[self.subcommand] if self.subcommand else self.config
        cfg.run_dir = evaluation_run_dir(self.subcommand, cfg.run_dir, cfg.get("ckpt_path"))
        run_dir = Path(cfg.run_dir)
        trainer = cfg.trainer
        if trainer.default_root_dir in (None, "."):
            trainer.default_root_dir = str(run_dir)
        for cb in trainer.callbacks or []:
            init = getattr(cb, "init_args", None)
            if cb.class_path.endswith("ModelCheckpoint") and init is not None and init.get("dirpath") is None:
                init.dirpath = str(run_dir / "checkpoints")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """The Trainer, writing every checkpoint atomically in its own folder (compclap.checkpoint_io), printing a
        line per epoch when stdout is not a terminal and showing no v_num (compclap.epoch_log)."""
        from compclap.checkpoint_io import use_atomic_checkpoints
        from compclap.epoch_log import install_log_callbacks

        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        install_log_callbacks(trainer)
        if self.subcommand == "predict":  # predict always writes its embeddings, and says where
            from compclap.callbacks import install_prediction_writer

            install_prediction_writer(trainer, self.config["predict"].get("output"))
        return trainer


# Subcommands outside LightningCLI: name -> "module:function" taking the remaining arguments.
EXTRA_COMMANDS = {
    "classify": "compclap.classifier:main",  # fit|validate|test|predict of compclap.classifier.AudioClassifier
    "evaluate": "compclap.eval.cli:main",
    "export": "compclap.models.export:main",
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `compclap` console script."""
    import importlib
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in EXTRA_COMMANDS:
        module, func = EXTRA_COMMANDS[args[0]].split(":")
        raise SystemExit(getattr(importlib.import_module(module), func)(args[1:]))
    # The optimiser is model.optimizer (param groups and schedule kept): LightningCLI's --optimizer is refused.
    CompClapCLI(CompClapModule, L.LightningDataModule, subclass_mode_data=True, args=argv,
                save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)


if __name__ == "__main__":
    main()
