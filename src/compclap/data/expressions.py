"""Expression trees over single sound events: `+` plays its operands in sequence, `*` overlays them.

A tree is built from three frozen node types:

- `Leaf(index, label, phrase)`: one event clip (`index` into the event pool, `phrase` the noun phrase
  captions use, e.g. "a dog barking");
- `Seq(children)`: the children one after another (n-ary, at least two; ordered);
- `Overlay(children)`: the children mixed on top of each other (n-ary, at least two; unordered).

Trees are kept canonical: a `Seq` never has a `Seq` child and an `Overlay` never an `Overlay` child
(`a + (b + c)` is `a + b + c`), so two trees that mean the same audio compare equal structurally
(`structure_key`, in which overlay operands are unordered).

Presentation lives in fields excluded from equality: every composite node carries a `style` (an
integer that picks its caption template and, for overlays, the order the operands are named in) and an
overlay carries `levels_db` (the RMS level of each operand relative to the first one). Captions are a
pure function of the tree, so a negative built by editing one node keeps the wording of every other
node: "a beep followed by a hum" becomes "a hum followed by a beep", never a differently phrased
sentence a model could tell apart by its template.

- `caption(tree)`: one sentence for the whole tree.
- `positives(tree)`: captions of the tree and of its sub-expressions (contiguous runs of a sequence,
  subsets of an overlay, every child, every leaf), whole tree first (multi-granularity).
- `negatives(tree)`: captions of edited trees, tagged "order" (operands of a `+` swapped or reversed)
  or "relation" (a `+` turned into `*`, a `*` into `+`, wholly or between two operands); a negative
  never describes the same structure as the tree and never has the text of a positive.
- `render(tree, clips, sample_rate)`: the audio (crossfaded sequences, RMS-levelled overlays, no clipping).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Union

import numpy as np

from compclap.audio.mix import concat_crossfade, overlay, peak_normalise, prevent_clipping


@dataclass(frozen=True)
class Leaf:
    """One event: `index` into the event pool, its `label` (expression string) and caption `phrase`."""

    index: int
    label: str
    phrase: str


@dataclass(frozen=True)
class Seq:
    """Children played one after another (crossfaded)."""

    children: tuple[Node, ...]
    style: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Overlay:
    """Children mixed together; `levels_db[i]` is child i's RMS level relative to child 0 (None: own levels)."""

    children: tuple[Node, ...]
    levels_db: tuple[float, ...] | None = field(default=None, compare=False)
    style: int = field(default=0, compare=False)


Node = Union[Leaf, Seq, Overlay]
OP = {Seq: "+", Overlay: "*"}

# --- construction ------------------------------------------------------------------------------


def seq(*children: Node, style: int = 0) -> Node:
    """A canonical sequence: nested sequences are flattened; a single child is returned as is."""
    flat: list[Node] = []
    for c in children:
        flat.extend(c.children if isinstance(c, Seq) else (c,))
    if not flat:
        raise ValueError("a sequence needs at least one child")
    return flat[0] if len(flat) == 1 else Seq(tuple(flat), style=style)


def mix(*children: Node, levels_db: Sequence[float] | None = None, style: int = 0) -> Node:
    """A canonical overlay: nested overlays are flattened (their levels are dropped); one child is returned as is."""
    flat: list[Node] = []
    for c in children:
        flat.extend(c.children if isinstance(c, Overlay) else (c,))
    if not flat:
        raise ValueError("an overlay needs at least one child")
    if len(flat) == 1:
        return flat[0]
    if levels_db is not None and len(levels_db) != len(flat):
        levels_db = None  # flattening changed the operand count; fall back to the children's own levels
    return Overlay(tuple(flat), tuple(float(x) for x in levels_db) if levels_db is not None else None, style)


def leaves(node: Node) -> list[Leaf]:
    """The leaves in (left-to-right) order."""
    if isinstance(node, Leaf):
        return [node]
    return [leaf for c in node.children for leaf in leaves(c)]


