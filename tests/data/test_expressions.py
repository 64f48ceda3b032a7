"""Expression trees: structure, captions, positives, negatives and rendering of composed audio."""

from __future__ import annotations

import numpy as np
import pytest

from compclap.data.expressions import (
    DEFAULT_TEMPLATES,
    Leaf,
    Overlay,
    Seq,
    caption,
    decorate,
    expression,
    label_phrase,
    caption_phrase,
    leaves,
    map_leaves,
    mix,
    negative_trees,
    negatives,
    normalise_text,
    overlaid_pairs,
    parse_expression,
    positives,
    render,
    rendered_length,
    sample_shape,
    seq,
    structure_key,
    sub_expressions,
)

from audio_helpers import band_energy, tone  # noqa: E402

SR = 8000
T = DEFAULT_TEMPLATES
DOG, CAT, RAIN, BELL = Leaf(0, "dog", "a dog"), Leaf(1, "cat", "a cat"), Leaf(2, "rain", "rain"), Leaf(3, "bell", "a bell")


def _tone(n: int, freq: float, level: float = 0.5) -> np.ndarray:
    return tone(n, freq, SR, level)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    return band_energy(x, lo, hi, SR)


def _random_tree(n: int, seed: int, labels: list[str]) -> Seq | Overlay | Leaf:
    rng = np.random.default_rng(seed)
    shape = sample_shape(n, rng)
    picks = rng.choice(len(labels), size=n)  # duplicates allowed on purpose
    tree = map_leaves(shape, lambda leaf: Leaf(leaf.index, labels[picks[leaf.index]], label_phrase(labels[picks[leaf.index]])))
    return decorate(tree, rng)


# --- structure -------------------------------------------------------------------------------


def test_constructors_flatten_and_keys_ignore_overlay_order():
    t = seq(DOG, seq(CAT, RAIN))
    assert isinstance(t, Seq) and [c.label for c in t.children] == ["dog", "cat", "rain"]
    assert seq(DOG) is DOG
    o = mix(mix(DOG, CAT), RAIN)
    assert isinstance(o, Overlay) and len(o.children) == 3
    assert structure_key(mix(DOG, CAT)) == structure_key(mix(CAT, DOG))
    assert structure_key(seq(DOG, CAT)) != structure_key(seq(CAT, DOG))
    assert structure_key(seq(DOG, CAT)) != structure_key(mix(DOG, CAT))
    # style and levels are presentation, not structure
    assert Seq((DOG, CAT), style=1) == Seq((DOG, CAT), style=2)


def test_expression_string_round_trip_and_quoting():
    t = mix(seq(DOG, CAT), RAIN)
    assert expression(t) == "(dog + cat) * rain"
    back = parse_expression("(dog + cat) * rain")
    assert structure_key(back) == structure_key(t)
    assert expression(parse_expression("dog + cat * rain")) == "dog + (cat * rain)"  # * binds tighter
    odd = seq(Leaf(0, "Vehicle horn (car)", "a car horn"), Leaf(1, "a+b", "x"))
    text = expression(odd)
    assert text == '"Vehicle horn (car)" + "a+b"'
    assert [leaf.label for leaf in leaves(parse_expression(text))] == ["Vehicle horn (car)", "a+b"]
    with pytest.raises(ValueError):
        parse_expression("(dog + cat")


def test_sample_shape_is_canonical_and_seeded():
    for n in range(1, 6):
        for seed in range(20):
            shape = sample_shape(n, np.random.default_rng(seed))
            assert [leaf.index for leaf in leaves(shape)] == list(range(n))

            def check(node):
                if isinstance(node, Leaf):
                    return
                assert len(node.children) >= 2
                assert not any(type(c) is type(node) for c in node.children)
                for c in node.children:
                    check(c)
            check(shape)
    a = decorate(sample_shape(4, np.random.default_rng(7)), np.random.default_rng(8))
    b = decorate(sample_shape(4, np.random.default_rng(7)), np.random.default_rng(8))
    assert expression(a) == expression(b) and caption(a) == caption(b)


