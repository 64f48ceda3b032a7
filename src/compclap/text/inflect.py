"""Small English verb inflection helpers (no external data): lemma <-> 3rd person, gerund, past.

Rules for -s/-es/-ies, -ing (e-drop, consonant doubling) and -ed, plus the irregular tables of
:mod:`compclap.text.lexicon`. Good enough for the verbs of audio captions; not a general morphology.
"""

from __future__ import annotations

from compclap.text.lexicon import (
    DOUBLING_VERBS,
    IRREGULAR_3SG,
    IRREGULAR_FORMS,
    IRREGULAR_GERUND,
    IRREGULAR_VERBS,
    SOUND_VERBS,
)

_VOWELS = set("aeiou")


def _syllables(word: str) -> int:
    count, prev = 0, False
    for ch in word:
        v = ch in _VOWELS or ch == "y"
        if v and not prev:
            count += 1
        prev = v
    return max(count, 1)


def _doubles(lemma: str) -> bool:
    """Whether the final consonant doubles before -ing / -ed ("hum" -> "humming")."""
    if len(lemma) < 3 or not lemma.isalpha():
        return False
    a, b, c = lemma[-3], lemma[-2], lemma[-1]
    cvc = a not in _VOWELS and b in _VOWELS and c not in _VOWELS and c not in "wxy"
    if lemma[-3:-1] == "qu" and c not in _VOWELS:  # quit -> quitting
        cvc = c not in "wxy"
    if not cvc:
        return False
    return _syllables(lemma) == 1 or lemma in DOUBLING_VERBS


def third_person(lemma: str) -> str:
    """'bark' -> 'barks', 'buzz' -> 'buzzes', 'cry' -> 'cries', 'coo' -> 'coos'."""
    if lemma in IRREGULAR_3SG:
        return IRREGULAR_3SG[lemma]
    if lemma.endswith(("s", "x", "z", "ch", "sh")) or (lemma.endswith("o") and not lemma.endswith("oo")):
        return lemma + "es"
    if len(lemma) > 1 and lemma.endswith("y") and lemma[-2] not in _VOWELS:
        return lemma[:-1] + "ies"
    return lemma + "s"


def gerund(lemma: str) -> str:
    """'bark' -> 'barking', 'idle' -> 'idling', 'hum' -> 'humming', 'die' -> 'dying'."""
    if lemma in IRREGULAR_GERUND:
        return IRREGULAR_GERUND[lemma]
    if lemma.endswith("ie") and len(lemma) > 3:
        return lemma[:-2] + "ying"
    if lemma.endswith(("ee", "ye", "oe")):
        return lemma + "ing"
    if lemma.endswith("e") and len(lemma) > 2:
        return lemma[:-1] + "ing"
    if lemma.endswith("c") and len(lemma) > 3:
        return lemma + "king"
    if _doubles(lemma):
        return lemma + lemma[-1] + "ing"
    return lemma + "ing"


def past(lemma: str) -> str:
    """'bark' -> 'barked', 'ring' -> 'rang', 'stop' -> 'stopped'."""
    if lemma in IRREGULAR_VERBS:
        return IRREGULAR_VERBS[lemma][0]
    return _regular_ed(lemma)


def past_participle(lemma: str) -> str:
    """'bark' -> 'barked', 'ring' -> 'rung', 'blow' -> 'blown'."""
    if lemma in IRREGULAR_VERBS:
        return IRREGULAR_VERBS[lemma][1]
    return _regular_ed(lemma)


def _regular_ed(lemma: str) -> str:
    if lemma.endswith("e"):
        return lemma + "d"
    if len(lemma) > 1 and lemma.endswith("y") and lemma[-2] not in _VOWELS:
        return lemma[:-1] + "ied"
    if lemma.endswith("c") and len(lemma) > 3:
        return lemma + "ked"
    if _doubles(lemma):
        return lemma + lemma[-1] + "ed"
    return lemma + "ed"


# WordNet verb lookups shipped with spaCy's English lemmatizer (set by configure_lookups()).
_VERB_INDEX: frozenset[str] = frozenset()
_VERB_EXC: dict[str, str] = {}
_NOUN_ONLY: frozenset[str] = frozenset()
_NOUNS: frozenset[str] = frozenset()
_ADJECTIVES: frozenset[str] = frozenset()
_VERB_RULES: tuple[tuple[str, str], ...] = (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"),
                                             ("ed", ""), ("ing", "e"), ("ing", ""))


def configure_lookups(index, exceptions, nouns=(), adjectives=()) -> None:
    """Use a verb index (base forms) and an exception table (form -> [lemma]) for lemmatisation.

    The English spaCy pipelines ship them in their lemmatizer (``lemma_index["verb"]``,
    ``lemma_exc["verb"]``); :class:`~compclap.text.negatives.HardNegativeRewriter` passes them here
    so that the lemmatizer itself need not run over every token. ``nouns`` / ``adjectives`` (the
    noun and adjective indexes) tell nouns the tagger read as adjectives ("a chainsaw/JJ runs").
    """
    global _VERB_INDEX, _VERB_EXC, _NOUN_ONLY, _NOUNS, _ADJECTIVES
    _VERB_INDEX = frozenset(index)
    _NOUNS = frozenset(nouns)
    _ADJECTIVES = frozenset(adjectives)
    _NOUN_ONLY = _NOUNS - _ADJECTIVES
    _VERB_EXC = {k: (v[0] if isinstance(v, (list, tuple)) else v) for k, v in dict(exceptions).items() if v}


