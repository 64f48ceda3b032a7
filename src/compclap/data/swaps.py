"""Swapped renderings: the same events in another order, or with one attribute's values traded between two events.

They are audio-side composition negatives: a caption that states an order ("A then B") or binds an
attribute to an event ("a loud A and a soft B") is false of the swapped rendering, which holds exactly
the same sound material. Used by the demo world (scenes) and the composer (expression trees).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from compclap.data.expressions import Node, Seq, _composites, _replace_at, caption, normalise_text, seq, structure_key

if TYPE_CHECKING:  # only for hints: demo_world imports this module
    from compclap.data.demo_world import Scene

SWAP_ATTRIBUTES = ("loudness", "pitch", "duration")  # the order a swapped attribute is chosen from


# --- demo-world scenes ---------------------------------------------------------------------------

def order_swapped_scene(scene: Scene) -> Scene | None:
    """A sequence with its events reversed (B then A; C, B, A), each junction keeping its gap; None otherwise."""
    if scene.relation != "sequence" or len(scene.events) < 2:
        return None
    # Reversing the gaps too keeps every pair of neighbours at the gap (and crossfade) it had.
    return replace(scene, events=scene.events[::-1], gaps_s=tuple(scene.gaps_s)[::-1])


def differing_attributes(scene: Scene) -> list[str]:
    """Attributes (in SWAP_ATTRIBUTES order) whose values differ between the two events of a 2-event scene."""
    if len(scene.events) != 2:
        return []
    a, b = scene.events
    return [k for k in SWAP_ATTRIBUTES if getattr(a, k) != getattr(b, k)]


def attribute_swapped_scene(scene: Scene, attribute: str) -> Scene:
    """The 2-event scene with `attribute`'s values traded between its events; everything else (seeds, gaps) kept."""
    a, b = scene.events
    return replace(scene, events=(replace(a, **{attribute: getattr(b, attribute)}),
                                  replace(b, **{attribute: getattr(a, attribute)})))


def choose_swap_attribute(scene: Scene, rng: np.random.Generator) -> str | None:
    """One of the differing attributes, drawn from `rng` (None when the events agree on every attribute)."""
    options = differing_attributes(scene)
    if not options:
        return None
    return options[int(rng.integers(len(options)))]


def swapped_negatives(scene: Scene, mentions: Sequence[Sequence[Sequence[str]]], stem: str,
                      rng: np.random.Generator) -> tuple[list[list[dict[str, str]]], list[tuple[str, Scene, str]]]:
    """Audio negatives of a training clip: per caption, the swapped renderings it is false of; and what to render.

    Order: a sequence reversed (`<stem>_order.flac`), false of every caption (sequence captions all state
    order). Attribute: a 2-event clip with one differing attribute (drawn from `rng`) traded between its
    events (`<stem>_attribute.flac`), false of the captions that name that attribute for either event;
    rendered only when some caption does. `mentions[k]` lists, per event, the attributes caption k names.
    Returns (per-caption [{"audio", "kind"(, "attribute")}], [(path, scene, kind)]).
    """
    per_caption: list[list[dict[str, str]]] = [[] for _ in mentions]
    renders: list[tuple[str, Scene, str]] = []
    swapped = order_swapped_scene(scene)
    if swapped is not None:
        renders.append((f"{stem}_order.flac", swapped, "order"))
        for negs in per_caption:
            negs.append({"audio": renders[-1][0], "kind": "order"})
    attribute = choose_swap_attribute(scene, rng)
    naming = [k for k, per_event in enumerate(mentions) if any(attribute in m for m in per_event)]
    if attribute is not None and naming:
        renders.append((f"{stem}_attribute.flac", attribute_swapped_scene(scene, attribute), "attribute"))
        for k in naming:
            per_caption[k].append({"audio": renders[-1][0], "kind": "attribute", "attribute": attribute})
    return per_caption, renders


def twin_negative_audio(original: str, kind: str, attribute: str | None,
                        mentions: Sequence[Sequence[Sequence[str]]]) -> list[list[dict[str, str]]]:
    """Audio negatives of a swapped rendering's own captions: the original clip, for each caption false of it.

    A swap is its own inverse, so the rule of `swapped_negatives` applies backwards: every caption of an
    order-swapped sequence states the order and is false of the original; a caption of an attribute-swapped
    clip is false of the original when it names `attribute` for either event. `mentions[k]` lists, per event,
    the attributes caption k names.
    """
    if kind not in ("order", "attribute"):
        raise ValueError(f"unknown swap kind {kind!r}; known: order, attribute")
    if kind == "attribute" and attribute is None:
        raise ValueError("an attribute swap needs the swapped attribute")
    entry = {"audio": original, "kind": kind, **({"attribute": attribute} if kind == "attribute" else {})}
    return [[dict(entry)] if kind == "order" or any(attribute in m for m in per_event) else []
            for per_event in mentions]


# --- composer expression trees -------------------------------------------------------------------

def order_swapped_tree(tree: Node) -> Node | None:
    """The tree with one `+` reversed (the root if it is a `+`, else the first `+` in pre-order), or None.

    None when the tree has no `+`, or when the swap changes nothing a caption can tell apart (identical
    events, a palindrome): then the full caption would be true of the swapped audio. Levels and styles
    are kept, so the rendering uses the same clips, levels and crossfades.
    """
    path, node = next(((p, n) for p, n in _composites(tree) if isinstance(n, Seq)), ((), None))
    if node is None:
        return None
    swapped = _replace_at(tree, path, seq(*node.children[::-1], style=node.style))
    if structure_key(swapped) == structure_key(tree) or normalise_text(caption(swapped)) == normalise_text(
            caption(tree)):
        return None
    return swapped
