"""Unit tests of the composition-aware hard-negative rewriter (order and attribute negatives)."""

from __future__ import annotations

import pytest

from compclap.text.inflect import gerund, indefinite_article, past, third_person, verb_lemma
from compclap.text.negatives import HardNegativeRewriter, normalize

spacy = pytest.importorskip("spacy")


@pytest.fixture(scope="module")
def rw() -> HardNegativeRewriter:
    r = HardNegativeRewriter(kinds=("order", "attribute"), max_per_kind=3, seed=0)
    r.nlp  # noqa: B018 - load spaCy once for the module
    return r


def _of(rw: HardNegativeRewriter, caption: str, kind: str) -> list[str]:
    return [n["text"] for n in rw.rewrite(caption) if n["kind"] == kind]


# ---------------------------------------------------------------------------------------------
# order: every sequential relation of the issue, with the grammar kept

ORDER_CASES = [
    # the examples
    ("A man speaks followed by a dog barking", "A dog barks followed by a man speaking"),
    ("A car starts after a door slams", "A door slams after a car starts"),
    ("After a horn honks, a bus leaves", "After a bus leaves, a horn honks"),
    # one case per relation
    ("A drill whirs, then a hammer knocks", "A hammer knocks, then a drill whirs"),
    ("An engine revs and then tires squeal", "Tires squeal and then an engine revs"),
    ("A rooster crows before birds begin to chirp", "Birds begin to chirp before a rooster crows"),
    ("A pig oinks loudly, after which a man talks", "A man talks, after which a pig oinks loudly"),
    ("A man speaks and later a dog barks", "A dog barks and later a man speaks"),
    ("A bell rings succeeded by a man speaking", "A man speaks succeeded by a bell ringing"),
    ("A dog barks preceded by a man speaking", "A man speaks preceded by a dog barking"),
    ("A man speaks and ends with a laugh", "A laugh followed by a man speaking"),
    ("A song ends with applause", "Applause ends with a song"),
    ("Applause follows a short speech", "A short speech follows applause"),
    ("A man speaks and a woman speaks afterwards", "A woman speaks and a man speaks afterwards"),
    ("A dog barks, and finally a door closes", "A door closes, and finally a dog barks"),
    ("First a man speaks, then a dog barks", "First a dog barks, then a man speaks"),
    ("A dog barks until a man shouts", "A man shouts until a dog barks"),
    ("A couple of loud clanks are followed by a man speaking", "A man speaking is followed by a couple of loud clanks"),
    # grammar: finite <-> gerund, shared subjects, progressive and passive
    ("A woman talks followed by a baby laughing", "A baby laughs followed by a woman talking"),
    ("A train horn blows followed by the clacking of wheels",
     "The clacking of wheels followed by a train horn blowing"),
    ("A baby screams then starts to cry", "A baby starts to cry then screams"),
    ("A woman sneezes before describing the side effects of her cold",
     "A woman describes the side effects of her cold before sneezing"),
    ("A gun is being loaded followed by multiple shots being fired",
     "Multiple shots are fired followed by a gun being loaded"),
    ("Cats are meowing, dogs are barking, and then a woman speaks",
     "A woman speaks, and then cats are meowing, dogs are barking"),
    ("A man gives a speech and people begin clapping afterwards",
     "People begin clapping and a man gives a speech afterwards"),
]


@pytest.mark.parametrize("caption,expected", ORDER_CASES)
def test_order_relations(rw, caption, expected):
    assert expected in _of(rw, caption, "order")


def test_converse_connective_keeps_mention_order(rw):
    assert "A child screams before a balloon pops" in _of(rw, "A child screams after a balloon pops", "order")
    assert "A man speaks after a dog barks" in _of(rw, "A man speaks followed by a dog barking", "order")
    assert "Before a horn honks, a bus leaves" in _of(rw, "After a horn honks, a bus leaves", "order")