def _known(lemma: str) -> bool:
    return lemma in SOUND_VERBS or lemma in IRREGULAR_VERBS or lemma in _VERB_INDEX


def is_noun_only(word: str) -> bool:
    """Whether `word` is a noun and never an adjective (WordNet indexes, when configured)."""
    return word in _NOUN_ONLY


def word_classes_known() -> bool:
    """Whether the noun / adjective indexes were configured (see :func:`configure_lookups`)."""
    return bool(_NOUNS) and bool(_ADJECTIVES)


def is_adjective(word: str) -> bool:
    """Whether `word` can be an adjective (WordNet index, when configured)."""
    return word in _ADJECTIVES


def is_noun(word: str) -> bool:
    """Whether `word` is a noun base form (WordNet index, when configured)."""
    return word in _NOUNS


def is_known_verb(lemma: str) -> bool:
    """Whether `lemma` is a verb base form (sound-verb lexicon, irregular table or WordNet index)."""
    return _known(lemma)


def verb_lemma(word: str, hint: str | None = None) -> str:
    """Lemma of a verb form; `hint` is a tagger's lemma, used when the rules are undecided.

    'barks' -> 'bark', 'splashes' -> 'splash', 'cries' -> 'cry', 'humming' -> 'hum',
    'idling' -> 'idle', 'stopped' -> 'stop', 'rang' -> 'ring'.
    """
    w = word.lower()
    if w in IRREGULAR_FORMS:
        return IRREGULAR_FORMS[w]
    if w in SOUND_VERBS or w in IRREGULAR_VERBS:
        return w
    if w in _VERB_EXC:
        return _VERB_EXC[w]
    forms = []
    for old, new in _VERB_RULES:
        if w.endswith(old) and len(w) > len(old) + 1:
            f = w[: len(w) - len(old)] + new
            if _known(f):
                forms.append(f)
    # doubled consonant ("humming", "stopped") and -ck ("panicking")
    for suf in ("ing", "ed"):
        if w.endswith(suf):
            stem = w[: -len(suf)]
            if len(stem) > 2 and stem[-1] == stem[-2] and _known(stem[:-1]):
                forms.insert(0, stem[:-1]) if stem[-1] not in "lsz" else forms.append(stem[:-1])
            if stem.endswith("ck") and _known(stem[:-1]):
                forms.append(stem[:-1])
    if forms:
        for f in forms:  # "singing": prefer "sing" (a sound verb) to "singe"
            if f in SOUND_VERBS or f in IRREGULAR_VERBS:
                return f
        return forms[0]
    if hint:
        return hint.lower()
    return _guess_lemma(w)


def _guess_lemma(w: str) -> str:
    """Suffix rules for verbs no lexicon knows."""
    if w.endswith("ing") and len(w) > 5:
        stem = w[:-3]
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
            return stem[:-1]
        if stem.endswith(("at", "iz", "uc", "iv", "ov", "av", "bl", "gl", "tl", "dl", "pl", "kl", "zl", "rs", "ud")):
            return stem + "e"
        return stem
    if w.endswith("ied") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("ed") and len(w) > 4:
        stem = w[:-2]
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
            return stem[:-1]
        if stem.endswith(("at", "iz", "uc", "iv", "ov", "av", "bl", "gl", "tl", "dl", "pl", "kl", "zl", "rs", "ud")):
            return stem + "e"
        return stem
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("shes", "ches", "xes", "zes", "sses", "oes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return w[:-1]
    return w


def inflect(lemma: str, tag: str) -> str:
    """The form of `lemma` for a Penn tag (VBZ, VBP, VB, VBG, VBD, VBN)."""
    if tag == "VBZ":
        return third_person(lemma)
    if tag == "VBG":
        return gerund(lemma)
    if tag == "VBD":
        return past(lemma)
    if tag == "VBN":
        return past_participle(lemma)
    if tag == "VBP" and lemma == "be":
        return "are"
    return lemma


def be_form(number: str, tense: str) -> str:
    """'is' / 'are' / 'was' / 'were' for a subject number ('sg'/'pl') and tense ('pres'/'past')."""
    if tense == "past":
        return "was" if number == "sg" else "were"
    return "is" if number == "sg" else "are"


def indefinite_article(word: str) -> str:
    """'a' or 'an' for the word that follows it."""
    w = word.lower()
    if not w:
        return "a"
    if w.startswith(("hour", "honest", "honor", "heir")):
        return "an"
    if w.startswith(("uni", "use", "usu", "uti", "ura", "eu", "one", "once", "ewe", "ubi")):
        return "a"
    return "an" if w[0] in _VOWELS else "a"
