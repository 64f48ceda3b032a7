"""Checks on text read from manifests and caption files: undecodable bytes and lone surrogates.

Text files are opened with :func:`open_text` (UTF-8, an optional BOM, ``errors="surrogateescape"``),
so a byte that is not UTF-8 becomes one code point U+DC80..U+DCFF instead of a UnicodeDecodeError
in the middle of a file: the reader goes on and names the line (:func:`undecodable`). A JSON
``"\\ud800"`` escape parses to a *lone surrogate*, a str that no UTF-8 writer, spaCy pipeline or
tokenizer accepts; :func:`find_lone_surrogate` finds one anywhere in a parsed JSON value. Both
checks run before a caption reaches spaCy or a tokenizer, so a bad line is reported by number and
handled by the caller's bad-line policy.
"""

from __future__ import annotations

import os
import re
from typing import Any, TextIO

ENCODING = "utf-8-sig"   # UTF-8; a byte-order mark at the start of the file is dropped
ERRORS = "surrogateescape"
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def open_text(path: str | os.PathLike, newline: str | None = None) -> TextIO:
    """Open a text file for reading as UTF-8; undecodable bytes survive as U+DC80..U+DCFF."""
    return open(path, encoding=ENCODING, errors=ERRORS, newline=newline)


def has_surrogate(text: str) -> bool:
    """Whether a str holds any surrogate code point (an undecodable byte or a lone JSON surrogate)."""
    return _SURROGATE.search(text) is not None


def undecodable(text: str) -> str | None:
    """Why text read through :func:`open_text` is not valid UTF-8 ("byte 0xff at column 7"), or None."""
    m = _SURROGATE.search(text)
    if m is None:
        return None
    code = ord(m.group())
    byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
    return f"not valid UTF-8 ({byte} at column {m.start() + 1})"


def lone_surrogate(text: str) -> str | None:
    """Why a str parsed from JSON is unusable ("lone surrogate U+D800 at character 3"), or None."""
    m = _SURROGATE.search(text)
    if m is None:
        return None
    return f"lone surrogate U+{ord(m.group()):04X} at character {m.start() + 1}"


def may_hold_surrogate_escape(raw_line: str) -> bool:
    """Cheap test on a raw JSON line: can it decode to a lone surrogate (has a \\uD800-\\uDFFF escape)?"""
    return _JSON_SURROGATE_ESCAPE.search(raw_line) is not None


def find_lone_surrogate(value: Any, where: str = "") -> str | None:
    """The first lone surrogate in a parsed JSON value (keys included), as "captions[1]: lone surrogate ...".

    `where` names the value itself (empty: the top level).
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            problem = lone_surrogate(item)
            if problem is not None:
                return f"{path or 'value'}: {problem}"
        elif isinstance(item, dict):
            pending = []
            for key, sub in item.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and has_surrogate(key):
                    return f"key {ascii(key)}{' in ' + path if path else ''}: {lone_surrogate(key)}"
                pending.append((sub, name))
            stack.extend(reversed(pending))
        elif isinstance(item, list):
            stack.extend(reversed([(sub, f"{path}[{i}]") for i, sub in enumerate(item)]))
    return None
