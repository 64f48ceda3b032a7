"""MS-CLAP checkpoints (`CLAP_weights_2022.pth`, `CLAP_weights_2023.pth`): `torch.load(...)["model"]`.

- 2023: `audio_encoder.base.htsat.*` (HTSAT-tiny, same module layout as LAION's, so it maps onto transformers'
  ClapAudioModel with the same renames) + `caption_encoder.base.*` (GPT-2; sentence vector = hidden state of
  the appended end-of-text token). Audio: 44.1 kHz, 7 s, STFT 1024 / hop 320, 64 mels; the filterbank is the
  one of HTSAT's 32 kHz config (50-14000 Hz at 32 kHz) applied to 44.1 kHz audio, and the 965 frames are
  bicubically resized to 1024 inside HTSAT. Captions up to 77 tokens.
- 2022: `audio_encoder.base.*` (CNN14, 2048-d) + `caption_encoder.base.*` (BERT, [CLS] vector). Audio: 44.1 kHz,
  5 s, 64 mels 50-14000 Hz. Captions up to 100 tokens.
- Both: `{audio_encoder,caption_encoder}.projection.{linear1,linear2,layer_norm}` (linear1 -> GELU -> linear2 ->
  dropout, added to linear1's output, LayerNorm; no biases), `logit_scale`. Clips shorter than the clip
  length are repeated and cut. Legacy buffers (GPT-2 `attn.bias` / `attn.masked_bias`, BERT
  `embeddings.position_ids`) are accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from compclap.models.convert_hf import Converted
from compclap.models.convert_laion import _need, htsat_config_from_state, htsat_size_name, htsat_to_hf
from compclap.models.safe_load import CheckpointLayoutError, mismatch_message

MSCLAP_2023_FRONTEND = dict(sample_rate=44_100, clip_seconds=7.0, n_fft=1024, hop_length=320, f_min=50.0,
                            f_max=14_000.0, mel_scale="slaney", mel_sample_rate=32_000, padding="repeat",
                            quantize_int16=False)
MSCLAP_2022_FRONTEND = dict(sample_rate=44_100, clip_seconds=5.0, n_fft=1024, hop_length=320, f_min=50.0,
                            f_max=14_000.0, mel_sample_rate=None, padding="repeat", quantize_int16=False)

TEXT_IGNORED = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$|^embeddings\.(position_ids|token_type_ids)$")
CNN14_IGNORED = re.compile(r"^(spectrogram_extractor|logmel_extractor|fc_audioset)\.")


def looks_like_msclap(state: Mapping[str, Any]) -> bool:
    """True when the keys are MS-CLAP's."""
    return any(k.startswith("audio_encoder.base.") for k in state) and \
        any(k.startswith("caption_encoder.base.") for k in state)


