"""Light token records taken from a spaCy ``Doc``, with the tagger's verb mistakes repaired.

The small English model often tags the verb of a short caption as a noun ("A woman talks/NNS",
"Tires squeal/JJ", "a dog barking/NN"). :func:`tokens_from_doc` copies what the rewriter needs and
fixes those tags with the sound-verb lexicon and the surrounding determiners, so the order and
attribute rewriters can work on plain lists.
"""

from __future__ import annotations

import re

from compclap.text.inflect import is_known_verb, is_noun, is_noun_only, verb_lemma, word_classes_known
from compclap.text.lexicon import (
    MASS_NOUNS,
    NOUNISH_S_FORMS,
    PLURAL_QUANTIFIERS,
    SINGULAR_DETERMINERS,
    SOUND_VERBS,
)

FINITE_TAGS = frozenset({"VBZ", "VBP", "VBD", "MD"})
VERB_TAGS = frozenset({"VB", "VBZ", "VBP", "VBD", "VBG", "VBN", "MD"})
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
PUNCT_TAGS = frozenset({",", ".", ":", "``", "''", "-LRB-", "-RRB-", "HYPH", "NFP"})
SENT_END = frozenset({".", "!", "?", ";"})
_SUBJECT_PRONOUNS = frozenset({"someone", "somebody", "something", "it", "he", "she", "one", "everyone", "nobody"})


class Tok:
    """One token: surface text, trailing whitespace, (repaired) Penn tag and the tagger's lemma."""

    __slots__ = ("text", "ws", "tag", "lemma", "i", "lower", "_punct")

    def __init__(self, text: str, ws: str, tag: str, lemma: str, i: int) -> None:
        self.text = text
        self.ws = ws
        self.tag = tag
        self.lemma = lemma
        self.i = i
        self.lower = text.lower()
        self._punct = not any(ch.isalnum() for ch in text)

    def __repr__(self) -> str:
        return f"Tok({self.text!r}/{self.tag})"

    def copy(self) -> Tok:
        return Tok(self.text, self.ws, self.tag, self.lemma, self.i)

    @property
    def is_noun(self) -> bool:
        return self.tag in NOUN_TAGS or self.lower in _SUBJECT_PRONOUNS

    @property
    def is_verb(self) -> bool:
        return self.tag in VERB_TAGS

    @property
    def is_punct(self) -> bool:
        return self._punct or self.tag in PUNCT_TAGS

    @property
    def is_event(self) -> bool:
        """A noun, a verb or an -ing word (gerund nouns are often tagged JJ): something that sounds."""
        return self.is_noun or self.is_verb or (self.lower.endswith("ing") and len(self.lower) > 4)

    def vlemma(self) -> str:
        return verb_lemma(self.text, self.lemma)


def tokens_from_doc(doc) -> list[Tok]:
    """Copy a spaCy Doc into :class:`Tok` records and repair verb tags."""
    toks = [Tok(t.text, t.whitespace_, t.tag_, t.lemma_, t.i) for t in doc]
    repair_tags(toks)
    return toks


def _np_start(toks: list[Tok], j: int) -> int:
    """Index of the first token of the noun phrase that ends at noun `j`."""
    k = j
    while k - 1 >= 0:
        p = toks[k - 1]
        if p.tag in NOUN_TAGS or p.tag in {"JJ", "JJR", "JJS", "CD", "DT", "PRP$", "POS", "HYPH", "VBN", "NFP"} \
                or p.lower in SINGULAR_DETERMINERS:
            k -= 1
            if p.tag in {"DT", "PRP$"} or p.lower in SINGULAR_DETERMINERS:
                break
        else:
            break
    return k


def _next_ok_for_verb(toks: list[Tok], i: int) -> bool:
    """Whether the token after position `i` can follow an intransitive/transitive verb."""
    if i + 1 >= len(toks):
        return True
    n = toks[i + 1]
    if n.is_punct or n.tag in {"CC", "IN", "RB", "RBR", "DT", "PRP$", "TO", "RP", "WDT", "WRB", "PRP", "CD"}:
        return True
    if n.lower in {"followed", "preceded", "succeeded", "proceeded", "accompanied", "interrupted", "joined",
                   "trailed", "ending", "ends", "finishing"}:
        return True
    if n.lower in {"open", "shut", "closed", "away", "off", "up", "down", "out", "by", "past", "loud", "nearby",
                   "again", "twice", "once", "then", "followed", "while", "as", "before", "after", "until"}:
        return True
    # "barks loud.", "sounds distant and": an adjective closing the clause
    return n.tag in {"JJ", "JJR"} and (i + 2 >= len(toks) or toks[i + 2].is_punct or
                                       toks[i + 2].tag in {"CC", "IN", "RB"})


