"""Swapped renderings: which `+` the composer reverses, and the demo world's order/attribute-swapped scenes."""

from __future__ import annotations

import numpy as np
import pytest

from compclap.data.demo_world import EventSpec, Scene
from compclap.data.expressions import caption, decorate, expression, leaves, parse_expression
from compclap.data.swaps import (
    attribute_swapped_scene,
    choose_swap_attribute,
    differing_attributes,
    order_swapped_scene,
    order_swapped_tree,
    swapped_negatives,
    twin_negative_audio,
)


@pytest.mark.parametrize("text, swapped", [
    ("dog + cat", "cat + dog"),                      # the root `+`
    ("dog + cat + rain", "rain + cat + dog"),        # n-ary: children reversed
    ("(dog * cat) + rain", "rain + (dog * cat)"),    # operands may be composite
    ("(dog + cat) * rain", "(cat + dog) * rain"),    # root is `*`: the first `+` in pre-order
    ("(dog * (cat + rain)) + bell", "bell + (dog * (cat + rain))"),  # the root wins over deeper ones
    ("dog * cat", None),                             # no `+`
    ("dog + dog", None),                             # nothing a caption could tell apart
    ("dog + cat + dog", None),                       # a palindrome
])
def test_order_swapped_tree(text, swapped):
    tree = decorate(parse_expression(text), np.random.default_rng(0))
    out = order_swapped_tree(tree)
    if swapped is None:
        assert out is None
        return
    assert expression(out) == swapped
    assert sorted(leaf.index for leaf in leaves(out)) == sorted(leaf.index for leaf in leaves(tree))  # same clips
    assert caption(out) != caption(tree)


def test_swapped_tree_keeps_overlay_levels_and_styles():
    tree = decorate(parse_expression("(dog + cat) * rain"), np.random.default_rng(1))
    out = order_swapped_tree(tree)
    assert out.levels_db == tree.levels_db and out.style == tree.style
    assert out.children[0].style == tree.children[0].style


def _ev(type_: str, loudness: str = "loud", pitch: str = "low", duration: str = "short", seed: int = 1) -> EventSpec:
    return EventSpec(type_, loudness, pitch, duration, seed)


def test_scene_swaps():
    a, b, c = _ev("beep", seed=1), _ev("hum", "soft", "high", seed=2), _ev("bell", duration="long", seed=3)
    seq3 = Scene("sequence", (a, b, c), gaps_s=(0.1, 0.0))
    rev = order_swapped_scene(seq3)
    assert rev.events == (c, b, a) and rev.gaps_s == (0.0, 0.1)  # each junction keeps its gap
    assert order_swapped_scene(Scene("overlay", (a, b), offsets_s=(0.0, 0.1))) is None
    assert order_swapped_scene(Scene("single", (a,))) is None

    pair = Scene("overlay", (a, b), offsets_s=(0.0, 0.1))
    assert differing_attributes(pair) == ["loudness", "pitch"]
    swapped = attribute_swapped_scene(pair, "pitch")
    assert [e.pitch for e in swapped.events] == ["high", "low"]
    assert [(e.type, e.seed, e.loudness) for e in swapped.events] == [("beep", 1, "loud"), ("hum", 2, "soft")]
    assert swapped.offsets_s == pair.offsets_s
    assert differing_attributes(Scene("sequence", (a, _ev("hum", seed=5)), gaps_s=(0.0,))) == []
    picks = {choose_swap_attribute(pair, np.random.default_rng(s)) for s in range(30)}
    assert picks == {"loudness", "pitch"}
    assert choose_swap_attribute(pair, np.random.default_rng(3)) == choose_swap_attribute(pair, np.random.default_rng(3))


def test_swapped_negatives_follow_the_captions_mentions():
    a, b = _ev("beep", "loud", seed=1), _ev("hum", "soft", seed=2)  # they differ in loudness only
    scene = Scene("sequence", (a, b), gaps_s=(0.1,))
    mentions = [(("loudness",), ()), ((), ("pitch", "duration")), ((), ("loudness", "pitch"))]
    per_caption, renders = swapped_negatives(scene, mentions, "audio/x/000007", np.random.default_rng(0))
    assert [(p, k) for p, _, k in renders] == [("audio/x/000007_order.flac", "order"),
                                                 ("audio/x/000007_attribute.flac", "attribute")]
    assert renders[0][1].events == (b, a)
    assert [e.loudness for e in renders[1][1].events] == ["soft", "loud"]
    kinds = [[n["kind"] for n in negs] for negs in per_caption]
    assert kinds == [["order", "attribute"], ["order"], ["order", "attribute"]]
    # An overlay has no order negative, and nothing is rendered when no caption names the swapped attribute.
    overlay = Scene("overlay", (a, b), offsets_s=(0.0, 0.0))
    per_caption, renders = swapped_negatives(overlay, [((), ("pitch",))], "s", np.random.default_rng(0))
    assert per_caption == [[]] and renders == []


def test_twin_negative_audio_points_back_at_the_original():
    mentions = [(("loudness",), ()), ((), ("pitch",)), ((), ())]
    order = twin_negative_audio("audio/train/000007.flac", "order", None, mentions)
    assert order == [[{"audio": "audio/train/000007.flac", "kind": "order"}]] * 3
    attribute = twin_negative_audio("o.flac", "attribute", "loudness", mentions)
    assert attribute == [[{"audio": "o.flac", "kind": "attribute", "attribute": "loudness"}], [], []]
    with pytest.raises(ValueError, match="needs the swapped attribute"):
        twin_negative_audio("o.flac", "attribute", None, mentions)
    with pytest.raises(ValueError, match="unknown swap kind"):
        twin_negative_audio("o.flac", "pitch", None, mentions)
