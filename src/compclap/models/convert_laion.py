"""LAION-CLAP checkpoints (`630k-audioset-best.pt`, `630k-audioset-fusion-best.pt`, HTSAT-base music/speech).

The file is `{"epoch", "name", "state_dict"}` (keys may carry DDP's `module.`) or a raw state dict with
`audio_branch.*` (HTSAT), `text_branch.*` (RoBERTa), `audio_projection.{0,2}`, `text_projection.{0,2}`,
`audio_transform.*`, `text_transform.*`, `logit_scale_a`, `logit_scale_t`. Keys are renamed onto
transformers' ClapModel exactly as transformers' own conversion script does; the HTSAT size (tiny, base,
anything else), the fusion variant and the RoBERTa size are read from the tensor shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from compclap.models.convert_hf import Converted, hf_clap_to_ours
from compclap.models.safe_load import CheckpointLayoutError, mismatch_message
from compclap.models.specs import config_kwargs

# Substring renames inside the HTSAT tower, in order (transformers' convert_clap_original_pytorch_to_hf.py).
HTSAT_RENAMES = (("attn", "attention.self"), ("self.proj", "output.dense"), ("attention.self_mask", "attn_mask"),
                 ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"), ("norm1", "layernorm_before"),
                 ("norm2", "layernorm_after"), ("bn0", "batch_norm"))

# HTSAT keys with no counterpart in ClapAudioModel: torchlibrosa's STFT / mel weights, the AudioSet
# classifier, and the shifted-window masks (recomputed on the fly).
HTSAT_IGNORED = re.compile(r"^(spectrogram_extractor|logmel_extractor|head|tscam_conv)\.|(^|\.)attn_mask$")
LAION_IGNORED = re.compile(r"^text_branch\.embeddings\.(position_ids|token_type_ids)$|^(audio|text)_transform\.")

# LAION-CLAP's preprocessing: 48 kHz, 10 s, STFT 1024 / hop 480, 64 mels 50-14000 Hz (slaney filters for
# rand_trunc models, HTK without norm for fusion models), repeat-padding, int16 quantisation at inference.
LAION_FRONTEND = dict(sample_rate=48_000, clip_seconds=10.0, n_fft=1024, hop_length=480, f_min=50.0,
                      f_max=14_000.0, padding="repeatpad", quantize_int16=True)
LAION_TEXT_MAX_LENGTH = 77


def looks_like_laion(state: Mapping[str, Any]) -> bool:
    """True when the keys are LAION-CLAP's (after any `module.` prefix was stripped)."""
    return any(k.startswith("audio_branch.") for k in state) and any(k.startswith("text_branch.") for k in state)


def htsat_key(key: str) -> str:
    """One HTSAT key (relative to the tower) renamed onto transformers' ClapAudioEncoder."""
    for old, new in HTSAT_RENAMES:
        key = key.replace(old, new)
    return key


