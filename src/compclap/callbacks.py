"""Lightning callbacks: write `compclap predict` embeddings (with their audio paths) to disk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["DEFAULT_RUN_DIR", "EmbeddingWriter", "evaluation_run_dir", "install_prediction_writer"]

DEFAULT_RUN_DIR = "checkpoints/run"  # compclap's --run_dir default


class EmbeddingWriter(BasePredictionWriter):
    """Save predicted embeddings as `<output_dir>/embeddings_rank<R>.pt` plus a readable `clips_rank<R>.jsonl`.

    The .pt holds `index` (manifest line), `audio` (the clip's audio path), `audio_embeds`, `captions`,
    `caption_owner` (row of `audio_embeds` a caption belongs to) and `text_embeds`; the JSONL one line per row:
    `{"row", "index", "audio", "captions"}`. The folder is printed when predict ends.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        """output_dir: folder for the files (default: `<run_dir>/predictions`, i.e. the trainer's default_root_dir)."""
        super().__init__(write_interval="epoch")
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.written: list[Path] = []

    def folder(self, trainer: Any) -> Path:
        """Where this writer writes: output_dir, else `<trainer.default_root_dir>/predictions`."""
        return self.output_dir if self.output_dir is not None else Path(trainer.default_root_dir) / "predictions"

    def write_on_epoch_end(self, trainer, pl_module, predictions: list[Any], batch_indices) -> None:
        """Concatenate this rank's batches and save them with their audio paths."""
        batches = [p for p in predictions if p is not None]
        if not batches:
            return
        captions = [c for b in batches for c in b["captions"]]
        offsets = [0]
        for b in batches:
            offsets.append(offsets[-1] + len(b["index"]))
        index = torch.cat([b["index"] for b in batches])
        out = {
            "index": index,
            "audio": _audio_paths(trainer, batches, index.tolist()),
            "audio_embeds": torch.cat([b["audio_embeds"] for b in batches]),
            "captions": captions,
            # caption_owner refers to rows of audio_embeds
            "caption_owner": torch.cat([b["caption_owner"] + off for b, off in zip(batches, offsets)]),
            "text_embeds": torch.cat([b["text_embeds"] for b in batches if b["text_embeds"] is not None])
            if captions else None,
        }
        from compclap.checkpoint_io import atomic_torch_save

        folder = self.folder(trainer)
        path = folder / f"embeddings_rank{trainer.global_rank}.pt"
        atomic_torch_save(out, path)
        per_row: list[list[str]] = [[] for _ in range(len(index))]
        for text, owner in zip(captions, out["caption_owner"].tolist()):
            per_row[owner].append(text)
        rows = [json.dumps({"row": r, "index": i, "audio": a, "captions": c}, ensure_ascii=False)
                for r, (i, a, c) in enumerate(zip(index.tolist(), out["audio"], per_row))]
        clips = folder / f"clips_rank{trainer.global_rank}.jsonl"
        clips.write_text("".join(x + "\n" for x in rows), encoding="utf-8")
        self.written.append(path)
        print(f"compclap predict: {len(index)} clip and {len(captions)} caption embeddings -> {path} "
              f"(audio paths in {path.with_name(f'clips_rank{trainer.global_rank}.jsonl').name})", flush=True)


def _audio_paths(trainer: Any, batches: list[dict[str, Any]], index: list[int]) -> list[str | None]:
    """Audio path of each predicted clip: the batches' own `paths`, else the predict dataset's manifest records."""
    if all("paths" in b for b in batches):
        return [p for b in batches for p in b["paths"]]
    dataset = getattr(getattr(trainer, "datamodule", None), "datasets", {}).get("predict")
    records = getattr(dataset, "records", None)
    if records is None:
        return [None] * len(index)
    return [str(records[i]["audio"]) for i in index]


def evaluation_run_dir(subcommand: str | None, run_dir: str, ckpt_path: str | None) -> str:
    """validate/test/predict of a checkpoint without a --run_dir of their own write next to that checkpoint's run.

    `<run>/checkpoints/last.ckpt` -> `<run>` (another file: its folder), so TensorBoard logs and predictions land in
    the run they belong to instead of the default `checkpoints/run`.
    """
    if subcommand not in ("validate", "test", "predict") or str(run_dir) != DEFAULT_RUN_DIR or not ckpt_path:
        return str(run_dir)
    ckpt = Path(ckpt_path)
    if not ckpt.is_file():
        return str(run_dir)
    folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return os.path.relpath(folder) if not ckpt.is_absolute() else str(folder)


def install_prediction_writer(trainer: Any, output: str | None = None) -> BasePredictionWriter:
    """The trainer's prediction writer; an EmbeddingWriter (to `output` or `<run_dir>/predictions`) when it has none."""
    writers = [cb for cb in trainer.callbacks if isinstance(cb, BasePredictionWriter)]
    for writer in writers:
        if isinstance(writer, EmbeddingWriter) and writer.output_dir is None and output is not None:
            writer.output_dir = Path(output)
    if writers:
        return writers[0]
    writer = EmbeddingWriter(output)
    trainer.callbacks.append(writer)
    return writer
