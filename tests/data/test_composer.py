"""The composer end to end (data_prep/compose.py): audio, manifests, determinism, bad inputs, curriculum stages."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from compclap.audio.synth import render_event
from compclap.data.composer import ComposeConfig, compose, parse_events_per_mix, parse_overlay_db
from compclap.data.expressions import leaves, normalise_text, overlaid_pairs, parse_expression

ROOT = Path(__file__).resolve().parents[2]
SR = 16000
TYPES = ["beep", "hum", "whistle", "knock", "bell", "buzz"]


def _load_cli():
    spec = importlib.util.spec_from_file_location("compose_cli", ROOT / "data_prep" / "compose.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    """12 short synthetic events (two per type, with captions) and one undecodable file."""
    root = tmp_path_factory.mktemp("events")
    (root / "audio").mkdir()
    lines = []
    for i in range(12):
        kind = TYPES[i % len(TYPES)]
        wave = render_event(kind, {"duration": "short", "loudness": "loud", "pitch": "low"}, seed=i, sample_rate=SR)
        sf.write(root / "audio" / f"{i:02d}.flac", wave, SR)
        lines.append({"audio": f"audio/{i:02d}.flac", "label": kind, "captions": [f"a {kind} sound"]})
    (root / "audio" / "broken.flac").write_bytes(b"not audio at all")
    lines.append({"audio": "audio/broken.flac", "label": "siren", "captions": ["a siren"]})
    manifest = root / "events.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_output_is_consistent_deterministic_and_skips_bad_files(events, tmp_path, capsys):
    cli = _load_cli()
    args = ["--events", str(events), "--num", "16", "--seed", "3", "--max-seconds", "1.2"]
    one = cli.main(args + ["--out", str(tmp_path / "w1"), "--workers", "1"])
    err = capsys.readouterr().err
    assert "1 of 13 event clips failed to decode" in err and "audio/broken.flac" in err
    two = cli.main(args + ["--out", str(tmp_path / "w2"), "--workers", "2"])
    assert one["skipped_events"] == ["audio/broken.flac"] and one["events_usable"] == 12

    m1, m2 = tmp_path / "w1" / "train.jsonl", tmp_path / "w2" / "train.jsonl"
    assert m1.read_bytes() == m2.read_bytes()  # same seed, same bytes, whatever the worker count
    recs = _records(m1)
    assert len(recs) + one["unfit"] == 16 and two["clips"] == one["clips"]
    for rec in recs:
        assert (tmp_path / "w1" / rec["audio"]).read_bytes() == (tmp_path / "w2" / rec["audio"]).read_bytes()
        wave, sr = sf.read(tmp_path / "w1" / rec["audio"], dtype="float32")
        assert sr == SR and len(wave) == round(rec["seconds"] * SR) <= 1.2 * SR
        assert np.max(np.abs(wave)) == pytest.approx(0.9, abs=1e-3)  # peak-normalised
        assert rec["captions"] == [rec["positives"][0]]
        assert len(rec["negatives"]) == len(rec["captions"])
        pos = {normalise_text(p) for p in rec["positives"]}
        assert rec["negatives"][0], rec["expression"]
        for neg in rec["negatives"][0]:
            assert neg["kind"] in ("order", "relation") and normalise_text(neg["text"]) not in pos
        tree = parse_expression(rec["expression"])
        assert len(leaves(tree)) == rec["n_events"] == len(rec["events"])
        assert [leaf.label for leaf in leaves(tree)] == [e["label"] for e in rec["events"]]
        assert all(e["audio"] != "audio/broken.flac" for e in rec["events"])
        assert len({e["label"] for e in rec["events"]}) == rec["n_events"]  # distinct labels when the pool allows
    meta = json.loads((tmp_path / "w1" / "train_compose.json").read_text())
    assert meta["event_clips"]["failed_to_decode"] == ["audio/broken.flac"]


def test_padding_max_seconds_and_fixed_events_per_mix(events, tmp_path):
    cfg = ComposeConfig(events=str(events), out=str(tmp_path), num=12, seed=0, events_per_mix={3: 1.0},
                        max_seconds=1.5, pad=True, workers=1, sample_rate=8000, overlay_db=None, peak=None)
    summary = compose(cfg)
    recs = _records(tmp_path / "train.jsonl")
    assert summary["clips"] == len(recs) > 0
    for rec in recs:
        assert rec["n_events"] == 3 and rec["seconds"] <= 1.5
        wave, sr = sf.read(tmp_path / rec["audio"], dtype="float32")
        assert sr == 8000 and len(wave) == 12000  # padded with silence to max_seconds
        n = round(rec["seconds"] * sr)
        assert np.all(wave[n + 1:] == 0) and np.max(np.abs(wave[:n])) > 0.01


def test_sequence_audio_keeps_the_order_of_the_expression(events, tmp_path):
    cfg = ComposeConfig(events=str(events), out=str(tmp_path), num=30, seed=1, events_per_mix={2: 1.0},
                        p_sequence=1.0, workers=1, peak=None)
    compose(cfg)
    root = events.parent
    for rec in _records(tmp_path / "train.jsonl")[:8]:
        assert " + " in rec["expression"]
        a, _ = sf.read(root / rec["events"][0]["audio"], dtype="float32")
        b, _ = sf.read(root / rec["events"][1]["audio"], dtype="float32")
        out, _ = sf.read(tmp_path / rec["audio"], dtype="float32")
        fade = int(0.1 * min(len(a), len(b)))
        assert len(out) == len(a) + len(b) - fade
        # A's samples come first, B's last (levels kept: peak=None; 16-bit quantisation only)
        np.testing.assert_allclose(out[: len(a) - fade], a[: len(a) - fade], atol=1e-4)
        np.testing.assert_allclose(out[len(a):], b[fade:], atol=1e-4)


def test_categories_and_excluded_pairs_are_respected(events, tmp_path):
    cats = tmp_path / "cats.yaml"
    cats.write_text("tonal: [beep, whistle, bell]\nknock: impact\nbuzz: impact\n")
    excl = tmp_path / "meta.json"
    excl.write_text(json.dumps({"held_out_pairs": [["beep", "hum"]]}))
    cfg = ComposeConfig(events=str(events), out=str(tmp_path / "o"), num=40, seed=2, events_per_mix={2: 0.5, 3: 0.5},
                        categories=str(cats), exclude_pairs=str(excl), p_sequence=0.3, workers=1)
    compose(cfg)
    recs = _records(tmp_path / "o" / "train.jsonl")
    overlaid = 0
    for rec in recs:
        labels = [e["label"] for e in rec["events"]]
        assert not {"beep", "hum"} <= set(labels)
        cat = [e.get("category") for e in rec["events"]]
        for i, j in overlaid_pairs(parse_expression(rec["expression"])):
            overlaid += 1
            assert cat[i] is None or cat[i] != cat[j], rec["expression"]
    assert overlaid > 10
    assert any(e.get("category") == "tonal" for rec in recs for e in rec["events"])


def test_curriculum_writes_one_manifest_per_stage(events, tmp_path):
    cli = _load_cli()
    summary = cli.main(["--events", str(events), "--out", str(tmp_path), "--num", "5", "--curriculum", "2,3,4",
                        "--workers", "1", "--max-negatives", "2"])
    assert set(summary["manifests"]) == {"train_stage1", "train_stage2", "train_stage3"}
    for stage, n in ((1, 2), (2, 3), (3, 4)):
        recs = _records(tmp_path / f"train_stage{stage}.jsonl")
        assert len(recs) == 5 and {r["n_events"] for r in recs} == {n}
        assert all(r["audio"].startswith(f"audio/train_stage{stage}/") for r in recs)
        for r in recs:
            kinds = [x["kind"] for x in r["negatives"][0]]
            assert kinds.count("order") <= 2 and kinds.count("relation") <= 2


def test_option_parsing_and_errors(events, tmp_path):
    assert parse_events_per_mix("{2: 0.3, 3: 0.6, 4: 0.1}") == {2: 0.3, 3: 0.6, 4: 0.1}
    assert parse_events_per_mix('{"2": 1, "3": 3}') == {2: 0.25, 3: 0.75}
    with pytest.raises(ValueError):
        parse_events_per_mix("[2, 3]")
    assert parse_overlay_db("keep") is None and parse_overlay_db("6") == (-6.0, 6.0)
    assert parse_overlay_db("-3,9") == (-3.0, 9.0)
    with pytest.raises(ValueError):
        compose(ComposeConfig(events=str(events), out=str(tmp_path), pad=True))
    no_label = tmp_path / "nolabel.jsonl"
    no_label.write_text(json.dumps({"audio": "x.flac", "captions": ["a"]}) + "\n")
    with pytest.raises(ValueError, match="label"):
        compose(ComposeConfig(events=str(no_label), out=str(tmp_path / "o"), workers=1))


def test_a_clip_failing_while_rendering_drops_its_mixes(events, tmp_path, monkeypatch, capsys):
    import compclap.data.composer as composer

    real = composer._render_job
    broken = str((events.parent / "audio" / "00.flac").resolve())

    def flaky(job):
        if broken in job["sources"].values():
            return 0, broken, f"cannot decode audio file {broken!r}: truncated"
        return real(job)

    monkeypatch.setattr(composer, "_render_job", flaky)
    summary = compose(ComposeConfig(events=str(events), out=str(tmp_path), num=20, seed=4, workers=1))
    recs = _records(tmp_path / "train.jsonl")
    assert summary["render_failed"] > 0 and len(recs) == 20 - summary["render_failed"] - summary["unfit"]
    assert all(e["audio"] != "audio/00.flac" for r in recs for e in r["events"])
    assert "(while rendering mixes) failed to decode" in capsys.readouterr().err
    assert real({"sources": {0: str(tmp_path / "missing.flac")}, "sample_rate": SR})[1].endswith("missing.flac")


@pytest.fixture(scope="module")
def two_clip_events(tmp_path_factory) -> Path:
    """Two clips told apart by their energy envelope: a 0.5 s loud tone and a 1.0 s quiet noise."""
    root = tmp_path_factory.mktemp("two_events")
    t = np.arange(SR // 2) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = (0.05 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    sf.write(root / "tone.flac", tone, SR)
    sf.write(root / "noise.flac", noise, SR)
    manifest = root / "events.jsonl"
    manifest.write_text(json.dumps({"audio": "tone.flac", "label": "tone"}) + "\n"
                        + json.dumps({"audio": "noise.flac", "label": "noise"}) + "\n")
    return manifest


def _envelope_db(x: np.ndarray, frame: int = 400) -> np.ndarray:
    n = len(x) // frame
    return 10 * np.log10(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-12)


def test_swapped_audio_holds_the_same_events_in_the_other_order(two_clip_events, tmp_path):
    cfg = ComposeConfig(events=str(two_clip_events), out=str(tmp_path), num=6, seed=0, events_per_mix={2: 1.0},
                        p_sequence=1.0, workers=1, peak=None, overlay_db=None)
    summary = compose(cfg)
    recs = _records(tmp_path / "train.jsonl")
    assert recs and summary["swapped_audio"] == len(recs)
    lengths = {"tone": SR // 2, "noise": SR}
    for i, rec in enumerate(recs):
        (neg,) = rec["negative_audio"][0]
        assert len(rec["negative_audio"]) == len(rec["captions"]) and neg["kind"] == "order"
        assert neg["audio"].startswith("audio/train_swapped/") and neg["audio"].endswith("_order.flac")
        first, second = (e["label"] for e in rec["events"])
        assert first != second  # two distinct labels when the pool allows
        orig, _ = sf.read(tmp_path / rec["audio"], dtype="float32")
        swapped, _ = sf.read(tmp_path / neg["audio"], dtype="float32")
        assert len(swapped) == len(orig)
        fade = int(0.1 * min(lengths.values()))
        la, lb = lengths[first], lengths[second]
        # Each event's samples clear of the crossfade, in the original (A at 0, B at la - fade) and in the swap
        # (B at 0, A at lb - fade): the same samples, so the same envelope, in the other order.
        a_orig, b_orig = orig[fade: la - fade], orig[la: la + lb - 2 * fade]
        b_swap, a_swap = swapped[fade: lb - fade], swapped[lb: lb + la - 2 * fade]
        for x, y in ((a_orig, a_swap), (b_orig, b_swap)):
            assert len(x) == len(y) > 0
            np.testing.assert_allclose(_envelope_db(x), _envelope_db(y), atol=0.1)
            np.testing.assert_allclose(x, y, atol=1e-4)  # levels kept (peak=None); 16-bit quantisation only
        env = _envelope_db(swapped)
        loud_first = first == "tone"  # the swap starts with the second event: quiet noise after a tone, and back
        assert (env[:5].mean() > env[-5:].mean() + 10) == (not loud_first)
        assert (env[:5].mean() < env[-5:].mean() - 10) == loud_first


def test_swapped_audio_skipped_without_a_sequence_and_switched_off(two_clip_events, tmp_path):
    cli = _load_cli()
    args = ["--events", str(two_clip_events), "--num", "4", "--events-per-mix", "{2: 1}", "--workers", "1"]
    cli.main(args + ["--out", str(tmp_path / "overlays"), "--p-sequence", "0"])
    recs = _records(tmp_path / "overlays" / "train.jsonl")
    assert recs and all(r["negative_audio"] == [[]] for r in recs)  # a * b swapped is the same audio
    assert not (tmp_path / "overlays" / "audio" / "train_swapped").exists()
    cli.main(args + ["--out", str(tmp_path / "off"), "--p-sequence", "1", "--no-swapped-audio"])
    recs = _records(tmp_path / "off" / "train.jsonl")
    assert recs and all("negative_audio" not in r for r in recs)
    assert not (tmp_path / "off" / "audio" / "train_swapped").exists()
