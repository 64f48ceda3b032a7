"""`compclap export --ckpt X --out DIR`: write a model as a Hugging Face ClapModel directory or a compclap one.

- HTSAT + RoBERTa-style text tower (pooler output) + LAION-style heads -> a Hugging Face `ClapModel` directory:
  `config.json`, `model.safetensors`, `preprocessor_config.json` (ClapFeatureExtractor), tokenizer files and,
  when the tokenizer is a RoBERTa one, `processor_config.json`. `ClapModel.from_pretrained(DIR)` loads it.
  Front-end settings the feature extractor cannot express (int16 quantisation, a foreign filterbank rate,
  MS-CLAP padding) are stored under `compclap_frontend` in preprocessor_config.json, so `load_model(DIR)`
  restores them; a warning says when Hugging Face's own preprocessing will differ.
- Anything else (CNN14, GPT-2, BERT, T5 text towers, MS-CLAP heads) -> a compclap directory: `compclap_config.json`
  (the architecture spec), `model.safetensors`, `tokenizer/` and `model.yaml`, a `compclap fit --config`
  fragment with the same architecture (combine with `--model.init_from DIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from compclap.models.dual_encoder import COMPCLAP_FRONTEND_KEY, CLAPDualEncoder
from compclap.models.loading import EXPORT_CONFIG, EXPORT_WEIGHTS

FORMATS = ("auto", "hf", "compclap")


def hf_exportable(model: CLAPDualEncoder) -> str | None:
    """None when the model maps onto transformers' ClapModel; otherwise the reason it does not."""
    from compclap.models.audio import HTSATAudioEncoder

    if not isinstance(model.audio, HTSATAudioEncoder):
        return f"the audio tower is {type(model.audio).__name__}, not HTSAT"
    if getattr(model.audio, "temporal_bins", 0):
        return (f"the audio tower pools into {model.audio.temporal_bins} time segments; ClapModel pools over the "
                "whole clip")
    backbone = getattr(model.text, "backbone", None)
    model_type = getattr(getattr(backbone, "config", None), "model_type", None)
    if model_type not in ("roberta", "clap_text_model"):
        return f"the text tower is {model_type or type(model.text).__name__}, not RoBERTa"
    if model.text.pooling != "pooler":
        return f"the text tower pools with {model.text.pooling!r}; ClapModel uses the pooler output"
    if model.projection_style != "laion":
        return f"the projection heads are {model.projection_style}-style; ClapModel's are LAION-style"
    if getattr(model, "uncertainty", False):
        return "the model has ProLAP uncertainty heads, which ClapModel cannot hold"
    return None


def _text_config(backbone) -> dict[str, Any]:
    """ClapTextConfig keyword arguments from a RoBERTa or ClapText config (the weights share names)."""
    cfg = backbone.config
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
            "type_vocab_size", "layer_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id")
    return {k: getattr(cfg, k) for k in keys if getattr(cfg, k, None) is not None}


def to_hf_clap(model: CLAPDualEncoder):
    """A transformers ClapModel with this model's weights (logit_scale goes to both logit_scale_a and _t)."""
    from transformers import ClapConfig, ClapModel

    from compclap.models.convert_hf import ours_to_hf_clap
    from compclap.models.specs import config_kwargs

    reason = hf_exportable(model)
    if reason is not None:
        raise ValueError(f"cannot export as a Hugging Face ClapModel: {reason}")
    config = ClapConfig(audio_config=config_kwargs(model.audio.backbone.config),
                        text_config=_text_config(model.text.backbone), projection_dim=model.embed_dim,
                        projection_hidden_act=model.projection_activation,
                        logit_scale_init_value=float(model.logit_scale.detach().exp()))
    clap = ClapModel(config).eval()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    hf_state = ours_to_hf_clap(state)
    target = clap.state_dict()
    for key in ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"):
        if key not in hf_state and key in target:  # RoBERTa keeps these buffers out of its state dict
            hf_state[key] = target[key]
    missing, unexpected = clap.load_state_dict(hf_state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"internal error mapping onto ClapModel: missing {missing[:10]}, unexpected {unexpected[:10]}")
    return clap


def _feature_extractor(model: CLAPDualEncoder):
    """The ClapFeatureExtractor closest to the model's front end, and the front-end settings it cannot express."""
    from transformers import ClapFeatureExtractor

    fe = model.frontend_config
    fusion = bool(model.audio.fusion)
    seconds = int(fe.clip_seconds) if float(fe.clip_seconds).is_integer() else fe.clip_seconds
    extractor = ClapFeatureExtractor(feature_size=fe.n_mels, sampling_rate=fe.sample_rate, hop_length=fe.hop_length,
                                     max_length_s=seconds, fft_window_size=fe.n_fft, frequency_min=fe.f_min,
                                     frequency_max=fe.f_max, truncation="fusion" if fusion else "rand_trunc",
                                     padding=fe.padding)
    differs = []
    if fe.mel_scale != ("htk" if fusion else "slaney"):
        differs.append(f"mel_scale={fe.mel_scale}")
    if fe.mel_sample_rate not in (None, fe.sample_rate):
        differs.append(f"mel_sample_rate={fe.mel_sample_rate}")
    if fe.quantize_int16:
        differs.append("quantize_int16=True")
    if fusion and fe.n_mels != 64:
        differs.append(f"fusion with {fe.n_mels} mel bins (ClapFeatureExtractor's fusion assumes 64)")
    if not float(fe.clip_seconds).is_integer():
        differs.append(f"clip_seconds={fe.clip_seconds}")
    extras = {k: v for k, v in model.audio.spec()["init_args"].items() if k != "config"}
    return extractor, extras, differs


