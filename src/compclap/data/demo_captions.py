"""Truthful captions of demo-world scenes: templates, attribute words, and which attributes each mention names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from compclap.audio.synth import get_event_type

if TYPE_CHECKING:  # only for hints: demo_world imports this module
    from compclap.data.demo_world import EventSpec, Scene

ATTRIBUTE_ORDER = ("duration", "loudness", "pitch")  # adjective order in noun phrases: "a short loud high beep"
# Caption wording: the first word of each tuple is the canonical one (CompA rows, event captions).
ATTRIBUTE_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "loudness": {"loud": ("loud",), "soft": ("soft", "quiet")},
    "pitch": {"high": ("high", "high-pitched"), "low": ("low", "low-pitched")},
    "duration": {"short": ("short", "brief"), "long": ("long",)},
}
SINGLE_TEMPLATES = ("{a}", "the sound of {a}", "{a} can be heard", "there is {a}", "a recording of {a}",
                    "{a} is heard", "you can hear {a}")
SEQUENCE2_TEMPLATES = ("{a} followed by {b}", "{a}, then {b}", "{a} and then {b}", "{a} before {b}",
                       "{b} after {a}", "first {a}, then {b}", "{a} is followed by {b}",
                       "{a} comes first, then {b}")
SEQUENCE3_TEMPLATES = ("{a}, then {b}, then {c}", "{a} followed by {b} and then {c}",
                       "first {a}, then {b}, and finally {c}", "{a}, {b} and then {c}",
                       "{a} followed by {b}, followed by {c}", "{a} before {b}, and {c} last")
# Overlay is symmetric, so the renderer is free to swap {a} and {b} when captioning.
OVERLAY2_TEMPLATES = ("{a} while {b} is heard", "{a} with {b}", "{a} over {b}", "{a} and {b} at the same time",
                      "{a} and {b} simultaneously", "{a} together with {b}", "{a} mixed with {b}",
                      "{a} on top of {b}")

Mentions = tuple[tuple[str, ...], ...]  # per scene event (scene order): the attributes its noun phrase names


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def head_noun(type_name: str) -> str:
    """The type's noun without its article: 'beep', 'engine rumble'."""
    phrase = get_event_type(type_name).noun_phrase
    first, _, rest = phrase.partition(" ")
    return rest if first in ("a", "an") else phrase


def noun_phrase(event: EventSpec, include: Iterable[str] = ATTRIBUTE_ORDER,
                rng: np.random.Generator | None = None) -> str:
    """'a short loud high beep': the listed attributes as adjectives; with `rng`, synonyms are varied."""
    include = set(include)
    words = []
    for key in ATTRIBUTE_ORDER:
        if key in include:
            options = ATTRIBUTE_WORDS[key][getattr(event, key)]
            words.append(options[int(rng.integers(len(options)))] if rng is not None else options[0])
    words.append(head_noun(event.type))
    return f"{_article(words[0])} {' '.join(words)}"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _attribute_subset(rng: np.random.Generator) -> tuple[str, ...]:
    # A third of the mentions carry every attribute; the rest a random subset (possibly none).
    if rng.random() < 0.35:
        return ATTRIBUTE_ORDER
    return tuple(k for k in ATTRIBUTE_ORDER if rng.random() < 0.5)


def caption_scene_mentions(scene: Scene, rng: np.random.Generator) -> tuple[str, Mentions]:
    """A caption true of the scene, and the attributes it names for each event (in scene order)."""
    mentions, phrases = [], []
    for e in scene.events:  # subset, then synonyms, per event: the draw order captions have always used
        subset = _attribute_subset(rng)
        mentions.append(subset)
        phrases.append(noun_phrase(e, subset, rng))
    n = len(phrases)
    if scene.relation == "single":
        templates: Sequence[str] = SINGLE_TEMPLATES
    elif scene.relation == "sequence":
        templates = SEQUENCE2_TEMPLATES if n == 2 else SEQUENCE3_TEMPLATES
        if n > 3:
            raise ValueError("sequence captions support at most 3 events")
    elif scene.relation == "overlay" and n == 2:
        templates = OVERLAY2_TEMPLATES
        if rng.random() < 0.5:
            phrases = phrases[::-1]
    else:
        raise ValueError(f"no caption templates for {scene.relation} with {n} events")
    template = templates[int(rng.integers(len(templates)))]
    return _capitalise(template.format(**dict(zip("abc", phrases)))), tuple(mentions)


def caption_scene(scene: Scene, rng: np.random.Generator) -> str:
    """One caption that is true of the scene: order words follow the audio order, attributes the rendered ones."""
    return caption_scene_mentions(scene, rng)[0]


def caption_scene_n_mentions(scene: Scene, rng: np.random.Generator, n: int = 3) -> list[tuple[str, Mentions]]:
    """`n` distinct (caption, mentions) pairs for a scene (distinct as long as the templates allow)."""
    found: list[tuple[str, Mentions]] = []
    for _ in range(50 * n):
        c, m = caption_scene_mentions(scene, rng)
        if all(c != f for f, _ in found):  # same text means the same adjectives, so the same mentions
            found.append((c, m))
        if len(found) == n:
            break
    while len(found) < n:  # only reachable with a template set too small for n
        found.append(found[len(found) % max(1, len(found))])
    return found


def caption_scene_n(scene: Scene, rng: np.random.Generator, n: int = 3) -> list[str]:
    """`n` distinct captions for a scene (distinct as long as the templates allow)."""
    return [c for c, _ in caption_scene_n_mentions(scene, rng, n)]
