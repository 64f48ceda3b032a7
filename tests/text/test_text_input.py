"""Undecodable bytes, lone surrogates and over-long captions: reported by line, never a crash."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from compclap.text.negatives import DEFAULT_MAX_CAPTION_TOKENS, HardNegativeRewriter, caption_tokens
from compclap.text.negatives_io import read_captions
from compclap.text.text_input import (
    find_lone_surrogate,
    lone_surrogate,
    may_hold_surrogate_escape,
    open_text,
    undecodable,
)

ROOT = Path(__file__).resolve().parents[2]
LONG = " ".join(["a loud high dog and a quiet low cat"] * 40)  # 360 tokens, slow without the cap


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("hard_negatives_cli_input", ROOT / "data_prep/hard_negatives.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_undecodable_bytes_become_a_reported_problem(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9\nbad \xff byte\n\xed\xa0\x80\n")
    with open_text(path) as f:
        lines = [line.rstrip("\n") for line in f]
    assert lines[0] == "café"  # the byte-order mark is dropped
    assert undecodable(lines[0]) is None
    assert undecodable(lines[1]) == "not valid UTF-8 (byte 0xff at column 5)"
    assert undecodable(lines[2]).startswith("not valid UTF-8 (byte 0xed at column 1")  # an encoded surrogate


def test_lone_surrogates_are_found_anywhere_in_json():
    line = r'{"audio": "a.wav", "captions": ["ok", "x \ud800"], "negatives": [[{"text": "\udfff"}]]}'
    assert may_hold_surrogate_escape(line) and not may_hold_surrogate_escape('{"captions": ["\\u00e9"]}')
    rec = json.loads(line)
    assert find_lone_surrogate(rec) == "captions[1]: lone surrogate U+D800 at character 3"
    rec["captions"][1] = "fine"
    assert find_lone_surrogate(rec) == "negatives[0][0].text: lone surrogate U+DFFF at character 1"
    assert find_lone_surrogate({"a": [1, None, "ok", {"b": "😀"}]}) is None
    assert find_lone_surrogate({"k\udc00": 1}).startswith("key ")
    assert lone_surrogate("a 😀 pair is fine") is None


def test_caption_tokens_and_the_cap():
    assert caption_tokens("A dog barks, then a cat meows.") == 9
    assert caption_tokens("") == 0 and caption_tokens("!!!") == 3
    rw = HardNegativeRewriter(max_caption_tokens=8)
    assert rw.too_long("A dog barks, then a cat meows.") and not rw.too_long("A dog barks then a cat meows")
    assert not HardNegativeRewriter(max_caption_tokens=None).too_long(LONG)
    assert HardNegativeRewriter().max_caption_tokens == DEFAULT_MAX_CAPTION_TOKENS
    assert HardNegativeRewriter().config()["max_caption_tokens"] == DEFAULT_MAX_CAPTION_TOKENS
    with pytest.raises(ValueError, match="max_caption_tokens"):
        HardNegativeRewriter(max_caption_tokens=0)


def test_long_and_surrogate_captions_get_no_negatives_quickly():
    pytest.importorskip("spacy")
    rw = HardNegativeRewriter(seed=0)
    assert rw.too_long(LONG)
    assert rw.rewrite(LONG) == [] and rw.rewrite("A dog barks \ud800 then a cat meows") == []
    out = rw.rewrite_many([LONG, "A dog barks then a cat meows", "x \udc80 then y"])
    assert out[0] == [] and out[2] == [] and out[1][0]["text"] == "A cat meows then a dog barks"
    # just under the cap, the slow shape still takes well under a second
    import time
    near = " ".join(LONG.split()[:DEFAULT_MAX_CAPTION_TOKENS])
    assert not rw.too_long(near)
    t0 = time.perf_counter()
    assert rw.rewrite(near)
    assert time.perf_counter() - t0 < 2.0


def test_readers_name_the_bad_lines(tmp_path):
    txt = tmp_path / "c.txt"
    txt.write_bytes(b"A dog barks\nbad \xff\n")
    assert [p for _, _, p in read_captions(txt)] == [None, "not valid UTF-8 (byte 0xff at column 5)"]
    jl = tmp_path / "c.jsonl"
    jl.write_bytes(b'{"caption": "x \\ud800"}\n{"caption": "b\xe9"}\n{"caption": "fine"}\n')
    rows = list(read_captions(jl))
    assert [(n, p) for n, _, p in rows] == [(1, "lone surrogate U+D800 at character 3"),
                                            (2, "not valid UTF-8 (byte 0xe9 at column 15)"), (3, None)]
    csv_path = tmp_path / "c.csv"
    csv_path.write_bytes(b'\xef\xbb\xbfid,caption\n1,ok\n2,"multi\nline \xfe"\n3,"' + b"x" * 200_000 + b'"\n4,last\n')
    rows = list(read_captions(csv_path))
    assert [n for n, _, _ in rows] == [2, 3, 5, 6]
    assert rows[1][2] == "not valid UTF-8 (byte 0xfe at column 12)"
    assert rows[2][2].startswith("unreadable CSV record (field larger than field limit")
    assert rows[3][1:] == ("last", None)


def test_cli_reports_bad_lines_and_counts_long_captions(cli, tmp_path, capsys):
    pytest.importorskip("spacy")
    src = tmp_path / "caps.jsonl"
    src.write_bytes(b'{"caption": "A dog barks then a cat meows"}\n{"caption": "A dog \\ud800 barks then"}\n'
                    b'{"caption": "caf\xff then"}\n' + json.dumps({"caption": LONG}).encode() + b"\n")
    out = tmp_path / "out.jsonl"
    assert cli.main(["--input", str(src), "--output", str(out), "--n-process", "1"]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["caption"] for r in rows] == ["A dog barks then a cat meows", LONG]
    assert rows[1]["negatives"] == []
    err = capsys.readouterr().err
    assert "caps.jsonl:2: lone surrogate U+D800" in err and "caps.jsonl:3: not valid UTF-8 (byte 0xff" in err
    assert "1 caption(s) over --max-caption-tokens=200 without negatives (lines 4)" in err
    # the cap is configurable (0: none)
    assert cli.main(["--input", str(src), "--output", str(out), "--n-process", "1", "--max-caption-tokens", "400",
                     "--kinds", "order"]) == 0
    assert "over --max-caption-tokens" not in capsys.readouterr().err


def test_cli_manifest_mode_drops_lines_it_cannot_write(cli, tmp_path, capsys):
    pytest.importorskip("spacy")
    src = tmp_path / "manifest.jsonl"
    src.write_bytes(b'{"audio": "a.wav", "captions": ["A dog barks then a cat meows"]}\n'
                    b'{"audio": "b.wav", "captions": ["fine"], "note": "\\udc80"}\n'
                    b'{"audio": "c\xff.wav", "captions": ["A loud bang"]}\n'
                    + json.dumps({"audio": "d.wav", "captions": [LONG, "A loud bang"]}).encode() + b"\n")
    out = tmp_path / "m.jsonl"
    assert cli.main(["--input", str(src), "--output", str(out), "--n-process", "1"]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["audio"] for r in rows] == ["a.wav", "d.wav"]
    assert rows[1]["negatives"][0] == [] and rows[1]["negatives"][1]
    err = capsys.readouterr().err
    assert "manifest.jsonl:2: note: lone surrogate U+DC80 at character 1; line dropped" in err
    assert "manifest.jsonl:3: not valid UTF-8 (byte 0xff at column 13); line dropped" in err
    assert "1 caption(s) over --max-caption-tokens=200 without negatives (lines 4)" in err
