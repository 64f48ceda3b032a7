"""Order negatives, rendering: write a permutation of a sentence's segments back as text.

A segment moved to another slot takes the grammatical form that slot needs (finite clause or
gerund / noun phrase), with verbs re-inflected and shared subjects re-mentioned.
"""

from __future__ import annotations

from dataclasses import dataclass

from compclap.text.inflect import be_form, gerund, inflect
from compclap.text.order_connectives import CONVERSE, ELLIPSIS_OK, FOLLOWED_BY, PREFIX_CONVERSE, Conn, Pieces
from compclap.text.order_entities import clean_tail
from compclap.text.order_segments import BE, Group, Seg, subject_number
from compclap.text.tokens import Tok, capitalize_first, decapitalize


@dataclass
class Sentence:
    """What the renderer needs about one sentence."""

    toks: list[Tok]
    s: int
    head: int
    segs: list[Seg]
    conns: list[Conn]
    first_tail: tuple[int, int] | None
    last_tail: tuple[int, int] | None
    holders: list[Seg]


# rendering --------------------------------------------------------------------------
def slot_target(sent: Sentence, k: int, content: Seg) -> str:
    """The form slot k needs for `content`: "FIN" (finite clause) or "NF" (noun phrase / gerund)."""
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


def render(sent: Sentence, perm: tuple[int, ...],
           conn_override: dict[int, Pieces] | None = None) -> Pieces | None:
    """The sentence with segment perm[k] written in slot k (None when a segment cannot take its slot's form)."""
    toks, segs, conns = sent.toks, sent.segs, sent.conns
    n = len(segs)
    pieces: Pieces = []
    if sent.head > sent.s:
        pieces += with_space(raw_pieces(toks, sent.s, sent.head))
    if conns[0].prefix_kw is not None:
        pieces += with_space(raw_pieces(toks, *conns[0].prefix_kw))
    mentioned: set[int] = set()
    prev_entity = None
    prev_content: Seg | None = None
    default_tense = next((g.tense for g in segs if g.form in {"FIN", "VP"}), "pres")
    for k in range(n):
        slot = segs[k]
        c = segs[perm[k]]
        target = slot_target(sent, k, c)
        finite_slot = slot.form in {"FIN", "VP"}
        tense = slot.tense if finite_slot else default_tense
        prog = slot.prog if finite_slot else False
        conn_kind = conns[k - 1].kind if k > 0 else ""
        if c.entity is None:
            mode = "own"
        elif k > 0 and prev_entity == c.entity and slot.form in {"VP", "VPG"} and conn_kind in ELLIPSIS_OK \
                and prev_content is not None and clean_tail(toks, prev_content) and \
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
        seg_pieces = render_seg(sent, c, target, tense, prog, mode, first=k == 0)
        if not seg_pieces:
            return None
        if c.entity is not None:
            mentioned.add(c.entity)
        prev_entity = c.entity
        prev_content = c
        pieces += with_space(seg_pieces)
        if k == 0 and sent.first_tail:
            pieces += with_space(raw_pieces(toks, *sent.first_tail))
        if k == n - 1 and sent.last_tail:
            pieces += with_space(raw_pieces(toks, *sent.last_tail))
        if k < n - 1:
            cn = conns[k]
            if conn_override and k in conn_override:
                cp = conn_override[k]
            elif cn.text is not None:
                cp = cn.text
            else:
                cp = raw_pieces(toks, cn.a, cn.b)
            if cn.kind in {"follows", "precedes", "is_followed_by", "is_preceded_by"}:
                cp = agree_conn(sent, cp, c)
            pieces += with_space(cp)
    return pieces


def with_space(pieces: Pieces) -> Pieces:
    """Pieces whose last piece is followed by a space."""
    if pieces and not pieces[-1][1]:
        pieces = pieces[:-1] + [(pieces[-1][0], " ")]
    return pieces


def raw_pieces(toks: list[Tok], a: int, b: int) -> Pieces:
    """Tokens [a, b) as written."""
    return [(t.text, t.ws) for t in toks[a:b]]


def agree_conn(sent: Sentence, cp: Pieces, c: Seg) -> Pieces:
    """"A short speech follows applause": the connective verb agrees with its new subject."""
    if not cp:
        return cp
    text, ws = cp[0]
    low = text.lower()
    number = c.number if c.form != "NP" else subject_number(sent.toks, c.a, c.b)
    if low in {"follows", "follow", "precedes", "precede"}:
        lemma = "follow" if low.startswith("follow") else "precede"
        cp = [(lemma + "s" if number == "sg" else lemma, ws)] + cp[1:]
    elif low in {"is", "are", "was", "were"}:
        cp = [(be_form(number, "past" if low in {"was", "were"} else "pres"), ws)] + cp[1:]
    elif low in {"gets", "get"}:
        cp = [("gets" if number == "sg" else "get", ws)] + cp[1:]
    return cp


def subject_pieces(sent: Sentence, c: Seg, mode: str) -> Pieces:
    """The subject to write for content `c`: its own, the entity's first mention, a re-mention."""
    toks = sent.toks
    if mode == "omit":
        return []
    if mode == "own" or c.entity is None:
        return raw_pieces(toks, *c.subj) if c.subj else []
    holder = sent.holders[c.entity]
    if mode == "first":
        return raw_pieces(toks, *holder.subj)
    # re-mention
    if c.subj is not None and c is not holder:
        return raw_pieces(toks, *c.subj)      # its own pronoun / "the man"
    for g in sent.segs:
        if g.entity == c.entity and g.pronoun and g.subj is not None:
            return [(toks[g.subj[0]].lower, " ")]
    raw = raw_pieces(toks, *holder.subj)
    if raw and raw[0][0].lower() in {"a", "an"}:
        raw = [("the", raw[0][1])] + raw[1:]
    return raw