def htsat_to_hf(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """HTSAT weights (relative keys) as ClapAudioEncoder weights: (state, new key -> old key, ignored keys).

    The fused `qkv` projection is split in thirds into query / key / value.
    """
    out, origin, ignored = {}, {}, []
    for key, value in state.items():
        if HTSAT_IGNORED.search(key):
            ignored.append(key)
            continue
        new = htsat_key(key)
        if ".qkv." in new:
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                name = new.replace(".qkv.", f".{part}.")
                out[name], origin[name] = chunk.clone(), key
        else:
            out[new], origin[new] = value, key
    return out, origin, ignored


def _need(state: Mapping[str, torch.Tensor], key: str, where: str, layout: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointLayoutError(mismatch_message(where, layout, [key], [],
                                                     note=" (a key needed to read the model's size is absent)"))
    return state[key]


def htsat_config_from_state(state: Mapping[str, torch.Tensor], where: str = "checkpoint",
                            layout: str = "HTSAT") -> dict[str, Any]:
    """ClapAudioConfig keyword arguments read from HTSAT weights (relative keys, original naming)."""
    proj = _need(state, "patch_embed.proj.weight", where, layout)
    embed, in_ch, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    layer_ids = sorted({int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))})
    if not layer_ids:
        raise CheckpointLayoutError(mismatch_message(where, layout, ["layers.0.blocks.0.*"], []))
    depths, heads = [], []
    for i in layer_ids:
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"layers\.{i}\.blocks\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
        table = _need(state, f"layers.{i}.blocks.0.attn.relative_position_bias_table", where, layout)
        heads.append(table.shape[1])
    window = (math.isqrt(_need(state, "layers.0.blocks.0.attn.relative_position_bias_table", where,
                                layout).shape[0]) + 1) // 2
    fc1 = _need(state, "layers.0.blocks.0.mlp.fc1.weight", where, layout)
    cfg: dict[str, Any] = dict(
        patch_embeds_hidden_size=embed, patch_size=patch, patch_stride=[patch, patch], depths=depths,
        num_attention_heads=heads, num_hidden_layers=len(depths), window_size=window,
        hidden_size=_need(state, "norm.weight", where, layout).shape[0],
        num_mel_bins=_need(state, "bn0.weight", where, layout).shape[0],
        mlp_ratio=fc1.shape[0] / fc1.shape[1], qkv_bias="layers.0.blocks.0.attn.qkv.bias" in state,
        enable_patch_layer_norm="patch_embed.norm.weight" in state, spec_size=256)
    # The shifted-window mask of stage i has (resolution_i / window)^2 windows; it pins spec_size down.
    for key, mask in state.items():
        m = re.match(r"layers\.(\d+)\.blocks\.\d+\.attn_mask$", key)
        if m and mask.dim() == 3:
            resolution = math.isqrt(mask.shape[0]) * window * 2 ** int(m.group(1))
            cfg["spec_size"] = resolution * patch
            break
    if "patch_embed.mel_conv2d.weight" in state:
        if in_ch != 1:
            raise NotImplementedError(f"{where}: fusion with {in_ch} input channels (channel_map) is not supported; "
                                      "only LAION's aff_2d fusion is")
        local = _need(state, "patch_embed.fusion_model.local_att.0.weight", where, layout)
        cfg.update(enable_fusion=True, fusion_type="aff_2d", aff_block_r=embed // local.shape[0])
    return cfg


def htsat_size_name(cfg: Mapping[str, Any]) -> str:
    """HTSAT-tiny / HTSAT-base when the shapes are LAION's presets, else a short description."""
    from compclap.models.audio import HTSAT_PRESETS

    for name, preset in HTSAT_PRESETS.items():
        if all(list(cfg[k]) == list(v) if isinstance(v, list) else cfg[k] == v for k, v in preset.items()):
            return f"HTSAT-{name}"
    return f"HTSAT (width {cfg['patch_embeds_hidden_size']}, depths {cfg['depths']})"


def roberta_config_from_state(state: Mapping[str, torch.Tensor], where: str, layout: str) -> dict[str, Any]:
    """ClapTextConfig keyword arguments from RoBERTa weights (relative keys); LayerNorm eps is RoBERTa's 1e-5."""
    words = _need(state, "embeddings.word_embeddings.weight", where, layout)
    positions = _need(state, "embeddings.position_embeddings.weight", where, layout)
    types = _need(state, "embeddings.token_type_embeddings.weight", where, layout)
    if types.shape[0] != 1:
        raise NotImplementedError(f"{where}: the text tower has {types.shape[0]} token types, so it is BERT-like, "
                                  "not RoBERTa; only LAION-CLAP's RoBERTa text tower is supported")
    hidden = words.shape[1]
    layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    inter = _need(state, "encoder.layer.0.intermediate.dense.weight", where, layout)
    return dict(vocab_size=words.shape[0], hidden_size=hidden, num_hidden_layers=len(layers),
                num_attention_heads=max(1, hidden // 64), intermediate_size=inter.shape[0],
                max_position_embeddings=positions.shape[0], type_vocab_size=1, layer_norm_eps=1e-5,
                pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu")


def laion_to_hf_clap(state: Mapping[str, torch.Tensor], where: str = "checkpoint"):
    """Rename a LAION-CLAP state dict onto transformers' ClapModel.

    Returns (ClapConfig, ClapModel-named state, new key -> LAION key, ignored LAION keys, layout description).
    Keys outside the known groups are kept under their own name, so they surface as unexpected later.
    """
    from transformers import ClapConfig

    layout = "LAION-CLAP"
    audio = {k[len("audio_branch."):]: v for k, v in state.items() if k.startswith("audio_branch.")}
    text = {k[len("text_branch."):]: v for k, v in state.items() if k.startswith("text_branch.")}
    audio_cfg = htsat_config_from_state(audio, where, layout)
    text_cfg = roberta_config_from_state(text, where, layout)
    proj = _need(state, "audio_projection.0.weight", where, layout)

    out, origin, ignored = {}, {}, []
    hf_audio, audio_origin, audio_ignored = htsat_to_hf(audio)
    for k, v in hf_audio.items():
        out[f"audio_model.audio_encoder.{k}"] = v
        origin[f"audio_model.audio_encoder.{k}"] = f"audio_branch.{audio_origin[k]}"
    ignored += [f"audio_branch.{k}" for k in audio_ignored]
    for key, value in state.items():
        if key.startswith("audio_branch."):
            continue
        if LAION_IGNORED.search(key):
            ignored.append(key)
            continue
        new = key
        if key.startswith("text_branch."):
            new = "text_model." + key[len("text_branch."):]
        elif m := re.match(r"(audio|text)_projection\.(\d+)\.(.*)$", key):
            new = f"{m.group(1)}_projection.linear{1 if m.group(2) == '0' else 2}.{m.group(3)}" \
                if m.group(2) in ("0", "2") else key
        out[new], origin[new] = value, key
    config = ClapConfig(audio_config=audio_cfg, text_config=text_cfg, projection_dim=proj.shape[0],
                        projection_hidden_act="relu")
    fusion = ", fusion" if audio_cfg.get("enable_fusion") else ""
    description = f"{layout} ({htsat_size_name(audio_cfg)}{fusion}, RoBERTa)"
    return config, out, origin, ignored, description


def convert_laion(state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> Converted:
    """A LAION-CLAP state dict as a compclap spec + weights (front end: 48 kHz, 10 s, int16 quantisation)."""
    config, hf_state, hf_origin, ignored, layout = laion_to_hf_clap(state, where)
    ours, unknown = hf_clap_to_ours(hf_state)
    origin = {}
    for key in hf_state:
        mapped, _ = hf_clap_to_ours({key: hf_state[key]})
        for new in mapped:
            origin[new] = hf_origin.get(key, key)
    for key in unknown:  # keep unknown keys so that loading reports them as unexpected
        ours[key] = hf_state[key]
        origin[key] = hf_origin.get(key, key)
    fusion = bool(config.audio_config.enable_fusion)
    audio_config = config_kwargs(config.audio_config)
    text_config = {"model_type": "clap_text_model", **config_kwargs(config.text_config)}
    spec = {"class_path": "compclap.models.CLAPDualEncoder",
            "init_args": {
                "audio": {"class_path": "compclap.models.audio.HTSATAudioEncoder",
                          "init_args": {"config": audio_config, **LAION_FRONTEND,
                                        "mel_scale": "htk" if fusion else "slaney"}},
                "text": {"class_path": "compclap.models.text.HFTextEncoder",
                         "init_args": {"tokenizer": None, "config": text_config, "pooling": "pooler",
                                       "max_length": LAION_TEXT_MAX_LENGTH}},
                "embed_dim": config.projection_dim, "projection_activation": "relu", "projection_style": "laion"}}
    return Converted(layout=layout, spec=spec, state=ours, origin=origin, ignored=ignored)