def test_overlaid_pairs():
    t = seq(mix(DOG, CAT), RAIN, mix(BELL, Leaf(4, "x", "an x")))
    assert overlaid_pairs(t) == {(0, 1), (3, 4)}
    assert overlaid_pairs(mix(seq(DOG, CAT), RAIN)) == {(0, 2), (1, 2)}


def test_label_and_caption_phrases():
    assert label_phrase("dog") == "a dog"
    assert label_phrase("Dog_bark") == "a dog bark"
    assert label_phrase("engine") == "an engine"
    assert label_phrase("Rain") == "rain"
    assert label_phrase("footsteps") == "footsteps"
    assert label_phrase("glass") == "a glass"
    assert caption_phrase("A dog barks loudly.") == "a dog barks loudly"
    assert caption_phrase("TV plays") == "TV plays"


# --- captions, positives, negatives --------------------------------------------------------------


def test_captions_follow_the_tree():
    for style in range(len(T.seq2)):
        c = caption(Seq((DOG, CAT), style=style))
        assert c == T.seq2[style].format(a="a dog", b="a cat")[:1].upper() + T.seq2[style].format(a="a dog", b="a cat")[1:]
    for style in range(12):
        c = caption(Overlay((DOG, CAT), style=style)).lower()
        assert "a dog" in c and "a cat" in c
        assert any(t.format(a="a dog", b="a cat") == c or t.format(a="a cat", b="a dog") == c for t in T.overlay2)
    three = caption(Seq((DOG, CAT, RAIN), style=0))
    assert three == "A dog, then a cat, then rain"
    # a composite operand of a sequence is named with a comma template, in order
    nested = caption(Seq((Overlay((DOG, CAT), style=0), RAIN), style=0)).lower()
    assert nested.index("rain") > max(nested.index("a dog"), nested.index("a cat"))
    assert nested in {t.format(a=caption(Overlay((DOG, CAT), style=0)).lower(), b="rain") for t in T.seq2_composite}


def test_positives_are_multi_granular():
    t = Seq((DOG, CAT, RAIN), style=0)
    pos = positives(t)
    assert pos[0] == caption(t)
    assert pos[1:3] == ["A dog followed by a cat", "A cat followed by rain"]  # sub-runs keep the node's style
    assert pos[3:] == ["A dog", "A cat", "Rain"]
    o = Overlay((DOG, CAT, RAIN), style=3)
    sub = sub_expressions(o)
    assert len(sub) == 1 + 3 + 3  # whole, three pairs, three leaves
    assert positives(o, max_positives=2) == positives(o)[:2]
    # duplicates collapse
    assert positives(seq(DOG, Leaf(5, "dog", "a dog"))) == [caption(seq(DOG, Leaf(5, "dog", "a dog"))), "A dog"]


def test_negatives_of_a_two_event_sequence_swap_and_overlay():
    t = Seq((DOG, CAT), style=0)  # "A dog followed by a cat"
    negs = negatives(t)
    assert {"text": "A cat followed by a dog", "kind": "order"} in negs
    rel = [n for n in negs if n["kind"] == "relation"]
    assert len(rel) == 1
    assert rel[0]["text"] == caption(Overlay((DOG, CAT), style=0))


def test_overlay_operand_swap_is_not_a_negative():
    t = Overlay((DOG, CAT), (0.0, 3.0), style=5)
    negs = negatives(t)
    assert all(n["kind"] == "relation" for n in negs)
    texts = {n["text"] for n in negs}
    # both orders of the sequence are negatives, no reordered overlay is
    assert texts == {caption(Seq((a, b), style=5)) for a, b in ((DOG, CAT), (CAT, DOG))}
    for tree, _ in negative_trees(t):
        assert not isinstance(tree, Overlay)


def test_negatives_follow_the_tree_edits():
    t = mix(seq(DOG, CAT, style=1), RAIN, style=2)  # (dog + cat) * rain
    kinds = {}
    for tree, kind in negative_trees(t):
        kinds.setdefault(kind, []).append(expression(tree))
    assert "(cat + dog) * rain" in kinds["order"]
    assert "dog * cat * rain" in kinds["relation"]  # the + turned into *
    assert any(e in kinds["relation"] for e in ("dog + cat + rain", "rain + dog + cat"))  # the * turned into +
    negs = negatives(t)
    order = [n["text"] for n in negs if n["kind"] == "order"]
    # the swapped sequence keeps its wording: only the operands moved
    assert caption(mix(seq(CAT, DOG, style=1), RAIN, style=2)) in order


