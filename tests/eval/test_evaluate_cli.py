"""`compclap evaluate` end to end: tiny Hugging Face CLAP checkpoints, both CompA layouts, one merged report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import TINY_AUDIO

SR = 8000
TONES = {"beep": 440.0, "hum": 110.0, "whistle": 1800.0, "buzz": 260.0}


def _save_tiny_clap(out: Path, tokenizer_dir: Path, seed: int) -> Path:
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    from compclap.text.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    text_cfg = ClapTextConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=40)
    audio_cfg = ClapAudioConfig(**TINY_AUDIO, hidden_size=16, num_hidden_layers=2)
    torch.manual_seed(seed)
    ClapModel(ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(),
                         projection_dim=8)).save_pretrained(out)
    tok.save_pretrained(out)
    ClapFeatureExtractor(feature_size=16, sampling_rate=SR, hop_length=80, max_length_s=1, fft_window_size=256,
                         frequency_min=0, frequency_max=4000, truncation="rand_trunc",
                         padding="repeatpad").save_pretrained(out)
    return out


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_world")
    audio = root / "audio"
    audio.mkdir()
    t = np.arange(SR) / SR
    for i, (name, freq) in enumerate(TONES.items()):
        for variant, gain in (("a", 0.5), ("b", 0.1)):
            wave = gain * np.sin(2 * np.pi * freq * t) * np.linspace(1.0 - 0.8 * i / 4, 0.2 + 0.8 * i / 4, SR)
            sf.write(audio / f"{name}_{variant}.wav", wave.astype(np.float32), SR)
    order_header = ["pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file",
                    "triplet_caption", "triplet_file"]
    order = _write_csv(root / "compa_order.csv", order_header, [
        ["a high beep followed by a soft hum", "a soft hum followed by a high beep", "beep_a.wav", "hum_a.wav", "-", "-"],
        ["a dog barks while a man speaks", "a man speaks while a dog barks", "whistle_a.wav", "buzz_a.wav",
         "a bell rings twice", "beep_b.wav"],
        ["a low hum then a short click", "a short click then a low hum", "hum_b.wav", "whistle_b.wav", "-", "-"],
    ])
    # The released attribute CSV repeats pair_file / reversed_pair_file: YouTube ids first, local names second.
    attribute = _write_csv(root / "compa_attribute.csv", [*order_header[:4], "pair_file", "reversed_pair_file",
                                                          *order_header[4:]], [
        ["a loud siren", "a bell rings twice", "YT_x1", "YT_x2", "beep_a.wav", "beep_b.wav", "-", "-"],
        ["rain falls on a roof", "a loud siren", "YT_y1", "YT_y2", "buzz_b.wav", "hum_a.wav", "-", "-"],
    ])
    labels = _write_csv(root / "labels.csv", ["path", "label"],
                        [[f"{n}_{v}.wav", n] for n in TONES for v in "ab"])
    clotho = _write_csv(root / "clotho.csv", ["file_name", "caption_1", "caption_2"],
                        [[f"{n}_a.wav", f"a {n} sound", f"a loud {n}"] for n in TONES])
    return {"root": root, "audio": audio, "order": order, "attribute": attribute, "labels": labels,
            "clotho": clotho, "A": _save_tiny_clap(root / "model_A", tokenizer_dir, 0),
            "B": _save_tiny_clap(root / "model_B", tokenizer_dir, 1),
            "C": _save_tiny_clap(root / "model_C", tokenizer_dir, 2)}


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import compclap.models.loading as loading

    loads: list[str] = []
    real = loading.load_model

    def counting(path, *args, **kwargs):
        loads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loading, "load_model", counting)
    return loads


def test_evaluate_two_models_then_add_one(world, tmp_path, monkeypatch, capsys) -> None:
    from compclap.eval.cli import main
    from compclap.eval.compa import evaluate_compa, read_compa_csv
    from compclap.models.loading import load_model

    out, cache = tmp_path / "report", tmp_path / "cache"
    common = ["--out", str(out), "--cache", str(cache), "--no-progress", "--n-boot", "200", "--audio-root", str(world["audio"]),
              "--csv", f"order={world['order']}", "--csv", f"attribute={world['attribute']}"]
    loads = _count_loads(monkeypatch)
    assert main(["compa", "--model", f"A={world['A']}", "--model", f"B={world['B']}", *common]) == 0
    assert loads == ["model_A", "model_B"]

    payload = json.loads((out / "results.json").read_text())
    assert list(payload["models"]) == ["A", "B"]
    assert payload["benchmarks"]["compa_order"]["n_rows"] == 3
    assert payload["benchmarks"]["compa_order"]["n_triplet_rows"] == 1
    assert payload["benchmarks"]["compa_attribute"]["n_rows"] == 2
    # Same numbers as `evaluate_compa` on the plain model (what `compclap test` logs).
    direct = evaluate_compa(read_compa_csv(world["order"], world["audio"]), *_embedders(load_model(world["A"])), n_boot=200)
    got = payload["results"]["A"]["compa_order"]
    for key in ("text", "audio", "group", "text_ci", "n_rows"):
        assert got[key] == pytest.approx(direct[key])
    assert got["triplet"]["n_rows"] == 1
    rows = list(csv.DictReader((out / got["rows_csv"]).open()))
    assert len(rows) == 3 and rows[1]["triplet_caption"] == "a bell rings twice"
    assert np.mean([r["group"] == "True" for r in rows]) * 100 == pytest.approx(got["group"])
    for row, ref in zip(rows, direct["rows"]):
        s = {k: float(row[k]) for k in ("s00", "s01", "s10", "s11")}
        assert s == pytest.approx({k: ref[k] for k in s}, abs=1e-5)  # cached embeddings = fresh ones
        assert row["text"] == str(s["s00"] > s["s10"] and s["s11"] > s["s01"])
        assert row["audio"] == str(s["s00"] > s["s01"] and s["s11"] > s["s10"])
    attr_rows = list(csv.DictReader((out / payload["results"]["B"]["compa_attribute"]["rows_csv"]).open()))
    assert attr_rows[0]["file_0"].endswith("beep_a.wav")  # the local names of the repeated columns

    report = (out / "report.md").read_text()
    assert "| model | compa_order text | compa_order audio | compa_order group | compa_attribute text" in report
    assert f"| A | {got['text']:.1f} | {got['audio']:.1f} | {got['group']:.1f} |" in report
    for png in ("bars_compa_order.png", "examples_compa_order.png", "bars_compa_attribute.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and f"]({png})" in report
    printed = capsys.readouterr().out
    assert "| A |" in printed and "| B |" in printed

    # Second run with one more model: A and B come from the cache and are not even loaded.
    loads.clear()
    assert main(["compa", "--model", f"A={world['A']}", "--model", f"B={world['B']}", "--model",
                 f"C={world['C']}", *common]) == 0
    assert loads == ["model_C"]
    again = json.loads((out / "results.json").read_text())
    stats = again["last_run"]["embedding"]
    assert stats["A"]["audio_computed"] == 0 and stats["A"]["text_computed"] == 0 and stats["A"]["audio_hits"] > 0
    assert stats["B"]["model_loaded"] == 0
    assert stats["C"]["audio_computed"] == 8 and stats["C"]["text_computed"] == 9
    assert again["results"]["A"]["compa_order"] == payload["results"]["A"]["compa_order"]
    assert list(again["models"]) == ["A", "B", "C"]

    # Other subcommands add their benchmarks to the same report.
    assert main(["zeroshot", "--model", f"A={world['A']}", "--csv", str(world["labels"]), "--audio-root", str(world["audio"]), "--out", str(out),
                 "--cache", str(cache), "--no-progress", "--template", "a {label} sound",
                 "--template", "This is a sound of {label}."]) == 0
    assert main(["retrieval", "--model", f"A={world['A']}", "--model", f"C={world['C']}", "--csv",
                 str(world["clotho"]), "--audio-dir", str(world["audio"]), "--out", str(out), "--cache", str(cache),
                 "--no-progress", "--name", "clotho"]) == 0
    final = json.loads((out / "results.json").read_text())
    assert list(final["benchmarks"]) == ["compa_order", "compa_attribute", "zeroshot_labels", "clotho"]
    zs = final["results"]["A"]["zeroshot_labels"]
    assert zs["n_classes"] == 4 and 0 <= zs["top1"] <= 100 and zs["top1"] <= zs.get("top5", 100)
    ret = final["results"]["C"]["clotho"]
    assert ret["n_clips"] == 4 and ret["n_captions"] == 8 and 0 <= ret["t2a_R@1"] <= 100
    assert "clotho" not in final["results"]["B"]
    report = (out / "report.md").read_text()
    assert "clotho t2a R@1" in report and "zeroshot_labels top-1" in report
    assert (out / "bars_clotho.png").is_file()
    assert stats_of(final, "A")["audio_computed"] == 0  # every clip was already embedded by A


def stats_of(payload: dict, model: str) -> dict:
    return payload["last_run"]["embedding"][model]


def _embedders(model):
    return model.embed_audio, model.embed_text


def test_clear_errors(world, tmp_path, capsys) -> None:
    from compclap.eval.cli import main

    bad = _write_csv(tmp_path / "bad.csv", ["pair_caption", "reversed_pair_caption", "pair_file",
                                            "reversed_pair_file"], [["x", "y", "beep_a.wav", "gone.wav"]])
    base = ["--model", str(world["A"]), "--out", str(tmp_path / "o"), "--no-progress", "--no-cache"]
    assert main(["compa", *base, "--csv", str(bad), "--audio-root", str(world["audio"])]) == 2
    assert "gone.wav" in capsys.readouterr().err
    cols = _write_csv(tmp_path / "cols.csv", ["path", "category"], [["beep_a.wav", "beep"]])
    assert main(["zeroshot", *base, "--csv", str(cols)]) == 2
    assert "'label' (single-label) or 'labels'" in capsys.readouterr().err
    assert main(["retrieval", *base, "--csv", str(world["clotho"])]) == 2
    assert "--audio-dir" in capsys.readouterr().err
    assert main(["compa", "--model", str(tmp_path / "nope"), "--csv", str(world["order"])]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.json").exists()
