"""Fine-tune a CLAP audio tower with a classification head (the CLAP 2022 fine-tuning protocol).

`AudioClassifier` wraps a `CLAPDualEncoder` (built by a config, `pretrained:` any checkpoint compclap reads, or
`init_from:` weights): logits = head(L2-normalised audio embedding x sqrt(D)). The text tower is kept (frozen,
unused) so that a classifier checkpoint stays a compclap checkpoint: `load_model` reads its fine-tuned dual
encoder, and `compclap evaluate probe --model ft=RUN/checkpoints/last.ckpt` scores its own head on the clips it
held out (`load_classifier_head`). Train it through the same LightningCLI as `compclap fit` (run_dir, logging,
checkpoints, `--ckpt_path last`):

    compclap classify fit --config conf/experiment/finetune_classifier.yaml --run_dir checkpoints/classifier
    compclap classify fit --config conf/experiment/finetune_classifier.yaml --run_dir checkpoints/classifier \\
        --ckpt_path last
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from compclap.cli import CompClapCLI
from compclap.models.classifier_head import HEAD_KINDS, ClassifierHead
from compclap.models.dual_encoder import CLAPDualEncoder
from compclap.rng_state import rng_states, set_rng_states

__all__ = ["AudioClassifier", "ClassifierCLI", "is_classifier_checkpoint", "load_classifier_head", "main"]

INFO_KEY = "compclap_classifier"


class AudioClassifier(L.LightningModule):
    """A CLAP audio tower (and its projection) plus a linear or MLP head, trained with (binary) cross-entropy."""

    def __init__(
        self,
        model: CLAPDualEncoder,
        head: str = "linear",
        hidden_dim: int = 512,
        dropout: float = 0.1,
        audio_trainable_blocks: int | None = None,
        train_projection: bool = True,
        lr: float = 1e-4,
        head_lr: float | None = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        scheduler: str = "cosine",
        min_lr_ratio: float = 0.0,
        label_smoothing: float = 0.0,
        init_from: str | None = None,
        classes: list[str] | None = None,
        multi_label: bool | None = None,
        test_folds: list[str] | None = None,
    ) -> None:
        """Configure the classifier.

        Args:
            model: the dual encoder whose audio tower is fine-tuned (its text tower stays frozen and unused).
            head: "linear" or "mlp" (3 layers, as the CLAP probes).
            hidden_dim: width of the MLP head's hidden layers.
            dropout: dropout inside the MLP head.
            audio_trainable_blocks: None trains the whole audio tower, 0 freezes it (a probe with audio
                augmentation), N trains its last N blocks.
            train_projection: also train the audio projection head.
            lr: peak learning rate of the audio tower and projection (AdamW).
            head_lr: peak learning rate of the classification head (None: lr).
            weight_decay: AdamW weight decay on matrices.
            warmup_steps: linear warm-up steps.
            scheduler: "cosine" (to min_lr_ratio * lr over the run) or "constant" after warm-up.
            min_lr_ratio: final learning rate of the cosine schedule as a fraction of the peak.
            label_smoothing: cross-entropy label smoothing (single-label data).
            init_from: dual-encoder weights (strict, no optimiser state) from any checkpoint compclap reads.
            classes: class names in output order; None: taken from the data module at setup (and stored).
            multi_label: None: taken from the data module at setup (and stored).
            test_folds: the fold(s) the data module holds out (None for split data); taken from the data module at
                setup and stored, so the probe benchmark scores the head only on clips it never trained on.
        """
        super().__init__()
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

        self.save_hyperparameters(ignore=[] if _given_hyperparameters.get() is not None else ["model"])
        if head not in HEAD_KINDS:
            raise ValueError(f"head must be one of {HEAD_KINDS}, got {head!r}")
        if scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {scheduler!r}")
        self.model = model
        if init_from is not None:
            from compclap.models.loading import load_state_into

            load_state_into(self.model, init_from)
        for part in (model.text, model.text_projection):
            part.requires_grad_(False)
        model.logit_scale.requires_grad_(False)
        if audio_trainable_blocks is not None:
            model.audio.set_trainable_blocks(audio_trainable_blocks)
        model.audio_projection.requires_grad_(train_projection)
        self.head: ClassifierHead | None = None
        if classes is not None:
            self._build_head(len(classes))
        self._outputs: list[dict[str, torch.Tensor]] = []
        self._resume_rng_states: Any = None

    def _build_head(self, num_classes: int) -> None:
        dim = self.model.embed_dim
        self.head = ClassifierHead(dim, num_classes, self.hparams.head, self.hparams.hidden_dim, self.hparams.dropout,
                                   input_scale=math.sqrt(dim))

    def setup(self, stage: str) -> None:
        """Take classes, multi-label flag and held-out folds from the data module (or check them against it)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        found = {k: getattr(dm, k) for k in ("classes", "multi_label", "test_folds") if hasattr(dm, k)}
        for key, value in found.items():
            mine = self.hparams.get(key)
            if mine is None:
                self.hparams[key] = value
            elif (list(mine) if isinstance(mine, (list, tuple)) else mine) != value:
                raise ValueError(f"the classifier was built for {key}={mine!r} but the data has {value!r}")
        if self.head is None:
            if self.hparams.classes is None:
                raise ValueError("AudioClassifier needs `classes` or a data module with a `classes` attribute")
            self._build_head(len(self.hparams.classes))

    def train(self, mode: bool = True) -> AudioClassifier:
        """Train mode, except the unused text tower and BatchNorm layers whose parameters are frozen."""
        from compclap.models.freezing import set_frozen_batchnorm_eval

        super().train(mode)
        if mode:
            self.model.text.eval()
            set_frozen_batchnorm_eval(self.model.audio)
        return self

    # ----------------------------------------------------------------------------------------------- steps
    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) of waveforms (B, T)."""
        assert self.head is not None, "the head is built at setup (or give `classes`)"
        return self.head(self.model.encode_audio(waveforms))

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.hparams.multi_label:
            return F.binary_cross_entropy_with_logits(logits, targets.float())
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    @property
    def _loss_name(self) -> str:
        return "bce_loss" if self.hparams.multi_label else "ce_loss"

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One step of (binary) cross-entropy on a batch of clips."""
        if "skipped_total" in batch:
            self.log("data/skipped_files", float(batch["skipped_total"]), on_step=True, on_epoch=False)
        if batch["waveforms"].shape[0] == 0:
            return None  # every clip of the batch failed to decode
        logits = self(batch["waveforms"])
        loss = self._loss(logits, batch["targets"])
        bs = logits.shape[0]
        self.log(f"train/{self._loss_name}", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
        if not self.hparams.multi_label:
            acc = (logits.argmax(1) == batch["targets"]).float().mean() * 100
            self.log("train/accuracy", acc, on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def _collect(self, batch: dict[str, Any]) -> None:
        if batch["waveforms"].shape[0]:
            self._outputs.append({"index": batch["index"], "logits": self(batch["waveforms"]).float(),
                                  "targets": batch["targets"]})

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Logits of a validation batch (scored at the epoch's end)."""
        self._collect(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Logits of a held-out batch (scored at the epoch's end)."""
        self._collect(batch)

    def _score(self, prefix: str) -> None:
        """Gather every rank's logits (DDP padding duplicates dropped) and log loss and accuracy or mAP."""
        from compclap.distributed import gather_variable
        from compclap.eval.probe import classification_score

        outs, self._outputs = self._outputs, []
        if not outs:
            return
        gathered = {k: gather_variable(torch.cat([o[k] for o in outs]).to(self.device), with_grad=False)[0]
                    for k in ("index", "logits", "targets")}
        first: dict[int, int] = {}
        for pos, key in enumerate(gathered["index"].tolist()):
            first.setdefault(int(key), pos)
        keep = torch.tensor(list(first.values()), dtype=torch.long, device=self.device)
        logits, targets = gathered["logits"][keep], gathered["targets"][keep]
        self.log(f"{prefix}/{self._loss_name}", float(self._loss(logits, targets)), rank_zero_only=False)
        metric = "mAP" if self.hparams.multi_label else "accuracy"
        score = classification_score(logits.cpu(), targets.cpu(), bool(self.hparams.multi_label))
        self.log(f"{prefix}/{metric}", float(score), rank_zero_only=False)

    def on_validation_epoch_end(self) -> None:
        """Validation loss and accuracy (mAP)."""
        self._score("val")

    def on_test_epoch_end(self) -> None:
        """Held-out loss and accuracy (mAP)."""
        self._score("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Dataset indices, logits and probabilities (softmax, or sigmoid for multi-label) of a batch."""
        logits = self(batch["waveforms"]).float()
        probs = torch.sigmoid(logits) if self.hparams.multi_label else logits.softmax(-1)
        return {"index": batch["index"].cpu(), "logits": logits.cpu(), "probabilities": probs.cpu()}

    # ---------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store what the probe benchmark needs to score the head, and the RNG states for an exact resume."""
        assert self.head is not None
        checkpoint[INFO_KEY] = {"classes": list(self.hparams.classes), "multi_label": bool(self.hparams.multi_label),
                                "test_folds": self.hparams.test_folds, "head": self.head.config()}
        checkpoint["compclap_rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Build the head from the checkpoint when it is not built yet; keep the RNG states for on_train_start."""
        if self.head is None and INFO_KEY in checkpoint:
            self.hparams.classes = list(checkpoint[INFO_KEY]["classes"])
            self._build_head(len(self.hparams.classes))
        self._resume_rng_states = checkpoint.get("compclap_rng_states")

    def on_train_start(self) -> None:
        """Restore saved RNG states (a resumed run continues the random stream)."""
        states, self._resume_rng_states = self._resume_rng_states, None
        if states is not None:
            set_rng_states(states)

    def on_train_epoch_start(self) -> None:
        """Key the sampler's shuffling on the true epoch (also after resuming from an end-of-epoch checkpoint)."""
        from lightning.fabric.utilities.data import _set_sampler_epoch

        loaders = self.trainer.train_dataloader
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            if loader is not None:
                _set_sampler_epoch(loader, self.current_epoch)

    # --------------------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (head at head_lr, tower and projection at lr; decay on matrices), warm-up then cosine or constant."""
        hp = self.hparams
        groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
        for name, p in self.named_parameters():
            if p.requires_grad:
                lr = (hp.head_lr or hp.lr) if name.startswith("head.") else hp.lr
                groups.setdefault((lr, hp.weight_decay if p.ndim >= 2 else 0.0), []).append(p)
        opt = torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup, floor = hp.warmup_steps, hp.min_lr_ratio

        def factor(step: int) -> float:
            if warmup > 0 and step < warmup:
                return (step + 1) / warmup
            if hp.scheduler == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ------------------------------------------------------------------------------------------ reading it back
def _checkpoint_file(path: str | os.PathLike) -> Path:
    """The file a run directory stands for, as in `load_model` (its best checkpoint, else last.ckpt)."""
    from compclap.models.run_dir import resolve_checkpoint

    return resolve_checkpoint(path).path


def is_classifier_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` (a .ckpt or a run directory) was written by AudioClassifier (read memory-mapped)."""
    path = _checkpoint_file(path)
    if not path.is_file() or path.suffix != ".ckpt":
        return False
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a readable zip checkpoint: not ours either
        return False
    return isinstance(ckpt, dict) and INFO_KEY in ckpt


def load_classifier_head(path: str | os.PathLike) -> tuple[ClassifierHead, dict[str, Any]]:
    """The head of an AudioClassifier checkpoint (eval mode, CPU) and its info (classes, multi_label, test_folds)."""
    from compclap.models.loading import load_strict
    from compclap.models.safe_load import safe_torch_load

    path = _checkpoint_file(path)
    ckpt = safe_torch_load(path)
    info = ckpt.get(INFO_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(info, dict):
        raise ValueError(f"{path} is not an AudioClassifier checkpoint (no {INFO_KEY!r} entry)")
    head = ClassifierHead(**info["head"])
    state = {k[len("head."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("head.")}
    load_strict(head, state, str(path), "AudioClassifier head")
    return head.eval(), info


# ------------------------------------------------------------------------------------------------- CLI
class ClassifierCLI(CompClapCLI):
    """`compclap fit`'s CLI (run_dir, linked audio front end, --ckpt_path checks) for AudioClassifier."""

    def add_arguments_to_parser(self, parser) -> None:
        """As compclap fit, with LabelledDataModule as the default data module."""
        super().add_arguments_to_parser(parser)
        parser.set_defaults({"data": {"class_path": "compclap.data.labelled.LabelledDataModule"},
                             "run_dir": "checkpoints/classifier"})


def main(argv: list[str] | None = None) -> None:
    """`compclap classify fit|validate|test|predict --config ...` (LightningCLI with AudioClassifier)."""
    ClassifierCLI(AudioClassifier, L.LightningDataModule, subclass_mode_data=True, args=argv,
                  save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
