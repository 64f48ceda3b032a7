"""CompA CSV reader: bytes that are not UTF-8 name their row and line; duplicate rows are reported."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from compclap.eval import compa, compa_csv
from compclap.eval.compa import read_compa_csv

HEADER = b"pair_caption,reversed_pair_caption,pair_file,reversed_pair_file,triplet_caption,triplet_file\n"


def _setup(tmp_path: Path, body: bytes) -> Path:
    for name in ("a.wav", "b.wav", "c.wav"):
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "order.csv"
    path.write_bytes(HEADER + body)
    return path


def test_reader_is_reexported_from_compa():
    assert compa.read_compa_csv is compa_csv.read_compa_csv and compa.CompaRow is compa_csv.CompaRow


def test_undecodable_row_names_row_and_line(tmp_path):
    path = _setup(tmp_path, b'dog then cat,cat then dog,a.wav,b.wav,-,-\n"multi\nline",x,a.wav,b.wav,-,-\n'
                            b"caf\xe9 then bell,bell then caf\xe9,a.wav,b.wav,-,-\n")
    with pytest.raises(ValueError, match=r"order\.csv row 3 \(line 5\): not valid UTF-8 \(byte 0xe9 at column 4\)"):
        read_compa_csv(path)
    path.write_bytes(b"pair_caption,reversed\xff\n")
    with pytest.raises(ValueError, match=r"header \(line 1\): not valid UTF-8"):
        read_compa_csv(path)


def test_byte_order_mark_and_valid_unicode(tmp_path):
    path = _setup(tmp_path, "chien 🐶 puis chat,chat puis chien 🐶,a.wav,b.wav,-,-\n".encode())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    (row,) = read_compa_csv(path)
    assert row.captions == ["chien 🐶 puis chat", "chat puis chien 🐶"]


def test_duplicate_rows_warn_with_row_numbers(tmp_path):
    row1 = b"dog then cat,cat then dog,a.wav,b.wav,-,-\n"
    row2 = b"car then horn,horn then car,b.wav,c.wav,car and horn,c.wav\n"
    path = _setup(tmp_path, row1 + row2 + b" dog then cat ,cat then dog,a.wav,b.wav,,\n" + row2
                  + b"dog then cat,cat then dog,a.wav,c.wav,-,-\n")
    with pytest.warns(UserWarning, match=r"2 duplicate row\(s\).*row 3 = row 1, row 4 = row 2$"):
        rows = read_compa_csv(path)
    assert len(rows) == 5  # kept: the warning says they count twice
    path.write_bytes(HEADER + row1 + row2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_compa_csv(path)) == 2
