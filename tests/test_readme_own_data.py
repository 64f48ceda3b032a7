"""The README's own-data section, run as written (only paths substituted) on CPU (issue 13 acceptance).

A tiny Hugging Face CLAP folder stands for `/path/to/clap-htsat-unfused`; `data/my_corpus/` holds real Ogg/Vorbis
recordings (some named `.oga`, 8-48 kHz, mono and stereo) with a Clotho-style and an AudioCaps-style caption CSV.
Every ```bash command of the section is run in that folder, in order, through the `compclap` dispatcher (in
process: one Lightning import for all of them); GPU commands only where CUDA is available. Then the ```python
block, with two of the recordings for "dog.wav" / "cat.flac".
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.eval.test_evaluate_cli import _save_tiny_clap

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Fine-tune a real checkpoint on your own data"
HF_PLACEHOLDER = "/path/to/clap-htsat-unfused"
EVENTS = {"bell": 880.0, "door knock": 140.0, "whistle": 1800.0, "hum": 110.0}
RATES = (8000, 16000, 22050, 44100, 48000)


def readme_section(title: str = SECTION) -> str:
    """The text of a README section, up to the next heading of any level."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(title + "\n") + len(title) + 1
    nxt = re.search(r"^#{2,} ", text[start:], flags=re.M)
    return text[start:start + nxt.start()] if nxt else text[start:]


