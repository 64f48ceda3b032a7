"""Shared fixtures: tiny random CLAP configs, a tokenizer trained on the fly, tiny manifests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# The project's shared data (AudioCaps captions, the hard-negative dev set) sits beside the checkout.
SHARED_DATA = Path(os.environ.get("COMPCLAP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

TINY_AUDIO = dict(spec_size=64, num_mel_bins=16, depths=[1, 1], num_attention_heads=[1, 2],
                  patch_embeds_hidden_size=8, window_size=4)
TINY_FRONTEND = dict(sample_rate=8000, clip_seconds=1.0, n_fft=256, hop_length=80, f_min=0.0, f_max=4000.0)
TINY_TEXT = dict(model_type="roberta", hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=40)

CAPTIONS = ["a high beep followed by a soft hum", "a dog barks while a man speaks", "a loud siren",
            "a low hum then a short click", "rain falls on a roof", "a bell rings twice"]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer trained on a few captions."""
    from compclap.text.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(CAPTIONS * 5, tmp_path_factory.mktemp("tok"), vocab_size=300, model_max_length=32)


def make_tiny_model(tokenizer_dir, embed_dim: int = 12, text_config: dict | None = None, **dual_kwargs):
    """A CLAPDualEncoder with tens of thousands of parameters."""
    from compclap.models import CLAPDualEncoder, HFTextEncoder, HTSATAudioEncoder

    audio = HTSATAudioEncoder(config=TINY_AUDIO, **TINY_FRONTEND)
    text = HFTextEncoder(str(tokenizer_dir), config=text_config or TINY_TEXT, max_length=32)
    return CLAPDualEncoder(audio, text, embed_dim=embed_dim, **dual_kwargs)


@pytest.fixture()
def tiny_model(tokenizer_dir):
    """A fresh tiny dual encoder."""
    return make_tiny_model(tokenizer_dir)


def write_tiny_manifest(root: Path, name: str, n: int, sample_rate: int = 8000, seed: int = 0,
                        bad: int = 0) -> Path:
    """Write n short tone clips (the last `bad` of them undecodable) and their manifest."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        path = root / "audio" / f"{name}_{i:03d}.wav"
        if i >= n - bad:
            path.write_bytes(b"this is not audio")
        else:
            t = np.arange(int(sample_rate * rng.uniform(0.5, 1.5))) / sample_rate
            freq = 200 + 150 * (i % 6)
            sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sample_rate)
        lines.append({"audio": f"audio/{path.name}", "captions": [CAPTIONS[i % 6], f"clip {i % 6} sound"]})
    manifest = root / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest
