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

The work is split by concern: :mod:`compclap.text.order_connectives` (where a sentence is cut),
:mod:`compclap.text.order_segments` (the shape of each event segment),
:mod:`compclap.text.order_entities` (shared subjects, pronouns, event identity) and
:mod:`compclap.text.order_render` (writing a permutation back as text); this module drives them.
"""

from __future__ import annotations

import itertools
import random

from compclap.text.inflect import verb_lemma
from compclap.text.lexicon import SOUND_VERBS
from compclap.text.order_connectives import (
    ELLIPSIS_OK,
    FIRST_RX,
    FIRST_TAIL_RX,
    LAST_TAIL_RX,
    ORDER_TRIGGER,
    PREFIX,
    Conn,
    Pieces,
    find_connectives,
    joined_lower,
    prefix_split,
    strip_segment,
    tok_at,
    trailing_marker_split,
)
from compclap.text.order_entities import dangling_pronoun, event_core, event_key, resolve_entities, single_event
from compclap.text.order_render import Sentence, canonical, converse, finish, render
from compclap.text.order_segments import analyse
from compclap.text.tokens import FINITE_TAGS, Tok, decapitalize, join_pieces, sentence_spans

__all__ = ["ORDER_TRIGGER", "OrderRewriter"]


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
        """Order negatives of the sentence [s, e) as pieces, best first (the full reversal first)."""
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
        low, starts = joined_lower(toks, s, end)

        head = s
        m = FIRST_RX.match(low)
        if m:
            head = tok_at(starts, s, m.end(), end)
            if head >= end:
                return []
        conns: list[Conn] = []
        seg_start = head
        m = PREFIX.match(low[starts[head - s]:])
        if m:
            prefix = prefix_split(toks, head, end, starts[head - s] + m.end(), starts, s)
            if prefix is None:
                return []
            conns = [prefix]
            seg_start = prefix.prefix_kw[1]
        else:
            conns = find_connectives(toks, head, end, low, starts, s)
            if not conns:
                tr = trailing_marker_split(toks, head, end, low, starts, s)
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
            sl, ss = joined_lower(toks, a, b)
            mm = FIRST_TAIL_RX.search(sl)
            if mm and mm.start() > 0:
                cut = tok_at(ss, a, mm.start(), b)
                first_tail = (cut, b)
                segs_raw[0][1] = cut
        a, b = segs_raw[-1]
        sl, ss = joined_lower(toks, a, b)
        mm = LAST_TAIL_RX.search(sl)
        if mm and mm.start() > 0:
            cut = tok_at(ss, a, mm.start(), b)
            last_tail = (cut, b)
            segs_raw[-1][1] = cut

        segs = []
        for a, b in segs_raw:
            a, b = strip_segment(toks, a, b)
            if b <= a:
                return []
            if segs and toks[a].tag in {"NN", "NNS", "VB", "JJ", "NNP"} and conns[len(segs) - 1].kind in ELLIPSIS_OK \
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
            segs.append(analyse(toks, a, b))
        if not all(any(t.is_event for t in toks[g.a:g.b]) for g in segs):
            return []
        holders = resolve_entities(toks, segs, conns)
        for g in segs:
            g.key = event_key(toks, g, holders)
            g.repeat = any(t.lower in {"another", "again", "more", "other", "second", "continues", "resumes"}
                           for t in toks[g.a:g.b])
        sent = Sentence(toks, s, head, segs, conns, first_tail, last_tail, holders)

        n = len(segs)
        results: list[Pieces] = []
        canon = canonical(sent)
        if canon is not None:
            results.append(finish(canon, upper) + tail)
            return results
        rev = tuple(range(n - 1, -1, -1))
        perms: list[tuple[int, ...]] = [rev]
        if n >= 3:
            if n <= 6:
                others = [p for p in itertools.permutations(range(n)) if p != rev and p != tuple(range(n))]
            else:
                others = _random_perms(n, rng, self.max_permutations)
            rng.shuffle(others)
            perms += others[: self.max_permutations]
        orig_keys = [g.key for g in segs]
        cores = [event_core(toks, g) for g in segs]
        simple = [single_event(toks, g) for g in segs]
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
            if dangling_pronoun(toks, segs[perm[0]]):
                continue
            pieces = render(sent, perm)
            if pieces is None:
                continue
            results.append(finish(pieces, upper) + tail)
        if n == 2 and first_tail is None and last_tail is None and head == s and orig_keys[0] != orig_keys[1]:
            conv = converse(sent)
            if conv is not None:
                results.append(finish(conv, upper) + tail)
        return results


def _random_perms(n: int, rng: random.Random, k: int) -> list[tuple[int, ...]]:
    """Up to k distinct random permutations of range(n), neither the identity nor the reversal."""
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