def _gpt2_config(text: Mapping[str, torch.Tensor], where: str, layout: str) -> dict[str, Any]:
    wte = _need(text, "wte.weight", where, layout)
    wpe = _need(text, "wpe.weight", where, layout)
    fc = _need(text, "h.0.mlp.c_fc.weight", where, layout)  # Conv1D: (in, out)
    layers = {int(m.group(1)) for k in text if (m := re.match(r"h\.(\d+)\.", k))}
    vocab, hidden = wte.shape
    eos = min(50256, vocab - 1)
    return dict(model_type="gpt2", vocab_size=vocab, n_embd=hidden, n_layer=len(layers), n_head=max(1, hidden // 64),
                n_positions=wpe.shape[0], n_inner=fc.shape[1], bos_token_id=eos, eos_token_id=eos)


def _bert_config(text: Mapping[str, torch.Tensor], where: str, layout: str) -> dict[str, Any]:
    words = _need(text, "embeddings.word_embeddings.weight", where, layout)
    positions = _need(text, "embeddings.position_embeddings.weight", where, layout)
    types = _need(text, "embeddings.token_type_embeddings.weight", where, layout)
    inter = _need(text, "encoder.layer.0.intermediate.dense.weight", where, layout)
    layers = {int(m.group(1)) for k in text if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    hidden = words.shape[1]
    return dict(model_type="bert", vocab_size=words.shape[0], hidden_size=hidden, num_hidden_layers=len(layers),
                num_attention_heads=max(1, hidden // 64), intermediate_size=inter.shape[0],
                max_position_embeddings=positions.shape[0], type_vocab_size=types.shape[0], pad_token_id=0)


def convert_msclap(state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> Converted:
    """An MS-CLAP state dict (2022 or 2023) as a compclap spec + weights."""
    layout = "MS-CLAP"
    base = {k[len("audio_encoder.base."):]: v for k, v in state.items() if k.startswith("audio_encoder.base.")}
    text = {k[len("caption_encoder.base."):]: v for k, v in state.items() if k.startswith("caption_encoder.base.")}
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    ignored: list[str] = []

    if any(k.startswith("htsat.") for k in base):
        htsat = {k[len("htsat."):]: v for k, v in base.items() if k.startswith("htsat.")}
        cfg = htsat_config_from_state(htsat, where, layout)
        hf, hf_origin, hf_ignored = htsat_to_hf(htsat)
        for k, v in hf.items():
            out[f"audio.backbone.audio_encoder.{k}"] = v
            origin[f"audio.backbone.audio_encoder.{k}"] = f"audio_encoder.base.htsat.{hf_origin[k]}"
        ignored += [f"audio_encoder.base.htsat.{k}" for k in hf_ignored]
        for k, v in base.items():  # anything next to htsat.* is unexpected
            if not k.startswith("htsat."):
                out[f"audio.{k}"], origin[f"audio.{k}"] = v, f"audio_encoder.base.{k}"
        audio_spec = {"class_path": "compclap.models.audio.HTSATAudioEncoder",
                      "init_args": {"config": cfg, **MSCLAP_2023_FRONTEND}}
        audio_name = htsat_size_name(cfg)
    elif "conv_block1.conv1.weight" in base:
        channels = [_need(base, f"conv_block{i}.conv1.weight", where, layout).shape[0] for i in range(1, 7)]
        n_mels = _need(base, "bn0.weight", where, layout).shape[0]
        embed = _need(base, "fc1.weight", where, layout).shape[0]
        for k, v in base.items():
            if CNN14_IGNORED.search(k):
                ignored.append(f"audio_encoder.base.{k}")
            else:
                out[f"audio.{k}"], origin[f"audio.{k}"] = v, f"audio_encoder.base.{k}"
        audio_spec = {"class_path": "compclap.models.cnn14.CNN14AudioEncoder",
                      "init_args": {**MSCLAP_2022_FRONTEND, "n_mels": n_mels, "channels": channels,
                                    "embed_dim": embed}}
        audio_name = "CNN14"
    else:
        raise CheckpointLayoutError(mismatch_message(
            where, layout, ["audio_encoder.base.htsat.* (2023) or audio_encoder.base.conv_block1.* (2022)"],
            [f"audio_encoder.base.{k}" for k in base]))

    if "wte.weight" in text:
        text_cfg, pooling, max_length, text_name = _gpt2_config(text, where, layout), "eos", 77, "GPT-2"
    elif "embeddings.word_embeddings.weight" in text:
        text_cfg, pooling, max_length, text_name = _bert_config(text, where, layout), "cls", 100, "BERT"
    else:
        raise CheckpointLayoutError(mismatch_message(
            where, layout, ["caption_encoder.base.wte.weight (GPT-2) or caption_encoder.base.embeddings.* (BERT)"],
            [f"caption_encoder.base.{k}" for k in text]))
    for k, v in text.items():
        if TEXT_IGNORED.search(k):
            ignored.append(f"caption_encoder.base.{k}")
        else:
            out[f"text.backbone.{k}"], origin[f"text.backbone.{k}"] = v, f"caption_encoder.base.{k}"

    for key, value in state.items():
        if key.startswith(("audio_encoder.base.", "caption_encoder.base.")):
            continue
        new = key
        if key.startswith("audio_encoder.projection."):
            new = "audio_projection." + key[len("audio_encoder.projection."):]
        elif key.startswith("caption_encoder.projection."):
            new = "text_projection." + key[len("caption_encoder.projection."):]
        out[new], origin[new] = value, key
    proj = _need(state, "audio_encoder.projection.linear1.weight", where, layout)
    spec = {"class_path": "compclap.models.CLAPDualEncoder",
            "init_args": {
                "audio": audio_spec,
                "text": {"class_path": "compclap.models.text.HFTextEncoder",
                         "init_args": {"tokenizer": None, "config": text_cfg, "pooling": pooling,
                                       "max_length": max_length}},
                "embed_dim": proj.shape[0], "projection_activation": "gelu", "projection_style": "msclap"}}
    year = "2023" if audio_name.startswith("HTSAT") and text_name == "GPT-2" else \
        "2022" if audio_name == "CNN14" and text_name == "BERT" else "custom"
    return Converted(layout=f"{layout} {year} ({audio_name}, {text_name})", spec=spec, state=out, origin=origin,
                     ignored=ignored)
