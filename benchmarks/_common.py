"""Shared helpers for the benchmark scripts: peak-memory readings and a local CLAP model to time."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch


def status_kib(field: str) -> int:
    """A /proc/self/status field (e.g. VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak() -> bool:
    """Reset the peak-RSS counter (VmHWM) so later readings see only what follows; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


SIZES = {
    # the demo model's towers at LAION's front end (48 kHz, 10 s, 64 mels)
    "small": dict(audio=dict(spec_size=256, num_mel_bins=64, depths=[2, 2], num_attention_heads=[2, 4],
                             patch_embeds_hidden_size=48, window_size=8, hidden_size=96, num_hidden_layers=2),
                  text=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
                  projection_dim=128),
    # LAION-CLAP HTSAT-tiny + RoBERTa-base shapes
    "laion": dict(audio=dict(), text=dict(layer_norm_eps=1e-5), projection_dim=512),
}


def make_hf_clap_dir(size: str, out: Path | None = None, seed: int = 0) -> Path:
    """Save a random-weight Hugging Face ClapModel (+ a trained-on-the-fly tokenizer) to a local directory."""
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    from compclap.text.tokenizer import load_tokenizer, train_bpe_tokenizer

    out = Path(out or tempfile.mkdtemp(prefix=f"clap_{size}_"))
    spec = SIZES[size]
    words = "a the dog cat bird car engine siren beep hum whistle loud soft high low followed by then while".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) for i in range(500)]
    tok_dir = train_bpe_tokenizer(texts, out / "_tok", vocab_size=1000)
    tokenizer = load_tokenizer(tok_dir)
    text_cfg = ClapTextConfig(vocab_size=len(tokenizer), **spec["text"])
    audio_cfg = ClapAudioConfig(**spec["audio"])
    torch.manual_seed(seed)
    model = ClapModel(ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(),
                                 projection_dim=spec["projection_dim"]))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    ClapFeatureExtractor(feature_size=audio_cfg.num_mel_bins, truncation="rand_trunc",
                         frequency_min=50, frequency_max=14000).save_pretrained(out)
    return out
