"""Caption identity: what normalisation removes, what it keeps, and hashes equal across processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import torch

from compclap.text.identity import normalise_caption, text_ids


def test_normalisation_removes_only_meaningless_differences():
    same = ["A dog barks.", "a dog barks", "  a   DOG\tbarks !", "a dog barks?!", "a dog barks ;", "A dog barks,"]
    assert {normalise_caption(t) for t in same} == {"a dog barks"}
    assert normalise_caption("Caf\u0065\u0301 noise") == normalise_caption("Caf\u00e9 noise")  # NFC
    assert normalise_caption("STRASSE") == normalise_caption("straße")  # casefold, not lower
    # order, words and inner punctuation are meaning: kept
    assert len({normalise_caption(t) for t in ["a dog barks then a cat", "a cat then a dog barks",
                                                "a dog, barks", "a dog barks"]}) == 4


def test_text_ids_are_63_bit_blake2b_of_the_normalised_text():
    ids = text_ids(["A dog barks.", "a dog barks", "a cat meows", ""])
    assert ids.dtype == torch.long and ids.shape == (4,) and bool((ids >= 0).all())
    assert ids[0] == ids[1] and ids[0] != ids[2]
    expected = int.from_bytes(hashlib.blake2b(b"a dog barks", digest_size=8).digest(), "little") >> 1
    assert int(ids[0]) == expected
    assert text_ids([]).shape == (0,) and text_ids([]).dtype == torch.long


def test_text_ids_are_equal_in_another_process():
    code = "from compclap.text.identity import text_ids; print(text_ids(['A dog barks.', 'rain']).tolist())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
    assert out.strip() == str(text_ids(["a dog barks", "Rain!"]).tolist())