def _is_clause_subject(toks: list[Tok], j: int) -> bool:
    """Whether noun `j` can be the subject of a verb right after it (determiners decide)."""
    start = _np_start(toks, j)
    if start > 0 and toks[start - 1].tag in {"IN"} and toks[start - 1].lower not in {"as", "while", "while", "when",
                                                                                     "after", "before", "until",
                                                                                     "because", "since", "if",
                                                                                     "whereas", "though", "although"}:
        return False  # "the sound of dog barks"
    first = toks[start]
    np_words = [t.lower for t in toks[start:j + 1]]
    if toks[j].lower in MASS_NOUNS and toks[j].tag == "NN":
        return True  # "Some liquid flows"
    if any(w in PLURAL_QUANTIFIERS for w in np_words):
        return first.lower in SINGULAR_DETERMINERS and not any(
            w in {"multiple", "several", "many", "numerous", "few", "various", "lots"} for w in np_words)
    if first.lower in SINGULAR_DETERMINERS or first.tag == "PRP$":
        return True
    if toks[j].lower in _SUBJECT_PRONOUNS or toks[j].tag in {"NNP", "PRP"}:
        return True
    if start == j or all(t.is_noun for t in toks[start:j + 1]):
        return True  # bare noun / compound: "Water splashes", "Car motor revs"
    # Bare adjective + noun ("Loud dog barks"): a plural noun phrase unless the noun is a mass noun.
    return toks[j].lower in MASS_NOUNS


def repair_tags(toks: list[Tok]) -> None:
    """Fix the verb tags the small tagger gets wrong around a subject noun (in place)."""
    n = len(toks)
    known = word_classes_known()
    for t in toks:  # "a chainsaw/JJ", "its siren/JJ": nouns that are never adjectives
        if t.tag == "JJ" and t.lower.isalpha() and is_noun_only(t.lower):
            t.tag = "NN"
        # "Police sirens/VBZ ring": an -s word that is no verb at all is a plural noun
        elif known and t.tag == "VBZ" and t.lower.isalpha() and t.lower.endswith("s") and \
                not is_known_verb(verb_lemma(t.lower)) and is_noun(t.lower[:-1]):
            t.tag = "NNS"
    for i in range(1, n - 1):
        a, b, c = toks[i - 1], toks[i], toks[i + 1]
        # "Some liquid/JJ flows/NNS": determiner + noun-or-adjective + sound verb at a clause end
        if a.lower in {"a", "an", "the", "some", "this", "that"} and b.tag == "JJ" and is_noun(b.lower) and \
                c.tag in {"NNS", "NN"} and c.lower.endswith("s") and verb_lemma(c.lower) in SOUND_VERBS and \
                verb_lemma(c.lower) != c.lower and _next_ok_for_verb(toks, i + 1):
            b.tag, c.tag = "NN", "VBZ"
        # "Train toots/NNS horn/VBP": the verb is the -s form, the base form after it is a noun
        if a.tag in {"NN", "NNP"} and b.tag in {"NNS", "NN"} and b.lower.endswith("s") and \
                verb_lemma(b.lower) in SOUND_VERBS and verb_lemma(b.lower) != b.lower and \
                c.tag in {"VBP", "VB"} and c.lower not in SOUND_VERBS and is_noun(c.lower):
            b.tag, c.tag = "VBZ", "NN"
    for i in range(n):
        t = toks[i]
        w = t.lower
        # "then goats/VBZ bleat": a plural noun read as a verb before the real verb
        if t.tag == "VBZ" and i + 1 < n and w.endswith("s") and (i == 0 or toks[i - 1].lower in _CLAUSE_OPENERS):
            nxt = toks[i + 1]
            if nxt.lower in SOUND_VERBS and nxt.tag not in {"VBZ", "VBD", "VBG", "VBN", "RB", "IN", "DT", "RP"} and \
                    _next_ok_for_verb(toks, i + 1):
                t.tag = "NNS"
                nxt.tag = "VBP"
                continue
        # "then revs/VB loudly": a base-form tag on an -s form
        if t.tag == "VB" and w.endswith("s") and not w.endswith("ss"):
            lemma = verb_lemma(w)
            if lemma != w and is_known_verb(lemma):
                t.tag = "VBZ"
                continue
        if i == 0:
            continue
        prev = toks[i - 1]
        # "high pitched", "low toned": a compound adjective, not a verb
        if w in _ADJ_PARTICIPLES and prev.tag in {"JJ", "JJR", "JJS", "RB", "RBR", "HYPH"}:
            t.tag = "JJ"
            continue
        if t.tag in VERB_TAGS or not w.isalpha():
            continue
        if not (prev.is_noun or prev.tag == "PRP" or (prev.lower in _PERSON_ADJ and w.endswith("ing"))):
            continue
        # "a dog barking", "water running": an -ing word right after a noun, not before another noun.
        if w.endswith("ing") and len(w) > 4 and t.tag in {"NN", "JJ", "NNP"}:
            nxt = toks[i + 1] if i + 1 < n else None
            if nxt is None or not nxt.is_noun or nxt.lower in _SUBJECT_PRONOUNS:
                lemma = verb_lemma(w, None)
                if lemma in SOUND_VERBS or t.tag == "NN":
                    t.tag = "VBG"
                    t.lemma = lemma
            continue
        if not _next_ok_for_verb(toks, i):
            continue
        # "A woman talks", "A train horn blows": -s form after a singular subject.
        if w.endswith("s") and w not in NOUNISH_S_FORMS and (prev.tag in {"NN", "NNP", "PRP"} or
                                                            prev.lower in _SUBJECT_PRONOUNS):
            lemma = verb_lemma(w, None)
            if lemma != w and _is_clause_subject(toks, i - 1):
                strong = _np_determiner(toks, i - 1) in _STRONG_SINGULAR
                if lemma in SOUND_VERBS or (strong and is_known_verb(lemma)):
                    t.tag = "VBZ"
                    t.lemma = lemma
            continue
        # "Tires squeal", "Birds chirp": base form after a plural subject.
        if prev.tag in {"NNS", "NNPS"} or prev.lower in _PLURAL_SUBJECTS:
            if w in SOUND_VERBS and t.tag in {"NN", "JJ", "NNS", "RB", "NNP"}:
                t.tag = "VBP"
                t.lemma = w
    _repair_coordinated(toks)


