"""Manifest lines with text a tokenizer would reject mid-run are refused at read time, by file and line."""

from __future__ import annotations

import json

import pytest

from compclap.data.manifest import ManifestError, read_manifest


def _write(path, *lines: bytes):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


GOOD = b'{"audio": "a.wav", "captions": ["A dog barks"]}'


@pytest.mark.parametrize("line, message", [
    (b'{"audio": "b.wav", "captions": ["A dog \\ud800 barks"]}', "captions[0]: lone surrogate U+D800 at character 7"),
    (b'{"audio": "b.wav", "captions": ["ok"], "negatives": [[{"text": "x\\udfff", "kind": "order"}]]}',
     "negatives[0][0].text: lone surrogate U+DFFF at character 2"),
    (b'{"audio": "b\\udc80.wav", "captions": ["ok"]}', "audio: lone surrogate U+DC80 at character 2"),
    (b'{"audio": "b.wav", "captions": ["caf\xe9"]}', "not valid UTF-8 (byte 0xe9 at column 37)"),
    (b'{"audio": "b.wav", "captions": ["\xed\xa0\x80"]}', "not valid UTF-8 (byte 0xed at column 34)"),
])
def test_bad_text_names_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "m.jsonl", GOOD, b"", line, GOOD)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(info.value).startswith(f"{path}:3: {message}")


def test_valid_unicode_and_a_byte_order_mark_are_fine(tmp_path):
    caption = "Un chien aboie 🐶 puis כלב — «ثم» \u200b"
    path = _write(tmp_path / "m.jsonl", b"\xef\xbb\xbf" + GOOD,
                  json.dumps({"audio": "b.wav", "captions": [caption]}).encode(),  # escaped, incl. a \ud83d\udc36 pair
                  json.dumps({"audio": "c.wav", "captions": [caption]}, ensure_ascii=False).encode())
    records = read_manifest(path)
    assert [r["captions"] for r in records] == [["A dog barks"], [caption], [caption]]
    assert records[0]["audio"] == str(tmp_path / "a.wav")