def test_three_events_give_other_permutations(rw):
    caption = "Someone knocks on a door, then a dog barks, then a man shouts"
    negs = _of(rw, caption, "order")
    assert negs[0] == "A man shouts, then a dog barks, then someone knocks on a door"
    assert len(negs) == 3 and len(set(negs)) == 3
    events = ["someone knocks on a door", "a dog barks", "a man shouts"]
    for neg in negs:
        parts = [p.strip().lower() for p in neg.split(", then ")]
        assert sorted(parts) == sorted(events) and parts != events


def test_same_event_twice_is_not_reordered(rw):
    # swapping two identical events would say the same thing: not a negative
    assert _of(rw, "A man speaks followed by a man speaking", "order") == []
    assert _of(rw, "A siren wails, then another siren wails", "order") == []


@pytest.mark.parametrize("caption", [
    "Music plays while people chat",
    "A man speaks as a dog barks",
    "Waves crash with seagulls calling",
    "Leaves rustle and birds sing",
    "A man speaks over the sound of traffic",
    "A car passes amid heavy traffic",
    "A man talks while music plays in the background",
    "A woman speaks along with birds chirping",
    "A man speaks accompanied by a guitar",
    "A cat purrs",
    "A dog barks after a while",
    "Cars pass by one after another",
])
def test_no_order_negative_for_simultaneous_or_single_events(rw, caption):
    assert _of(rw, caption, "order") == []


def test_simultaneous_part_stays_inside_an_event(rw):
    negs = _of(rw, "A man talks while a dog barks, then a car honks", "order")
    assert "A car honks, then a man talks while a dog barks" in negs
    # a fronted "as ..." clause travels with its event and goes after it inside the sentence
    negs = _of(rw, "As music plays in the background, a person sands wood, followed by people talking", "order")
    assert "People talk, followed by a person sanding wood as music plays in the background" in negs


def test_repeated_event_and_unclear_subjects_are_left_alone(rw):
    assert _of(rw, "Man speaking followed by another man", "order") == []
    assert _of(rw, "A dog barks then another dog barks loudly", "order") == []
    # "then whimper": whose? (the dog or the smaller dogs) - no guess, no order negative
    assert _of(rw, "A dog pants as smaller dogs bark then whimper", "order") == []
    # a pronoun never opens the sentence with nothing to refer to
    assert all(not n.startswith("It ") for n in _of(rw, "Revving of a car engine before it quickly accelerates",
                                                    "order"))


# ---------------------------------------------------------------------------------------------
# attribute

ATTRIBUTE_CASES = [
    ("A loud dog and a quiet cat", "A quiet dog and a loud cat"),
    ("A high whistle and a low hum", "A low whistle and a high hum"),
    ("A woman sings softly as a man shouts loudly", "A woman sings loudly as a man shouts softly"),
    ("Quiet footsteps followed by a loud slam", "Loud footsteps followed by a quiet slam"),
    ("A large truck rumbles while a small bird sings", "A small truck rumbles while a large bird sings"),
    ("An old man talks while a young woman laughs", "A young man talks while an old woman laughs"),
    ("Thunder rumbles in the distance, and rain falls nearby",
     "Thunder rumbles nearby, and rain falls in the distance"),
    ("A loud alarm beeps", "A quiet alarm beeps"),
    ("A dog barks far away", "A dog barks nearby"),
    ("A distant siren wails", "A nearby siren wails"),
    ("Rain falls heavily", "Rain falls lightly"),
    ("A car drives fast", "A car drives slowly"),
    ("A deep voice speaks", "A shrill voice speaks"),
    ("A short beep sounds", "A long beep sounds"),
    ("A high-pitched whistle blows", "A low-pitched whistle blows"),
    ("Wind blows hard", "Wind blows gently"),
    ("A man speaks with music in the background", "A man speaks with music in the foreground"),
    ("A motor speeds up", "A motor slows down"),
]


@pytest.mark.parametrize("caption,expected", ATTRIBUTE_CASES)
def test_attribute_negatives(rw, caption, expected):
    assert expected in _of(rw, caption, "attribute")


