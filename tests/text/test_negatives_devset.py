"""The whole hard-negative development set must pass (see /work/shared/data/negatives/README.md).

Checks, per line kind:
* ``order``: some order negative says the events of one of ``expect`` in that order; connectives
  with the same meaning count ("followed by" = "then" = "and then" = "before").
* ``order_any``: three or more events; some order negative is another ordering of the same events.
* ``attribute``: some attribute negative equals one of ``expect`` up to inflection and case.
* ``no_order``: no order negative.
No negative may equal its caption.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from compclap.text.negatives import HardNegativeRewriter, normalize
from conftest import SHARED_DATA

DEV = Path(os.environ.get("COMPCLAP_NEGATIVES_DEV", SHARED_DATA / "negatives" / "dev.jsonl"))
_SAME_AS_THEN = re.compile(r"\b(?:and then|then|followed by|before)\b")


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "s", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _words(text: str) -> list[str]:
    """Lower-case, inflection-free words, with the forward connectives written as one token."""
    text = _SAME_AS_THEN.sub(" qqthen ", text.lower())
    return [w if w == "qqthen" else _stem(w) for w in re.findall(r"[a-z]+", text)]


def _events(text: str) -> list[str]:
    return [" ".join(p) for p in (part.split() for part in " ".join(_words(text)).split("qqthen")) if p]


def check(line: dict, negatives: list[dict]) -> bool:
    caption, kind = line["caption"], line["kind"]
    if any(normalize(n["text"]) == normalize(caption) for n in negatives):
        return False
    order = [n["text"] for n in negatives if n["kind"] == "order"]
    attribute = [n["text"] for n in negatives if n["kind"] == "attribute"]
    if kind == "order":
        return any(_words(o) == _words(e) for o in order for e in line["expect"])
    if kind == "order_any":
        events = _events(caption)
        return len(events) >= 3 and any(sorted(_events(o)) == sorted(events) and _events(o) != events for o in order)
    if kind == "attribute":
        return any(_words(a) == _words(e) for a in attribute for e in line["expect"])
    if kind == "no_order":
        return not order
    raise ValueError(f"unknown dev-set kind {kind!r}")


@pytest.mark.skipif(not DEV.exists(), reason=f"development set not found at {DEV}")
def test_every_dev_line_passes():
    lines = [json.loads(x) for x in DEV.read_text(encoding="utf-8").splitlines() if x.strip()]
    rw = HardNegativeRewriter(seed=0)
    results = rw.rewrite_many([x["caption"] for x in lines])
    failures = [(x, negs) for x, negs in zip(lines, results) if not check(x, negs)]
    assert not failures, "\n".join(f"{x} -> {negs}" for x, negs in failures)
    assert len(lines) >= 20


def test_checker_rejects_wrong_outputs():
    line = {"caption": "A dog barks then a cat meows", "kind": "order", "expect": ["A cat meows then a dog barks"]}
    assert check(line, [{"text": "A cat meows followed by a dog barking", "kind": "order"}])
    assert not check(line, [{"text": "A dog barks followed by a cat meowing", "kind": "order"}])
    assert not check(line, [{"text": "A cat meows then a dog barks", "kind": "attribute"}])
    assert not check({"caption": "A cat purrs", "kind": "no_order"}, [{"text": "x", "kind": "order"}])
    three = {"caption": "A dog barks, then a cat meows, then a man shouts", "kind": "order_any"}
    assert check(three, [{"text": "A man shouts, then a cat meows, then a dog barks", "kind": "order"}])
    assert not check(three, [{"text": "A dog barks, then a cat meows, then a man shouts!", "kind": "order"}])