def render_seg(sent: Sentence, c: Seg, target: str, tense: str, prog: bool, mode: str,
               first: bool = True) -> Pieces:
    """Pieces for content `c` in a slot that wants `target` ("FIN" finite or "NF" non-finite)."""
    toks = sent.toks
    if c.there is not None:
        if target == "NF":
            return raw_pieces(toks, c.a, c.there[0]) + raw_pieces(toks, c.there[1], c.b)
        return raw_pieces(toks, c.a, c.b)
    lead = raw_pieces(toks, c.a, c.lead_end)
    if lead and not first:
        # "As music plays, a person sands" inside a sentence: the fronted clause goes after it
        while lead and lead[-1][0] in {",", ";"}:
            lead = lead[:-1]
        lead = [(decapitalize(lead[0][0], toks[c.a].tag), lead[0][1])] + lead[1:] if lead else lead
    if c.form == "NP":
        main = raw_pieces(toks, c.lead_end, c.b)
    else:
        subj = subject_pieces(sent, c, mode)
        main = (with_space(subj) if subj else []) + convert_predicate(sent, c, target, tense, prog)
    if not lead:
        return main
    return lead + main if first else with_space(main) + lead


def convert_predicate(sent: Sentence, c: Seg, target: str, tense: str, prog: bool) -> Pieces:
    """The predicate of `c` (c.body .. c.b) with its top-level verbs in the target form."""
    toks = sent.toks
    finite_now = c.form in {"FIN", "VP"}
    repl: dict[int, str | None] = {}
    if target == "NF" and finite_now:
        for grp in c.groups:
            to_nonfinite(toks, grp, repl)
    elif target == "FIN" and not finite_now:
        for grp in c.groups:
            to_finite(toks, grp, repl, grp.number or c.number, tense, prog)
    out: Pieces = []
    for k in range(c.body, c.b):
        if k in repl:
            r = repl[k]
            if r is not None:
                out.append((r, toks[k].ws or " "))
        else:
            out.append((toks[k].text, toks[k].ws))
    return out


def to_nonfinite(toks: list[Tok], grp: Group, repl: dict[int, str | None]) -> None:
    """Record in `repl` the edits that turn a finite verb group into a gerund ("is barking" -> "barking")."""
    main = toks[grp.main]
    aux = [toks[x].lower for x in grp.aux]
    has_be = any(w in BE for w in aux)
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


def to_finite(toks: list[Tok], grp: Group, repl: dict[int, str | None], number: str, tense: str,
              prog: bool) -> None:
    """Record in `repl` the edits that turn a gerund into a finite verb ("barking" -> "barks")."""
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


def finish(pieces: Pieces, upper: bool) -> Pieces:
    """Capitalise the first piece when the sentence started with a capital."""
    if pieces and upper:
        pieces = [(capitalize_first(pieces[0][0]), pieces[0][1])] + list(pieces[1:])
    return pieces


# special shapes ------------------------------------------------------------------------
def canonical(sent: Sentence) -> Pieces | None:
    """"A man speaks and ends with a laugh": say the reversed order with "followed by"."""
    if len(sent.segs) != 2 or sent.conns[0].kind not in {"ends_with", "begins_with"}:
        return None
    left = sent.segs[0]
    if left.form not in {"FIN", "GER", "VP"}:
        return None  # "A song ends with applause" swaps like any other connective
    fb: Pieces = [("followed", " "), ("by", " ")]
    saved = sent.conns[0].spec
    sent.conns[0].spec = FOLLOWED_BY
    try:
        perm = (1, 0) if sent.conns[0].kind == "ends_with" else (0, 1)
        return render(sent, perm, conn_override={0: fb})
    finally:
        sent.conns[0].spec = saved


def converse(sent: Sentence) -> Pieces | None:
    """Same mention order, converse connective: "A after B" for "A then B"."""
    toks, (left, right), conn = sent.toks, sent.segs, sent.conns[0]
    if conn.kind.startswith("prefix_"):
        word = PREFIX_CONVERSE.get(conn.kind[len("prefix_"):])
        if word is None:
            return None
        return [(word, " ")] + raw_pieces(toks, conn.prefix_kw[1], right.b)
    new = CONVERSE.get(conn.kind)
    if new is None or conn.spec is None or conn.spec.direction == 0:
        return None
    if left.entity is not None and right.entity == left.entity and right.pronoun:
        return None  # "A machine spins until it stops": keep it simple
    pieces = with_space(raw_pieces(toks, left.a, left.b))
    pieces.append((new, " ")) if " " not in new else pieces.extend((w, " ") for w in new.split())
    if conn.kind in {"is_followed_by", "is_preceded_by"}:
        swap = {"followed": "preceded", "preceded": "followed"}
        cp = [(swap.get(t.lower, t.text), t.ws or " ") for t in toks[conn.a:conn.b]]
        return with_space(raw_pieces(toks, left.a, left.b)) + cp + raw_pieces(toks, right.a, right.b)
    if new in {"after", "before"}:
        if right.form == "GER" and left.form in {"FIN", "VP"}:
            body = render_seg(sent, right, "FIN", left.tense, False, "own", first=False)
        elif right.form == "VP":
            body = convert_predicate(sent, right, "NF", left.tense, False)
        elif right.lead_end > right.a:
            body = render_seg(sent, right, "FIN" if right.form == "FIN" else "NF", left.tense, False,
                              "own", first=False)
        else:
            body = raw_pieces(toks, right.a, right.b)
        return pieces + body
    return pieces + raw_pieces(toks, right.a, right.b)