def _repair_coordinated(toks: list[Tok]) -> None:
    """"An engine hums and accelerates/NNS": a verb form coordinated with the verb before it."""
    n = len(toks)
    for i in range(1, n):
        t = toks[i]
        if t.tag not in {"NN", "NNS", "JJ"} or toks[i - 1].lower not in {"and", ",", "or", "then"}:
            continue
        if i + 1 < n and (toks[i + 1].tag in NOUN_TAGS or toks[i + 1].tag == "DT"):
            continue
        prev_verb = None
        for k in range(i - 2, max(-1, i - 8), -1):
            if toks[k].tag in VERB_TAGS:
                prev_verb = toks[k]
                break
            if toks[k].tag in {"IN", "WDT"} or toks[k].lower in {"while", "as", "followed", "before", "after"}:
                break
        if prev_verb is None:
            continue
        w = t.lower
        lemma = verb_lemma(w)
        if lemma not in SOUND_VERBS or lemma == w:
            continue
        if prev_verb.tag == "VBZ" and w.endswith("s"):
            t.tag = "VBZ"
        elif prev_verb.tag == "VBG" and w.endswith("ing"):
            t.tag = "VBG"
        elif prev_verb.tag == "VBD" and w.endswith("ed"):
            t.tag = "VBD"


# plural without -s (the tagger often says NN): "Several sheep bleat"
_PLURAL_SUBJECTS = frozenset({"people", "they", "we", "sheep", "deer", "fish", "geese", "mice", "cattle", "police",
                              "men", "women", "children", "poultry", "livestock"})
_PERSON_ADJ = frozenset({"male", "female", "adult", "elderly", "young"})
_ADJ_PARTICIPLES = frozenset({"pitched", "toned", "paced", "sized", "shaped", "colored", "coloured", "haired",
                              "legged", "winged", "powered", "voiced", "sounding"})
_CLAUSE_OPENERS = frozenset({",", "then", "and", "by", "while", "as", "when", "before", "after", "with"})
_STRONG_SINGULAR = frozenset({"a", "an", "one", "this", "that", "each", "every", "another", "the", "his", "her",
                              "its", "my", "our", "their", "your"})


def _np_determiner(toks: list[Tok], j: int) -> str:
    return toks[_np_start(toks, j)].lower


def sentence_spans(toks: list[Tok]) -> list[tuple[int, int]]:
    """[start, end) token spans of the sentences (split after . ! ? ;)."""
    spans, start = [], 0
    for i, t in enumerate(toks):
        if t.text in SENT_END:
            spans.append((start, i + 1))
            start = i + 1
    if start < len(toks):
        spans.append((start, len(toks)))
    return spans


# ---------------------------------------------------------------------------------------------
# Rendering

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_MULTISPACE = re.compile(r"\s{2,}")
_DOUBLE_COMMA = re.compile(r",\s*,")


def join_pieces(pieces: list[tuple[str, str]]) -> str:
    """Join (text, trailing whitespace) pieces into a tidy string."""
    out = "".join(text + ws for text, ws in pieces)
    out = _DOUBLE_COMMA.sub(",", out)
    out = _SPACE_BEFORE_PUNCT.sub(r"\1", out)
    out = _MULTISPACE.sub(" ", out)
    out = out.strip()
    out = re.sub(r"^[,;:]\s*", "", out)
    return out


def capitalize_first(text: str) -> str:
    for k, ch in enumerate(text):
        if ch.isalpha():
            return text[:k] + ch.upper() + text[k + 1:]
    return text


def decapitalize(word: str, tag: str) -> str:
    """Lower-case a word that moves away from the start of the sentence (proper nouns and 'I' stay)."""
    if tag in {"NNP", "NNPS"} or word == "I" or (len(word) > 1 and word.isupper()):
        return word
    return word[:1].lower() + word[1:]