def code_blocks(section: str, language: str) -> list[str]:
    """The fenced ```language blocks of a section, dedented."""
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```", section, flags=re.M | re.S)
    return ["\n".join(line[len(indent):] for line in body.splitlines()) for indent, body in blocks]


def bash_commands(block: str) -> list[list[str]]:
    """One argument list per command of a bash block (backslash continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line, comments=True) for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _recording(path: Path, rate: int, events: list[str], seed: int) -> None:
    """Ogg/Vorbis 'A followed by B' of two decaying tones (stereo for some), at `rate`."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, event in enumerate(events):
        n = int(rate * rng.uniform(0.3, 0.6))
        t = np.arange(n) / rate
        gain = 0.6 if k == 0 else 0.25
        parts.append(gain * np.sin(2 * np.pi * EVENTS[event] * t) * np.exp(-3 * t) + 0.01 * rng.standard_normal(n))
    wave = np.concatenate(parts).astype(np.float32)
    if seed % 3 == 0:
        wave = np.stack([wave, 0.8 * wave], axis=1)
    sf.write(path, wave, rate, format="OGG", subtype="VORBIS")


def _corpus(root: Path) -> dict[str, list[str]]:
    """data/my_corpus: audio/ (.oga / .ogg), train.csv (Clotho layout), val.csv (AudioCaps layout), a CompA CSV."""
    corpus = root / "data" / "my_corpus"
    (corpus / "audio" / "sub").mkdir(parents=True)
    names = list(EVENTS)
    files: dict[str, list[str]] = {"train": [], "val": []}
    rows, val_rows, compa = [], [], []
    for i in range(20):
        a, b = names[i % 4], names[(i // 4 + i + 1) % 4]
        if a == b:
            b = names[(names.index(a) + 1) % 4]
        split = "val" if i >= 16 else "train"
        ext = ".oga" if i % 2 else ".ogg"
        stem = f"rec{i:02d}_{a.replace(' ', '_')}"
        folder = corpus / "audio" / ("sub" if i % 5 == 0 else "")
        _recording(folder / f"{stem}{ext}", RATES[i % len(RATES)], [a, b], seed=i)
        files[split].append(str((folder / f"{stem}{ext}").relative_to(corpus)))
        caps = [f"a loud {a} followed by a quiet {b}", f"a {a} rings, then a {b}", f"{a} and then {b}"]
        if split == "train":
            rows.append([f"{stem}{ext}", *caps])
        else:
            val_rows += [[stem, c] for c in caps]
        if i < 4:
            compa.append([caps[0], f"a loud {b} followed by a quiet {a}", files[split][-1], files["train"][0],
                          "-", "-"])
    with (corpus / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["file_name", "caption_1", "caption_2", "caption_3"], *rows])
    with (corpus / "val.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["audiocap_id", "youtube_id", "caption"],
                                      *[[k, *r] for k, r in enumerate(val_rows)]])
    with (corpus / "compa_order.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["pair_caption", "reversed_pair_caption", "pair_file", "reversed_pair_file",
                                       "triplet_caption", "triplet_file"], *compa])
    return files


@pytest.fixture(scope="module")
def own_data(tmp_path_factory, tokenizer_dir):
    """Run the section's commands in a fresh folder; returns (folder, HF folder, captured outputs per command)."""
    root = tmp_path_factory.mktemp("own_data")
    hf = _save_tiny_clap(tmp_path_factory.mktemp("hf") / "clap-htsat-unfused", tokenizer_dir, seed=0)
    files = _corpus(root)
    (root / "conf").symlink_to(REPO / "conf")
    section = readme_section()
    blocks = code_blocks(section, "bash")
    assert len(blocks) >= 4, "the own-data section lost its command blocks"
    commands = [c for b in blocks for c in bash_commands(b)]
    return root, hf, files, commands, code_blocks(section, "python")


def _run(argv: list[str]) -> object:
    from compclap.entry import main

    assert argv[0] == ".venv/bin/compclap", f"not a compclap command: {shlex.join(argv)}"
    try:
        return main(argv[1:])
    except SystemExit as stop:  # LightningCLI / argparse exit
        return stop.code


def test_readme_own_data_section_runs_as_written(own_data, monkeypatch, capsys):
    root, hf, files, commands, python_blocks = own_data
    monkeypatch.chdir(root)
    cuda = torch.cuda.is_available()
    ran = []
    for argv in commands:
        argv = [hf.as_posix() if a == HF_PLACEHOLDER else a.replace(HF_PLACEHOLDER, hf.as_posix()) for a in argv]
        if "conf/trainer/gpu_bf16.yaml" in argv and not cuda:
            assert "gpu" in " ".join(argv)
            continue
        rc = _run(argv)
        out = capsys.readouterr()
        assert rc in (0, None), f"{shlex.join(argv)} exited {rc}:\n{out.err[-3000:]}"
        ran.append((argv, out))
    subcommands = [a[1] + (" " + a[2] if a[1] == "prepare" else "") for a, _ in ran]
    expected = ["prepare manifest", "prepare manifest", "fit", "fit", *(["fit"] if cuda else []), "prepare negatives",
                "fit", "evaluate", "export", "predict"]
    assert subcommands == expected, subcommands

    corpus = root / "data" / "my_corpus"
    train = [json.loads(x) for x in (corpus / "train.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (corpus / "val.jsonl").read_text().splitlines()]
    assert sorted(r["audio"] for r in train) == sorted(files["train"])  # every .oga / .ogg found
    assert sorted(r["audio"] for r in val) == sorted(files["val"]) and all(len(r["captions"]) == 3 for r in val)
    negs = [json.loads(x) for x in (corpus / "train_hn.jsonl").read_text().splitlines()]
    assert len(negs) == 16 and sum(bool(n) for r in negs for n in r["negatives"]) >= 16

    run, hn = root / "checkpoints" / "my_run", root / "checkpoints" / "my_run_hn"
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert first["epoch"] == 2 and first["global_step"] == 6  # 3 epochs of 2 batches of 8
    stage2 = torch.load(hn / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert stage2["global_step"] == 6 and "HardNegative" in json.dumps(stage2["hyper_parameters"], default=str)

    report = (root / "reports" / "my_run" / "report.md").read_text()
    assert "| base |" in report and "| ours |" in report
    from transformers import ClapModel

    ClapModel.from_pretrained(root / "exported" / "my_clap")
    pred = hn / "predictions"
    assert f"-> checkpoints/my_run_hn/predictions/embeddings_rank0.pt" in ran[-1][1].out
    emb = torch.load(pred / "embeddings_rank0.pt", weights_only=False)
    assert emb["audio_embeds"].shape[0] == 4 and all(Path(a).suffix in (".oga", ".ogg") for a in emb["audio"])

    (code,) = python_blocks
    code = code.replace('"dog.wav"', repr(str(corpus / files["train"][0]))).replace(
        '"cat.flac"', repr(str(corpus / files["train"][1])))
    exec(compile(code, "README.md (own-data Python block)", "exec"), {})
    assert "tensor" in capsys.readouterr().out


def test_run_is_self_contained_after_the_hf_folder_moves(own_data, monkeypatch, capsys):
    """The fine-tuned run loads and tests (CompA CSVs given on the command line) with its HF source gone."""
    root, hf, files, _, _ = own_data
    monkeypatch.chdir(root)
    if not (root / "checkpoints" / "my_run_hn" / "checkpoints" / "last.ckpt").is_file():
        pytest.skip("the README section did not run")
    moved = hf.with_name("moved_away")
    shutil.move(hf, moved)
    try:
        from compclap import load_model

        model = load_model("checkpoints/my_run_hn")
        audio = model.embed_audio([str(root / "data" / "my_corpus" / files["val"][0])])
        assert audio.shape[0] == 1 and torch.isfinite(audio).all()
        capsys.readouterr()
        rc = _run([".venv/bin/compclap", "test", "--config", "conf/fit.yaml", "--config", "conf/model/hf_clap.yaml",
                   "--config", "conf/data/manifest.yaml", "--config", "conf/trainer/cpu.yaml",
                   "--data.test_manifest", "data/my_corpus/val.jsonl", "--data.num_workers", "0",
                   "--ckpt_path", "checkpoints/my_run_hn/checkpoints/last.ckpt",
                   "--model.compa_csvs", "{order: data/my_corpus/compa_order.csv}"])
        out = capsys.readouterr()
        assert rc in (0, None), out.err[-3000:]
        assert "test/compa_order_group" in out.out, out.out[-3000:]
    finally:
        shutil.move(moved, hf)


def test_section_parsing_helpers():
    block = "cmd --a 1 \\\n    --b 'x y'   # note\n# a comment\nother\n"
    assert bash_commands(block) == [["cmd", "--a", "1", "--b", "x y"], ["other"]]
    section = "text\n   ```bash\n   one\n   ```\n```python\nx = 1\n```\n"
    assert code_blocks(section, "bash") == ["one"] and code_blocks(section, "python") == ["x = 1"]
