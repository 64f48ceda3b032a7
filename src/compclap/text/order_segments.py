"""Order negatives, segment analysis: the grammatical shape of one event segment of a sentence.

A segment is analysed into a small shape (``FIN`` finite clause, ``GER`` noun + gerund, ``NP`` bare
noun phrase, ``VP`` / ``VPG`` subject-less verb phrase) with its verb groups, tense and subject
number, so that it can be moved to a slot that needs another form (see :mod:`compclap.text.order_render`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from compclap.text.inflect import verb_lemma
from compclap.text.lexicon import (
    AUXILIARIES,
    COLLECTIVE_HEADS,
    IRREGULAR_FORMS,
    IRREGULAR_VERBS,
    MODALS,
    PERSONAL_PRONOUNS,
    PLURAL_NOUNS,
    QUANTITY_HEADS,
    SOUND_NOUNS,
    SOUND_VERBS,
    SUBORDINATORS,
)
from compclap.text.tokens import FINITE_TAGS, VERB_TAGS, Tok

BE = frozenset({"is", "are", "was", "were", "am", "be", "been", "'s", "'re"})
FINITE_AUX = frozenset({"is", "are", "am", "was", "were", "has", "have", "had", "does", "do", "did", "'s", "'re"})


def looks_past(t: Tok) -> bool:
    """A past-tense form (the tagger's VBD alone is not trusted: "Wings flap/VBD")."""
    w = t.lower
    if w in {"was", "were", "had", "did"}:
        return True
    return t.tag == "VBD" and (w.endswith("ed") or (w in IRREGULAR_FORMS and w not in IRREGULAR_VERBS))


@dataclass
class Group:
    """A verb group to convert: auxiliaries (indices), the main verb index, subject number.

    ``number`` None means "the segment's subject".
    """

    aux: list[int]
    main: int
    number: str | None = None
    subj: tuple[int, int] | None = None


@dataclass
class Seg:
    """One event segment, tokens [a, b), and the shape the renderer needs."""

    a: int
    b: int
    form: str = "NP"               # FIN, GER, NP, VP, VPG
    body: int = 0                  # index where the predicate starts (after the subject)
    lead_end: int = 0              # tokens [a, lead_end) are a fronted subordinate clause / PP
    subj: tuple[int, int] | None = None
    groups: list[Group] = field(default_factory=list)
    tense: str = "pres"
    prog: bool = False
    number: str = "sg"
    there: tuple[int, int] | None = None  # "there is" to drop in a non-finite rendering
    entity: int | None = None
    pronoun: bool = False
    key: str = ""
    repeat: bool = False


# segment analysis -------------------------------------------------------------------
def analyse(toks: list[Tok], a: int, b: int) -> Seg:
    """The shape of segment [a, b): its form, subject, verb groups, tense and number."""
    g = Seg(a, b, body=a, lead_end=a)
    m = a
    first = toks[a]
    if first.lower in SUBORDINATORS and first.tag in {"IN", "WRB", "WDT"}:
        comma = next((k for k in range(a, b) if toks[k].text == ","), None)
        if comma is None or comma + 1 >= b:
            return g
        m = comma + 1
        g.lead_end = m
    elif first.tag == "IN" and first.lower != "of":
        comma = next((k for k in range(a, b) if toks[k].text == ","), None)
        if comma is not None and comma + 1 < b:
            m = comma + 1
            g.lead_end = m
    if toks[m].lower == "there" and m + 1 < b and toks[m + 1].lower in {"is", "are", "was", "were", "'s"}:
        g.form = "FIN"
        g.there = (m, m + 2)
        g.tense = "past" if toks[m + 1].lower in {"was", "were"} else "pres"
        g.body = m
        return g
    in_pp = first.tag == "IN" and g.lead_end == a and first.lower != "of"
    k = m
    while k < b:
        t = toks[k]
        w = t.lower
        if k > m and w in SUBORDINATORS and t.tag in {"IN", "WDT", "WP", "WRB"}:
            break
        if k > m and t.tag == "IN" and w != "of":
            in_pp = True
        if t.tag in FINITE_TAGS or (w in FINITE_AUX and t.tag in VERB_TAGS):
            grp, nxt = verb_group(toks, k, b)
            if grp is None:
                break
            body = k
            while body - 1 > m and toks[body - 1].tag in {"RB", "RBR"}:
                body -= 1  # "it quickly accelerates": the adverb belongs to the predicate
            g.form = "FIN" if body > m else "VP"
            g.subj = (m, body) if body > m else None
            g.body = body
            g.number = subject_number(toks, m, body) if body > m else verb_number(toks, grp)
            g.groups = [grp]
            lead_tok = toks[grp.aux[0]] if grp.aux else toks[grp.main]
            g.tense = "past" if looks_past(lead_tok) else "pres"
            g.prog = toks[grp.main].tag == "VBG" and any(toks[x].lower in BE for x in grp.aux)
            coordinated(toks, g, nxt, b, finite=True)
            return g
        if t.tag == "VBG" and not in_pp:
            if k == m:
                nt = toks[k + 1] if k + 1 < b else None
                if nt is not None and nt.tag in {"NN", "NNS"} and (k + 2 >= b or not toks[k + 2].is_noun):
                    break  # "Ringing phone ...": adjectival
                g.form = "VPG"
                g.body = k
                g.groups = [Group([], k)]
                coordinated(toks, g, k + 1, b, finite=False)
                return g
            prev = toks[k - 1]
            if (prev.is_noun or prev.tag == "PRP") and not sound_head(toks, m, k) and \
                    not nominal_gerund(toks, m, k):
                g.form = "GER"
                g.subj = (m, k)
                g.body = k
                g.number = subject_number(toks, m, k)
                if w == "being" and k + 1 < b and toks[k + 1].tag == "VBN":
                    grp = Group([k], k + 1)
                else:
                    grp = Group([], k)
                g.groups = [grp]
                coordinated(toks, g, grp.main + 1, b, finite=False)
                return g
        k += 1
    g.form = "NP"
    return g


def nominal_gerund(toks: list[Tok], m: int, k: int) -> bool:
    """"more bird chirping", "some dog barking": a quantifier + bare singular noun + -ing is a noun."""
    j = k - 1
    if toks[j].tag != "NN":
        return False
    while j - 1 >= m and toks[j - 1].tag in {"NN", "JJ", "JJR", "HYPH"}:
        j -= 1
    first = toks[j - 1].lower if j - 1 >= m else ""
    return first in {"more", "some", "much", "less", "constant", "continuous", "repeated", "intermittent",
                     "occasional", "periodic", "sporadic", "further", "additional", "loud", "soft", "faint"} or \
        toks[j].lower in {"more", "some", "much", "less", "constant", "continuous", "repeated", "intermittent",
                          "occasional", "periodic", "sporadic", "further", "additional"}


def sound_head(toks: list[Tok], m: int, k: int) -> bool:
    """"The sound of a dog barking": the gerund belongs to the noun inside the of-phrase.

    Only collective heads ("a group of men speaking") make the gerund the phrase's own event.
    """
    for j in range(m, k):
        if toks[j].lower == "of":
            heads = [toks[x].lower for x in range(m, j) if toks[x].is_noun]
            return not heads or heads[-1] not in COLLECTIVE_HEADS or \
                any(toks[x].lower in SOUND_NOUNS for x in range(m, j))
    return False


def verb_group(toks: list[Tok], k: int, b: int) -> tuple[Group | None, int]:
    """Auxiliaries starting at k and the main verb after them; returns (group, index after it)."""
    aux: list[int] = []
    j = k
    while j < b:
        t = toks[j]
        w = t.lower
        if (w in AUXILIARIES or w in MODALS) and j + 1 < b:
            q = j + 1
            while q < b and toks[q].tag in {"RB", "RBR"} and toks[q].lower != "then":
                q += 1
            if q < b and (toks[q].tag in VERB_TAGS or toks[q].lower in AUXILIARIES) and \
                    toks[q].tag not in {"VBZ", "VBP", "VBD"}:
                aux.append(j)
                j = q
                continue
            return Group(aux, j), j + 1
        if t.tag in VERB_TAGS:
            return Group(aux, j), j + 1
        return None, j
    return None, j


def coordinated(toks: list[Tok], g: Seg, k: int, b: int, finite: bool) -> None:
    """Add the verb groups coordinated with the main one at the top level of the segment.

    "A man speaks and laughs" (same subject), "dogs bark, and a man speaks" (a new subject);
    verbs inside "as ..."/"while ..."/"with ..." stay as they are.
    """
    state = "top"
    number: str | None = None   # number of the latest subject when it is not the segment's
    subj: tuple[int, int] | None = None
    while k < b:
        t = toks[k]
        w = t.lower
        if (w in SUBORDINATORS and t.tag in {"IN", "WDT", "WP", "WRB"}) or (t.tag == "IN" and w != "of"):
            state = "sub"
            k += 1
            continue
        if w in {"and", "or", "but"} or t.text == ",":
            comma = t.text == ","
            q = k + 1
            while q < b and (toks[q].tag in {"RB", "RBR"} or toks[q].lower in {"and", ","}) and \
                    toks[q].lower != "then":
                comma = comma or toks[q].text == ","
                q += 1
            if q >= b:
                break
            if state == "sub" and not comma:
                k = q
                continue
            if finite and finite_here(toks, q, b, g):
                grp, nxt = verb_group(toks, q, b)
                if grp is not None:
                    if state == "top":
                        grp.number, grp.subj = number, subj
                        g.groups.append(grp)
                    k = nxt
                    continue
            if not finite and gerund_here(toks, q, b):
                if state == "top":
                    g.groups.append(Group([], q, number, subj))
                k = q + 1
                continue
            # a new clause with its own subject: "..., a dog barks", "and a man and a woman talk"
            j = q
            while j < b and (toks[j].tag in {"DT", "JJ", "JJR", "PRP$", "CD", "HYPH", "PRP", "POS"} or
                             toks[j].is_noun or (toks[j].lower in {"and", "&"} and j + 1 < b and
                                                 toks[j + 1].tag in {"DT", "NN", "NNS", "JJ", "PRP$", "CD"})):
                if toks[j].tag in VERB_TAGS:
                    break
                j += 1
            if q < j < b and any(x.is_noun for x in toks[q:j]):
                vt = toks[j]
                if finite and (vt.tag in FINITE_TAGS or (vt.lower in FINITE_AUX and vt.tag in VERB_TAGS)):
                    grp, nxt = verb_group(toks, j, b)
                    if grp is not None:
                        number, subj = subject_number(toks, q, j), (q, j)
                        grp.number, grp.subj = number, subj
                        g.groups.append(grp)
                        state = "top"
                        k = nxt
                        continue
                if not finite and vt.tag == "VBG" and toks[j - 1].is_noun:
                    number, subj = subject_number(toks, q, j), (q, j)
                    g.groups.append(Group([], j, number, subj))
                    state = "top"
                    k = j + 1
                    continue
            if comma:
                state = "top"
            k = q
            continue
        k += 1


def finite_here(toks: list[Tok], q: int, b: int, g: Seg) -> bool:
    """Whether token q starts a finite verb coordinated with g's (repairing a verb tagged as a noun)."""
    nt = toks[q]
    if nt.tag in FINITE_TAGS or (nt.lower in FINITE_AUX and nt.tag in VERB_TAGS):
        return True
    # "A man speaks and laughs" with "laughs" read as a plural noun
    main = toks[g.groups[0].main] if g.groups else None
    if main is not None and main.tag == "VBZ" and nt.tag in {"NNS", "NN"} and nt.lower.endswith("s") and \
            (q + 1 >= b or not toks[q + 1].is_noun):
        lemma = verb_lemma(nt.lower)
        if lemma in SOUND_VERBS and lemma != nt.lower:
            nt.tag = "VBZ"
            return True
    return False


def gerund_here(toks: list[Tok], q: int, b: int) -> bool:
    """Whether token q is a gerund (repairing a sound verb's -ing form tagged NN / JJ)."""
    nt = toks[q]
    if nt.tag == "VBG":
        return True
    if nt.tag in {"NN", "JJ"} and nt.lower.endswith("ing") and len(nt.lower) > 4 and \
            (q + 1 >= b or not toks[q + 1].is_noun) and verb_lemma(nt.lower) in SOUND_VERBS:
        nt.tag = "VBG"
        return True
    return False


def verb_number(toks: list[Tok], grp: Group) -> str:
    """"sg" or "pl", from the verb group's first word."""
    t = toks[grp.aux[0]] if grp.aux else toks[grp.main]
    if t.tag == "VBP" or t.lower in {"are", "were", "have", "do"}:
        return "pl"
    return "sg"


def subject_number(toks: list[Tok], a: int, b: int) -> str:
    """"sg" or "pl" for the subject noun phrase [a, b) ("a man and a woman", "a group of men": its head)."""
    span = toks[a:b]
    words = [t.lower for t in span]
    if len(span) == 1 and words[0] in PERSONAL_PRONOUNS:
        return PERSONAL_PRONOUNS[words[0]]
    for k, t in enumerate(span):  # "a man and a woman"
        if t.lower in {"and", "&"} and any(x.is_noun for x in span[:k]) and any(x.is_noun for x in span[k + 1:]):
            return "pl"
    head = None
    for t in span:  # head: last noun before the first preposition ("a group of men" -> group)
        if t.tag == "IN" or t.lower in {"with", "of"}:
            if head is not None and head.lower in QUANTITY_HEADS and t.lower == "of":
                head = None
                continue
            if head is not None:
                break
            continue
        if t.is_noun:
            head = t
    if head is None:
        return "sg"
    if head.lower in {"series", "species"}:
        return "sg"
    if head.tag in {"NNS", "NNPS"} or head.lower in PLURAL_NOUNS or head.lower in {"they", "we", "you", "i"}:
        return "pl"
    return "sg"