def test_no_negative_equals_a_positive_and_caps_hold():
    labels = ["dog", "cat", "rain", "bell", "dog"]
    for n in (2, 3, 4, 5):
        for seed in range(40):
            t = _random_tree(n, seed, labels)
            pos = positives(t)
            negs = negatives(t, max_per_kind=3)
            pos_norm = {normalise_text(p) for p in pos}
            assert all(normalise_text(x["text"]) not in pos_norm for x in negs)
            assert len({normalise_text(x["text"]) for x in negs}) == len(negs)
            for kind in ("order", "relation"):
                assert sum(x["kind"] == kind for x in negs) <= 3
            keys = {structure_key(tree) for tree, _ in negative_trees(t)}
            assert all(x["kind"] in ("order", "relation") for x in negs)
            assert keys  # some edit always exists for n >= 2
    # identical events: swapping them is no negative
    same = Seq((DOG, Leaf(9, "dog", "a dog")), style=0)
    assert [n["kind"] for n in negatives(same)] == ["relation"]


# --- audio ---------------------------------------------------------------------------------------


def test_render_sequence_keeps_order_and_crossfade_length():
    low, high = _tone(4000, 300), _tone(2400, 2500)
    clips = {0: low, 1: high}
    t = Seq((DOG, CAT))
    out = render(t, clips, SR)
    assert out.dtype == np.float32
    assert len(out) == 4000 + 2400 - 240 == rendered_length(t, [4000, 2400])  # fade = 10 % of the shorter
    assert np.max(np.abs(out)) == pytest.approx(0.9, rel=1e-4)
    head, tail = out[:3000], out[-2000:]
    assert _band_energy(head, 200, 400) > 100 * _band_energy(head, 2000, 3000)
    assert _band_energy(tail, 2000, 3000) > 100 * _band_energy(tail, 200, 400)
    # energy of A's region precedes B's: the high tone's energy centre lies after the low tone's
    rev = render(Seq((CAT, DOG)), clips, SR)
    assert _band_energy(rev[:2000], 2000, 3000) > 100 * _band_energy(rev[:2000], 200, 400)


def test_render_overlay_length_levels_and_no_clipping():
    a, b = _tone(3000, 300, 0.95), _tone(5000, 2500, 0.95)
    t = Overlay((DOG, CAT), (0.0, -20.0))
    out = render(t, {0: a, 1: b}, SR, peak=None)
    assert len(out) == 5000 == rendered_length(t, {0: 3000, 1: 5000})
    assert np.max(np.abs(out)) <= 1.0
    ratio_db = 10 * np.log10(_band_energy(out[:3000], 2000, 3000) / _band_energy(out[:3000], 200, 400))
    assert ratio_db == pytest.approx(-20.0, abs=0.5)
    loud = render(Overlay((DOG, CAT), (0.0, 0.0)), {0: a, 1: b}, SR, peak=None)  # would clip if summed raw
    assert np.max(np.abs(loud)) <= 1.0
    kept = render(Overlay((DOG, CAT)), {0: 0.1 * a, 1: 0.1 * b}, SR, peak=None)  # no levels: own levels kept
    np.testing.assert_allclose(kept[:3000], 0.1 * (a + b[:3000]), atol=1e-6)


def test_rendered_length_matches_render_for_random_trees():
    rng = np.random.default_rng(0)
    for seed in range(15):
        n = int(rng.integers(2, 6))
        t = _random_tree(n, seed, ["dog", "cat", "rain", "bell", "owl", "car"])
        lengths = {leaf.index: int(rng.integers(200, 3000)) for leaf in leaves(t)}
        clips = {i: _tone(m, 200 + 100 * i) for i, m in lengths.items()}
        out = render(t, clips, SR)
        assert len(out) == rendered_length(t, lengths)
        assert np.max(np.abs(out)) == pytest.approx(0.9, rel=1e-4)
