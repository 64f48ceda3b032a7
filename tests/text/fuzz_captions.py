"""Seeded generator of hostile caption strings for the rewriter and manifest fuzz tests."""

from __future__ import annotations

import random

EVENTS = ["a dog barks", "a man speaks", "a loud engine revs", "birds chirp", "a quiet bell rings", "rain falls",
          "a woman laughs softly", "a high whistle blows", "a low hum fades", "a car passes by quickly",
          "people talk in the distance", "a door slams", "a baby cries", "water pours", "a phone rings"]
CONNECTIVES = ["then", "followed by", "before", "after", "and", "while", "and then", "after which", "as",
               "preceded by", ", then", "later", "until", "finally"]
ATTRIBUTES = "loud quiet high low soft hard fast slow near far distant short long deep sharp faint".split()
NOUNS = "dog cat bird hum beep whistle bell engine voice drum horn siren".split()
EMOJI = ["🐶", "🐱", "🔔", "🚗", "👩‍👩‍👧", "🎵", "💥", "🌧️", "👍🏽", "🇫🇷"]
SCRIPTS = ["كلب ينبح ثم قطة تموء", "כלב נובח ואז חתול מיילל", "狗叫然后猫叫", "犬が吠えてから猫が鳴く", "개가 짖고 고양이가 운다",
           "собака лает, затем кошка мяукает", "कुत्ता भौंकता है फिर बिल्ली", "หมาเห่าแล้วแมวร้อง",
           "ο σκύλος γαβγίζει μετά",
           "ch\u0300a\u0301o\u0302 c\u0327a\u0308", "ᚠᛇᚻ᛫ᛒᛦᚦ", "𝔞 𝔡𝔬𝔤 𝔟𝔞𝔯𝔨𝔰"]
CONTROLS = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\u200b", "\u200d", "\u202e", "\ufeff",
            "\u2028", "\u2029", "\r", "\t", "\x85"]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\udc80"]
PUNCT = list("!?.,;:-—–()[]{}\"'`~@#$%^&*_+=|\\/<>…")


def _sentence(rng: random.Random, events: int) -> str:
    parts = [rng.choice(EVENTS)]
    for _ in range(events - 1):
        parts += [rng.choice(CONNECTIVES), rng.choice(EVENTS)]
    text = " ".join(parts).replace(" , ", ", ")
    return text[:1].upper() + text[1:]


def _attribute_heavy(rng: random.Random, words: int) -> str:
    out: list[str] = []
    while len(out) < words:
        out += [rng.choice(["a", "the"]), rng.choice(ATTRIBUTES), rng.choice(ATTRIBUTES), rng.choice(NOUNS),
                rng.choice(["and", ",", "then", "while"])]
    return " ".join(out[:words])


def _sprinkle(rng: random.Random, text: str, pool: list[str], k: int) -> str:
    chars = list(text)
    for _ in range(k):
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(pool))
    return "".join(chars)


def generate(n: int = 2000, seed: int = 0) -> list[str]:
    """n captions, cycling through the hostile kinds (empty, emoji, RTL, controls, surrogates, long, ...)."""
    rng = random.Random(seed)
    fixed = ["", " ", "\t\n", "\u00a0\u2003\u3000", ".", "then", "then then then and after before",
             " ".join(["then then then and after before"] * 30), " ".join(["word"] * 5000),
             " ".join(rng.choice(EVENTS) for _ in range(1000)), "a" * 50000 + " then " + "b" * 50000,
             "!" * 300, "A DOG BARKS THEN A CAT MEOWS", "\ud800", "A dog barks \ud800 then a cat meows"]
    kinds = [
        lambda: _sentence(rng, rng.randint(1, 4)),
        lambda: _sentence(rng, rng.randint(2, 8)) + rng.choice(["", ".", "!", " ..."]),
        lambda: _sprinkle(rng, _sentence(rng, 2), EMOJI, rng.randint(1, 6)),
        lambda: rng.choice(SCRIPTS) + rng.choice(["", " then ", " and ", " ثم "]) + rng.choice(SCRIPTS + EVENTS),
        lambda: _sprinkle(rng, _sentence(rng, 2), CONTROLS, rng.randint(1, 5)),
        lambda: _sprinkle(rng, _sentence(rng, 2), SURROGATES, rng.randint(1, 2)),
        lambda: " ".join(rng.choice(["then", "and", "after", "before", "followed by", "while", ","])
                         for _ in range(rng.randint(1, 60))),
        lambda: "".join(rng.choice(PUNCT + [" "]) for _ in range(rng.randint(1, 150))),
        lambda: _attribute_heavy(rng, rng.randint(5, 200)),
        lambda: " ".join(rng.choice(EVENTS) + " " + rng.choice(CONNECTIVES) for _ in range(rng.randint(10, 60))),
        lambda: " ".join(rng.choice(EVENTS) for _ in range(rng.randint(200, 5000))),
        lambda: _sentence(rng, 3).upper(),
        lambda: _sprinkle(rng, _sentence(rng, 3), SCRIPTS + EMOJI + CONTROLS, rng.randint(1, 4)),
    ]
    out = list(fixed)
    while len(out) < n:
        out.append(rng.choice(kinds)())
    return out[:n]
