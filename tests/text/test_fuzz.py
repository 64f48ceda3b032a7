"""Fuzz: 2,000 seeded hostile strings through the rewriter and the manifest / caption-file readers.

No crash, no negative equal to its caption, nothing that cannot be written as UTF-8, the time per
caption bounded (the length cap), and every bad manifest line reported with its file and line.
"""

from __future__ import annotations

import json
import time

import pytest

from compclap.data.manifest import ManifestError, read_manifest
from compclap.text.negatives import HardNegativeRewriter, normalize
from compclap.text.negatives_io import read_captions
from compclap.text.text_input import has_surrogate
from fuzz_captions import generate

spacy = pytest.importorskip("spacy")

N = 2000
PER_CAPTION_S = 1.5   # the cap keeps the slowest captions near 0.3 s on one free core; slack for a busy machine
TOTAL_S = 60.0


@pytest.fixture(scope="module")
def strings() -> list[str]:
    return generate(N, seed=0)


@pytest.fixture(scope="module")
def rw() -> HardNegativeRewriter:
    r = HardNegativeRewriter(seed=0)
    r.nlp  # noqa: B018 - load spaCy once, outside the timing
    return r


def test_generator_covers_the_hostile_kinds(strings):
    assert len(strings) == N and len(set(strings)) > N // 2
    assert "" in strings and any(has_surrogate(s) for s in strings)
    assert any(len(s.split()) >= 5000 for s in strings)
    assert any("\x00" in s for s in strings) and any("\u202e" in s for s in strings)
    assert any("כלב" in s for s in strings) and any("🐶" in s for s in strings)
    assert generate(50, seed=0) == strings[:50]


def test_rewriter_never_crashes_and_stays_fast(strings, rw, record_property, capsys):
    worst, worst_caption, too_long, with_negatives = 0.0, "", 0, 0
    t_all = time.perf_counter()
    for caption in strings:
        t0 = time.perf_counter()
        negatives = rw.rewrite(caption)
        dt = time.perf_counter() - t0
        if dt > worst:
            worst, worst_caption = dt, caption
        too_long += rw.too_long(caption)
        with_negatives += bool(negatives)
        for neg in negatives:
            assert neg["kind"] in {"order", "attribute"}
            assert neg["text"] != caption and normalize(neg["text"]) != normalize(caption), (caption, neg)
            assert not has_surrogate(neg["text"])
            neg["text"].encode("utf-8")
        if has_surrogate(caption) or rw.too_long(caption):
            assert negatives == []
    total = time.perf_counter() - t_all
    summary = (f"fuzz: {len(strings)} strings, 0 crashes, {with_negatives} with negatives, {too_long} over "
               f"max_caption_tokens={rw.max_caption_tokens}, worst {worst:.3f}s/caption "
               f"({len(worst_caption.split())} words), total {total:.1f}s")
    record_property("fuzz_summary", summary)
    with capsys.disabled():
        print("\n" + summary)
    assert too_long > 0 and with_negatives > 100
    assert worst < PER_CAPTION_S, f"{worst:.2f}s on {worst_caption[:200]!r}"
    assert total < TOTAL_S


def test_rewrite_many_matches_rewrite(strings, rw):
    sample = strings[::20]
    assert rw.rewrite_many(sample, batch_size=16) == [rw.rewrite(c) for c in sample]


def test_manifest_reader_accepts_or_names_the_line(strings, tmp_path):
    """One manifest line per string (JSON-escaped: lone surrogates arrive as \\ud800), plus raw bad bytes."""
    path = tmp_path / "m.jsonl"
    accepted = rejected = 0
    for i, caption in enumerate(strings):
        line = json.dumps({"audio": f"{i}.wav", "captions": [caption]}).encode("ascii")
        if i % 97 == 0:
            line = line.replace(b"wav", b"w\xffv", 1)  # a byte that is not UTF-8
        path.write_bytes(b'{"audio": "ok.wav", "captions": ["fine"]}\n' + line + b"\n")
        try:
            records = read_manifest(path)
        except ManifestError as exc:
            assert str(exc).startswith(f"{path}:2: ") or (not caption.strip() and f"{path}:2:" in str(exc)), exc
            rejected += 1
            continue
        accepted += 1
        assert records[1]["captions"] == [caption]
        assert not has_surrogate(json.dumps(records, ensure_ascii=False)), caption
    assert accepted > N // 2 and rejected > 0


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_caption_readers_report_every_bad_line(strings, tmp_path, suffix):
    path = tmp_path / f"caps{suffix}"
    body = [s.replace("\r", " ").replace("\n", " ").replace("\x85", " ").replace("\u2028", " ")
            .replace("\u2029", " ").replace("\x0b", " ").replace("\x0c", " ").replace("\x1c", " ")
            .replace("\x1d", " ").replace("\x1e", " ") for s in strings]
    if suffix == ".txt":
        data = b"".join(s.encode("utf-8", "surrogatepass") + b"\n" for s in body)
    elif suffix == ".jsonl":
        data = b"".join(json.dumps({"caption": s}).encode() + b"\n" for s in body)
    else:
        data = b"caption\n" + b"".join(b'"' + s.replace('"', '""').encode("utf-8", "surrogatepass") + b'"\n'
                                       for s in body)
    path.write_bytes(data)
    rows = list(read_captions(path))
    assert len(rows) == N
    for (line, value, problem), s in zip(rows, body):
        if problem is None:
            assert value == s and s.strip() and not has_surrogate(value)
        else:
            assert has_surrogate(s) or not s.strip(), (line, problem, s[:80])