def test_swap_comes_before_single_replacements(rw):
    assert _of(rw, "A high whistle and a low hum", "attribute")[0] == "A low whistle and a high hum"


@pytest.mark.parametrize("caption, swap", [
    # hyphenated compounds are looked up as one lexicon entry, so they swap as opposites
    ("A high-pitched knocking, then a brief loud low-pitched hum",
     "A low-pitched knocking, then a brief loud high-pitched hum"),
    # "low/RB -pitched" does not cut the adjectives before it off their noun
    ("A brief loud low-pitched knocking, then a long low hum", "A long loud low-pitched knocking, then a brief low hum"),
    # "low" and "high-pitched" are opposite values of one scale in two forms
    ("A long loud low chirping before a long loud high-pitched noise burst",
     "A long loud high-pitched chirping before a long loud low noise burst"),
    # "a long/RB high whistle": spaCy's adverb tag inside a noun phrase is read as the adjective it is
    ("A soft short beep then a long high whistle", "A soft long beep then a short high whistle"),
])
def test_opposite_values_swap_first(rw, caption, swap):
    assert _of(rw, caption, "attribute")[0] == swap


def test_no_swap_of_synonyms_and_cross_scale_swaps_last(rw):
    # "a soft hum and a quiet bell" says the same thing: never a negative
    assert "A soft hum and a quiet bell" not in _of(rw, "A quiet hum and a soft bell", "attribute")
    # a loudness word traded with a pitch word may still be true of the audio: after every replacement
    rewriter = HardNegativeRewriter(kinds=("attribute",), max_per_kind=20, seed=0)
    negatives = [n["text"] for n in rewriter.rewrite("A soft beep and a high whistle")]
    assert negatives[-1] == "A high beep and a soft whistle"
    assert "A loud beep and a high whistle" in negatives[:-1]


def test_no_swap_that_puts_one_scale_twice_on_an_event_or_trades_a_value_for_itself():
    rewriter = HardNegativeRewriter(kinds=("attribute",), max_per_kind=50, seed=0)
    negatives = [n["text"] for n in rewriter.rewrite("A short low knocking is followed by a long loud low-pitched hum")]
    assert "A long low knocking is followed by a short loud low-pitched hum" in negatives
    # short <-> low-pitched would leave the hum "long ... short" and the knocking "low-pitched low"
    assert "A low-pitched low knocking is followed by a long loud short hum" not in negatives
    # low <-> low-pitched says the same thing
    assert "A short low-pitched knocking is followed by a long loud low hum" not in negatives


def test_all_antonyms_offered_for_one_attribute(rw):
    assert _of(rw, "A loud alarm beeps", "attribute") == ["A quiet alarm beeps", "A soft alarm beeps",
                                                          "A faint alarm beeps"]


def test_attribute_senses_and_fixed_phrases(rw):
    assert "A serrated edge rubs against a soft surface" in _of(rw, "A serrated edge rubs against a hard surface",
                                                                "attribute")
    assert all("quiet" not in n for n in _of(rw, "A bird calls out loud", "attribute"))
    assert _of(rw, "A man speaks in a high school gym", "attribute") == []


def test_no_attribute_from_prepositions_connective_adverbs_or_names(rw):
    assert _of(rw, "A helicopter hovers and fades in the distance", "attribute") == [
        "A helicopter hovers and fades nearby", "A helicopter hovers and fades up close"]
    assert all("slowly" not in n for n in _of(rw, "A bang then quickly a door slams", "attribute"))
    assert _of(rw, "A woman speaks over a loud speaker", "attribute") == []
    assert _of(rw, "A mid-size engine runs", "attribute") == []


def test_caption_with_nothing_to_rewrite_gets_nothing(rw):
    assert rw.rewrite("A cat purrs") == []
    assert rw.rewrite("Someone types on a keyboard") == []


# ---------------------------------------------------------------------------------------------
# invariants, determinism, bad input

