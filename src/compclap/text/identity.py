"""Caption identity: when two captions count as the same text (for false-negative masking in every loss).

Templated corpora and composed clips repeat captions with trivial differences ("A dog barks." vs "a dog
barks"); a loss that treats such a pair as a negative pushes a clip away from its own description. The
identity is deliberately narrow: only differences that cannot change meaning are removed.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

import torch

__all__ = ["normalise_caption", "text_ids"]

# Final punctuation that does not change what a caption describes.
_FINAL_PUNCTUATION = ".!?;,:\u2026"


def normalise_caption(text: str) -> str:
    """Canonical form of a caption: NFC, casefolded, whitespace collapsed and stripped, final punctuation removed."""
    # NFC first so that a composed and a decomposed accent are one text before casefolding.
    text = " ".join(unicodedata.normalize("NFC", text).casefold().split())
    # Stripping punctuation can expose whitespace ("a dog barks ."), so strip both together.
    return text.rstrip(_FINAL_PUNCTUATION + " ")


def text_ids(texts: Sequence[str]) -> torch.Tensor:
    """(N,) long: a 63-bit BLAKE2b hash of each normalised caption's UTF-8, equal across processes for equal texts.

    63 bits keep every id non-negative in an int64, so -1 is free as a "no text" sentinel.
    """
    ids = [int.from_bytes(hashlib.blake2b(normalise_caption(t).encode("utf-8"), digest_size=8).digest(), "little") >> 1
           for t in texts]
    return torch.tensor(ids, dtype=torch.long).reshape(len(ids))
