"""Order negatives, connectives: the sequential connectives of a sentence and where they cut it.

Regexes run over the sentence's lower-cased tokens joined by single spaces. Sequential connectives
("followed by", "then", "before", "after", ...) cut a sentence into event segments; simultaneous
relations ("while", "as", "with", "and", "over", ...) never cut.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from compclap.text.lexicon import FIRST_MARKERS, LAST_MARKERS, SUBORDINATORS, TIME_SPANS
from compclap.text.order_segments import analyse
from compclap.text.tokens import FINITE_TAGS, Tok

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
class ConnSpec:
    """One sequential connective: its pattern and what it says about the order of its two sides."""

    kind: str
    pattern: re.Pattern
    direction: int          # +1: left happens first; -1: right first; 0: unknown (swap only)
    right_nonfinite: bool   # the right side must be a noun phrase / gerund ("followed by X")
    left_nonfinite: bool = False  # the left side is a subject noun phrase ("X follows Y")


def _c(kind: str, rx: str, direction: int, right_nf: bool, left_nf: bool = False) -> ConnSpec:
    """A ConnSpec whose pattern matches whole words only."""
    return ConnSpec(kind, re.compile(r"(?<!\S)" + rx + r"(?!\S)"), direction, right_nf, left_nf)


CONNECTIVES: tuple[ConnSpec, ...] = (
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
FOLLOWED_BY = CONNECTIVES[0]

# Every connective and marker above contains one of these words: a sentence without any of them has
# no sequential relation (used to skip work, and to skip parsing captions altogether).
ORDER_TRIGGER = re.compile(
    r"\b(?:follow\w*|then|before|after\w*|later|finally|eventually|preced\w*|proceed\w*|succeed\w*|trailed|"
    r"until|till|untill|end|ends|ending|ended|finish\w*|conclud\w*|begin\w*|began|start\w*|next|first\w*|"
    r"initially|once|thereafter|subsequently|lastly|last|whereupon|soon)\b")

PREFIX = re.compile(r"^(?:(?:just|right|shortly|soon|immediately|not long) )?(?:after|before|following|once|"
                    r"as soon as)(?!\S)")
FIRST_RX = re.compile(r"^(?:" + "|".join(re.escape(m) for m in FIRST_MARKERS) + r")(?: ,)?(?!\S)")
FIRST_TAIL_RX = re.compile(r"(?<!\S)(?:" + "|".join(re.escape(m) for m in FIRST_MARKERS) + r")$")
LAST_TAIL_RX = re.compile(r"(?<!\S)(?:" + "|".join(re.escape(m) for m in LAST_MARKERS) + r")$")

# Converse connective for two events kept in mention order ("A then B" -> "A after B").
CONVERSE = {"then": "after", "later": "after", "followed_by": "after", "before": "after", "after": "before",
            "preceded_by": "followed by", "following": "before", "is_followed_by": "is preceded by",
            "is_preceded_by": "is followed by"}
PREFIX_CONVERSE = {"after": "before", "before": "after", "following": "before", "once": "before",
                   "as soon as": "before"}
# Connectives after which a subject-less segment continues the previous segment's subject.
ELLIPSIS_OK = frozenset({"then", "later", "before", "after", "until", "and_later"})
_NP_START_TAGS = frozenset({"DT", "JJ", "JJR", "JJS", "NN", "NNS", "NNP", "NNPS", "PRP$", "CD", "PRP", "VBG"})


@dataclass
class Conn:
    """A connective found in a sentence: token span [a, b) between two segments."""

    a: int
    b: int
    spec: ConnSpec | None
    kind: str
    text: Pieces | None = None            # replacement text (synthetic connectives)
    prefix_kw: tuple[int, int] | None = None  # "After" of a fronted clause


# connective search -----------------------------------------------------------------
def joined_lower(toks: list[Tok], a: int, b: int) -> tuple[str, list[int]]:
    """Tokens [a, b) lower-cased and joined by single spaces, and each token's start offset."""
    starts, parts, pos = [], [], 0
    for t in toks[a:b]:
        starts.append(pos)
        parts.append(t.lower)
        pos += len(t.lower) + 1
    return " ".join(parts), starts


def tok_at(starts: list[int], base: int, offset: int, end: int) -> int:
    """Index of the first token starting at or after char `offset` of the joined string."""
    k = bisect_left(starts, offset)  # starts is strictly increasing
    return base + k if k < len(starts) else end


def find_connectives(toks: list[Tok], head: int, end: int, low: str, starts: list[int], s: int) -> list[Conn]:
    """Non-overlapping sequential connectives of the sentence [s, end), searched from token `head`."""
    off0 = starts[head - s]
    found = []
    for prio, spec in enumerate(CONNECTIVES):
        for m in spec.pattern.finditer(low, off0):
            a = tok_at(starts, s, m.start(), end)
            b = tok_at(starts, s, m.end() + 1, end)
            if a >= end or starts[a - s] != m.start():
                continue
            found.append((a, b, prio, spec))
    found.sort(key=lambda x: (x[0], -(x[1] - x[0]), x[2]))
    chosen: list[Conn] = []
    last_end = head
    for a, b, _, spec in found:
        if a < last_end or a <= head or b >= end:
            continue
        if not conn_ok(toks, head, end, a, b, spec, chosen):
            continue
        chosen.append(Conn(a, b, spec, spec.kind))
        last_end = b
    return chosen


def conn_ok(toks: list[Tok], head: int, end: int, a: int, b: int, spec: ConnSpec, chosen: list[Conn]) -> bool:
    """Whether a match at [a, b) really joins two events (not "one time before", "is followed by")."""
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


def prefix_split(toks: list[Tok], head: int, end: int, off: int, starts: list[int], s: int) -> Conn | None:
    """"After A, B": a connective covering the comma between A and B (or the gap before B)."""
    kw_end = tok_at(starts, s, off + 1, end)
    kw = " ".join(t.lower for t in toks[head:kw_end])
    kw = kw.split()[-1] if not kw.endswith("as soon as") else "as soon as"
    comma = next((k for k in range(kw_end, end) if toks[k].text == ","), None)
    if comma is not None:
        if comma - kw_end < 2 or end - comma < 3:
            return None
        return Conn(comma, comma + 1, None, "prefix_" + kw, prefix_kw=(head, kw_end))
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
    return Conn(j + 1, j + 1, None, "prefix_" + kw, prefix_kw=(head, kw_end))


def trailing_marker_split(toks: list[Tok], head: int, end: int, low: str, starts: list[int],
                          s: int) -> Conn | None:
    """"A man speaks and a woman speaks afterwards": "and" is sequential because of the marker."""
    m = LAST_TAIL_RX.search(low)
    if not m or m.start() == 0:
        return None
    cut = tok_at(starts, s, m.start(), end)
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
            left, right = analyse(toks, head, a), analyse(toks, b, cut)
            if left.form in {"FIN", "GER"} and right.form in {"FIN", "GER"} and right.subj is not None:
                return Conn(a, b, None, "and_later")
            return None
        if t.lower in SUBORDINATORS and t.tag in {"IN", "WDT", "WP", "WRB"}:
            return None
    return None


def strip_segment(toks: list[Tok], a: int, b: int) -> tuple[int, int]:
    """[a, b) without leading / trailing punctuation and "and" / "but"."""
    while a < b and (toks[a].is_punct or toks[a].lower in {"and", "but"}):
        a += 1
    while b > a and (toks[b - 1].is_punct or toks[b - 1].lower in {"and", "but"}):
        b -= 1
    return a, b