def map_leaves(node: Node, fn: Callable[[Leaf], Leaf]) -> Node:
    """The same tree (styles and levels kept) with every leaf replaced by fn(leaf)."""
    if isinstance(node, Leaf):
        return fn(node)
    return replace(node, children=tuple(map_leaves(c, fn) for c in node.children))


def structure_key(node: Node) -> tuple:
    """Hashable structure of a tree in terms of what captions can tell apart (normalised leaf phrases).

    Sequences are ordered, overlays unordered: `a * b` and `b * a` have the same key.
    """
    if isinstance(node, Leaf):
        return ("leaf", normalise_text(node.phrase))
    keys = [structure_key(c) for c in node.children]
    if isinstance(node, Overlay):
        return ("*", tuple(sorted(keys, key=repr)))
    return ("+", tuple(keys))


def overlaid_pairs(node: Node) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, of leaf positions (in `leaves` order) that sound at the same time.

    Two leaves overlap when their lowest common ancestor is an overlay.
    """
    pairs: set[tuple[int, int]] = set()

    def visit(n: Node, start: int) -> int:
        if isinstance(n, Leaf):
            return 1
        spans = []
        pos = start
        for c in n.children:
            size = visit(c, pos)
            spans.append(range(pos, pos + size))
            pos += size
        if isinstance(n, Overlay):
            for a, b in itertools.combinations(spans, 2):
                pairs.update((i, j) for i in a for j in b)
        return pos - start

    visit(node, 0)
    return pairs


# --- random trees ------------------------------------------------------------------------------


def sample_shape(n: int, rng: np.random.Generator, p_sequence: float = 0.5) -> Node:
    """A random canonical tree over n placeholder leaves (Leaf(i, "", "") for i in 0..n-1, left to right).

    Built by recursive binary splits (uniform split point, `+` with probability p_sequence, else `*`),
    then flattened; composite nodes get no style yet (see `decorate`).
    """
    if n < 1:
        raise ValueError(f"a tree needs at least one event, got {n}")
    counter = itertools.count()

    def build(k: int) -> Node:
        if k == 1:
            i = next(counter)
            return Leaf(i, "", "")
        op = seq if rng.random() < p_sequence else mix
        split = int(rng.integers(1, k))
        left = build(split)
        return op(left, build(k - split))

    return build(n)


def decorate(node: Node, rng: np.random.Generator, overlay_db: tuple[float, float] | None = (-6.0, 6.0)) -> Node:
    """Draw a caption style for every composite node and operand levels (dB, RMS) for every overlay.

    `overlay_db` is the range the level of each operand after the first is drawn from (relative to the
    first operand's RMS); None keeps every operand at its own level. Nodes are visited depth first.
    """
    if isinstance(node, Leaf):
        return node
    children = tuple(decorate(c, rng, overlay_db) for c in node.children)
    style = int(rng.integers(0, 2**31 - 1))
    if isinstance(node, Seq):
        return Seq(children, style=style)
    levels = None
    if overlay_db is not None:
        lo, hi = overlay_db
        levels = (0.0,) + tuple(round(float(lo + (hi - lo) * u), 3) for u in rng.random(len(children) - 1))
    return Overlay(children, levels, style)


# --- expression strings --------------------------------------------------------------------------

_BARE_LABEL = re.compile(r"^[^()+*\"]+$")


def _format_label(label: str) -> str:
    label = str(label)
    if _BARE_LABEL.match(label) and label == label.strip():
        return label
    return json.dumps(label, ensure_ascii=False)


def expression(node: Node) -> str:
    """Expression string: labels joined by ` + ` / ` * `, composite operands in parentheses, e.g. `(dog + cat) * rain`.

    Labels containing parentheses, `+`, `*` or quotes (or with surrounding spaces) are written as JSON strings.
    """
    if isinstance(node, Leaf):
        return _format_label(node.label)
    parts = [expression(c) if isinstance(c, Leaf) else f"({expression(c)})" for c in node.children]
    return f" {OP[type(node)]} ".join(parts)


def parse_expression(text: str, phrase: Callable[[str], str] | None = None) -> Node:
    """Parse an expression string into a canonical tree; leaves are numbered left to right.

    `*` binds tighter than `+` (as in arithmetic); `phrase(label)` gives each leaf's caption phrase
    (default: `label_phrase`).
    """
    phrase = phrase or label_phrase
    tokens = _tokenise(text)
    pos = 0
    counter = itertools.count()

    def peek() -> str | None:
        return tokens[pos][0] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"unexpected end of expression {text!r}")
        pos += 1
        return tokens[pos - 1]

    def atom() -> Node:
        kind, value = take()
        if kind == "(":
            node = plus()
            if take()[0] != ")":
                raise ValueError(f"missing ')' in {text!r}")
            return node
        if kind != "label":
            raise ValueError(f"expected a label or '(' in {text!r}, got {value!r}")
        return Leaf(next(counter), value, phrase(value))

    def times() -> Node:
        parts = [atom()]
        while peek() == "*":
            take()
            parts.append(atom())
        return mix(*parts)

    def plus() -> Node:
        parts = [times()]
        while peek() == "+":
            take()
            parts.append(times())
        return seq(*parts)

    node = plus()
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos][1]!r} in {text!r}")
    return node


def _tokenise(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()+*":
            tokens.append((ch, ch))
            i += 1
        elif ch == '"':
            value, end = json.JSONDecoder().raw_decode(text, i)
            tokens.append(("label", value))
            i = end
        else:
            j = i
            while j < len(text) and text[j] not in '()+*"':
                j += 1
            tokens.append(("label", text[i:j].strip()))
            i = j
    return tokens


# --- caption phrases -----------------------------------------------------------------------------

# Nouns that take no indefinite article when a label is used as a phrase ("rain", not "a rain").
MASS_NOUNS = frozenset("""applause bubbling chatter cheering crackling laughter music noise rain rustling silence
speech static steam thunder traffic water wind writing typing hail sizzling snoring breathing singing
clapping humming whispering crying gunfire fire""".split())


def article(word: str) -> str:
    """'a' or 'an' for a word (by its first letter)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def label_phrase(label: str) -> str:
    """A caption phrase for a bare label: 'Dog_bark' -> 'a dog bark', 'rain' -> 'rain', 'footsteps' -> 'footsteps'.

    Underscores become spaces; the article is left out for mass nouns (MASS_NOUNS), plurals (a final
    's' that is not 'ss'/'us'/'is') and labels that already start with an article.
    """
    words = str(label).replace("_", " ").split()
    if not words:
        raise ValueError("empty label")
    text = " ".join(words)
    if words[0][1:] == words[0][1:].lower():  # "Dog bark" -> "dog bark", but keep "TV" and "iPhone"
        text = text[:1].lower() + text[1:]
    first, last = text.split()[0].lower(), text.split()[-1].lower()
    if first in ("a", "an", "the", "some"):
        return text
    if last in MASS_NOUNS or first in MASS_NOUNS or (last.endswith("s") and not last.endswith(("ss", "us", "is"))):
        return text
    return f"{article(text)} {text}"


def caption_phrase(caption: str) -> str:
    """A clip's caption as a phrase to embed in a longer caption: no final full stop, lower-case start."""
    text = " ".join(str(caption).split()).rstrip(".!")
    if len(text) > 1 and (text[1].islower() or text[1] == " "):
        text = text[:1].lower() + text[1:]
    return text


def normalise_text(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: what makes two captions 'the same'."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- caption templates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Templates:
    """Caption templates. Two-operand templates use {a} and {b}; n-operand ones are described below.

    seq2 / seq2_composite: a sequence of two (the second set, all with a comma, when an operand is itself
    composite, so "a with b, then c" does not read as "a with (b then c)"). seqn / seqn_composite: longer
    sequences as (first, second, middle, last) pieces, each with one "{}" for an operand. overlay2 /
    overlay2_composite: two operands (composite operands are named first). overlayn: three or more,
    as a template over {first} (one operand) and {rest} ("b and c", "b, c and d") or {all} ("a, b and c").
    """

    seq2: tuple[str, ...] = (
        "{a} followed by {b}", "{a} and then {b}", "{a} before {b}", "{b} after {a}", "{a}, then {b}",
        "first {a}, then {b}", "{a} is followed by {b}", "{a}, and afterwards {b}")
    seq2_composite: tuple[str, ...] = (
        "{a}, followed by {b}", "{a}, and then {b}", "first {a}, then {b}", "{a}, then {b}",
        "{a}, and afterwards {b}")
    seqn: tuple[tuple[str, str, str, str], ...] = (
        ("{}", ", then {}", ", then {}", ", then {}"),
        ("first {}", ", then {}", ", then {}", ", and finally {}"),
        ("{}", " followed by {}", ", then {}", ", and then {}"),
        ("{}", " before {}", ", then {}", ", and {} last"),
        ("{}", ", {}", ", {}", " and then {}"),
        ("{}", ", followed by {}", ", followed by {}", ", followed by {}"))
    seqn_composite: tuple[tuple[str, str, str, str], ...] = (
        ("{}", ", then {}", ", then {}", ", then {}"),
        ("first {}", ", then {}", ", then {}", ", and finally {}"),
        ("{}", ", followed by {}", ", followed by {}", ", followed by {}"))
    overlay2: tuple[str, ...] = (
        "{a} with {b}", "{a} over {b}", "{a} accompanied by {b}", "{a} amid {b}", "{a} and {b} at the same time",
        "{a} together with {b}", "{a} mixed with {b}", "{a} on top of {b}", "{a} and {b} simultaneously",
        "{a} while {b} is heard")
    overlay2_composite: tuple[str, ...] = (
        "{a}, with {b} throughout", "{a}, accompanied by {b}", "{a}, together with {b}", "{a}, all over {b}",
        "{a}, amid {b}", "{a}, while at the same time {b}")
    overlayn: tuple[str, ...] = (
        "{all} at the same time", "{all} simultaneously", "{first} together with {rest}", "{first} with {rest}",
        "{first} accompanied by {rest}", "{first} amid {rest}", "{first} over {rest}")
    overlayn_composite: tuple[str, ...] = (
        "{first}, together with {rest}", "{first}, accompanied by {rest}", "{first}, with {rest} throughout",
        "{first}, amid {rest}")


DEFAULT_TEMPLATES = Templates()


def _and_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _overlay_order(node: Overlay) -> list[Node]:
    """The order an overlay's operands are named in: shuffled by its style, composite operands first."""
    perm = np.random.default_rng(node.style).permutation(len(node.children))
    named = [node.children[i] for i in perm]
    return [c for c in named if not isinstance(c, Leaf)] + [c for c in named if isinstance(c, Leaf)]


def _phrase(node: Node, t: Templates) -> str:
    if isinstance(node, Leaf):
        return node.phrase
    if isinstance(node, Seq):
        parts = [_phrase(c, t) for c in node.children]
        composite = any(not isinstance(c, Leaf) for c in node.children)
        if len(parts) == 2:
            options = t.seq2_composite if composite else t.seq2
            return options[node.style % len(options)].format(a=parts[0], b=parts[1])
        pieces = (t.seqn_composite if composite else t.seqn)
        first, second, middle, last = pieces[node.style % len(pieces)]
        out = first.format(parts[0]) + second.format(parts[1])
        for p in parts[2:-1]:
            out += middle.format(p)
        return out + last.format(parts[-1])
    named = _overlay_order(node)
    parts = [_phrase(c, t) for c in named]
    composite = not isinstance(named[0], Leaf)
    if len(parts) == 2:
        options = t.overlay2_composite if composite else t.overlay2
        return options[node.style % len(options)].format(a=parts[0], b=parts[1])
    options = t.overlayn_composite if composite else t.overlayn
    return options[node.style % len(options)].format(all=_and_list(parts), first=parts[0],
                                                    rest=_and_list(parts[1:]))


def caption(node: Node, templates: Templates = DEFAULT_TEMPLATES) -> str:
    """The caption of a tree (capitalised); a pure function of the tree, its styles and leaf phrases."""
    return _capitalise(_phrase(node, templates))


# --- positives -----------------------------------------------------------------------------------


def sub_expressions(node: Node) -> list[Node]:
    """The tree and every sub-expression that is true of its audio, largest first (ties: in visiting order).

    For a sequence: every contiguous run of two or more children (they play back to back); for an
    overlay: every subset of two or more children (they sound together); then recursively each child,
    down to the leaves. Structural duplicates are removed.
    """
    found: list[Node] = []

    def visit(n: Node) -> None:
        found.append(n)
        if isinstance(n, Leaf):
            return
        k = len(n.children)
        for size in range(k - 1, 1, -1):
            if isinstance(n, Seq):
                for start in range(k - size + 1):
                    found.append(Seq(n.children[start:start + size], style=n.style))
            else:
                for idx in itertools.combinations(range(k), size):
                    levels = None if n.levels_db is None else tuple(n.levels_db[i] for i in idx)
                    found.append(Overlay(tuple(n.children[i] for i in idx), levels, n.style))
        for c in n.children:
            visit(c)

    visit(node)
    seen: set[tuple] = set()
    unique = []
    for n in found:
        key = structure_key(n)
        if key not in seen:
            seen.add(key)
            unique.append(n)
    order = sorted(range(len(unique)), key=lambda i: (-len(leaves(unique[i])), i))
    return [unique[i] for i in order]


def positives(node: Node, templates: Templates = DEFAULT_TEMPLATES, max_positives: int | None = None) -> list[str]:
    """Captions of the tree and its sub-expressions (whole tree first, then larger before smaller), deduplicated by text."""
    out: list[str] = []
    seen: set[str] = set()
    for n in sub_expressions(node):
        text = caption(n, templates)
        key = normalise_text(text)
        if key not in seen:
            seen.add(key)
            out.append(text)
        if max_positives is not None and len(out) >= max_positives:
            break
    return out


# --- negatives -----------------------------------------------------------------------------------


def _replace_at(node: Node, path: tuple[int, ...], new: Node) -> Node:
    """The tree with the node at `path` (child indices from the root) replaced, re-canonicalised."""
    if not path:
        return new
    assert not isinstance(node, Leaf)
    children = list(node.children)
    children[path[0]] = _replace_at(children[path[0]], path[1:], new)
    if isinstance(node, Seq):
        return seq(*children, style=node.style)
    return mix(*children, levels_db=node.levels_db, style=node.style)


def _composites(node: Node, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...], Node]]:
    """(path, node) of every composite node, parents before children."""
    if isinstance(node, Leaf):
        return []
    out = [(path, node)]
    for i, c in enumerate(node.children):
        out.extend(_composites(c, path + (i,)))
    return out