INVARIANT_CAPTIONS = [c for c, _ in ORDER_CASES + ATTRIBUTE_CASES] + [
    "A dog barks. A DOG BARKS!", "A man speaks, then a man speaks.", "Loud, louder and louder",
    "A bird chirps then a bird chirps then a bird chirps",
]


def test_no_negative_equals_its_caption_or_only_changes_punctuation(rw):
    for caption, negs in zip(INVARIANT_CAPTIONS, rw.rewrite_many(INVARIANT_CAPTIONS)):
        texts = [normalize(n["text"]) for n in negs]
        assert normalize(caption) not in texts, caption
        assert len(texts) == len(set(texts)), caption
        assert all(n["kind"] in {"order", "attribute"} and n["text"] for n in negs)


def test_max_per_kind_and_kinds(rw):
    caption = "A man speaks, a dog barks, then a cat meows and finally a loud bird sings"
    for k in (1, 2):
        one = HardNegativeRewriter(max_per_kind=k, seed=0)
        one._nlp = rw.nlp
        negs = one.rewrite(caption)
        assert sum(n["kind"] == "order" for n in negs) == k
    only = HardNegativeRewriter(kinds=("attribute",))
    only._nlp = rw.nlp
    assert {n["kind"] for n in only.rewrite(caption)} == {"attribute"}
    with pytest.raises(ValueError):
        HardNegativeRewriter(kinds=("colour",))


def test_deterministic_for_a_seed_whatever_the_batching(rw):
    captions = [c for c, _ in ORDER_CASES] * 2
    first = rw.rewrite_many(captions, batch_size=4)
    assert first == rw.rewrite_many(captions, batch_size=64)
    assert first == [rw.rewrite(c) for c in captions]
    # several processes: identical results (each caption has its own seeded random stream)
    assert first == rw.rewrite_many(captions, batch_size=4, n_process=2)


def test_seed_changes_only_which_permutations_are_kept(rw):
    caption = "A man speaks, a dog barks, then a cat meows and finally a bird sings"
    outs = []
    for seed in range(4):
        r = HardNegativeRewriter(seed=seed)
        r._nlp = rw.nlp
        negs = _of(r, caption, "order")
        assert negs[0] == "A bird sings, then a cat meows and finally a man speaks, a dog barks"
        outs.append(tuple(negs))
    assert len(set(outs)) > 1


def test_bad_input_never_crashes(rw):
    assert rw.rewrite("") == [] and rw.rewrite("   ") == [] and rw.rewrite(None) == []  # type: ignore[arg-type]
    out = rw.rewrite_many(["", None, 5, "A dog barks then a cat meows", "then", ",,,", "and and"])
    assert out[:3] == [[], [], []]
    assert out[3][0] == {"text": "A cat meows then a dog barks", "kind": "order"}
    assert out[4:] == [[], [], []]


# ---------------------------------------------------------------------------------------------
# inflection helpers

@pytest.mark.parametrize("lemma,s3,ger,pst", [
    ("bark", "barks", "barking", "barked"), ("buzz", "buzzes", "buzzing", "buzzed"),
    ("cry", "cries", "crying", "cried"), ("hum", "hums", "humming", "hummed"),
    ("idle", "idles", "idling", "idled"), ("ring", "rings", "ringing", "rang"),
    ("coo", "coos", "cooing", "cooed"), ("die", "dies", "dying", "died"), ("go", "goes", "going", "went"),
    ("whistle", "whistles", "whistling", "whistled"), ("rev", "revs", "revving", "revved"),
    ("play", "plays", "playing", "played"), ("occur", "occurs", "occurring", "occurred"),
])
def test_inflection(lemma, s3, ger, pst):
    assert third_person(lemma) == s3 and gerund(lemma) == ger and past(lemma) == pst
    assert verb_lemma(s3) == lemma and verb_lemma(ger) == lemma


def test_indefinite_article():
    assert [indefinite_article(w) for w in ("old", "young", "hour", "unique", "loud", "elderly")] == \
        ["an", "a", "an", "a", "a", "an"]
