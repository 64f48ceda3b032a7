"""Lightning callbacks: write `compclap predict` embeddings to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter


class EmbeddingWriter(BasePredictionWriter):
    """Save predicted audio/text embeddings as `<output_dir>/embeddings_rank<R>.pt` (index-aligned with the manifest)."""

    def __init__(self, output_dir: str = "checkpoints/predictions") -> None:
        """output_dir: folder for the embedding files (one per rank)."""
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)

    def write_on_epoch_end(self, trainer, pl_module, predictions: list[Any], batch_indices) -> None:
        """Concatenate this rank's batches and save them."""
        batches = [p for p in predictions if p is not None]
        if not batches:
            return
        captions = [c for b in batches for c in b["captions"]]
        offsets = [0]
        for b in batches:
            offsets.append(offsets[-1] + len(b["index"]))
        out = {
            "index": torch.cat([b["index"] for b in batches]),
            "audio_embeds": torch.cat([b["audio_embeds"] for b in batches]),
            "captions": captions,
            # caption_owner refers to rows of audio_embeds
            "caption_owner": torch.cat([b["caption_owner"] + off for b, off in zip(batches, offsets)]),
            "text_embeds": torch.cat([b["text_embeds"] for b in batches if b["text_embeds"] is not None])
            if captions else None,
        }
        from compclap.checkpoint_io import atomic_torch_save

        atomic_torch_save(out, self.output_dir / f"embeddings_rank{trainer.global_rank}.pt")