def _substyle(style: int, salt: int) -> int:
    return int(np.random.SeedSequence([style, salt]).generate_state(1)[0] & 0x7FFFFFFF)


def negative_trees(node: Node) -> list[tuple[Node, str]]:
    """Candidate edited trees with their kind, top-level edits first (not yet filtered against positives).

    order: for every sequence, its operands reversed (when more than two) and every pair swapped
    (neighbours first). relation: every sequence turned into an overlay, and (more than two operands)
    each pair of neighbours overlaid; every overlay turned into a sequence (in the order its operands
    are named, then reversed), and (more than two operands) each pair of its operands played in sequence while
    overlaid with the rest. Edited nodes keep their style, so unchanged wording stays unchanged.
    """
    order: list[tuple[Node, str]] = []
    relation: list[tuple[Node, str]] = []
    for path, n in _composites(node):
        ch = list(n.children)
        k = len(ch)
        if isinstance(n, Seq):
            swaps = [(i, i + 1) for i in range(k - 1)] + [(i, j) for i, j in itertools.combinations(range(k), 2)
                                                           if j > i + 1]
            variants = ([ch[::-1]] if k > 2 else []) + [
                [ch[j] if x == i else ch[i] if x == j else ch[x] for x in range(k)] for i, j in swaps]
            order.extend((_replace_at(node, path, seq(*v, style=n.style)), "order") for v in variants)
            relation.append((_replace_at(node, path, mix(*ch, style=n.style)), "relation"))
            if k > 2:
                for i in range(k - 1):
                    inner = mix(ch[i], ch[i + 1], style=_substyle(n.style, i))
                    relation.append((_replace_at(node, path, seq(*ch[:i], inner, *ch[i + 2:], style=n.style)),
                                     "relation"))
        else:
            named = _overlay_order(n)
            relation.append((_replace_at(node, path, seq(*named, style=n.style)), "relation"))
            relation.append((_replace_at(node, path, seq(*named[::-1], style=n.style)), "relation"))
            if k > 2:
                for i, j in itertools.combinations(range(k), 2):
                    inner = seq(ch[i], ch[j], style=_substyle(n.style, i * k + j))
                    rest = [c for x, c in enumerate(ch) if x not in (i, j)]
                    relation.append((_replace_at(node, path, mix(inner, *rest, style=n.style)), "relation"))
    return order + relation


