"""Attribute negatives: swap attributes between events, or flip one attribute to its opposite.

* Two or more events with attributes: swap two attributes bound to *different* events
  ("a high whistle and a low hum" -> "a low whistle and a high hum"; "sings softly as ... shouts
  loudly" -> "sings loudly as ... shouts softly"). Adjectives swap with adjectives, adverbs and
  adverbial phrases ("loudly", "in the distance") with each other.
* Any acoustic attribute of the curated lexicon is replaced by its opposite
  ("A loud alarm beeps" -> "A quiet alarm beeps"; "barks far away" -> "barks nearby").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from compclap.text.inflect import indefinite_article, inflect
from compclap.text.lexicon import (
    ADJ_STOPLIST,
    ADV_STOPLIST,
    AGE_NOUNS,
    ANTONYMS,
    DEPTH_NOUNS,
    FIXED_COLLOCATIONS,
    FIXED_PHRASES,
    TEXTURE_NOUNS,
    VERB_ANTONYMS,
)
from compclap.text.tokens import NOUN_TAGS, VERB_TAGS, Tok, capitalize_first, join_pieces

_ADJ_TAGS = frozenset({"JJ", "JJR", "JJS"})
_ADV_TAGS = frozenset({"RB", "RBR", "RBS"})
_PHRASES = sorted(((k[0].split(), k[1]) for k in ANTONYMS if k[1] in {"P", "I"} or " " in k[0]),
                  key=lambda x: -len(x[0]))
_FIXED = [p.split() for p in FIXED_PHRASES]
_PHRASE_FIRST = frozenset(w[0] for w, _ in _PHRASES)
_FIXED_FIRST = frozenset(w[0] for w in _FIXED)
_COPULAS = frozenset({"is", "are", "was", "were", "be", "been", "being", "am", "seems", "sounds", "becomes", "gets",
                      "get", "getting", "grows", "growing", "becoming", "seem", "sound", "become", "remains"})
_PITCH_WORDS = frozenset({"high", "low"})
_PITCH_TAILS = frozenset({"pitched", "pitch", "toned", "frequency"})
_COMPOUND_TAILS = frozenset({"pitched", "pitch", "sounding", "toned", "tone", "frequency", "paced", "speed",
                             "pressure", "volume", "intensity", "level", "powered"})


@dataclass
class _Attr:
    a: int                  # token span [a, b)
    b: int
    text: str               # lower-case surface
    cls: str                # "J" adjective, "R" adverb/adverbial phrase, "I" preposition-like
    anchor: int             # token index of the event (noun or verb) it describes
    lexical: bool           # in the antonym lexicon
    swappable: bool
    word: str = ""          # the word an antonym replaces (first token of the span)


def _lexicon_key(at: _Attr) -> tuple[str, str]:
    """The lexicon key of an attribute span ("high - pitched" is written "high-pitched" there)."""
    return at.text.replace(" - ", "-"), at.cls


def _pitch_word(at: _Attr) -> str:
    """"high" for "high", "high-pitched" and "high pitched"; "" for an attribute of no pitch form."""
    words = at.text.replace(" - ", " ").split()
    if len(words) == 1 or (len(words) == 2 and words[1] in _PITCH_TAILS):
        return words[0] if words[0] in _PITCH_WORDS else ""
    return ""


def _same_pitch(p: _Attr, q: _Attr) -> bool:
    """Whether two attributes name one pitch, in any form ("low" and "low-pitched")."""
    wp = _pitch_word(p)
    return bool(wp) and wp == _pitch_word(q)


def _opposite(p: _Attr, q: _Attr) -> bool:
    """Whether two attributes are opposite values: lexicon antonyms, or opposite pitches in any form ("low" vs
    "high-pitched")."""
    key_p, key_q = _lexicon_key(p), _lexicon_key(q)
    if key_q[0] in ANTONYMS.get(key_p, ()) or key_p[0] in ANTONYMS.get(key_q, ()):
        return True
    wp, wq = _pitch_word(p), _pitch_word(q)
    return bool(wp and wq and wp != wq)


def _same_scale(p: _Attr, q: _Attr) -> bool:
    """Whether two attributes are values of one lexicon scale (equal, opposite or synonymous: loud, soft, quiet)."""
    key_p, key_q = _lexicon_key(p), _lexicon_key(q)
    return key_p[0] == key_q[0] or _same_pitch(p, q) or _opposite(p, q) or _synonyms(key_p, key_q)


def _synonyms(key_p: tuple[str, str], key_q: tuple[str, str]) -> bool:
    """Whether two lexicon attributes sit on the same side of one scale (they share an antonym: soft, quiet)."""
    return bool(set(ANTONYMS.get(key_p, ())) & set(ANTONYMS.get(key_q, ())))


class AttributeRewriter:
    """Builds attribute negatives from repaired tokens (see :mod:`compclap.text.tokens`)."""

    def candidates(self, toks: list[Tok], rng: random.Random) -> list[str]:
        """Attribute negatives of a caption, best first (swaps, then single replacements)."""
        attrs = self._find(toks)
        swaps, cross_scale = self._swaps(toks, attrs)
        # A swap of values from two different scales ("a soft beep, a high whistle" -> "a high beep, a soft
        # whistle") may still be true of the audio: it ranks after the replacements, which never are.
        return swaps + self._replacements(toks, attrs) + self._verb_replacements(toks) + cross_scale

    # discovery --------------------------------------------------------------------------
    def _find(self, toks: list[Tok]) -> list[_Attr]:
        n = len(toks)
        low = [t.lower for t in toks]
        used = [False] * n
        present = set(low)
        for words in _FIXED:  # "as long as", "a little": never attributes
            if words[0] not in present:
                continue
            L = len(words)
            for i in range(n - L + 1):
                if low[i:i + L] == words:
                    for k in range(i, i + L):
                        used[k] = True
        attrs: list[_Attr] = []
        for words, cls in _PHRASES:  # multi-word adverbials first ("in the distance", "close by")
            if words[0] not in present:
                continue
            L = len(words)
            for i in range(n - L + 1):
                if low[i:i + L] == words and not any(used[i:i + L]):
                    if cls == "I" and i + L >= n:
                        continue
                    text = " ".join(words)
                    attrs.append(_Attr(i, i + L, text, cls if cls == "I" else "R", self._verb_anchor(toks, i, i + L),
                                       True, cls != "I", text))
                    for k in range(i, i + L):
                        used[k] = True
        for i, t in enumerate(toks):
            if used[i] or not t.text.replace("-", "").isalpha():
                continue
            w = t.lower
            nxt = low[i + 1] if i + 1 < n else ""
            prev_t = toks[i - 1] if i > 0 else None
            if prev_t is not None and prev_t.text == "-":
                continue  # second half of a hyphenated word ("high-powered")
            if i + 2 < n and toks[i + 1].text == "-":
                if low[i + 2] not in _COMPOUND_TAILS:
                    continue  # "mid-size", "well-known": the first half of a compound is not an attribute
                if t.tag not in _ADJ_TAGS:
                    t = Tok(t.text, t.ws, "JJ", t.lemma, t.i)  # "high/RB -pitched": a compound adjective
            if t.tag in _ADV_TAGS and (w, "J") in ANTONYMS and prev_t is not None and \
                    prev_t.tag in {"DT", "PRP$", "CD"} | _ADJ_TAGS and i + 1 < n and toks[i + 1].tag in _ADJ_TAGS:
                t = Tok(t.text, t.ws, "JJ", t.lemma, t.i)  # "a long/RB high whistle": an adjective in a noun phrase
            if t.tag in _ADJ_TAGS and prev_t is not None and prev_t.tag in VERB_TAGS and \
                    prev_t.lower not in _COPULAS and (i + 1 >= n or toks[i + 1].tag not in NOUN_TAGS):
                # "wind blows hard", "a dog barks loud": an adjective form used as an adverb
                if (w, "R") in ANTONYMS:
                    attrs.append(_Attr(i, i + 1, w, "R", i - 1, True, True, w))
                continue
            if t.tag in _ADJ_TAGS or (t.tag == "VBN" and (w, "J") in ANTONYMS) or \
                    (t.tag in {"NN", "RB"} and (w, "J") in ANTONYMS and i + 1 < n and toks[i + 1].tag in NOUN_TAGS):
                if (w, nxt) in FIXED_COLLOCATIONS:
                    continue
                if i + 1 < n and toks[i + 1].tag in {"RB"} | _ADJ_TAGS and (w, "R") in ANTONYMS and t.tag in _ADV_TAGS:
                    continue
                end = i + 1  # "high-pitched", "higher pitched": the compound moves as one attribute
                if end < n and toks[end].text == "-" and end + 1 < n and low[end + 1] in _COMPOUND_TAILS:
                    end += 2
                elif end < n and toks[end].text == "-":
                    continue  # "mid-size", "well-known": the first half of a compound is not an attribute
                elif end < n and low[end] in _COMPOUND_TAILS and toks[end].tag in {"VBN", "JJ", "NN"} and \
                        end + 1 < n and toks[end + 1].tag in NOUN_TAGS | _ADJ_TAGS:
                    end += 1
                anchor, attributive = self._noun_anchor(toks, end - 1)
                lexical = (w, "J") in ANTONYMS
                swappable = (lexical or (w not in ADJ_STOPLIST and attributive and len(w) > 2)) and anchor >= 0
                for k in range(i, end):
                    used[k] = True
                attrs.append(_Attr(i, end, " ".join(low[i:end]), "J", anchor, lexical, swappable, w))
            elif t.tag in _ADV_TAGS or (t.tag in _ADJ_TAGS and (w, "R") in ANTONYMS):
                if i + 1 < n and toks[i + 1].tag in _ADJ_TAGS | _ADV_TAGS and toks[i + 1].lower not in {"and"}:
                    continue  # "very loud", "extremely quickly": intensifier, not an event attribute
                if i > 0 and low[i - 1] in {"then", "and", ","} and i + 1 < n and \
                        toks[i + 1].tag in {"DT", "PRP$", "PRP", "CD"}:
                    continue  # "then quickly a toilet flushes": a clause adverb of the connective
                lexical = (w, "R") in ANTONYMS
                ly = w.endswith("ly") and w not in ADV_STOPLIST and len(w) > 4
                if not (lexical or ly):
                    continue
                anchor = self._verb_anchor(toks, i, i + 1)
                attrs.append(_Attr(i, i + 1, w, "R", anchor, lexical, anchor >= 0, w))
        attrs.sort(key=lambda x: x.a)
        return attrs

    @staticmethod
    def _noun_anchor(toks: list[Tok], i: int) -> tuple[int, bool]:
        """The noun an adjective at `i` describes, and whether it stands before it (attributive)."""
        n = len(toks)
        k = i + 1
        last_noun = -1
        while k < n:
            t = toks[k]
            if t.tag in NOUN_TAGS:
                last_noun = k
                k += 1
                continue
            if last_noun >= 0:
                break
            # "a brief loud low/RB -pitched knocking": spaCy tags the first half of a compound, or a scale word
            # inside the noun phrase, as an adverb; the adjectives before it still describe the noun after it
            in_phrase_adverb = t.tag in _ADV_TAGS and k + 1 < n and (
                toks[k + 1].text == "-" or ((t.lower, "J") in ANTONYMS and toks[k + 1].tag in _ADJ_TAGS | NOUN_TAGS))
            if t.tag in _ADJ_TAGS | {"HYPH", ",", "CC", "VBN", "CD"} or t.text == "-" or in_phrase_adverb or \
                    (t.tag == "VBG" and k + 1 < n and toks[k + 1].tag in NOUN_TAGS):
                if t.tag == "CC" and k + 1 < n and toks[k + 1].tag in {"DT"}:
                    break
                k += 1
                continue
            break
        if last_noun >= 0:
            return last_noun, True
        # predicative ("the music is loud"): the closest noun before
        for k in range(i - 1, -1, -1):
            if toks[k].tag in NOUN_TAGS:
                return k, False
        return -1, False

    @staticmethod
    def _verb_anchor(toks: list[Tok], a: int, b: int) -> int:
        """The verb an adverbial at [a, b) describes: the verb right after it, the nearest verb before
        it, else the first verb after it."""
        if b < len(toks) and toks[b].tag in VERB_TAGS:
            return b
        for k in range(a - 1, -1, -1):
            t = toks[k]
            if t.tag in VERB_TAGS and t.lower not in {"is", "are", "was", "were", "be", "being", "been"}:
                return k
        for k in range(b, len(toks)):
            if toks[k].tag in VERB_TAGS:
                return k
        for k in range(a - 1, -1, -1):
            if toks[k].tag in NOUN_TAGS:
                return k
        return -1

    # swaps --------------------------------------------------------------------------------
    def _swaps(self, toks: list[Tok], attrs: list[_Attr]) -> tuple[list[str], list[str]]:
        """Swaps of two events' attributes, best first: (sure negatives, swaps across two lexicon scales)."""
        scored = []
        for x in range(len(attrs)):
            for y in range(x + 1, len(attrs)):
                p, q = attrs[x], attrs[y]
                if not (p.swappable and q.swappable) or p.text == q.text or p.anchor == q.anchor:
                    continue
                if _same_pitch(p, q):
                    continue  # "low" and "low-pitched": the swap says the same thing
                if {p.cls, q.cls} != {"J"} and not ({p.cls, q.cls} <= {"R"}) and not ({p.cls, q.cls} <= {"I"}):
                    continue
                if p.b == q.a or (q.a - p.b == 1 and toks[p.b].lower in {"and", ",", "or"} and
                                  p.anchor == q.anchor):
                    continue  # "loud and clear" on one noun
                if any(o is not q and o.anchor == q.anchor and _same_scale(o, p) for o in attrs) or \
                        any(o is not p and o.anchor == p.anchor and _same_scale(o, q) for o in attrs):
                    # "a short low knocking ... a long loud low-pitched hum" -> "... a long loud short hum": two
                    # values of one scale on one event (or one word twice) say nothing true or false of the audio
                    continue
                key_p, key_q = _lexicon_key(p), _lexicon_key(q)
                opp = _opposite(p, q)
                if not opp and p.lexical and q.lexical:
                    if _synonyms(key_p, key_q):
                        continue  # "a quiet hum and a soft bell": the swap says the same thing
                    tier = 4
                else:
                    tier = 0 if opp else (2 if p.lexical or q.lexical else 3)
                scored.append((tier, p.a, q.a, p, q))
        scored.sort(key=lambda z: (z[0], z[1], z[2]))
        sure: list[str] = []
        cross_scale: list[str] = []
        for tier, _, _, p, q in scored:
            edits = {p.a: (p.b, self._surface(toks, q, p)), q.a: (q.b, self._surface(toks, p, q))}
            (cross_scale if tier == 4 else sure).append(self._apply(toks, edits))
        return sure, cross_scale

    @staticmethod
    def _surface(toks: list[Tok], src: _Attr, dst: _Attr) -> str:
        """Text of `src` written in place of `dst` (lower-case; capitalised later if it starts the caption)."""
        text = "".join(t.text + t.ws for t in toks[src.a:src.b - 1]) + toks[src.b - 1].text
        if src.a == 0 and not text.isupper():
            text = text[:1].lower() + text[1:]
        return text

    # replacements -------------------------------------------------------------------------
    def _antonyms(self, toks: list[Tok], at: _Attr) -> tuple[str, ...]:
        w = at.word
        key = (w, at.cls if at.cls != "I" else "I")
        if key not in ANTONYMS:
            key = (w, "P")
            if key not in ANTONYMS:
                return ()
        alts = ANTONYMS[key]
        anchor = toks[at.anchor].lower if at.anchor >= 0 else ""
        if at.cls == "J" and w in {"soft", "hard"} and anchor in TEXTURE_NOUNS:
            return ("hard",) if w == "soft" else ("soft",)
        if at.cls == "J" and w == "deep" and anchor in DEPTH_NOUNS:
            return ("shallow",)
        if at.cls == "J" and w in {"short", "long", "brief"} and anchor in {"hair", "distance", "way"}:
            return ()
        if at.cls == "J" and w in {"young", "old", "elderly", "younger", "older"}:
            return alts  # age words are voice attributes only when bound to a person noun
        return alts

    def _replacements(self, toks: list[Tok], attrs: list[_Attr]) -> list[str]:
        per_attr = []
        for at in attrs:
            if not at.lexical:
                continue
            if at.cls == "J" and at.text in {"young", "old", "elderly", "younger", "older"}:
                if at.anchor < 0 or toks[at.anchor].lower not in AGE_NOUNS:
                    continue
            alts = self._antonyms(toks, at)
            if alts:
                per_attr.append((at, alts))
        out = []
        depth = max((len(a) for _, a in per_attr), default=0)
        for k in range(depth):
            for at, alts in per_attr:
                if k >= len(alts):
                    continue
                new = alts[k]
                # the same word repeated ("louder and louder") changes everywhere; a compound keeps its tail
                edits = {}
                for o in attrs:
                    if o.word == at.word and o.cls == at.cls:
                        end = o.a + len(o.word.split())
                        edits[o.a] = (end, new)
                out.append(self._apply(toks, edits))
        return out

    def _verb_replacements(self, toks: list[Tok]) -> list[str]:
        out = []
        lemmas = {t.vlemma() for t in toks if t.tag in VERB_TAGS}
        for i, t in enumerate(toks):
            if t.tag not in VERB_TAGS:
                continue
            lemma = t.vlemma()
            nxt = toks[i + 1].lower if i + 1 < len(toks) else ""
            for (lem, part), (new_lem, new_part) in VERB_ANTONYMS.items():
                if lem != lemma or (part and part != nxt):
                    continue
                if part and i + 2 < len(toks) and toks[i + 2].tag in {"DT", "PRP$", "JJ", "NN", "NNS", "CD"}:
                    break  # "fades in the distance": "in" is a preposition, not a particle
                if new_lem in lemmas and not new_part:
                    break  # "accelerates and decelerates": flipping one would only reorder them
                tag = t.tag if t.tag in {"VBZ", "VBP", "VBD", "VBG", "VBN", "VB"} else "VBZ"
                form = inflect(new_lem, tag)
                if t.text[:1].isupper():
                    form = capitalize_first(form)
                end = i + 2 if part else i + 1
                out.append(self._apply(toks, {i: (end, form + (" " + new_part if new_part else ""))}))
                break
        return out

    # editing ----------------------------------------------------------------------------------
    @staticmethod
    def _apply(toks: list[Tok], edits: dict[int, tuple[int, str]]) -> str:
        """Replace token spans {start: (end, text)}, fixing "a"/"an" and the capital letter."""
        pieces: list[tuple[str, str]] = []
        k = 0
        n = len(toks)
        while k < n:
            if k in edits:
                end, text = edits[k]
                if pieces and pieces[-1][0].lower() in {"a", "an"} and text:
                    art = indefinite_article(text)
                    old = pieces[-1][0]
                    art = art.capitalize() if old[:1].isupper() else art
                    pieces[-1] = (art, pieces[-1][1])
                if k == 0 and toks[0].text[:1].isupper():
                    text = capitalize_first(text)
                pieces.append((text, toks[end - 1].ws))
                k = end
                continue
            pieces.append((toks[k].text, toks[k].ws))
            k += 1
        return join_pieces(pieces)
