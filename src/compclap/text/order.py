"""Order negatives: permute the events of a caption around its sequential connectives.

A sentence is cut at its *sequential* connectives ("followed by", "then", "before", "after", ...)
into event segments; simultaneous relations ("while", "as", "with", "and", "over", ...) never cut,
so they stay inside a segment and can never produce a false order negative. Each segment is
analysed into a small shape (finite clause, noun + gerund, bare noun phrase, subject-less verb
phrase) so that a segment moved to another slot takes the grammatical form that slot needs:

    "A man speaks followed by a dog barking" -> "A dog barks followed by a man speaking"
    "A baby screams then starts to cry"      -> "A baby starts to cry then screams"
    "After a horn honks, a bus leaves"       -> "After a bus leaves, a horn honks"

Two events give the swap and, where the connective has a clean converse, the same mention order
with the converse connective ("A child screams after a balloon pops" -> "... before ..."). Three or
more events give other permutations, the full reversal first.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field

from compclap.text.inflect import be_form, gerund, inflect, verb_lemma
from compclap.text.lexicon import (
    AUXILIARIES,
    COLLECTIVE_HEADS,
    FIRST_MARKERS,
    IRREGULAR_FORMS,
    IRREGULAR_VERBS,
    LAST_MARKERS,
    MODALS,
    PERSON_NOUNS,
    PERSONAL_PRONOUNS,
    PLURAL_NOUNS,
    QUANTITY_HEADS,
    SOUND_NOUNS,
    SOUND_VERBS,
    SUBORDINATORS,
    TIME_SPANS,
)
from compclap.text.tokens import (
    FINITE_TAGS,
    NOUN_TAGS,
    VERB_TAGS,
    Tok,
    capitalize_first,
    decapitalize,
    join_pieces,
    sentence_spans,
)

Pieces = list[tuple[str, str]]

# ---------------------------------------------------------------------------------------------
# Connectives. Regexes run over the sentence's lower-cased tokens joined by single spaces.

_MOD = (r"(?:immediately|quickly|shortly|soon|closely|briefly|then|later|finally|eventually|suddenly|directly|"
        r"promptly|abruptly|again|subsequently|swiftly|instantly|just|momentarily)")
_LEAD = r"(?:, )?(?:(?:and|but) )?"
_LATER_ADV = (r"(?:afterwards|afterward|after that|after this|later on|a bit later|a little later|a moment later|"
              r"moments later|seconds later|a second later|a few seconds later|later|next(?! to)|finally|"
              r"eventually|subsequently|soon after|shortly after|soon afterwards|shortly afterwards|soon afterward|"
              r"shortly afterward|shortly thereafter|soon thereafter|thereafter|at last|lastly)")
_TIME_MOD = r"(?:(?:just|right|shortly|soon|immediately|briefly|quickly|moments|seconds|a moment|not long|long) )?"


@dataclass(frozen=True)
class _ConnSpec:
    kind: str
    pattern: re.Pattern
    direction: int          # +1: left happens first; -1: right first; 0: unknown (swap only)
    right_nonfinite: bool   # the right side must be a noun phrase / gerund ("followed by X")
    left_nonfinite: bool = False  # the left side is a subject noun phrase ("X follows Y")


def _c(kind: str, rx: str, direction: int, right_nf: bool, left_nf: bool = False) -> _ConnSpec:
    return _ConnSpec(kind, re.compile(r"(?<!\S)" + rx + r"(?!\S)"), direction, right_nf, left_nf)


_CONNECTIVES: tuple[_ConnSpec, ...] = (
    _c("followed_by", r"(?:(?:, )?(?:(?:and|but) )?(?:(?:it|this|that|which|these|they) (?:is|are|was|were|gets|get|"
       r"being|been|be) |(?:it|this|that|which|these|they|then) )?|(?:, )?(?:and|but) (?:is|are|was|were|gets|get) )"
       r"(?:" + _MOD + r" )*(?:followed|follows|follow|succeeded|trailed)(?: " + _MOD + r")*(?: up)? (?:by|with)",
       +1, True),
    _c("is_followed_by", r"(?:is|are|was|were|gets|get)(?: " + _MOD + r")* (?:followed|succeeded|trailed)"
       r"(?: " + _MOD + r")*(?: up)? (?:by|with)", +1, True, True),
    _c("is_preceded_by", r"(?:is|are|was|were)(?: " + _MOD + r")* preceded(?: " + _MOD + r")* by", -1, True, True),
    _c("proceeded_by", _LEAD + r"(?:(?:it|this|that|which) )?(?:(?:is|are|was|were) )?(?:" + _MOD + r" )*"
       r"proceeded(?: " + _MOD + r")* by", 0, True),
    _c("preceded_by", _LEAD + r"(?:(?:it|this|that|which) )?(?:(?:is|are|was|were) )?(?:" + _MOD + r" )*"
       r"preceded(?: " + _MOD + r")* by", -1, True),
    _c("then", _LEAD + r"(?:then|after which|whereupon)(?: (?:later|finally|eventually|again|immediately|"
       r"quickly|suddenly|shortly after|soon after|afterwards|next))?(?: ,)?", +1, False),
    _c("later", r"(?:, (?:and |but )?|(?:and|but) )" + _LATER_ADV + r"(?: ,)?", +1, False),
    _c("ends_with", _LEAD + r"(?:(?:(?:it|which|that|then|finally) )?(?:ends|ended|ending|finishes|finished|"
       r"finishing|concludes|concluded|concluding)|(?:which|that|and|then|they) (?:end|finish|conclude))"
       r"(?: up| off)? with", +1, True),
    _c("begins_with", _LEAD + r"(?:(?:it|which|that) )?(?:begins|began|beginning|starts|started|starting)"
       r"(?: off| out)? with", -1, True),
    _c("before", _LEAD + _TIME_MOD + r"before", +1, False),
    _c("after", _LEAD + _TIME_MOD + r"after", -1, False),
    _c("until", _LEAD + r"(?:up )?(?:until|till|untill)", +1, False),
    _c("follows", r"(?:follows|follow|followed)", -1, True, True),
    _c("precedes", r"(?:precedes|precede|preceded)", +1, True, True),
    _c("following", r"(?:, )?(?:shortly |soon |right |just |immediately )?following", -1, True),
)
_FOLLOWED_BY = _CONNECTIVES[0]

# Every connective and marker above contains one of these words: a sentence without any of them has
# no sequential relation (used to skip work, and to skip parsing captions altogether).
ORDER_TRIGGER = re.compile(
    r"\b(?:follow\w*|then|before|after\w*|later|finally|eventually|preced\w*|proceed\w*|succeed\w*|trailed|"
    r"until|till|untill|end|ends|ending|ended|finish\w*|conclud\w*|begin\w*|began|start\w*|next|first\w*|"
    r"initially|once|thereafter|subsequently|lastly|last|whereupon|soon)\b")

_PREFIX = re.compile(r"^(?:(?:just|right|shortly|soon|immediately|not long) )?(?:after|before|following|once|"
                     r"as soon as)(?!\S)")
_FIRST_RX = re.compile(r"^(?:" + "|".join(re.escape(m) for m in FIRST_MARKERS) + r")(?: ,)?(?!\S)")
_FIRST_TAIL_RX = re.compile(r"(?<!\S)(?:" + "|".join(re.escape(m) for m in FIRST_MARKERS) + r")$")
_LAST_TAIL_RX = re.compile(r"(?<!\S)(?:" + "|".join(re.escape(m) for m in LAST_MARKERS) + r")$")

# Converse connective for two events kept in mention order ("A then B" -> "A after B").
_CONVERSE = {"then": "after", "later": "after", "followed_by": "after", "before": "after", "after": "before",
             "preceded_by": "followed by", "following": "before", "is_followed_by": "is preceded by",
             "is_preceded_by": "is followed by"}
_PREFIX_CONVERSE = {"after": "before", "before": "after", "following": "before", "once": "before",
                    "as soon as": "before"}
_ELLIPSIS_OK = frozenset({"then", "later", "before", "after", "until", "and_later"})
_NP_START_TAGS = frozenset({"DT", "JJ", "JJR", "JJS", "NN", "NNS", "NNP", "NNPS", "PRP$", "CD", "PRP", "VBG"})
_BE = frozenset({"is", "are", "was", "were", "am", "be", "been", "'s", "'re"})
_FINITE_AUX = frozenset({"is", "are", "am", "was", "were", "has", "have", "had", "does", "do", "did", "'s", "'re"})


def _looks_past(t: Tok) -> bool:
    """A past-tense form (the tagger's VBD alone is not trusted: "Wings flap/VBD")."""
    w = t.lower
    if w in {"was", "were", "had", "did"}:
        return True
    return t.tag == "VBD" and (w.endswith("ed") or (w in IRREGULAR_FORMS and w not in IRREGULAR_VERBS))


@dataclass
class _Conn:
    a: int
    b: int
    spec: _ConnSpec | None
    kind: str
    text: Pieces | None = None            # replacement text (synthetic connectives)
    prefix_kw: tuple[int, int] | None = None  # "After" of a fronted clause


@dataclass
class _Group:
    """A verb group to convert: auxiliaries (indices), the main verb index, subject number.

    ``number`` None means "the segment's subject".
    """

    aux: list[int]
    main: int
    number: str | None = None
    subj: tuple[int, int] | None = None


@dataclass
class _Seg:
    a: int
    b: int
    form: str = "NP"               # FIN, GER, NP, VP, VPG
    body: int = 0                  # index where the predicate starts (after the subject)
    lead_end: int = 0              # tokens [a, lead_end) are a fronted subordinate clause / PP
    subj: tuple[int, int] | None = None
    groups: list[_Group] = field(default_factory=list)
    tense: str = "pres"
    prog: bool = False
    number: str = "sg"
    there: tuple[int, int] | None = None  # "there is" to drop in a non-finite rendering
    entity: int | None = None
    pronoun: bool = False
    key: str = ""
    repeat: bool = False


@dataclass
class _Sentence:
    """What the renderer needs about one sentence."""

    toks: list[Tok]
    s: int
    head: int
    segs: list[_Seg]
    conns: list[_Conn]
    first_tail: tuple[int, int] | None
    last_tail: tuple[int, int] | None
    holders: list[_Seg]


# ---------------------------------------------------------------------------------------------


class OrderRewriter:
    """Builds order negatives from repaired tokens (see :mod:`compclap.text.tokens`)."""

    def __init__(self, max_permutations: int = 24) -> None:
        self.max_permutations = max_permutations

    # public -----------------------------------------------------------------------------
    def candidates(self, toks: list[Tok], rng: random.Random) -> list[str]:
        """Order negatives of a caption, best first."""
        per_sentence = []
        for s, e in sentence_spans(toks):
            try:
                alts = self._sentence_candidates(toks, s, e, rng)
            except (IndexError, ValueError, KeyError):  # defensive: one odd parse never stops a batch
                alts = []
            per_sentence.append(((s, e), alts))
        out: list[str] = []
        depth = max((len(a) for _, a in per_sentence), default=0)
        for k in range(depth):  # every sentence's best negative first
            for (s, e), alts in per_sentence:
                if k < len(alts):
                    pieces = [(t.text, t.ws) for t in toks[:s]] + alts[k] + [(t.text, t.ws) for t in toks[e:]]
                    out.append(join_pieces(pieces))
        return out

    # sentence -------------------------------------------------------------------------
    def _sentence_candidates(self, toks: list[Tok], s: int, e: int, rng: random.Random) -> list[Pieces]:
        end = e
        while end > s and toks[end - 1].is_punct:
            end -= 1
        if end - s < 3:
            return []
        upper = toks[s].text[:1].isupper()
        if not ORDER_TRIGGER.search(" ".join(t.lower for t in toks[s:end])):
            return []
        # work on a copy (tags may be repaired) whose first word is lower-cased; capitalised at the end
        toks = [t.copy() for t in toks]
        t0 = toks[s]
        toks[s] = Tok(decapitalize(t0.text, "NN"), t0.ws, t0.tag, t0.lemma, t0.i)
        tail = [(t.text, t.ws) for t in toks[end:e]]
        low, starts = self._joined(toks, s, end)

        head = s
        m = _FIRST_RX.match(low)
        if m:
            head = self._tok_at(starts, s, m.end(), end)
            if head >= end:
                return []
        conns: list[_Conn] = []
        seg_start = head
        m = _PREFIX.match(low[starts[head - s]:])
        if m:
            prefix = self._prefix_split(toks, head, end, starts[head - s] + m.end(), starts, s)
            if prefix is None:
                return []
            conns = [prefix]
            seg_start = prefix.prefix_kw[1]
        else:
            conns = self._find_connectives(toks, head, end, low, starts, s)
            if not conns:
                tr = self._trailing_marker_split(toks, head, end, low, starts, s)
                if tr is not None:
                    conns = [tr]
        if not conns:
            return []

        bounds = [seg_start] + [x for c in conns for x in (c.a, c.b)] + [end]
        segs_raw = [[bounds[2 * k], bounds[2 * k + 1]] for k in range(len(conns) + 1)]
        # positional markers stay in place: "... first, then ...", "... and ... afterwards"
        first_tail = last_tail = None
        if not conns[0].prefix_kw:
            a, b = segs_raw[0]
            sl, ss = self._joined(toks, a, b)
            mm = _FIRST_TAIL_RX.search(sl)
            if mm and mm.start() > 0:
                cut = self._tok_at(ss, a, mm.start(), b)
                first_tail = (cut, b)
                segs_raw[0][1] = cut
        a, b = segs_raw[-1]
        sl, ss = self._joined(toks, a, b)
        mm = _LAST_TAIL_RX.search(sl)
        if mm and mm.start() > 0:
            cut = self._tok_at(ss, a, mm.start(), b)
            last_tail = (cut, b)
            segs_raw[-1][1] = cut

        segs = []
        for a, b in segs_raw:
            a, b = self._strip(toks, a, b)
            if b <= a:
                return []
            if segs and toks[a].tag in {"NN", "NNS", "VB", "JJ", "NNP"} and conns[len(segs) - 1].kind in _ELLIPSIS_OK \
                    and (a + 1 >= b or toks[a + 1].is_punct or toks[a + 1].tag in {"RB", "RP", "IN", "CC", "TO"}):
                # "... dogs bark then whimper/NN", "... accelerates, then decelerates/NNS"
                last_fin = [t for t in toks[segs[-1].a:segs[-1].b] if t.tag in FINITE_TAGS]
                numbers = set()  # number of the clauses just before: "people talking and then laugh"
                if segs[-1].form in {"FIN", "GER"}:
                    numbers.add(segs[-1].groups[-1].number or segs[-1].number)
                if last_fin:
                    numbers.add("pl" if last_fin[-1].tag == "VBP" else "sg")
                w = toks[a].lower
                new_tag = None
                if "pl" in numbers and w in SOUND_VERBS:
                    new_tag = "VBP"
                elif "sg" in numbers and w.endswith("s") and verb_lemma(w) in SOUND_VERBS and verb_lemma(w) != w:
                    new_tag = "VBZ"
                if new_tag:
                    toks[a] = Tok(toks[a].text, toks[a].ws, new_tag, toks[a].lemma, toks[a].i)
            segs.append(self._analyse(toks, a, b))
        if not all(any(t.is_event for t in toks[g.a:g.b]) for g in segs):
            return []
        holders = self._resolve_entities(toks, segs, conns)
        for g in segs:
            g.key = self._event_key(toks, g, holders)
            g.repeat = any(t.lower in {"another", "again", "more", "other", "second", "continues", "resumes"}
                           for t in toks[g.a:g.b])
        sent = _Sentence(toks, s, head, segs, conns, first_tail, last_tail, holders)

        n = len(segs)
        results: list[Pieces] = []
        canon = self._canonical(sent)
        if canon is not None:
            results.append(self._finish(canon, upper) + tail)
            return results
        rev = tuple(range(n - 1, -1, -1))
        perms: list[tuple[int, ...]] = [rev]
        if n >= 3:
            if n <= 6:
                others = [p for p in itertools.permutations(range(n)) if p != rev and p != tuple(range(n))]
            else:
                others = self._random_perms(n, rng, self.max_permutations)
            rng.shuffle(others)
            perms += others[: self.max_permutations]
        orig_keys = [g.key for g in segs]
        cores = [self._core(toks, g) for g in segs]
        simple = [self._single_event(toks, g) for g in segs]
        for x in range(n):  # "Man speaking followed by another man (speaking)": the same event again
            for y in range(n):
                if x != y and segs[y].repeat and simple[x] and simple[y] and (
                        set(orig_keys[y].split()) <= set(orig_keys[x].split()) or (
                            cores[y][0] is not None and cores[y][0] == cores[x][0] and
                            cores[y][1] in {None, cores[x][1]})):
                    orig_keys[y] = orig_keys[x]
        for perm in perms:
            if [orig_keys[p] for p in perm] == orig_keys:
                continue  # "a man speaks, then a man speaks": the same sequence of events
            if self._dangling_pronoun(toks, segs[perm[0]]):
                continue
            pieces = self._render(sent, perm)
            if pieces is None:
                continue
            results.append(self._finish(pieces, upper) + tail)
        if n == 2 and first_tail is None and last_tail is None and head == s and orig_keys[0] != orig_keys[1]:
            conv = self._converse(sent)
            if conv is not None:
                results.append(self._finish(conv, upper) + tail)
        return results

    @staticmethod
    def _dangling_pronoun(toks, g: _Seg) -> bool:
        if toks[g.a].lower in {"its", "his", "her", "their"}:
            return True  # "Its siren then an emergency vehicle's engine"
        if g.subj is None or g.pronoun:
            return False
        words = [t.lower for t in toks[g.subj[0]:g.subj[1]]]
        return len(words) == 1 and words[0] in {"it", "he", "she", "they", "him", "her", "them"}

    # connective search -----------------------------------------------------------------
    @staticmethod
    def _joined(toks: list[Tok], a: int, b: int) -> tuple[str, list[int]]:
        starts, parts, pos = [], [], 0
        for t in toks[a:b]:
            starts.append(pos)
            parts.append(t.lower)
            pos += len(t.lower) + 1
        return " ".join(parts), starts

    @staticmethod
    def _tok_at(starts: list[int], base: int, offset: int, end: int) -> int:
        """Index of the first token starting at or after char `offset` of the joined string."""
        for k, st in enumerate(starts):
            if st >= offset:
                return base + k
        return end

    def _find_connectives(self, toks, head, end, low, starts, s) -> list[_Conn]:
        off0 = starts[head - s]
        found = []
        for prio, spec in enumerate(_CONNECTIVES):
            for m in spec.pattern.finditer(low, off0):
                a = self._tok_at(starts, s, m.start(), end)
                b = self._tok_at(starts, s, m.end() + 1, end)
                if a >= end or starts[a - s] != m.start():
                    continue
                found.append((a, b, prio, spec))
        found.sort(key=lambda x: (x[0], -(x[1] - x[0]), x[2]))
        chosen: list[_Conn] = []
        last_end = head
        for a, b, _, spec in found:
            if a < last_end or a <= head or b >= end:
                continue
            if not self._conn_ok(toks, head, end, a, b, spec, chosen):
                continue
            chosen.append(_Conn(a, b, spec, spec.kind))
            last_end = b
        return chosen

    def _conn_ok(self, toks, head, end, a, b, spec, chosen) -> bool:
        left_a = chosen[-1].b if chosen else head
        left = toks[left_a:a]
        right = toks[b:end]
        if not any(t.is_event for t in left) or not any(t.is_event for t in right):
            return False
        nxt = toks[b]
        prv = toks[a - 1]
        kind = spec.kind
        if kind in {"before", "after", "until"}:
            words = [t.lower for t in right[:4]]
            content = [w for w in words if w not in {"a", "an", "the", "short", "brief", "few", "long", "some"}]
            if not content or content[0] in TIME_SPANS or words[0] in {"long", ","}:
                return False
            if prv.lower in {"one", "time", "day", "again", "each", "year", "night", "week"}:
                return False
        if kind in {"ends_with", "begins_with"} and prv.lower in {"is", "are", "was", "were", "being", "been", "be",
                                                               "gets", "get", "got"}:
            return False  # "an engine being started with a key"
        if kind in {"followed_by", "preceded_by", "proceeded_by"} and prv.lower in {"is", "are", "was", "were", "gets",
                                                                             "get", "be", "been", "being"}:
            return False
        if spec.left_nonfinite and kind.startswith("is_"):
            if any(t.tag in FINITE_TAGS or (t.lower in SUBORDINATORS and t.tag in {"IN", "WDT", "WP", "WRB"})
                   for t in left):
                return False
        if kind in {"follows", "precedes", "following"}:
            if nxt.tag not in _NP_START_TAGS or nxt.lower in {"by", "up", "suit", "along", "through"}:
                return False
            if kind == "following" and prv.lower in {"the", "a"}:
                return False
            if kind in {"follows", "precedes"}:
                # subject and object must be plain noun phrases: "Applause follows a short speech"
                if any(t.tag in FINITE_TAGS or t.text == "," for t in left + right):
                    return False
                if chosen:
                    return False
        return True

    def _prefix_split(self, toks, head, end, off, starts, s) -> _Conn | None:
        """"After A, B": a connective covering the comma between A and B (or the gap before B)."""
        kw_end = self._tok_at(starts, s, off + 1, end)
        kw = " ".join(t.lower for t in toks[head:kw_end])
        kw = kw.split()[-1] if not kw.endswith("as soon as") else "as soon as"
        comma = next((k for k in range(kw_end, end) if toks[k].text == ","), None)
        if comma is not None:
            if comma - kw_end < 2 or end - comma < 3:
                return None
            return _Conn(comma, comma + 1, None, "prefix_" + kw, prefix_kw=(head, kw_end))
        # no comma: the main clause starts at the subject of the second finite verb
        verbs = [k for k in range(kw_end, end) if toks[k].tag in FINITE_TAGS]
        if len(verbs) < 2:
            return None
        k = verbs[1]
        j = k - 1
        while j > verbs[0] and (toks[j].is_noun or toks[j].tag in {"DT", "JJ", "PRP$", "CD", "PRP", "HYPH"}):
            j -= 1
        if j + 1 >= k or j + 1 <= verbs[0]:
            return None
        return _Conn(j + 1, j + 1, None, "prefix_" + kw, prefix_kw=(head, kw_end))

    def _trailing_marker_split(self, toks, head, end, low, starts, s) -> _Conn | None:
        """"A man speaks and a woman speaks afterwards": "and" is sequential because of the marker."""
        m = _LAST_TAIL_RX.search(low)
        if not m or m.start() == 0:
            return None
        cut = self._tok_at(starts, s, m.start(), end)
        if cut - head < 3 or toks[cut - 1].lower in {"a", "while", "the", "and"}:
            return None
        for k in range(cut - 1, head, -1):
            t = toks[k]
            if t.lower in {"and", ","} and t.tag in {"CC", ","}:
                a, b = k, k + 1
                if t.text == "," and b < cut and toks[b].lower == "and":
                    b += 1
                if k - 1 > head and toks[k - 1].text == "," and t.lower == "and":
                    a = k - 1
                left, right = self._analyse(toks, head, a), self._analyse(toks, b, cut)
                if left.form in {"FIN", "GER"} and right.form in {"FIN", "GER"} and right.subj is not None:
                    return _Conn(a, b, None, "and_later")
                return None
            if t.lower in SUBORDINATORS and t.tag in {"IN", "WDT", "WP", "WRB"}:
                return None
        return None

    @staticmethod
    def _strip(toks, a, b) -> tuple[int, int]:
        while a < b and (toks[a].is_punct or toks[a].lower in {"and", "but"}):
            a += 1
        while b > a and (toks[b - 1].is_punct or toks[b - 1].lower in {"and", "but"}):
            b -= 1
        return a, b

    @staticmethod
    def _random_perms(n, rng, k):
        seen, out = set(), []
        for _ in range(k * 4):
            p = list(range(n))
            rng.shuffle(p)
            tp = tuple(p)
            if tp not in seen and tp != tuple(range(n)) and tp != tuple(range(n - 1, -1, -1)):
                seen.add(tp)
                out.append(tp)
            if len(out) >= k:
                break
        return out

    # segment analysis -------------------------------------------------------------------
    def _analyse(self, toks: list[Tok], a: int, b: int) -> _Seg:
        g = _Seg(a, b, body=a, lead_end=a)
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
            if t.tag in FINITE_TAGS or (w in _FINITE_AUX and t.tag in VERB_TAGS):
                grp, nxt = self._verb_group(toks, k, b)
                if grp is None:
                    break
                body = k
                while body - 1 > m and toks[body - 1].tag in {"RB", "RBR"}:
                    body -= 1  # "it quickly accelerates": the adverb belongs to the predicate
                g.form = "FIN" if body > m else "VP"
                g.subj = (m, body) if body > m else None
                g.body = body
                g.number = self._subject_number(toks, m, body) if body > m else self._verb_number(toks, grp)
                g.groups = [grp]
                lead_tok = toks[grp.aux[0]] if grp.aux else toks[grp.main]
                g.tense = "past" if _looks_past(lead_tok) else "pres"
                g.prog = toks[grp.main].tag == "VBG" and any(toks[x].lower in _BE for x in grp.aux)
                self._coordinated(toks, g, nxt, b, finite=True)
                return g
            if t.tag == "VBG" and not in_pp:
                if k == m:
                    nt = toks[k + 1] if k + 1 < b else None
                    if nt is not None and nt.tag in {"NN", "NNS"} and (k + 2 >= b or not toks[k + 2].is_noun):
                        break  # "Ringing phone ...": adjectival
                    g.form = "VPG"
                    g.body = k
                    g.groups = [_Group([], k)]
                    self._coordinated(toks, g, k + 1, b, finite=False)
                    return g
                prev = toks[k - 1]
                if (prev.is_noun or prev.tag == "PRP") and not self._sound_head(toks, m, k) and \
                        not self._nominal_gerund(toks, m, k):
                    g.form = "GER"
                    g.subj = (m, k)
                    g.body = k
                    g.number = self._subject_number(toks, m, k)
                    if w == "being" and k + 1 < b and toks[k + 1].tag == "VBN":
                        grp = _Group([k], k + 1)
                    else:
                        grp = _Group([], k)
                    g.groups = [grp]
                    self._coordinated(toks, g, grp.main + 1, b, finite=False)
                    return g
            k += 1
        g.form = "NP"
        return g

    @staticmethod
    def _nominal_gerund(toks, m, k) -> bool:
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

    @staticmethod
    def _sound_head(toks, m, k) -> bool:
        """"The sound of a dog barking": the gerund belongs to the noun inside the of-phrase.

        Only collective heads ("a group of men speaking") make the gerund the phrase's own event.
        """
        for j in range(m, k):
            if toks[j].lower == "of":
                heads = [toks[x].lower for x in range(m, j) if toks[x].is_noun]
                return not heads or heads[-1] not in COLLECTIVE_HEADS or \
                    any(toks[x].lower in SOUND_NOUNS for x in range(m, j))
        return False

    @staticmethod
    def _verb_group(toks, k, b) -> tuple[_Group | None, int]:
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
                return _Group(aux, j), j + 1
            if t.tag in VERB_TAGS:
                return _Group(aux, j), j + 1
            return None, j
        return None, j

    def _coordinated(self, toks, g: _Seg, k: int, b: int, finite: bool) -> None:
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
                if finite and self._finite_here(toks, q, b, g):
                    grp, nxt = self._verb_group(toks, q, b)
                    if grp is not None:
                        if state == "top":
                            grp.number, grp.subj = number, subj
                            g.groups.append(grp)
                        k = nxt
                        continue
                if not finite and self._gerund_here(toks, q, b):
                    if state == "top":
                        g.groups.append(_Group([], q, number, subj))
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
                    if finite and (vt.tag in FINITE_TAGS or (vt.lower in _FINITE_AUX and vt.tag in VERB_TAGS)):
                        grp, nxt = self._verb_group(toks, j, b)
                        if grp is not None:
                            number, subj = self._subject_number(toks, q, j), (q, j)
                            grp.number, grp.subj = number, subj
                            g.groups.append(grp)
                            state = "top"
                            k = nxt
                            continue
                    if not finite and vt.tag == "VBG" and toks[j - 1].is_noun:
                        number, subj = self._subject_number(toks, q, j), (q, j)
                        g.groups.append(_Group([], j, number, subj))
                        state = "top"
                        k = j + 1
                        continue
                if comma:
                    state = "top"
                k = q
                continue
            k += 1

    @staticmethod
    def _finite_here(toks, q, b, g: _Seg) -> bool:
        nt = toks[q]
        if nt.tag in FINITE_TAGS or (nt.lower in _FINITE_AUX and nt.tag in VERB_TAGS):
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

    @staticmethod
    def _gerund_here(toks, q, b) -> bool:
        nt = toks[q]
        if nt.tag == "VBG":
            return True
        if nt.tag in {"NN", "JJ"} and nt.lower.endswith("ing") and len(nt.lower) > 4 and \
                (q + 1 >= b or not toks[q + 1].is_noun) and verb_lemma(nt.lower) in SOUND_VERBS:
            nt.tag = "VBG"
            return True
        return False

    @staticmethod
    def _verb_number(toks, grp: _Group) -> str:
        t = toks[grp.aux[0]] if grp.aux else toks[grp.main]
        if t.tag == "VBP" or t.lower in {"are", "were", "have", "do"}:
            return "pl"
        return "sg"

    @staticmethod
    def _subject_number(toks, a, b) -> str:
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

    # entities (shared subjects, pronouns) ----------------------------------------------
    def _resolve_entities(self, toks, segs: list[_Seg], conns: list[_Conn]) -> list[_Seg]:
        holders: list[_Seg] = []
        last_entity = None
        for idx, g in enumerate(segs):
            if g.form in {"VP", "VPG"}:
                kind = conns[idx - 1].kind if idx > 0 else ""
                prev = segs[idx - 1] if idx > 0 else None
                main = toks[g.groups[0].main] if g.groups else None
                if g.form == "VP" and main is not None and not g.groups[0].aux and \
                        (main.tag == "VBN" or (main.tag == "VBD" and prev is not None and prev.groups and
                                               any(toks[x].lower in _BE for x in prev.groups[-1].aux))):
                    raise ValueError("an elliptical passive ('is started up then turned off')")
                if prev is not None and prev.groups and prev.groups[-1].subj is not None and kind in _ELLIPSIS_OK:
                    # "men speaking and an engine revving then accelerating": the engine accelerates
                    grp = prev.groups[-1]
                    holder = _Seg(grp.subj[0], grp.subj[1], form="FIN", subj=grp.subj,
                                  number=grp.number or "sg")
                    holder.entity = len(holders)
                    holders.append(holder)
                    last_entity = holder.entity
                if last_entity is not None and kind in _ELLIPSIS_OK and prev is not None and prev.entity is not None \
                        and self._clean_tail(toks, prev):
                    g.entity = last_entity
                    g.number = holders[last_entity].number
                elif g.form == "VP":
                    raise ValueError("a subject-less clause whose subject cannot be found")
                else:
                    g.form = "NP"  # "followed by laughing": a gerund phrase, kept as written
                continue
            if g.subj is None:
                continue
            sa, sb = g.subj
            words = [t.lower for t in toks[sa:sb]]
            if len(words) == 1 and words[0] in {"it", "he", "she", "they"} and last_entity is not None and \
                    self._pronoun_fits(toks, words[0], holders[last_entity]):
                g.entity = last_entity
                g.pronoun = True
                continue
            if len(words) >= 2 and words[0] == "the":
                for eid, holder in enumerate(holders):
                    hw = [t.lower for t in toks[holder.subj[0]:holder.subj[1]]]
                    if hw and hw[0] in {"a", "an"} and hw[-1] == words[-1]:
                        g.entity = eid
                        break
                if g.entity is not None:
                    last_entity = g.entity
                    continue
            g.entity = len(holders)
            holders.append(g)
            last_entity = g.entity
        return holders

    @staticmethod
    def _clean_tail(toks, g: _Seg) -> bool:
        """Whether a subject-less clause after `g` can only continue g's last subject.

        False when another subject's verb follows it: "... as smaller dogs bark then whimper".
        """
        if not g.groups:
            return False
        last = g.groups[-1].main
        tail = toks[last + 1:g.b]
        for k, t in enumerate(tail):
            if t.tag in FINITE_TAGS or (t.tag == "VBG" and g.form in {"GER", "VPG"}):
                return False
            if t.lower in SUBORDINATORS and t.tag in {"IN", "WDT", "WP", "WRB"}:
                if k + 1 < len(tail) and tail[k + 1].tag == "VBG":
                    continue  # "while passing a car": same subject
                return False
            if (t.text == "," or t.lower in {"and", "or"}) and k + 1 < len(tail) and \
                    (tail[k + 1].tag in {"DT", "PRP$", "CD", "PRP"} or tail[k + 1].lower == "and"):
                return False  # "..., and an adult male speaks": another subject follows
        return True

    @staticmethod
    def _single_event(toks, g: _Seg) -> bool:
        """One sound source doing one thing: no coordinated subjects, no second clause."""
        if any(grp.subj is not None for grp in g.groups):
            return False
        a, b = g.subj if g.subj is not None else (g.a, g.b)
        if g.form == "NP":
            return not any(t.lower in {"and", ","} or t.tag in FINITE_TAGS for t in toks[a:b])
        return not any(t.lower in {"and", ","} for t in toks[a:b])

    @staticmethod
    def _core(toks, g: _Seg) -> tuple[str | None, str | None]:
        """(head noun, main verb lemma) of a segment: "another man speaking" -> ("man", "speak")."""
        a, b = g.subj if g.subj is not None else (g.a, g.b)
        nouns = [t.lower.rstrip("s") for t in toks[a:b] if t.tag in NOUN_TAGS]
        if g.subj is None:
            nouns = nouns[:1]
        verb = toks[g.groups[0].main].vlemma() if g.groups else None
        return (nouns[-1] if nouns else None), verb

    @staticmethod
    def _pronoun_fits(toks, pronoun: str, holder: _Seg) -> bool:
        """Whether "it"/"he"/"she"/"they" can refer to the subject of `holder`."""
        if holder.subj is None:
            return False
        nouns = [t.lower for t in toks[holder.subj[0]:holder.subj[1]] if t.is_noun]
        if not nouns:
            return False
        person = any(w in PERSON_NOUNS for w in nouns)
        if pronoun == "they":
            return holder.number == "pl"
        if holder.number != "sg":
            return False
        if pronoun == "it":
            return not person
        return person

    @staticmethod
    def _event_key(toks, g: _Seg, holders: list[_Seg]) -> str:
        """What the segment says happens, for telling a real reordering from a no-op.

        Adverbs and words like "again", "another", "more" are left out, and a shared subject counts
        as its entity: "an engine accelerates loudly, then decelerates, then accelerates again"
        reversed is the same sequence of events.
        """
        stop = {"a", "an", "the", "again", "more", "another", "once", "also", "continues", "continue", "to",
                "then", "some", "is", "are", "was", "were", "being", "it", "he", "she", "they", "same",
                "back", "still", "other", "second", "different"}
        start = g.body if g.entity is not None else g.a
        words = []
        if g.entity is not None:  # the subject as its first mention says it ("a man" = "the man" = "he")
            holder = holders[g.entity]
            words = [t.lower[:-1] if t.tag == "NNS" else t.lower for t in toks[holder.subj[0]:holder.subj[1]]
                     if t.lower not in stop and t.tag not in {"DT", "PRP$"}]
        for t in toks[start:g.b]:
            w = t.lower
            if w in stop or t.is_punct or t.tag in {"RB", "RBR", "RBS"}:
                continue
            if t.is_verb:
                w = t.vlemma()
            elif t.tag == "NNS" and w.endswith("s"):
                w = w[:-1]
            words.append(w)
        return " ".join(words)

    # rendering --------------------------------------------------------------------------
    @staticmethod
    def _slot_target(sent: _Sentence, k: int, content: _Seg) -> str:
        slot = sent.segs[k]
        left_conn = sent.conns[k - 1] if k > 0 else None
        right_conn = sent.conns[k] if k < len(sent.conns) else None
        if (left_conn is not None and left_conn.spec is not None and left_conn.spec.right_nonfinite) or \
                (right_conn is not None and right_conn.spec is not None and right_conn.spec.left_nonfinite):
            return "NF"
        if slot.form in {"FIN", "VP"}:
            return "FIN"
        if slot.form in {"GER", "VPG"}:
            return "NF"
        return "FIN" if content.form in {"FIN", "VP"} else "NF"

    def _render(self, sent: _Sentence, perm: tuple[int, ...],
                conn_override: dict[int, Pieces] | None = None) -> Pieces | None:
        toks, segs, conns = sent.toks, sent.segs, sent.conns
        n = len(segs)
        pieces: Pieces = []
        if sent.head > sent.s:
            pieces += self._ws(self._raw(toks, sent.s, sent.head))
        if conns[0].prefix_kw is not None:
            pieces += self._ws(self._raw(toks, *conns[0].prefix_kw))
        mentioned: set[int] = set()
        prev_entity = None
        prev_content: _Seg | None = None
        default_tense = next((g.tense for g in segs if g.form in {"FIN", "VP"}), "pres")
        for k in range(n):
            slot = segs[k]
            c = segs[perm[k]]
            target = self._slot_target(sent, k, c)
            finite_slot = slot.form in {"FIN", "VP"}
            tense = slot.tense if finite_slot else default_tense
            prog = slot.prog if finite_slot else False
            conn_kind = conns[k - 1].kind if k > 0 else ""
            if c.entity is None:
                mode = "own"
            elif k > 0 and prev_entity == c.entity and slot.form in {"VP", "VPG"} and conn_kind in _ELLIPSIS_OK \
                    and prev_content is not None and self._clean_tail(toks, prev_content) and \
                    prev_content.groups[-1].subj is None:
                mode = "omit"
            elif c.entity in mentioned:
                mode = "again"
            else:
                mode = "first"
            if target == "NF" and slot.form == "VPG" and mode != "omit" and c.form != "NP" and \
                    conn_kind in {"before", "after", "until"}:
                # "... before speaking" keeps its gerund; with a subject again: "... before the man speaks"
                target = "FIN"
            seg_pieces = self._render_seg(sent, c, target, tense, prog, mode, first=k == 0)
            if not seg_pieces:
                return None
            if c.entity is not None:
                mentioned.add(c.entity)
            prev_entity = c.entity
            prev_content = c
            pieces += self._ws(seg_pieces)
            if k == 0 and sent.first_tail:
                pieces += self._ws(self._raw(toks, *sent.first_tail))
            if k == n - 1 and sent.last_tail:
                pieces += self._ws(self._raw(toks, *sent.last_tail))
            if k < n - 1:
                cn = conns[k]
                if conn_override and k in conn_override:
                    cp = conn_override[k]
                elif cn.text is not None:
                    cp = cn.text
                else:
                    cp = self._raw(toks, cn.a, cn.b)
                if cn.kind in {"follows", "precedes", "is_followed_by", "is_preceded_by"}:
                    cp = self._agree_conn(sent, cp, c)
                pieces += self._ws(cp)
        return pieces

    @staticmethod
    def _ws(pieces: Pieces) -> Pieces:
        if pieces and not pieces[-1][1]:
            pieces = pieces[:-1] + [(pieces[-1][0], " ")]
        return pieces

    @staticmethod
    def _raw(toks, a, b) -> Pieces:
        return [(t.text, t.ws) for t in toks[a:b]]

    def _agree_conn(self, sent: _Sentence, cp: Pieces, c: _Seg) -> Pieces:
        """"A short speech follows applause": the connective verb agrees with its new subject."""
        if not cp:
            return cp
        text, ws = cp[0]
        low = text.lower()
        number = c.number if c.form != "NP" else self._subject_number(sent.toks, c.a, c.b)
        if low in {"follows", "follow", "precedes", "precede"}:
            lemma = "follow" if low.startswith("follow") else "precede"
            cp = [(lemma + "s" if number == "sg" else lemma, ws)] + cp[1:]
        elif low in {"is", "are", "was", "were"}:
            cp = [(be_form(number, "past" if low in {"was", "were"} else "pres"), ws)] + cp[1:]
        elif low in {"gets", "get"}:
            cp = [("gets" if number == "sg" else "get", ws)] + cp[1:]
        return cp

    def _subject(self, sent: _Sentence, c: _Seg, mode: str) -> Pieces:
        """The subject to write for content `c`: its own, the entity's first mention, a re-mention."""
        toks = sent.toks
        if mode == "omit":
            return []
        if mode == "own" or c.entity is None:
            return self._raw(toks, *c.subj) if c.subj else []
        holder = sent.holders[c.entity]
        if mode == "first":
            return self._raw(toks, *holder.subj)
        # re-mention
        if c.subj is not None and c is not holder:
            return self._raw(toks, *c.subj)      # its own pronoun / "the man"
        for g in sent.segs:
            if g.entity == c.entity and g.pronoun and g.subj is not None:
                return [(toks[g.subj[0]].lower, " ")]
        raw = self._raw(toks, *holder.subj)
        if raw and raw[0][0].lower() in {"a", "an"}:
            raw = [("the", raw[0][1])] + raw[1:]
        return raw

    def _render_seg(self, sent: _Sentence, c: _Seg, target: str, tense: str, prog: bool, mode: str,
                    first: bool = True) -> Pieces:
        """Pieces for content `c` in a slot that wants `target` ("FIN" finite or "NF" non-finite)."""
        toks = sent.toks
        if c.there is not None:
            if target == "NF":
                return self._raw(toks, c.a, c.there[0]) + self._raw(toks, c.there[1], c.b)
            return self._raw(toks, c.a, c.b)
        lead = self._raw(toks, c.a, c.lead_end)
        if lead and not first:
            # "As music plays, a person sands" inside a sentence: the fronted clause goes after it
            while lead and lead[-1][0] in {",", ";"}:
                lead = lead[:-1]
            lead = [(decapitalize(lead[0][0], toks[c.a].tag), lead[0][1])] + lead[1:] if lead else lead
        if c.form == "NP":
            main = self._raw(toks, c.lead_end, c.b)
        else:
            subj = self._subject(sent, c, mode)
            main = (self._ws(subj) if subj else []) + self._convert(sent, c, target, tense, prog)
        if not lead:
            return main
        return lead + main if first else self._ws(main) + lead

    def _convert(self, sent: _Sentence, c: _Seg, target: str, tense: str, prog: bool) -> Pieces:
        """The predicate of `c` (c.body .. c.b) with its top-level verbs in the target form."""
        toks = sent.toks
        finite_now = c.form in {"FIN", "VP"}
        repl: dict[int, str | None] = {}
        if target == "NF" and finite_now:
            for grp in c.groups:
                self._to_nonfinite(toks, grp, repl)
        elif target == "FIN" and not finite_now:
            for grp in c.groups:
                self._to_finite(toks, grp, repl, grp.number or c.number, tense, prog)
        out: Pieces = []
        for k in range(c.body, c.b):
            if k in repl:
                r = repl[k]
                if r is not None:
                    out.append((r, toks[k].ws or " "))
            else:
                out.append((toks[k].text, toks[k].ws))
        return out

    @staticmethod
    def _to_nonfinite(toks, grp: _Group, repl) -> None:
        main = toks[grp.main]
        aux = [toks[x].lower for x in grp.aux]
        has_be = any(w in _BE for w in aux)
        if main.tag == "VBG" and (has_be or not aux):
            for x in grp.aux:
                repl[x] = None
            return
        if main.tag == "VBN" and (has_be or "being" in aux):
            keep = grp.aux.index(next(x for x in grp.aux if toks[x].lower == "being")) if "being" in aux else None
            for i, x in enumerate(grp.aux):
                repl[x] = None
            if keep is not None:
                repl.pop(grp.aux[keep])
            else:
                repl[grp.aux[-1]] = "being"
            return
        for x in grp.aux:
            repl[x] = None
        repl[grp.main] = gerund(main.vlemma())

    @staticmethod
    def _to_finite(toks, grp: _Group, repl, number: str, tense: str, prog: bool) -> None:
        main = toks[grp.main]
        if grp.aux and toks[grp.aux[0]].lower == "being":  # "being used" -> "is used"
            repl[grp.aux[0]] = be_form(number, tense)
            return
        if not main.lower.endswith("ing"):
            return
        if prog:
            repl[grp.main] = be_form(number, tense) + " " + main.text
            return
        lemma = main.vlemma()
        if tense == "past":
            repl[grp.main] = inflect(lemma, "VBD")
        else:
            repl[grp.main] = inflect(lemma, "VBZ" if number == "sg" else "VBP")

    @staticmethod
    def _finish(pieces: Pieces, upper: bool) -> Pieces:
        if pieces and upper:
            pieces = [(capitalize_first(pieces[0][0]), pieces[0][1])] + list(pieces[1:])
        return pieces

    # special shapes ------------------------------------------------------------------------
    def _canonical(self, sent: _Sentence) -> Pieces | None:
        """"A man speaks and ends with a laugh": say the reversed order with "followed by"."""
        if len(sent.segs) != 2 or sent.conns[0].kind not in {"ends_with", "begins_with"}:
            return None
        left = sent.segs[0]
        if left.form not in {"FIN", "GER", "VP"}:
            return None  # "A song ends with applause" swaps like any other connective
        fb: Pieces = [("followed", " "), ("by", " ")]
        saved = sent.conns[0].spec
        sent.conns[0].spec = _FOLLOWED_BY
        try:
            perm = (1, 0) if sent.conns[0].kind == "ends_with" else (0, 1)
            return self._render(sent, perm, conn_override={0: fb})
        finally:
            sent.conns[0].spec = saved

    def _converse(self, sent: _Sentence) -> Pieces | None:
        """Same mention order, converse connective: "A after B" for "A then B"."""
        toks, (left, right), conn = sent.toks, sent.segs, sent.conns[0]
        if conn.kind.startswith("prefix_"):
            word = _PREFIX_CONVERSE.get(conn.kind[len("prefix_"):])
            if word is None:
                return None
            return [(word, " ")] + self._raw(toks, conn.prefix_kw[1], right.b)
        new = _CONVERSE.get(conn.kind)
        if new is None or conn.spec is None or conn.spec.direction == 0:
            return None
        if left.entity is not None and right.entity == left.entity and right.pronoun:
            return None  # "A machine spins until it stops": keep it simple
        pieces = self._ws(self._raw(toks, left.a, left.b))
        pieces.append((new, " ")) if " " not in new else pieces.extend((w, " ") for w in new.split())
        if conn.kind in {"is_followed_by", "is_preceded_by"}:
            swap = {"followed": "preceded", "preceded": "followed"}
            cp = [(swap.get(t.lower, t.text), t.ws or " ") for t in toks[conn.a:conn.b]]
            return self._ws(self._raw(toks, left.a, left.b)) + cp + self._raw(toks, right.a, right.b)
        if new in {"after", "before"}:
            if right.form == "GER" and left.form in {"FIN", "VP"}:
                body = self._render_seg(sent, right, "FIN", left.tense, False, "own", first=False)
            elif right.form == "VP":
                body = self._convert(sent, right, "NF", left.tense, False)
            elif right.lead_end > right.a:
                body = self._render_seg(sent, right, "FIN" if right.form == "FIN" else "NF", left.tense, False,
                                        "own", first=False)
            else:
                body = self._raw(toks, right.a, right.b)
            return pieces + body
        return pieces + self._raw(toks, right.a, right.b)
