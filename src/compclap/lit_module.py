"""The LightningModule: forward, loss selection, logging, optimisers. The math lives in models/ and losses/."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from compclap.distributed import gather_variable
from compclap.rng_state import rng_states as _rng_states
from compclap.rng_state import set_rng_states as _set_rng_states
from compclap.losses import ContrastiveLoss
from compclap.models.dual_encoder import CLAPDualEncoder
from compclap.nonfinite import NonFiniteGuard
from compclap.text.identity import text_ids


class CompClapModule(L.LightningModule):
    """Fine-tunes a CLAPDualEncoder with any loss module that returns {"<name>_loss": ...} terms (summed)."""

    def __init__(
        self,
        model: CLAPDualEncoder,
        loss: nn.Module | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 0,
        warmup_ratio: float | None = None,
        scheduler: str = "cosine",
        min_lr_ratio: float = 0.0,
        init_from: str | None = None,
        compa_csvs: dict[str, str] | None = None,
        eval_chunk_size: int = 1024,
        lr_multipliers: dict[str, float] | None = None,
        layer_decay: float | None = None,
        activation_checkpointing: bool = False,
        compile: bool = False,
        max_consecutive_nonfinite: int | None = 3,
        optimizer: str = "AdamW",
        optimizer_args: dict[str, Any] | None = None,
    ) -> None:
        """Configure training.

        Args:
            model: the dual encoder to train.
            loss: a loss module (default: ContrastiveLoss); every returned key ending in "_loss" is summed.
            lr: peak learning rate (of the heads; the towers' groups scale it by lr_multipliers and layer_decay).
            weight_decay: weight decay on matrices (biases, norms and the temperature are not decayed).
            betas: betas of the Adam-family optimizers (AdamW, Adam, NAdam, RAdam, Adamax).
            warmup_steps: linear warm-up steps, at most 25% of the run (longer is clamped with a warning).
            warmup_ratio: linear warm-up as a share of the run's optimizer steps (e.g. 0.05); used instead of
                warmup_steps when set.
            scheduler: "cosine" (decay to min_lr_ratio * lr over the run) or "constant" after warm-up.
            min_lr_ratio: final learning rate as a fraction of `lr` for the cosine schedule.
            init_from: weights only (no optimiser state), loaded strictly, from a compclap .ckpt, a run directory
                (its best checkpoint, else last.ckpt; RUN_DIR/last for the latest), a compclap export, a Hugging Face
                ClapModel directory, a LAION-CLAP .pt or an MS-CLAP .pth whose architecture matches the model.
            compa_csvs: CompA-style CSVs scored at the end of `test`, e.g. {"order": path, "attribute": path}.
            eval_chunk_size: queries per chunk when computing retrieval metrics.
            lr_multipliers: learning-rate scale per part, keys "audio", "text" (the towers) and "heads"
                (projections, temperature, loss parameters); e.g. {"audio": 0.1, "text": 0.1} for pretrained towers.
            layer_decay: layer-wise decay inside each tower (top block x1, each block below x layer_decay).
            activation_checkpointing: recompute the towers' block activations in backward (less memory, ~30% slower).
            compile: torch.compile the two towers (in place, so checkpoint keys do not change).
            max_consecutive_nonfinite: a step whose loss or gradients are NaN/inf is skipped (no update) and counted
                (train/nonfinite_steps); after this many in a row the run stops naming the last good checkpoint
                (None: never stop). See compclap.nonfinite.
            optimizer: the torch.optim class, by name ("AdamW", "SGD", "torch.optim.RAdam"); it gets the parameter
                groups and the schedule above. LightningCLI's --optimizer is refused (see compclap.optim).
            optimizer_args: its other arguments, e.g. {"momentum": 0.9, "nesterov": true} for SGD or {"eps": 1e-6}
                (lr, weight_decay and betas have their own options).
        """
        super().__init__()
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

        # Under LightningCLI the hparams are the config (class paths + init args), so a .ckpt can rebuild
        # the model by itself; constructed directly, the modules themselves are not stored as hparams.
        self.save_hyperparameters(ignore=[] if _given_hyperparameters.get() is not None else ["model", "loss"])
        self.model = model
        self.loss = loss if loss is not None else ContrastiveLoss()
        if scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {scheduler!r}")
        if lr_multipliers is not None and not set(lr_multipliers) <= {"audio", "text", "heads"}:
            raise ValueError(f"lr_multipliers keys must be among audio, text, heads; got {sorted(lr_multipliers)}")
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
        if warmup_ratio is not None and not 0 <= warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        from compclap.optim import check_optimizer_options

        check_optimizer_options(optimizer, optimizer_args, betas, weight_decay)
        if activation_checkpointing:
            from compclap.models.training_aids import enable_activation_checkpointing

            enable_activation_checkpointing(self.model)
        if compile:
            self.model.audio.compile()
            self.model.text.compile()
        self._eval_outputs: list[dict[str, torch.Tensor]] = []
        self._nonfinite = NonFiniteGuard(max_consecutive_nonfinite)
        if init_from is not None:
            self.load_weights(init_from)

    # ----------------------------------------------------------------- weights
    def load_weights(self, path: str) -> None:
        """Initialise model weights (strictly) from any checkpoint compclap reads; optimiser state is not touched."""
        from compclap.models.loading import load_state_into

        load_state_into(self.model, path)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse non-finite weights; store RNG states so a resumed run continues with the same random stream, and
        the architecture spec and tokenizer files, so the checkpoint loads without its sources (models/embedded.py)."""
        from compclap.models.embedded import embed_architecture

        self._nonfinite.check_weights(self)
        checkpoint["compclap_rng_states"] = _rng_states()
        embed_architecture(checkpoint, self.model)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the RNG states saved by on_save_checkpoint until training restarts."""
        self._resume_rng_states = checkpoint.get("compclap_rng_states")

    def on_train_start(self) -> None:
        """Warm a frozen text tower's feature cache; restore saved RNG states here, not at load time, so set-up work
        in between draws nothing from them."""
        if getattr(self.model.text, "cache_features", False):
            # Every training text at once, length-sorted: a fraction of the cost of meeting them batch by batch.
            dataset = getattr(self.trainer.train_dataloader, "dataset", None)
            self.model.text.warm_cache(_manifest_texts(getattr(dataset, "records", None) or []))
        states, self._resume_rng_states = getattr(self, "_resume_rng_states", None), None
        if states is not None:
            _set_rng_states(states)

    def on_train_epoch_start(self) -> None:
        """Key the samplers' shuffling on the true epoch.

        Lightning passes `epoch_progress.processed` to `set_epoch`, which is one ahead of `current_epoch`
        after resuming from an end-of-epoch checkpoint; without this a resumed run would see another order.
        """
        from lightning.fabric.utilities.data import _set_sampler_epoch

        loaders = self.trainer.train_dataloader
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            if loader is not None:
                _set_sampler_epoch(loader, self.current_epoch)

    # ----------------------------------------------------------------- training
    def forward(self, waveforms: torch.Tensor, texts: list[str]) -> dict[str, torch.Tensor]:
        """Embeddings and temperature for a batch."""
        return self.model(waveforms, texts)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One optimisation step over matching (clip, caption) pairs."""
        self._nonfinite.note_batch_start(self)
        if "skipped_total" in batch:
            self.log("data/skipped_files", float(batch["skipped_total"]), on_step=True, on_epoch=False)
        if batch["waveforms"].shape[0] < 2:
            if self.trainer.world_size > 1:
                # Skipping the step on one rank would leave the others waiting in the gather forever.
                raise RuntimeError(f"a training batch on rank {self.global_rank} has fewer than 2 decodable clips "
                                   f"(skipped: {batch.get('skipped', [])[:5]}); fix the data or raise the batch size")
            return None  # every clip of the batch failed to decode (or one left): nothing to contrast
        out = self._embed_train_batch(batch)
        terms = self.loss(**out)
        total = sum(v for k, v in terms.items() if k.endswith("_loss"))
        bs = batch["waveforms"].shape[0]
        for name, value in terms.items():  # accuracies ("*_acc", shares from the loss) in percent
            value = 100.0 * value if name.endswith("_acc") else value
            self.log(f"train/{name}", value, on_step=True, on_epoch=False, batch_size=bs)
        self.log("train/loss", total, on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", out["logit_scale"].detach(), on_step=True, on_epoch=False, batch_size=bs)
        self._nonfinite.note_loss(total)
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip (and count) a step with a non-finite loss or gradients; stop after too many in a row."""
        self._nonfinite.before_optimizer_step(self, optimizer)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Keep the learnable temperature inside its bounds (in place, as OpenCLIP does)."""
        self.model.clamp_logit_scale_()

    def _embed_train_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Embed clips and captions (or a clip's multi-granular positives), plus hard negatives when the loss asks.

        Every loss gets `text_ids` (normalised caption identities, for false-negative masking); with text negatives
        also `negative_ids` (-1 in padding), with `uses_audio_negatives` the clips' rendered swapped versions."""
        waveforms = batch["waveforms"]
        texts, owner = batch["captions"], None
        if getattr(self.loss, "uses_positives", False) and "positives" in batch:
            texts, owner = batch["positives"], batch["positive_owner"].to(waveforms.device)
        if getattr(self.loss, "uses_uncertainty", False):
            return self._embed_probabilistic_batch(batch, texts, owner)
        uses_negatives = getattr(self.loss, "uses_negatives", False)
        out = self._embed_with_negatives(batch, texts) if uses_negatives else self(waveforms, texts)
        if owner is not None:
            out["text_owner"] = owner
        out["text_ids"] = text_ids(texts).to(waveforms.device)
        if getattr(self.loss, "uses_audio_negatives", False):
            text_owner = owner if owner is not None else batch["caption_owner"].to(waveforms.device)
            out.update(self._embed_audio_negatives(batch, text_owner))
        return out

    def _embed_with_negatives(self, batch: dict[str, Any], texts: list[str]) -> dict[str, torch.Tensor]:
        """Embed clips, `texts` and each caption's text negatives in one text forward; negatives padded (B, K, D)."""
        from compclap.data.datasets import flatten_negatives

        waveforms = batch["waveforms"]
        if "negatives" not in batch:
            raise ValueError(f"{type(self.loss).__name__} needs hard negatives, but the training manifest has no "
                             "\"negatives\" field (write them with data_prep/hard_negatives.py --manifest)")
        neg_texts, mask = flatten_negatives(batch["negatives"], self.loss.max_negatives, self.loss.negative_kinds)
        # One text forward for positives and negatives together.
        out = self(waveforms, texts + neg_texts)
        text = out["text_embeds"]
        out["text_embeds"] = text[:len(texts)]
        mask = mask.to(text.device)
        negatives = text.new_zeros(*mask.shape, text.shape[-1])
        negatives[mask] = text[len(texts):]
        negative_ids = torch.full(mask.shape, -1, dtype=torch.long, device=text.device)
        negative_ids[mask] = text_ids(neg_texts).to(text.device)
        out["negative_embeds"], out["negative_mask"], out["negative_ids"] = negatives, mask, negative_ids
        self.log("train/negatives_per_clip", mask.sum(1).float().mean(), on_step=True, on_epoch=False,
                 batch_size=waveforms.shape[0])
        return out

    def _embed_audio_negatives(self, batch: dict[str, Any], text_owner: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode the valid rendered swapped clips (one audio forward of the True slots only), scattered back to
        (B, K, D) with zeros elsewhere; each clip's negatives go to the t2a row of its first text (its caption,
        or its full caption among the positives)."""
        from compclap.losses.modular import first_text_of_clip

        waveforms = batch["waveforms"]
        n_clips = waveforms.shape[0]
        if "negative_waveforms" not in batch:
            raise ValueError(f"{type(self.loss).__name__} was built with audio_negatives=True, but the training batch "
                             "has no \"negative_waveforms\": give the training manifest a \"negative_audio\" field "
                             "(rendered swapped versions of each clip)")
        waves = batch["negative_waveforms"].to(waveforms.device)
        mask = batch.get("negative_waveform_mask")
        mask = (torch.ones(waves.shape[:2], dtype=torch.bool) if mask is None else mask).to(waveforms.device).bool()
        if waves.ndim != 3 or waves.shape[0] != n_clips or mask.shape != waves.shape[:2]:
            raise ValueError(f"negative_waveforms {tuple(waves.shape)} and negative_waveform_mask "
                             f"{tuple(mask.shape)} do not match a batch of {n_clips} clips")
        cap = getattr(self.loss, "max_audio_negatives", None)
        if cap is not None:
            mask = mask & (mask.long().cumsum(1) <= cap)  # the first `cap` real negatives of each clip
        used = mask.any(0).nonzero()
        k = int(used.max()) + 1 if used.numel() else 0  # drop trailing slots no clip uses
        waves, mask = waves[:, :k], mask[:, :k]
        embeds = waveforms.new_zeros(n_clips, k, self.model.embed_dim)
        if mask.any():
            embeds[mask] = self.model.encode_audio(waves[mask]).to(embeds.dtype)
        self.log("train/audio_negatives_per_clip", mask.sum(1).float().mean(), on_step=True, on_epoch=False,
                 batch_size=n_clips)
        return {"audio_negative_embeds": embeds, "audio_negative_mask": mask,
                "audio_negative_text": first_text_of_clip(text_owner, n_clips)}

    def _embed_probabilistic_batch(self, batch: dict[str, Any], texts: list[str],
                                   owner: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Gaussian embeddings for ProLAP-style losses: means and log-variances, caption ids, hierarchy pairs, and
        masked views of clips and captions on the batches the loss's `mask_share` selects."""
        waveforms = batch["waveforms"]
        if not getattr(self.model, "uncertainty", False):
            raise ValueError(f"{type(self.loss).__name__} needs Gaussian embeddings: build the model with uncertainty "
                             "heads (model.model.init_args.uncertainty: true)")
        out = self(waveforms, texts)
        if owner is None:
            owner = batch["caption_owner"].to(waveforms.device)
        out["text_owner"] = owner
        out["text_ids"] = text_ids(texts).to(waveforms.device)
        if "positives" in batch:
            out["hierarchy_pairs"] = _hierarchy_pairs(batch["captions"], batch["caption_owner"], texts,
                                                      owner.cpu()).to(waveforms.device)
        if getattr(self.loss, "uses_masked_views", False) and self._masking_step():
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.global_step, self.global_rank, 1]).generate_state(1)[0]))
            audio_ratio, text_ratio = self.loss.audio_mask_ratio, self.loss.text_mask_ratio
            if audio_ratio > 0:
                out["masked_audio_embeds"], out["masked_audio_logvar"] = self.model.encode_audio_gaussian(
                    waveforms, mask_ratio=audio_ratio, generator=generator)
            if text_ratio > 0:
                out["masked_text_embeds"], out["masked_text_logvar"] = self.model.encode_text_gaussian(
                    texts, mask_ratio=text_ratio, generator=generator)
        return out

    def _masking_step(self) -> bool:
        """Whether this training step gets masked views: a draw keyed on the global step alone, so every DDP rank
        (and a resumed run) decides the same."""
        share = float(getattr(self.loss, "mask_share", 1.0))
        if share >= 1.0:
            return True
        return bool(np.random.default_rng([self.global_step, 0]).random() < share)

    # ----------------------------------------------------------------- evaluation
    def _collect_eval(self, batch: dict[str, Any]) -> None:
        """Embed a val/test batch and keep what retrieval needs, keyed by dataset index."""
        if batch["waveforms"].shape[0] == 0:
            return
        audio = self.model.encode_audio(batch["waveforms"])
        text = self.model.encode_text(batch["captions"])
        owner = batch["caption_owner"].to(self.device)
        clip_index = batch["index"].to(self.device)
        # Position of each caption within its clip: identifies duplicates added by DDP padding.
        # caption_owner is sorted, so a caption's position is its offset from its owner's first caption.
        pos = torch.arange(len(owner), device=owner.device) - torch.searchsorted(owner, owner)
        self._eval_outputs.append({"audio": audio.float(), "clip": clip_index, "text": text.float(),
                                   "text_clip": clip_index[owner], "text_pos": pos})

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Embed clips and all their captions."""
        self._collect_eval(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Embed clips and all their captions."""
        self._collect_eval(batch)

    def _retrieval(self, prefix: str) -> None:
        """Gather embeddings from every rank, drop DDP padding duplicates, log retrieval metrics."""
        from compclap.eval.retrieval import retrieval_metrics, to_percent

        outs, self._eval_outputs = self._eval_outputs, []
        dim = self.model.embed_dim
        local = {k: torch.cat([o[k] for o in outs]) if outs else torch.empty(0, dtype=torch.long, device=self.device)
                 for k in ("clip", "text_clip", "text_pos")}
        local["audio"] = torch.cat([o["audio"] for o in outs]) if outs else torch.empty(0, dim, device=self.device)
        local["text"] = torch.cat([o["text"] for o in outs]) if outs else torch.empty(0, dim, device=self.device)
        g = {k: gather_variable(v, with_grad=False)[0] for k, v in local.items()}
        clip_ids, first = _first_occurrence(g["clip"])
        audio = g["audio"][first]
        key = g["text_clip"] * (int(g["text_pos"].max()) + 1 if len(g["text_pos"]) else 1) + g["text_pos"]
        _, tfirst = _first_occurrence(key)
        text, text_clip = g["text"][tfirst], g["text_clip"][tfirst]
        if audio.shape[0] < 2:
            return
        row_of_clip = {int(c): i for i, c in enumerate(clip_ids.tolist())}
        text_to_audio = torch.tensor([row_of_clip[int(c)] for c in text_clip.tolist()], dtype=torch.long)
        metrics = retrieval_metrics(audio.cpu(), text.cpu(), text_to_audio, chunk_size=self.hparams.eval_chunk_size)
        for name, value in to_percent(metrics).items():  # percent, as `compclap evaluate` reports them
            self.log(f"{prefix}/{name}", value, sync_dist=False, rank_zero_only=False)

    def on_validation_epoch_end(self) -> None:
        """Retrieval metrics on the validation split."""
        self._retrieval("val")

    def on_test_epoch_end(self) -> None:
        """Retrieval metrics, plus CompA-style scores for the configured CSVs."""
        self._retrieval("test")
        for name, csv_path in (self.hparams.compa_csvs or {}).items():
            from compclap.eval.compa import evaluate_compa, read_compa_csv

            result = evaluate_compa(read_compa_csv(csv_path), self.model.embed_audio, self.model.embed_text)
            for metric in ("text", "audio", "group"):  # evaluate_compa's scores are in percent already
                self.log(f"test/compa_{name}_{metric}", float(result[metric]))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Embeddings of a batch's clips and captions, with their dataset indices."""
        return {"index": batch["index"], "audio_embeds": self.model.encode_audio(batch["waveforms"]).cpu(),
                "captions": batch["captions"], "caption_owner": batch["caption_owner"],
                "text_embeds": self.model.encode_text(batch["captions"]).cpu() if batch["captions"] else None}

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        """model.optimizer on the parameter groups, linear warm-up then cosine or constant (compclap.optim)."""
        from compclap.epoch_log import fit_log_interval
        from compclap.optim import configure

        fit_log_interval(self.trainer)  # before configure sets up the data: it quiets Lightning's warning
        return configure(self)


