"""Curated word lists for the hard-negative rewriter.

Everything here is plain data: verbs that describe sound events (to repair the tagger, which often
reads "A woman talks" or "Tires squeal" as noun phrases), irregular verb forms, the temporal
vocabulary of the order rewriter and the antonym lexicon of the attribute rewriter.
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Verbs that commonly describe a sound event in a caption (base forms). Used to tell "a dog barks"
# (clause) from "dog barks" (noun) when the tagger is unsure, and to recover lemmas of -s / -ing
# forms. Not exhaustive: tokens the tagger already reads as verbs need not be listed.
SOUND_VERBS: frozenset[str] = _words("""
accelerate advance announce answer applaud approach argue arrive ascend attempt babble baa bang
bark bawl bay beat beep begin belch bellow blare blast bleat bleep blow bluster boil bolt bong boo
boom bounce bow bray brake break breathe bubble buckle bump burble burn burp burst buzz cackle call
caw change chant chat chatter cheep cheer chew chime chip chirp chirrup chitter choke chomp chop
chortle chug chuckle churn clack clang clank clap clash clatter clean clear click climb clink clip
clomp clop close cluck clunk coo cough crack crackle crank crash crawl creak croak croon crow crumble
crumple crunch cry cycle dash decelerate decrease depart descend die dig ding dive drag drain drift
drill drip drive drizzle drone drop drum echo emit end erupt explode fade fall fart fiddle fill fire
fizz fizzle flap flick flicker float flow flush flutter fly fry gallop gargle gasp gather giggle
glide gnaw go gobble grind groan growl grumble grunt guffaw gulp gurgle gush hack hammer hiccup hiss
hit hoot holler honk hoot hover howl hum hush idle ignite increase jabber jangle jingle jump kick
knock land lap laugh leak leave lick mew meow mew moan moo mow mumble murmur mutter narrate neigh
nicker oink open operate pant pass patter pause peal peck peep ping play plink plop plunk pop pound
pour power pray preach puff pull pulse pump purr push quack quake rain ramble ramp rap rasp rattle
reply ring rip rise roar rock roll rotate rub rumble run rush rustle saw scrape scratch scream
screech scurry scuff scuttle shake shatter shift shoot shout shriek shuffle shush shut sigh sing
sizzle skid slam slap slide slosh slurp smash snap snarl sneeze sniff sniffle snore snort sob speak
speed spin spit splash splatter sputter squawk squeak squeal squelch squish stamp start stir stomp
stop strike strum stutter swallow sweep swish swoosh tap tear thud thump thunder tick ticktock tinkle
tick tap toll toot topple trickle trill trot tumble turn tweet twitter type vibrate vroom wail walk
warble wash wheeze whimper whine whinny whip whir whirl whirr whish whisper whistle whiz whizz whoop
whoosh whump work yap yawn yell yelp yip yodel yowl zap zip zoom
talk chat converse discuss whisper laugh sing speak say shout scream cry giggle chuckle snicker
cheer clap applaud communicate respond reply answer narrate lecture converse mumble mutter
vocalize exclaim grunt groan moan sob weep wail howl bark growl snarl whine whimper yowl purr
meow hiss chirp tweet squawk caw coo crow cluck quack honk gobble bleat baa moo oink neigh whinny
bray buzz hum drone rumble roar thunder idle rev accelerate decelerate brake skid screech squeal
honk beep ring ding chime toll clang clank clink jingle jangle rattle clatter crash bang slam
thump thud knock tap pound hammer drill saw sand grind scrape scratch rub brush sweep spray
splash drip trickle flow pour gush gurgle bubble boil sizzle fry crackle pop burst explode fire
blow gust whistle whoosh swoosh rustle crinkle crumple tear rip snap crack break shatter smash
type click tick clack clop trot gallop walk run step stomp shuffle jog hop crawl climb fly flap
flutter land splash swim paddle sail cruise pass approach recede leave arrive depart start stop
continue resume begin end fade echo reverberate resonate vibrate rotate spin whir whirl churn
operate power play perform strum pluck drum chant pray preach announce narrate shush snore
sneeze cough sniff sniffle breathe pant gasp sigh yawn hiccup burp belch fart slurp gulp chew
eat drink swallow spit wheeze choke kiss lick smack slap punch kick hit strike bump bounce roll
slide drag pull push lift drop fall tumble topple collapse flush drain fill empty leak spurt
squirt hiss steam smoke burn ignite erupt rain pour drizzle sprinkle splatter spatter patter
""")

# -s forms that are far more often nouns than verbs after a noun ("bird sounds", "car horns").
NOUNISH_S_FORMS: frozenset[str] = _words("sounds noises footsteps steps sirens horns bells drums")

# Mass / bare nouns that start a clause without a determiner: "Water splashes", "Wind blows".
MASS_NOUNS: frozenset[str] = _words("""
water wind rain music thunder steam traffic applause laughter static air liquid machinery fire
gunfire smoke gas oil food rainfall hail snow ice paper plastic metal wood glass sand gravel
rubber speech chatter noise machinery electricity someone somebody something everyone everybody
nobody nothing it he she someone's
""")

# Quantifiers that make a following "N Vs" a plural noun phrase ("multiple dog barks").
PLURAL_QUANTIFIERS: frozenset[str] = _words("""
multiple several many some numerous few various two three four five six seven eight nine ten
lots more other repeated continuous loud quiet soft distant faint muffled rapid short long
""")

SINGULAR_DETERMINERS: frozenset[str] = _words("a an one this that each every the another his her its their my our your")

# Irregular verbs: lemma -> (past, past participle).
IRREGULAR_VERBS: dict[str, tuple[str, str]] = {
    "be": ("was", "been"), "have": ("had", "had"), "do": ("did", "done"), "go": ("went", "gone"),
    "come": ("came", "come"), "become": ("became", "become"), "run": ("ran", "run"),
    "ring": ("rang", "rung"), "sing": ("sang", "sung"), "blow": ("blew", "blown"),
    "fly": ("flew", "flown"), "speak": ("spoke", "spoken"), "fall": ("fell", "fallen"),
    "drive": ("drove", "driven"), "make": ("made", "made"), "give": ("gave", "given"),
    "take": ("took", "taken"), "get": ("got", "gotten"), "hear": ("heard", "heard"),
    "hit": ("hit", "hit"), "shut": ("shut", "shut"), "cut": ("cut", "cut"), "put": ("put", "put"),
    "set": ("set", "set"), "let": ("let", "let"), "burst": ("burst", "burst"),
    "beat": ("beat", "beaten"), "break": ("broke", "broken"), "shake": ("shook", "shaken"),
    "throw": ("threw", "thrown"), "draw": ("drew", "drawn"), "grow": ("grew", "grown"),
    "know": ("knew", "known"), "see": ("saw", "seen"), "say": ("said", "said"),
    "tell": ("told", "told"), "keep": ("kept", "kept"), "leave": ("left", "left"),
    "sleep": ("slept", "slept"), "sweep": ("swept", "swept"), "creep": ("crept", "crept"),
    "weep": ("wept", "wept"), "begin": ("began", "begun"), "swing": ("swung", "swung"),
    "sting": ("stung", "stung"), "cling": ("clung", "clung"), "fling": ("flung", "flung"),
    "spin": ("spun", "spun"), "win": ("won", "won"), "dig": ("dug", "dug"),
    "stick": ("stuck", "stuck"), "strike": ("struck", "struck"), "bite": ("bit", "bitten"),
    "ride": ("rode", "ridden"), "rise": ("rose", "risen"), "write": ("wrote", "written"),
    "tear": ("tore", "torn"), "wear": ("wore", "worn"), "swear": ("swore", "sworn"),
    "eat": ("ate", "eaten"), "freeze": ("froze", "frozen"), "wake": ("woke", "woken"),
    "hold": ("held", "held"), "stand": ("stood", "stood"), "sit": ("sat", "sat"),
    "feel": ("felt", "felt"), "bring": ("brought", "brought"), "catch": ("caught", "caught"),
    "fight": ("fought", "fought"), "hang": ("hung", "hung"), "lead": ("led", "led"),
    "feed": ("fed", "fed"), "bleed": ("bled", "bled"), "speed": ("sped", "sped"),
    "slide": ("slid", "slid"), "shoot": ("shot", "shot"), "light": ("lit", "lit"),
    "lay": ("laid", "laid"), "pay": ("paid", "paid"), "spit": ("spat", "spat"),
    "split": ("split", "split"), "find": ("found", "found"), "grind": ("ground", "ground"),
    "wind": ("wound", "wound"), "send": ("sent", "sent"), "bend": ("bent", "bent"),
    "build": ("built", "built"), "lose": ("lost", "lost"), "meet": ("met", "met"),
    "shine": ("shone", "shone"), "sink": ("sank", "sunk"), "drink": ("drank", "drunk"),
    "swim": ("swam", "swum"), "forget": ("forgot", "forgotten"), "choose": ("chose", "chosen"),
    "think": ("thought", "thought"), "teach": ("taught", "taught"), "buy": ("bought", "bought"),
    "seek": ("sought", "sought"), "sell": ("sold", "sold"), "spend": ("spent", "spent"),
    "mean": ("meant", "meant"), "understand": ("understood", "understood"),
    "deal": ("dealt", "dealt"), "dive": ("dove", "dived"), "hide": ("hid", "hidden"),
    "shrink": ("shrank", "shrunk"), "slit": ("slit", "slit"), "quit": ("quit", "quit"),
    "spread": ("spread", "spread"), "read": ("read", "read"), "bear": ("bore", "borne"),
    "steal": ("stole", "stolen"), "lie": ("lay", "lain"), "slay": ("slew", "slain"),
}

# Third-person singular / gerund forms that the suffix rules get wrong.
IRREGULAR_3SG: dict[str, str] = {"be": "is", "have": "has", "do": "does", "go": "goes", "whiz": "whizzes",
                                 "quiz": "quizzes"}
IRREGULAR_GERUND: dict[str, str] = {"be": "being", "die": "dying", "lie": "lying", "tie": "tying",
                                    "vie": "vying", "see": "seeing", "flee": "fleeing", "panic": "panicking",
                                    "mimic": "mimicking", "picnic": "picnicking", "traffic": "trafficking"}
# Surface form -> lemma for forms that the suffix rules cannot undo.
IRREGULAR_FORMS: dict[str, str] = {
    "is": "be", "are": "be", "am": "be", "was": "be", "were": "be", "been": "be", "being": "be",
    "'s": "be", "has": "have", "had": "have", "having": "have", "does": "do", "did": "do",
    "done": "do", "doing": "do", "goes": "go", "went": "go", "gone": "go", "dying": "die",
    "lying": "lie", "tying": "tie", "sped": "speed",
}
for _lemma, (_past, _pp) in IRREGULAR_VERBS.items():
    IRREGULAR_FORMS.setdefault(_past, _lemma)
    IRREGULAR_FORMS.setdefault(_pp, _lemma)
IRREGULAR_FORMS["saw"] = "see"      # "saw" (the tool verb) is handled by the tagger's lemma
IRREGULAR_FORMS.pop("left", None)   # adjective / direction far more often than a verb
IRREGULAR_FORMS.pop("ground", None)
IRREGULAR_FORMS.pop("wound", None)
IRREGULAR_FORMS.pop("lay", None)
IRREGULAR_FORMS.pop("light", None)

# Two-syllable verbs that double their final consonant (stress on the last syllable).
DOUBLING_VERBS: frozenset[str] = _words("""
begin occur recur refer prefer admit commit permit submit emit omit transmit control patrol compel
propel repel expel rebel regret forget upset equip unzip outrun rerun abet deter incur confer defer
""")

AUXILIARIES: frozenset[str] = _words("is are am was were be been being has have had does do did 's 're")
MODALS: frozenset[str] = _words("can could will would may might shall should must")

# Words that open a subordinate clause: verbs after them belong to that clause.
SUBORDINATORS: frozenset[str] = _words("""
as while whilst when whenever whereas because since although though if that which who whom whose
where until till unless once
""")

# Nouns that head "the sound of a dog barking": the clause inside is not the caption's event verb.
SOUND_NOUNS: frozenset[str] = _words("""
sound sounds noise noises recording recordings audio clip clips sample samples tone tones
""")

# Heads of "<head> of <noun> <verb>-ing" whose gerund is the event ("a group of men speaking");
# with other heads the gerund belongs to the noun inside ("the clatter of objects being moved").
COLLECTIVE_HEADS: frozenset[str] = _words("""
group groups crowd crowds flock flocks herd herds pack pair pairs couple team family swarm choir band
audience gaggle litter troop class fleet convoy bunch lot lots number few handful variety series set
chorus colony mob line gang
""")

# Collective heads that take the number of the noun after "of" ("a couple of men speak").
QUANTITY_HEADS: frozenset[str] = _words("couple lot lots bunch number few handful variety plenty majority")

# Nouns that are plural without an -s (agreement).
PLURAL_NOUNS: frozenset[str] = _words("people men women children police geese mice feet teeth cattle kids folks")

PERSON_NOUNS: frozenset[str] = _words("""
man woman boy girl person lady guy gentleman child kid baby toddler infant speaker narrator announcer
someone somebody male female adult teenager teen father mother dad mom son daughter he she men women
people children kids boys girls ladies guys
""")

PERSONAL_PRONOUNS: dict[str, str] = {"it": "sg", "he": "sg", "she": "sg", "they": "pl", "we": "pl", "i": "pl",
                                     "you": "pl", "this": "sg", "that": "sg"}

# ---------------------------------------------------------------------------------------------
# Order: positional markers kept in place when events are permuted.
FIRST_MARKERS: tuple[str, ...] = ("at the beginning", "in the beginning", "to begin with", "at first",
                                  "initially", "firstly", "first")
LAST_MARKERS: tuple[str, ...] = ("shortly afterwards", "soon afterwards", "shortly afterward", "soon afterward",
                                 "shortly after", "soon after", "right after", "after that", "afterwards",
                                 "afterward", "later on", "a bit later", "a little later", "a moment later",
                                 "moments later", "seconds later", "later", "thereafter", "eventually", "finally",
                                 "at the end", "in the end", "at last", "next")

# Right-hand sides of "after" / "before" that are time spans, not events.
TIME_SPANS: frozenset[str] = _words("""
while awhile moment moments second seconds minute minutes time times delay bit that this which each
another other
""")

# ---------------------------------------------------------------------------------------------
# Attribute lexicon: lower-case surface form -> (coarse tag, antonyms in order of preference).
# Coarse tags: "J" adjective (incl. comparatives), "R" adverb, "P" multi-word adverbial phrase,
# "I" preposition-like ("near the microphone").
ANTONYMS: dict[tuple[str, str], tuple[str, ...]] = {
    # loudness
    ("loud", "J"): ("quiet", "soft", "faint"), ("quiet", "J"): ("loud",), ("soft", "J"): ("loud",),
    ("faint", "J"): ("loud",), ("noisy", "J"): ("quiet",), ("deafening", "J"): ("faint",),
    ("booming", "J"): ("faint",), ("thunderous", "J"): ("faint",),
    ("louder", "J"): ("quieter", "softer"), ("quieter", "J"): ("louder",), ("softer", "J"): ("louder",),
    ("fainter", "J"): ("louder",), ("loudly", "R"): ("quietly", "softly"), ("quietly", "R"): ("loudly",),
    ("softly", "R"): ("loudly",), ("faintly", "R"): ("loudly",), ("loud", "R"): ("softly",),
    ("louder", "R"): ("quieter",), ("quieter", "R"): ("louder",), ("softer", "R"): ("louder",),
    ("noisily", "R"): ("quietly",), ("silently", "R"): ("loudly",),
    # pitch
    ("high", "J"): ("low",), ("low", "J"): ("high",), ("higher", "J"): ("lower",), ("lower", "J"): ("higher",),
    ("deep", "J"): ("shrill", "high-pitched"), ("shrill", "J"): ("deep",), ("squeaky", "J"): ("deep",),
    ("deeper", "J"): ("higher",), ("shriller", "J"): ("deeper",), ("high", "R"): ("low",), ("low", "R"): ("high",),
    ("high-pitched", "J"): ("low-pitched", "deep"), ("low-pitched", "J"): ("high-pitched",),
    ("highpitched", "J"): ("low-pitched",),
    # speed
    ("fast", "J"): ("slow",), ("quick", "J"): ("slow",), ("rapid", "J"): ("slow",), ("slow", "J"): ("fast", "rapid"),
    ("faster", "J"): ("slower",), ("slower", "J"): ("faster",), ("speedy", "J"): ("slow",),
    ("fast", "R"): ("slowly",), ("quickly", "R"): ("slowly",), ("rapidly", "R"): ("slowly",),
    ("slowly", "R"): ("quickly", "rapidly"), ("faster", "R"): ("slower",), ("slower", "R"): ("faster",),
    ("swiftly", "R"): ("slowly",), ("hastily", "R"): ("slowly",), ("slow", "R"): ("fast",),
    # distance
    ("distant", "J"): ("nearby", "close"), ("nearby", "J"): ("distant",), ("faraway", "J"): ("nearby",),
    ("far-off", "J"): ("nearby",), ("far-away", "J"): ("nearby",), ("close", "J"): ("distant",),
    ("closer", "J"): ("farther away",), ("closer", "R"): ("farther away",), ("nearer", "R"): ("farther away",),
    ("nearby", "R"): ("in the distance", "far away"), ("close by", "P"): ("far away",),
    ("up close", "P"): ("far away", "from afar"), ("far away", "P"): ("nearby", "close by"),
    ("far off", "P"): ("nearby", "close by"), ("in the distance", "P"): ("nearby", "up close"),
    ("from a distance", "P"): ("up close",), ("at a distance", "P"): ("up close",),
    ("from afar", "P"): ("up close",), ("far in the distance", "P"): ("nearby",),
    ("from far away", "P"): ("from up close",),
    ("close to", "I"): ("far from",), ("near", "I"): ("far from",), ("far from", "I"): ("close to",),
    ("in the background", "P"): ("in the foreground",), ("in the foreground", "P"): ("in the background",),
    # weight / force
    ("heavy", "J"): ("light",), ("light", "J"): ("heavy",), ("heavier", "J"): ("lighter",),
    ("lighter", "J"): ("heavier",), ("heavily", "R"): ("lightly",), ("lightly", "R"): ("heavily",),
    ("strong", "J"): ("light", "weak"), ("weak", "J"): ("strong",), ("stronger", "J"): ("weaker",),
    ("weaker", "J"): ("stronger",), ("strongly", "R"): ("gently",), ("gentle", "J"): ("strong", "harsh"),
    ("gently", "R"): ("forcefully", "hard"), ("harsh", "J"): ("gentle",), ("forceful", "J"): ("gentle",),
    ("forcefully", "R"): ("gently",), ("violent", "J"): ("gentle",), ("violently", "R"): ("gently",),
    ("hard", "R"): ("gently", "softly"), ("hard", "J"): ("gentle", "soft"), ("powerful", "J"): ("weak",),
    ("intense", "J"): ("mild",), ("mild", "J"): ("intense",),
    # timbre
    ("sharp", "J"): ("dull",), ("dull", "J"): ("sharp",), ("muffled", "J"): ("clear",), ("clear", "J"): ("muffled",),
    ("crisp", "J"): ("muffled",), ("sharply", "R"): ("dully",), ("clearly", "R"): ("indistinctly",),
    ("distorted", "J"): ("clean",),
    # duration / size
    ("short", "J"): ("long",), ("long", "J"): ("short", "brief"), ("brief", "J"): ("long", "prolonged"),
    ("prolonged", "J"): ("brief",), ("lengthy", "J"): ("brief",), ("shorter", "J"): ("longer",),
    ("longer", "J"): ("shorter",), ("briefly", "R"): ("at length",),
    ("big", "J"): ("small",), ("large", "J"): ("small",), ("small", "J"): ("large", "big"), ("huge", "J"): ("tiny",),
    ("tiny", "J"): ("huge",), ("bigger", "J"): ("smaller",), ("larger", "J"): ("smaller",),
    ("smaller", "J"): ("larger",), ("giant", "J"): ("tiny",), ("massive", "J"): ("tiny",),
    # temporal texture
    ("continuous", "J"): ("intermittent",), ("constant", "J"): ("intermittent",), ("steady", "J"): ("intermittent",),
    ("intermittent", "J"): ("continuous",), ("sporadic", "J"): ("continuous",), ("periodic", "J"): ("continuous",),
    ("continuously", "R"): ("intermittently",), ("constantly", "R"): ("intermittently",),
    ("steadily", "R"): ("intermittently",), ("intermittently", "R"): ("continuously",),
    ("sporadically", "R"): ("continuously",), ("periodically", "R"): ("continuously",),
    ("repeatedly", "R"): ("once",), ("nonstop", "R"): ("intermittently",),
    # age (voice)
    ("young", "J"): ("old",), ("old", "J"): ("young",), ("elderly", "J"): ("young",),
    ("younger", "J"): ("older",), ("older", "J"): ("younger",),
}

# Verbs with an opposite (lemma -> (opposite lemma, particle or "")).
VERB_ANTONYMS: dict[tuple[str, str], tuple[str, str]] = {
    ("speed", "up"): ("slow", "down"), ("slow", "down"): ("speed", "up"),
    ("increase", ""): ("decrease", ""), ("decrease", ""): ("increase", ""),
    ("accelerate", ""): ("decelerate", ""), ("decelerate", ""): ("accelerate", ""),
    ("fade", "in"): ("fade", "out"), ("fade", "out"): ("fade", "in"),
    ("approach", ""): ("recede", ""), ("recede", ""): ("approach", ""),
}

# Nouns whose age can be flipped ("an old man" -> "a young man"; not "girl", "baby", "car").
AGE_NOUNS: frozenset[str] = _words("man men woman women person people lady ladies guy guys male female gentleman adult")
# "deep" means depth (not pitch) with these nouns.
DEPTH_NOUNS: frozenset[str] = _words("water hole pool breath breaths puddle snow mud river lake sea ocean well cave")

# Non-sound nouns: "soft"/"hard" mean texture there ("a hard surface"), "deep" means depth.
TEXTURE_NOUNS: frozenset[str] = _words("""
something anything everything it surface surfaces ground floor floors object objects material materials pillow
pillows cushion bed fabric
cloth paper wood plastic metal tissue carpet rug mattress dirt soil mud snow sand water breath breaths
""")
# Adjective + noun collocations that are names, not attributes ("high school").
FIXED_COLLOCATIONS: frozenset[tuple[str, str]] = frozenset({
    ("high", "school"), ("high", "heels"), ("high", "heel"), ("high", "five"), ("high", "chair"),
    ("light", "switch"), ("light", "bulb"), ("light", "saber"), ("light", "sabers"), ("short", "wave"),
    ("long", "time"), ("small", "talk"), ("white", "noise"), ("old", "man's"), ("big", "band"),
    ("soft", "drink"), ("hard", "drive"), ("hard", "disk"), ("deep", "fryer"), ("slow", "motion"),
    ("fast", "food"), ("heavy", "metal"), ("low", "tide"), ("high", "tide"), ("quick", "succession"),
    ("rapid", "succession"), ("close", "range"), ("old", "school"), ("young", "adult"), ("loud", "speaker"),
    ("loud", "speakers"), ("low", "battery"), ("high", "voltage"), ("close", "call"), ("heavy", "duty"),
})
FIXED_PHRASES: tuple[str, ...] = ("as long as", "in short", "for short", "all day long", "so long", "before long",
                                  "at least", "at most", "a little", "at long last", "long ago", "high and low",
                                  "out loud",
                                  "loud and clear", "far and wide", "near and far", "little by little",
                                  "over and over", "all along", "high up", "low down", "right now", "just now",
                                  "as soon as", "as well as", "soft spoken")

# Adjectives that are never swapped (quantity, identity and order words).
ADJ_STOPLIST: frozenset[str] = _words("""
other another same different several many multiple few various numerous more most much less least first
second third last next single double main own only such certain whole entire further additional similar
random distinct separate specific particular previous following final initial same own unknown
unidentified unidentifiable ambient nearby-ish possible general overall total full half both each every
english spanish french german chinese japanese foreign male female adult
""")
ADV_STOPLIST: frozenset[str] = _words("""
then also again only just still even now finally later first suddenly immediately shortly soon eventually
almost nearly mostly mainly probably possibly really very too so away up down off out back together around
by along over on in far here there not never ever once twice simultaneously concurrently afterwards
afterward before after respectively apparently presumably likely seemingly actually currently consistently
occasionally frequently briefly meanwhile subsequently initially lastly closely directly extremely slightly
incredibly relatively particularly especially highly completely totally fully partially rather somewhat
increasingly barely hardly quite fairly pretty
""")