def negatives(node: Node, templates: Templates = DEFAULT_TEMPLATES, max_per_kind: int | None = 5,
              positive_texts: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Hard negatives of the tree's caption: [{"text", "kind"}], at most `max_per_kind` of each kind.

    A candidate is dropped when its structure equals the tree's (swapping two identical events, or
    operands of an overlay, changes nothing), when its text equals a positive's (`positive_texts`,
    default `positives(node)`), or when it repeats an earlier negative.
    """
    pos = positive_texts if positive_texts is not None else positives(node, templates)
    banned_text = {normalise_text(p) for p in pos}
    banned_keys = {structure_key(node)}
    counts: dict[str, int] = {}
    out = []
    for tree, kind in negative_trees(node):
        if max_per_kind is not None and counts.get(kind, 0) >= max_per_kind:
            continue
        key = structure_key(tree)
        text = caption(tree, templates)
        norm = normalise_text(text)
        if key in banned_keys or norm in banned_text:
            continue
        banned_keys.add(key)
        banned_text.add(norm)
        counts[kind] = counts.get(kind, 0) + 1
        out.append({"text": text, "kind": kind})
    return out


# --- audio ---------------------------------------------------------------------------------------


def rendered_length(node: Node, lengths: Mapping[int, int] | Sequence[int], crossfade_fraction: float = 0.1) -> int:
    """Samples `render` will produce for the tree, given each leaf's clip length (indexed by Leaf.index)."""
    if isinstance(node, Leaf):
        return int(lengths[node.index])
    sizes = [rendered_length(c, lengths, crossfade_fraction) for c in node.children]
    if isinstance(node, Overlay):
        return max(sizes)
    total = sizes[0]
    for prev, nxt in zip(sizes[:-1], sizes[1:]):
        total += nxt - int(crossfade_fraction * min(prev, nxt))  # as compclap.audio.mix.concat_crossfade
    return total


def render(node: Node, clips: Mapping[int, np.ndarray] | Sequence[np.ndarray], sample_rate: int,
           crossfade_fraction: float = 0.1, peak: float | None = 0.9) -> np.ndarray:
    """Render a tree from its leaves' clips (indexed by Leaf.index) to float32 mono.

    Sequences: `concat_crossfade` (equal-power crossfade over `crossfade_fraction` of the shorter
    neighbour), keeping levels. Overlays: `overlay` at the node's `levels_db` (RMS relative to the first
    operand; None keeps levels), starting together, as long as the longest operand. Nothing clips at any
    level of the tree; the whole is finally peak-normalised to `peak` (None: levels kept, only scaled
    down if it would clip).
    """
    def rec(n: Node) -> np.ndarray:
        if isinstance(n, Leaf):
            return np.asarray(clips[n.index], dtype=np.float32)
        parts = [rec(c) for c in n.children]
        if isinstance(n, Seq):
            return concat_crossfade(parts, sample_rate, crossfade_fraction, peak=None)
        return overlay(parts, n.levels_db)

    out = rec(node)
    return peak_normalise(out, peak) if peak is not None else prevent_clipping(out)