def _hierarchy_pairs(captions: list[str], caption_owner: torch.Tensor, texts: list[str],
                     text_owner: torch.Tensor) -> torch.Tensor:
    """(specific, general) index pairs into `texts`: per clip, its training caption (the full description of a
    composed clip) against each of its other positives (sub-expression captions); (0, 2) when there are none."""
    caption_of = {int(o): c for c, o in zip(captions, caption_owner.tolist())}
    rows: dict[int, list[int]] = {}
    for k, o in enumerate(text_owner.tolist()):
        rows.setdefault(int(o), []).append(k)
    pairs = []
    for clip, ks in rows.items():
        full = caption_of.get(clip)
        specific = next((k for k in ks if texts[k] == full), None)
        if specific is not None:
            pairs += [(specific, k) for k in ks if texts[k] != full]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def _manifest_texts(records: list[dict[str, Any]]) -> list[str]:
    """Every caption, positive and hard-negative text of manifest records, each once."""
    texts: dict[str, None] = {}
    for rec in records:
        texts.update(dict.fromkeys(rec.get("captions") or []))
        texts.update(dict.fromkeys(rec.get("positives") or []))
        for negs in rec.get("negatives") or []:
            texts.update(dict.fromkeys(n["text"] for n in negs if isinstance(n, dict) and "text" in n))
    return list(texts)


def _first_occurrence(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique keys in order of first appearance and the positions of those first appearances."""
    seen: dict[int, int] = {}
    for pos, k in enumerate(keys.tolist()):
        seen.setdefault(int(k), pos)
    positions = torch.tensor(list(seen.values()), dtype=torch.long, device=keys.device)
    return keys[positions], positions