def export_hf(model: CLAPDualEncoder, out: Path) -> list[str]:
    """Write a Hugging Face ClapModel directory; returns the front-end differences worth a warning."""
    clap = to_hf_clap(model)
    clap.save_pretrained(str(out))
    extractor, extras, differs = _feature_extractor(model)
    tokenizer = model.text.tokenizer
    try:
        from transformers import ClapProcessor

        ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(out))
    except (TypeError, ValueError):  # a tokenizer class ClapProcessor refuses: the parts still go side by side
        pass
    # preprocessor_config.json as well: older transformers and compclap read the feature extractor from it.
    extractor.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    for name, nested in (("preprocessor_config.json", None), ("processor_config.json", "feature_extractor")):
        path = out / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        target = data.get(nested) if nested else data
        if isinstance(target, dict):
            target[COMPCLAP_FRONTEND_KEY] = extras
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return differs


def export_compclap(model: CLAPDualEncoder, out: Path) -> None:
    """Write spec + safetensors + tokenizer + a `compclap fit` config fragment."""
    import yaml
    from safetensors.torch import save_file

    spec = model.spec(tokenizer="tokenizer")
    model.text.tokenizer.save_pretrained(str(out / "tokenizer"))
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out / EXPORT_WEIGHTS), metadata={"format": "pt"})
    meta = {"format": "compclap", "format_version": 1, "model": spec,
            "frontend": model.frontend_config.to_dict()}
    (out / EXPORT_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    fit_spec = model.spec(tokenizer=str((out / "tokenizer").resolve()))
    fragment = {"model": {"model": fit_spec, "init_from": str(out.resolve())}}
    header = (f"# Architecture of the model exported to {out.resolve()}; its weights load through init_from.\n"
              "# compclap fit --config conf/fit.yaml --config THIS_FILE --config conf/data/...\n")
    (out / "model.yaml").write_text(header + yaml.safe_dump(fragment, sort_keys=False))


def export_model(model: CLAPDualEncoder, out: str | os.PathLike, fmt: str = "auto", overwrite: bool = False) -> str:
    """Export `model` to directory `out` in format "hf", "compclap" or "auto" (hf when possible); returns the format."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (pass --overwrite to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    reason = hf_exportable(model)
    if fmt == "hf" and reason is not None:
        raise ValueError(f"cannot export as a Hugging Face ClapModel: {reason} (use --format compclap)")
    if fmt == "compclap" or (fmt == "auto" and reason is not None):
        with torch.no_grad():
            export_compclap(model, out)
        return "compclap"
    with torch.no_grad():
        differs = export_hf(model, out)
    if differs:
        warnings.warn(f"{out}: Hugging Face's ClapFeatureExtractor cannot reproduce this model's front end "
                      f"({', '.join(differs)}); compclap's load_model({str(out)!r}) restores it exactly",
                      stacklevel=2)
    return "hf"


def main(argv: list[str] | None = None) -> int:
    """`compclap export --ckpt X --out DIR [--tokenizer DIR] [--format auto|hf|compclap] [--overwrite]`."""
    from compclap.models.loading import load_model

    parser = argparse.ArgumentParser(prog="compclap export", description=(
        "Export a checkpoint (compclap .ckpt or run directory, Hugging Face CLAP directory, LAION-CLAP .pt, "
        "MS-CLAP .pth) as a Hugging Face ClapModel directory (HTSAT + RoBERTa models) or a compclap directory."))
    parser.add_argument("--ckpt", required=True, help="checkpoint file or directory to export")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--tokenizer", default=None,
                        help="local tokenizer directory (required for LAION-CLAP .pt and MS-CLAP .pth files)")
    parser.add_argument("--format", default="auto", choices=FORMATS,
                        help="hf: Hugging Face ClapModel; compclap: spec + safetensors; auto: hf when possible")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.ckpt, tokenizer=args.tokenizer)
        fmt = export_model(model, args.out, args.format, overwrite=args.overwrite)
    except (OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        print(f"compclap export: error: {exc}", file=sys.stderr)
        return 1
    kind = "Hugging Face ClapModel" if fmt == "hf" else "compclap"
    print(f"exported {args.ckpt} as a {kind} directory: {args.out}")
    return 0
