"""Order negatives, entities: shared subjects and pronouns across segments, and event identity."""

from __future__ import annotations

from compclap.text.lexicon import PERSON_NOUNS, SUBORDINATORS
from compclap.text.order_connectives import ELLIPSIS_OK, Conn
from compclap.text.order_segments import BE, Seg
from compclap.text.tokens import FINITE_TAGS, NOUN_TAGS, Tok


# entities (shared subjects, pronouns) ----------------------------------------------
def resolve_entities(toks: list[Tok], segs: list[Seg], conns: list[Conn]) -> list[Seg]:
    """Link segments that share a subject (ellipsis, pronouns, "the" re-mentions); one holder per entity.

    Raises ValueError for shapes the renderer cannot handle (an elliptical passive, a lost subject).
    """
    holders: list[Seg] = []
    last_entity = None
    for idx, g in enumerate(segs):
        if g.form in {"VP", "VPG"}:
            kind = conns[idx - 1].kind if idx > 0 else ""
            prev = segs[idx - 1] if idx > 0 else None
            main = toks[g.groups[0].main] if g.groups else None
            if g.form == "VP" and main is not None and not g.groups[0].aux and \
                    (main.tag == "VBN" or (main.tag == "VBD" and prev is not None and prev.groups and
                                           any(toks[x].lower in BE for x in prev.groups[-1].aux))):
                raise ValueError("an elliptical passive ('is started up then turned off')")
            if prev is not None and prev.groups and prev.groups[-1].subj is not None and kind in ELLIPSIS_OK:
                # "men speaking and an engine revving then accelerating": the engine accelerates
                grp = prev.groups[-1]
                holder = Seg(grp.subj[0], grp.subj[1], form="FIN", subj=grp.subj, number=grp.number or "sg")
                holder.entity = len(holders)
                holders.append(holder)
                last_entity = holder.entity
            if last_entity is not None and kind in ELLIPSIS_OK and prev is not None and prev.entity is not None \
                    and clean_tail(toks, prev):
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
                pronoun_fits(toks, words[0], holders[last_entity]):
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


def clean_tail(toks: list[Tok], g: Seg) -> bool:
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


def single_event(toks: list[Tok], g: Seg) -> bool:
    """One sound source doing one thing: no coordinated subjects, no second clause."""
    if any(grp.subj is not None for grp in g.groups):
        return False
    a, b = g.subj if g.subj is not None else (g.a, g.b)
    if g.form == "NP":
        return not any(t.lower in {"and", ","} or t.tag in FINITE_TAGS for t in toks[a:b])
    return not any(t.lower in {"and", ","} for t in toks[a:b])


def event_core(toks: list[Tok], g: Seg) -> tuple[str | None, str | None]:
    """(head noun, main verb lemma) of a segment: "another man speaking" -> ("man", "speak")."""
    a, b = g.subj if g.subj is not None else (g.a, g.b)
    nouns = [t.lower.rstrip("s") for t in toks[a:b] if t.tag in NOUN_TAGS]
    if g.subj is None:
        nouns = nouns[:1]
    verb = toks[g.groups[0].main].vlemma() if g.groups else None
    return (nouns[-1] if nouns else None), verb


def pronoun_fits(toks: list[Tok], pronoun: str, holder: Seg) -> bool:
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


def event_key(toks: list[Tok], g: Seg, holders: list[Seg]) -> str:
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


def dangling_pronoun(toks: list[Tok], g: Seg) -> bool:
    """Whether segment g, put first, would start with a pronoun that refers to nothing before it."""
    if toks[g.a].lower in {"its", "his", "her", "their"}:
        return True  # "Its siren then an emergency vehicle's engine"
    if g.subj is None or g.pronoun:
        return False
    words = [t.lower for t in toks[g.subj[0]:g.subj[1]]]
    return len(words) == 1 and words[0] in {"it", "he", "she", "they", "him", "her", "them"}
