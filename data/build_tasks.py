#!/usr/bin/env python3
"""Build the embedded evaluation tasks in data/tasks/ (read by evaluate.py), offline except for one registry package.

    python data/build_tasks.py                 # all three kinds below (BIG-bench: one 358 MB download, kept)
    python data/build_tasks.py --no-bigbench   # only what needs no download (templates + cloze)

What it writes (every file: a JSON object {"name", "family", "kind", "description", ..., "splits": {split: [...]}})
- templates_<phenomenon>.json: minimal pairs {"good", "bad"} made by the templates below from simple words, one
  suite for each phenomenon of the paper's 22 BLiMP paradigms (agreement, anaphors, irregular forms, quantifiers,
  raising, ellipsis, islands). Every word of every sentence is checked against the vocabulary (default:
  data/vocab/spoken_10k.txt), so the suites are in-vocabulary by construction.
- cloze.json: LAMBADA-style items {"context", "target", "doc"}: predict the last word of a sentence in passages that
  neither default model trained on. The passages are the simplified spans (spans.filter_spans with simplify.py's
  default settings) of the embedded corpus documents that simplify.py puts in the VALIDATION split
  (unit_hash(doc_id, "val") < 0.01), so they are held out from both data/simplified and data/unrestricted (and an
  item whose last words and answer a training document repeats is left out).
- bigbench_<task>.json.gz: multiple-choice items {"context", "choices", "gold", "fields"} converted from five BIG-bench
  tasks that resemble the paper's suite (PyPI sdist bigbench==1.0.0, Apache-2.0). All items are kept: evaluate.py
  applies the paper's vocabulary filter to the content `fields` only, never to instruction words. Each file keeps
  BIG-bench's canary string.
Everything is deterministic (fixed seeds and order), so a rebuild gives byte-identical files.
"""
import argparse
import gzip
import json
import os
import random
import re
import sys
import subprocess
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # simplify.py and spans.py live in the repository root
import simplify  # noqa: E402
import spans  # noqa: E402
from files import file_sha256  # noqa: E402
from sources import DEFAULT_SOURCE, iter_documents  # noqa: E402
from tasks import keep_example  # noqa: E402

TASKS_DIR = os.path.join(HERE, "tasks")
DOWNLOADS = os.path.join(HERE, "_downloads")
PAIRS_PER_SUITE = 500

# -----------------------------------------------------------------------------
# Words. Nouns are (singular, plural); verbs are (base, 3rd person singular, past, participle, -ing).

MALE = [("boy", "boys"), ("man", "men"), ("father", "fathers"), ("dad", "dads"), ("brother", "brothers"),
        ("uncle", "uncles"), ("king", "kings"), ("son", "sons"), ("prince", "princes"), ("grandpa", "grandpas")]
FEMALE = [("girl", "girls"), ("woman", "women"), ("mother", "mothers"), ("mom", "moms"), ("sister", "sisters"),
          ("aunt", "aunts"), ("queen", "queens"), ("daughter", "daughters"), ("princess", "princesses"),
          ("grandma", "grandmas")]
PEOPLE = [("kid", "kids"), ("child", "children"), ("baby", "babies"), ("teacher", "teachers"), ("doctor", "doctors"),
          ("friend", "friends"), ("student", "students"), ("farmer", "farmers"), ("player", "players")]
MALE_NAMES = ["John", "Tom", "Sam", "Ben", "Max", "Jack", "Bob", "Mike", "Joe", "Harry", "Nick", "Tony", "Eric",
              "Adam", "Henry", "Charlie", "Billy", "Johnny", "Jimmy", "Tommy"]
FEMALE_NAMES = ["Mary", "Sue", "Sarah", "Grace", "Rose", "Lily", "Molly", "Sally", "Emily", "Claire"]
ANIMALS = [("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("horse", "horses"), ("cow", "cows"), ("pig", "pigs"),
           ("duck", "ducks"), ("rabbit", "rabbits"), ("bear", "bears"), ("frog", "frogs"), ("monkey", "monkeys"),
           ("lion", "lions"), ("puppy", "puppies"), ("kitten", "kittens"), ("mouse", "mice")]
THINGS = [("ball", "balls"), ("book", "books"), ("car", "cars"), ("toy", "toys"), ("box", "boxes"), ("cup", "cups"),
          ("hat", "hats"), ("cake", "cakes"), ("cookie", "cookies"), ("apple", "apples"), ("chair", "chairs"),
          ("boat", "boats"), ("picture", "pictures"), ("bag", "bags"), ("key", "keys"), ("flower", "flowers"),
          ("letter", "letters"), ("shoe", "shoes")]
IRREGULAR = [("man", "men"), ("woman", "women"), ("child", "children"), ("person", "people"), ("mouse", "mice"),
             ("foot", "feet"), ("tooth", "teeth")]
ADJ_PEOPLE = ["happy", "sad", "tired", "hungry", "little", "old", "young", "nice", "funny", "angry", "sick", "good"]
ADJ_THINGS = ["big", "little", "small", "old", "new", "red", "blue", "green", "nice", "pretty", "white", "black"]
# transitive verbs that take a person or animal as object
VERBS_PERSON = [("see", "sees", "saw", "seen", "seeing"), ("like", "likes", "liked", "liked", "liking"),
                ("help", "helps", "helped", "helped", "helping"), ("find", "finds", "found", "found", "finding"),
                ("hear", "hears", "heard", "heard", "hearing"), ("watch", "watches", "watched", "watched", "watching"),
                ("love", "loves", "loved", "loved", "loving"), ("call", "calls", "called", "called", "calling"),
                ("follow", "follows", "followed", "followed", "following"), ("meet", "meets", "met", "met", "meeting"),
                ("hurt", "hurts", "hurt", "hurt", "hurting"), ("wash", "washes", "washed", "washed", "washing"),
                ("hug", "hugs", "hugged", "hugged", "hugging"), ("visit", "visits", "visited", "visited", "visiting"),
                ("miss", "misses", "missed", "missed", "missing"), ("push", "pushes", "pushed", "pushed", "pushing"),
                ("chase", "chases", "chased", "chased", "chasing"), ("scare", "scares", "scared", "scared", "scaring"),
                ("thank", "thanks", "thanked", "thanked", "thanking"), ("feed", "feeds", "fed", "fed", "feeding")]
# verbs that sound natural with a reflexive object (he hurt himself)
REFLEXIVE_VERBS = ["hurt", "saw", "liked", "helped", "washed", "loved", "found", "heard", "watched", "called",
                   "pushed", "scared", "thanked", "fed", "hated", "blamed", "asked", "told"]
# transitive verbs that take a thing as object
VERBS_THING = [("find", "finds", "found", "found", "finding"),
               ("make", "makes", "made", "made", "making"), ("take", "takes", "took", "taken", "taking"),
               ("carry", "carries", "carried", "carried", "carrying"), ("bring", "brings", "brought", "brought",
                                                                       "bringing"),
               ("drop", "drops", "dropped", "dropped", "dropping"), ("wash", "washes", "washed", "washed", "washing"),
               ("hold", "holds", "held", "held", "holding"), ("want", "wants", "wanted", "wanted", "wanting"),
               ("buy", "buys", "bought", "bought", "buying"), ("hide", "hides", "hid", "hidden", "hiding")]
INTRANSITIVE = [("run", "runs"), ("sleep", "sleeps"), ("sing", "sings"), ("dance", "dances"), ("jump", "jumps"),
                ("cry", "cries"), ("laugh", "laughs"), ("smile", "smiles"), ("play", "plays"), ("walk", "walks"),
                ("talk", "talks"), ("wait", "waits"), ("work", "works"), ("read", "reads"), ("eat", "eats")]
# irregular verbs: (past, participle, object nouns that fit)
IRREGULAR_VERBS = [("ate", "eaten", ["cake", "apple", "cookie", "sandwich", "pie"]),
                   ("saw", "seen", ["dog", "bird", "car", "movie", "star"]),
                   ("took", "taken", ["book", "bag", "key", "ball", "picture"]),
                   ("wrote", "written", ["letter", "song", "story", "note", "book"]),
                   ("forgot", "forgotten", ["key", "bag", "book", "song", "name"]),
                   ("stole", "stolen", ["car", "money", "ring", "bike", "cookie"]),
                   ("drove", "driven", ["car", "truck", "bus"]),
                   ("broke", "broken", ["cup", "window", "toy", "chair", "glass"]),
                   ("hid", "hidden", ["key", "toy", "box", "letter", "money"]),
                   ("wore", "worn", ["hat", "dress", "coat", "shirt", "jacket"]),
                   ("gave", "given", ["gift", "book", "cookie", "ball", "kiss"]),
                   ("chose", "chosen", ["dress", "book", "toy", "name", "song"]),
                   ("threw", "thrown", ["ball", "rock", "stick", "cup", "hat"]),
                   ("drew", "drawn", ["picture", "line", "map", "circle", "house"]),
                   ("sang", "sung", ["song"]), ("drank", "drunk", ["milk", "water", "juice", "tea"]),
                   ("rode", "ridden", ["horse", "bike", "bus"]), ("bit", "bitten", ["apple", "cookie", "finger"]),
                   ("shook", "shaken", ["box", "tree", "bottle", "hand"]),
                   ("knew", "known", ["answer", "name", "song"]),
                   ("tore", "torn", ["paper", "shirt", "book", "picture"]),
                   ("froze", "frozen", ["water", "milk", "fish"])]
PARTICIPLE_ADJ = [("broken", "broke", ["cup", "toy", "car", "chair", "door", "window", "glass", "bike"]),
                  ("hidden", "hid", ["key", "toy", "box", "letter", "door", "money", "cookie"]),
                  ("frozen", "froze", ["lake", "water", "milk", "fish", "food", "pizza"]),
                  ("stolen", "stole", ["car", "bike", "money", "key", "ring", "bag", "book"]),
                  ("fallen", "fell", ["tree", "apple", "star", "rock", "leaf"]),
                  ("forgotten", "forgot", ["book", "toy", "letter", "bag", "key", "song"]),
                  ("written", "wrote", ["letter", "note", "word", "story"]),
                  ("eaten", "ate", ["apple", "cake", "cookie", "sandwich"]),
                  ("torn", "tore", ["shirt", "paper", "book", "bag", "picture", "dress"]),
                  ("worn", "wore", ["shoe", "shirt", "hat", "dress", "coat"]),
                  ("bitten", "bit", ["apple", "cookie", "finger"]), ("shaken", "shook", ["bottle", "box"]),
                  ("drawn", "drew", ["picture", "line", "map"])]
MASS_NOUNS = {"milk", "water", "juice", "tea", "money", "food", "paper"}   # never after "a"
PLURALS = {"shoe": "shoes", "leaf": "leaves", "man": "men", "woman": "women", "fish": "fish", "dress": "dresses",
           "box": "boxes", "glass": "glasses", "money": None, "food": None, "milk": None, "water": None, "paper": None}
PLACES = ["in the house", "in the box", "on the table", "under the bed", "in the park", "at the door",
          "in the water", "on the roof", "in the garden", "in the kitchen", "near the river", "in the street"]
PEOPLE_PLACES = ["in the house", "at the door", "in the park", "in the garden", "in the kitchen", "near the river",
                 "in the street"]
ACTION_ING = ["chasing", "watching", "following", "calling", "visiting", "helping", "pushing", "hugging"]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
AUX = ["did", "will", "can", "should", "could", "would"]
ECM_VERBS = ["believed", "expected", "declared", "found", "imagined", "wanted"]          # take "there/it to be"
CONTROL_VERBS = ["told", "forced", "begged", "ordered", "convinced", "persuaded", "taught", "invited", "reminded"]
RAISING_ADJ = ["likely", "sure", "bound", "about", "going", "certain"]                    # "there is likely to be"
CONTROL_ADJ = ["eager", "willing", "happy", "able", "afraid", "ready", "trying", "hoping", "glad"]
TOUGH_ADJ = ["easy", "hard", "fun", "nice", "tough", "difficult", "impossible", "simple"]  # "the box is easy to carry"
OPINION_ADJ = ["true", "clear", "good", "nice", "sad", "funny", "strange", "important", "obvious", "possible"]
# things and the strictly transitive verbs that fit them (a tough adjective's infinitive needs its object gap)
# (verbs that can drop their object, like drive, bake or help, would make the raising sentence grammatical)
TOUGH_PAIRS = {"box": ["carry", "lift", "hold", "find"], "car": ["fix", "find", "buy"], "cake": ["make", "find", "buy"],
               "hat": ["wear", "find", "make", "buy"], "book": ["find", "carry", "hold", "buy"],
               "ball": ["catch", "hit", "find", "carry"], "door": ["fix", "find"], "boy": ["find", "catch", "like"],
               "girl": ["find", "catch", "like"], "dog": ["catch", "find", "hold", "carry"],
               "baby": ["hold", "carry", "find"], "teacher": ["like", "find"],
               "chair": ["carry", "lift", "fix", "find"],
               "key": ["find", "hold"], "shoe": ["wear", "find", "fix"], "bag": ["carry", "lift", "hold", "find"]}


def cap(s):
    return s[0].upper() + s[1:]


FAMILY = {"father", "dad", "brother", "uncle", "son", "grandpa", "mother", "mom", "sister", "aunt", "daughter",
          "grandma", "friend", "teacher", "dog", "cat", "puppy", "kitten"}


def det_np(rng, nouns, plural=False, adjs=None, dets=None):
    """A noun phrase like 'the little dog' (an adjective a third of the time). Default determiners agree in number;
    possessives only with nouns that sound natural after them (my mom, not my king)."""
    sg, pl = rng.choice(nouns)
    if dets is None:
        dets = ["the", "these", "those"] if plural else ["the", "this", "that"] + (
            ["my", "your", "our", "his", "her"] if sg in FAMILY else [])
    adj = f"{rng.choice(adjs)} " if adjs and rng.random() < 0.35 else ""
    return f"{rng.choice(dets)} {adj}{pl if plural else sg}"


def subject(rng, gender=None, plural=False):
    """A person: a name (singular only) or a noun phrase; gender 'm', 'f' or None (any)."""
    names = {"m": MALE_NAMES, "f": FEMALE_NAMES, None: MALE_NAMES + FEMALE_NAMES}[gender]
    nouns = {"m": MALE, "f": FEMALE, None: MALE + FEMALE + PEOPLE}[gender]
    if not plural and rng.random() < 0.4:
        return rng.choice(names)
    return det_np(rng, nouns, plural, ADJ_PEOPLE)


def person_np(rng, plural=None):
    plural = rng.random() < 0.5 if plural is None else plural
    return subject(rng, None, plural)

# -----------------------------------------------------------------------------
# The suites: each function draws one (good, bad) pair. The comment gives the BLiMP paradigm(s) it mirrors.


def anaphor_gender_agreement(rng):
    """BLiMP anaphor_gender_agreement"""
    g = rng.choice("mf")
    refl = "himself" if g == "m" else "herself"
    wrong = rng.choice([w for w in ("himself", "herself", "itself") if w != refl])
    s = f"{cap(subject(rng, g))} {rng.choice(REFLEXIVE_VERBS)}"
    return f"{s} {refl}.", f"{s} {wrong}."


def anaphor_number_agreement(rng):
    """BLiMP anaphor_number_agreement"""
    if rng.random() < 0.5:
        g = rng.choice("mf")
        s = f"{cap(subject(rng, g))} {rng.choice(REFLEXIVE_VERBS)}"
        return f"{s} {'himself' if g == 'm' else 'herself'}.", f"{s} themselves."
    s = f"{cap(person_np(rng, plural=True))} {rng.choice(REFLEXIVE_VERBS)}"
    return f"{s} themselves.", f"{s} {rng.choice(['himself', 'herself'])}."


def _agreeing_predicate(rng, plural, nouns_for_object):
    """(right, wrong) verb phrase for a singular or plural subject: present verb, is/are, was/were, has/have."""
    kind = rng.randrange(4)
    if kind == 0:
        base, s = rng.choice(INTRANSITIVE)
        tail = rng.choice(["", " every day", " a lot", " at home", " in the park"])
        right, wrong = (base, s) if plural else (s, base)
        return right + tail, wrong + tail
    if kind == 1:
        tail = " " + rng.choice(ADJ_PEOPLE + [f"{v[4]} {det_np(rng, nouns_for_object)}" for v in VERBS_PERSON[:6]])
        right, wrong = ("are", "is") if plural else ("is", "are")
    elif kind == 2:
        tail = " " + rng.choice(ADJ_PEOPLE + ["here", "there", "at home"])
        right, wrong = ("were", "was") if plural else ("was", "were")
    else:
        tail = f" {rng.choice(VERBS_PERSON)[3]} {det_np(rng, nouns_for_object)}"
        right, wrong = ("have", "has") if plural else ("has", "have")
    return right + tail, wrong + tail


def regular_plural_subject_verb_agreement(rng):
    """BLiMP regular_plural_subject_verb_agreement_1 and _2"""
    nouns = rng.choice([PEOPLE + MALE[:1] + FEMALE[:1], ANIMALS[:-1]])   # regular plurals only (no men, mice)
    nouns = [n for n in nouns if n[1] == n[0] + "s"]
    sg, pl = rng.choice(nouns)
    plural = rng.random() < 0.5
    adj = f"{rng.choice(ADJ_PEOPLE)} " if rng.random() < 0.3 else ""
    right, wrong = _agreeing_predicate(rng, plural, ANIMALS + PEOPLE)
    subj = f"The {adj}{pl if plural else sg}"
    if rng.random() < 0.5:                         # _1: same subject, the verb's number differs
        return f"{subj} {right}.", f"{subj} {wrong}."
    other = f"The {adj}{sg if plural else pl}"     # _2: same verb, the subject's number differs
    return f"{subj} {right}.", f"{other} {right}."


def irregular_plural_subject_verb_agreement(rng):
    """BLiMP irregular_plural_subject_verb_agreement_1 and _2"""
    sg, pl = rng.choice(IRREGULAR)
    plural = rng.random() < 0.5
    det = rng.choice(["The", "The", "My", "Our"] if sg in ("child", "foot", "tooth") else ["The"])
    right, wrong = _agreeing_predicate(rng, plural, ANIMALS + PEOPLE)
    if sg in ("foot", "tooth"):                    # body parts: only adjectives fit
        adj = rng.choice(["cold", "small", "big", "clean", "white", "dirty"])
        v = rng.choice([("are", "is"), ("were", "was")])
        right, wrong = (f"{v[0]} {adj}", f"{v[1]} {adj}") if plural else (f"{v[1]} {adj}", f"{v[0]} {adj}")
    subj = f"{det} {pl if plural else sg}"
    if rng.random() < 0.5:
        return f"{subj} {right}.", f"{subj} {wrong}."
    return f"{subj} {right}.", f"{det} {sg if plural else pl} {right}."


def distractor_agreement_relative_clause(rng):
    """BLiMP distractor_agreement_relative_clause"""
    plural = rng.random() < 0.5
    head = det_np(rng, MALE + FEMALE + PEOPLE + ANIMALS, plural)
    other = det_np(rng, MALE + FEMALE + PEOPLE + ANIMALS, not plural)   # the distractor, of the other number
    v = rng.choice(VERBS_PERSON)
    if rng.random() < 0.5:      # object relative: the boy that the girls like is happy
        rel = f"that {other} {v[0] if not plural else v[1]}"
    else:                       # subject relative with a distractor object: the boy that likes the girls is happy
        rel = f"that {v[0] if plural else v[1]} {other}"
    be, wrong = ("are", "is") if plural else ("is", "are")
    if rng.random() < 0.5:
        be, wrong = ("were", "was") if plural else ("was", "were")
    adj = rng.choice(ADJ_PEOPLE)
    return f"{cap(head)} {rel} {be} {adj}.", f"{cap(head)} {rel} {wrong} {adj}."


def irregular_past_participle_verbs(rng):
    """BLiMP irregular_past_participle_verbs"""
    past, part, objs = rng.choice(IRREGULAR_VERBS)
    noun = rng.choice(objs)
    article = [] if noun in MASS_NOUNS else ["an" if noun[0] in "aeiou" else "a"]
    det = rng.choice(["the", "my", "her", "his"] + article)
    s, o = cap(person_np(rng, plural=False)), f"{det} {noun}"
    if rng.random() < 0.6:       # simple past: the participle cannot stand alone
        return f"{s} {past} {o}.", f"{s} {part} {o}."
    aux = rng.choice(["has", "had"])   # perfect: the simple past cannot follow has/had
    return f"{s} {aux} {part} {o}.", f"{s} {aux} {past} {o}."


def irregular_past_participle_adjectives(rng):
    """BLiMP irregular_past_participle_adjectives"""
    part, past, nouns = rng.choice(PARTICIPLE_ADJ)
    noun = rng.choice(nouns)
    plural = PLURALS.get(noun, noun + "s") is not None and rng.random() < 0.4
    if plural:
        noun = PLURALS.get(noun) or noun + "s"
    det = rng.choice(["The", "That", "My", "Her", "His"] if not plural else ["The", "Those", "My", "Her", "His"])
    be = rng.choice(["is", "was"] if not plural else ["are", "were"])
    pred = rng.choice(["here", "there", "on the table", "under the bed", "in the box", "not mine", "very old", "big"])
    return f"{det} {part} {noun} {be} {pred}.", f"{det} {past} {noun} {be} {pred}."


def existential_there_quantifiers(rng):
    """BLiMP existential_there_quantifiers_1 (and the quantifier side of _2)"""
    plural = rng.random() < 0.5
    nouns = rng.choice([ANIMALS, PEOPLE, THINGS])
    sg, pl = rng.choice(nouns)
    if plural:
        good, bad = rng.choice(["some", "no", "many", "few", "several"] + NUMBERS[:4]), rng.choice(["all", "most"])
        be = rng.choice(["are", "were"])
        noun = pl
    else:
        good, bad = rng.choice(["a", "no", "one"]), rng.choice(["every", "each"])
        be = rng.choice(["is", "was"])
        noun = sg
    if good == "a" and noun[0] in "aeiou":
        good = "an"
    if nouns is THINGS or rng.random() < 0.6:
        tail = rng.choice(PLACES if nouns is not PEOPLE else PEOPLE_PLACES)
    else:
        tail = f"{rng.choice(ACTION_ING)} {det_np(rng, PEOPLE)}"
    return f"There {be} {good} {noun} {tail}.", f"There {be} {bad} {noun} {tail}."


def _counted(rng):
    """(verb, plural object) pairs for 'ate three cookies'."""
    verb, objs = rng.choice([("ate", ["cookies", "apples", "cakes"]), ("saw", ["dogs", "cats", "birds", "cars"]),
                             ("found", ["toys", "books", "balls", "keys"]), ("made", ["cakes", "cookies", "hats"]),
                             ("read", ["books", "letters"]), ("drew", ["pictures", "flowers"]),
                             ("met", ["friends", "teachers", "doctors"]), ("had", ["dogs", "cats", "toys"]),
                             ("bought", ["books", "toys", "hats", "shoes"])])
    return verb, rng.choice(objs)


def superlative_quantifiers(rng):
    """BLiMP superlative_quantifiers_1 and _2"""
    sg, _ = rng.choice(MALE + FEMALE + PEOPLE)
    verb, obj = _counted(rng)
    n = rng.choice(NUMBERS)
    if rng.random() < 0.5:   # _1: under 'no', a comparative quantifier is fine, a superlative one is not
        good, bad = rng.choice([("more than", "at least"), ("fewer than", "at most")])
        return f"No {sg} {verb} {good} {n} {obj}.", f"No {sg} {verb} {bad} {n} {obj}."
    q = rng.choice(["at most", "at least"])   # _2: a superlative quantifier is fine, but not under 'no'
    return f"The {sg} {verb} {q} {n} {obj}.", f"No {sg} {verb} {q} {n} {obj}."


def existential_there_subject_raising(rng):
    """BLiMP existential_there_subject_raising"""
    plural = rng.random() < 0.5
    be = rng.choice(["are", "were"] if plural else ["is", "was"])
    q = rng.choice(["some", "many", "two", "no"] if plural else ["a", "one", "no"])
    sg, pl = rng.choice(ANIMALS + THINGS)
    noun = pl if plural else sg
    if q == "a" and noun[0] in "aeiou":
        q = "an"
    tail = f"{q} {noun} {rng.choice(PLACES)}"
    return (f"There {be} {rng.choice(RAISING_ADJ)} to be {tail}.",
            f"There {be} {rng.choice(CONTROL_ADJ)} to be {tail}.")


def existential_there_object_raising(rng):
    """BLiMP existential_there_object_raising"""
    s = cap(person_np(rng, plural=False))
    plural = rng.random() < 0.5
    sg, pl = rng.choice(ANIMALS + THINGS)
    q = rng.choice(["some", "many", "no", "two"]) if plural else rng.choice(["a", "no", "one"])
    noun = pl if plural else sg
    if q == "a" and noun[0] in "aeiou":
        q = "an"
    tail = f"there to be {q} {noun} {rng.choice(PLACES)}"
    return f"{s} {rng.choice(ECM_VERBS)} {tail}.", f"{s} {rng.choice(CONTROL_VERBS)} {tail}."


def expletive_it_object_raising(rng):
    """BLiMP expletive_it_object_raising"""
    s, other = cap(person_np(rng, plural=False)), person_np(rng, plural=False)
    if other.lower() == s.lower():
        other = "the " + rng.choice(PEOPLE)[0]
    v = rng.choice(VERBS_PERSON)
    clause = f"that {other} {v[2]} {det_np(rng, ANIMALS + PEOPLE)}"
    tail = f"it to be {rng.choice(OPINION_ADJ)} {clause}"
    return f"{s} {rng.choice(ECM_VERBS)} {tail}.", f"{s} {rng.choice(CONTROL_VERBS)} {tail}."


def tough_vs_raising(rng):
    """BLiMP tough_vs_raising_1"""
    noun, verbs = rng.choice(sorted(TOUGH_PAIRS.items()))
    det, be = rng.choice(["The", "This", "That", "My"]), rng.choice(["is", "was"])
    adj = f"{rng.choice(ADJ_THINGS)} " if rng.random() < 0.3 else ""
    v = rng.choice(verbs)
    return (f"{det} {adj}{noun} {be} {rng.choice(TOUGH_ADJ)} to {v}.",
            f"{det} {adj}{noun} {be} {rng.choice(RAISING_ADJ[:4])} to {v}.")


def ellipsis_n_bar(rng):
    """BLiMP ellipsis_n_bar_1 and _2"""
    a, b = rng.sample(MALE_NAMES + FEMALE_NAMES, 2)
    verb, obj = _counted(rng)
    adj = rng.choice(["big", "little", "red", "new", "old", "nice", "small", "blue"])
    n1, n2 = rng.sample(["one"] + NUMBERS, 2)
    one = {"cookies": "cookie", "apples": "apple", "cakes": "cake", "dogs": "dog", "cats": "cat", "birds": "bird",
           "cars": "car", "toys": "toy", "books": "book", "balls": "ball", "keys": "key", "hats": "hat",
           "letters": "letter", "pictures": "picture", "flowers": "flower", "friends": "friend",
           "teachers": "teacher", "doctors": "doctor", "shoes": "shoe"}[obj]
    obj1, obj2 = (one if n == "one" else obj for n in (n1, n2))   # "one cat", "two cats"
    if rng.random() < 0.5:  # _1: the elided noun may follow a number, not an adjective
        return (f"{a} {verb} {n1} {adj} {obj1} and {b} {verb} {n2}.",
                f"{a} {verb} {n1} {obj1} and {b} {verb} {n2} {adj}.")
    adj2 = rng.choice([x for x in ["big", "little", "red", "new", "old", "nice", "small", "blue"] if x != adj])
    return (f"{a} {verb} {n1} {obj1} and {b} {verb} {n2} {adj2} {obj2}.",
            f"{a} {verb} {n1} {adj} {obj1} and {b} {verb} {n2} {adj2}.")


def adjunct_island(rng):
    """BLiMP adjunct_island"""
    aux, prep = rng.choice(AUX), rng.choice(["after", "before", "without", "while"])
    s = person_np(rng, plural=False)
    if rng.random() < 0.5:
        v1, v2 = rng.sample(VERBS_PERSON, 2)
        wh, obj = "Who", person_np(rng, plural=False)
    else:
        v1, v2 = rng.sample(VERBS_THING, 2)
        wh, obj = "What", det_np(rng, THINGS, rng.random() < 0.3, ADJ_THINGS)
    return f"{wh} {aux} {s} {v1[0]} {prep} {v2[4]} {obj}?", f"{wh} {aux} {s} {v1[0]} {obj} {prep} {v2[4]}?"


def complex_np_island(rng):
    """BLiMP complex_NP_island"""
    aux = rng.choice(AUX)
    head = det_np(rng, MALE + FEMALE + PEOPLE, rng.random() < 0.3, ADJ_PEOPLE)
    other = person_np(rng, plural=False)
    v1, v2 = rng.sample(VERBS_PERSON, 2)
    rel = f"{rng.choice(['that', 'who'])} {v1[2]}"
    return f"Who {aux} {head} {rel} {other} {v2[0]}?", f"Who {aux} {other} {v2[0]} {head} {rel}?"


def principle_a_reconstruction(rng):
    """BLiMP principle_A_reconstruction"""
    g = rng.choice("mf")
    refl = "himself" if g == "m" else "herself"
    s = subject(rng, g)
    v, be = rng.choice(REFLEXIVE_VERBS[:14]), rng.choice(["is", "was"])
    return f"It {be} {refl} that {s} {v}.", f"It {be} {refl} that {v} {s}."


SUITES = [anaphor_gender_agreement, anaphor_number_agreement, regular_plural_subject_verb_agreement,
          irregular_plural_subject_verb_agreement, distractor_agreement_relative_clause,
          irregular_past_participle_verbs, irregular_past_participle_adjectives, existential_there_quantifiers,
          superlative_quantifiers, existential_there_subject_raising, existential_there_object_raising,
          expletive_it_object_raising, tough_vs_raising, ellipsis_n_bar, adjunct_island, complex_np_island,
          principle_a_reconstruction]


def words_of(sentence):
    """The lowercase words of a template sentence (its only punctuation is . , ?)."""
    return re.sub(r"[.,?]", " ", sentence).lower().split()


def build_templates(vocab, seed, n_pairs=PAIRS_PER_SUITE):
    out = {}
    for suite in SUITES:
        rng, pairs, seen = random.Random(f"{seed}:{suite.__name__}"), [], set()
        for _ in range(n_pairs * 100):
            if len(pairs) == n_pairs:
                break
            good, bad = suite(rng)
            if good == bad or (good, bad) in seen:
                continue
            missing = [w for w in words_of(good) + words_of(bad) if w not in vocab]
            if missing or not keep_example(f"{good} {bad}", vocab):   # a word outside this vocabulary: never written
                continue
            seen.add((good, bad))
            pairs.append({"good": good, "bad": bad})
        if len(pairs) < 100:
            raise SystemExit(f"{suite.__name__}: only {len(pairs)} in-vocabulary pairs: the vocabulary lacks the "
                             "words of this template")
        out[f"templates_{suite.__name__}"] = dict(
            family="templates", kind="pairs", mirrors=suite.__doc__,
            description=f"Minimal pairs made by the project's templates over simple words, for the phenomenon of "
                        f"{suite.__doc__}; `good` is the grammatical sentence of each pair.",
            source="generated by data/build_tasks.py", license="same as this project",
            splits={"test": pairs})
    return out

# -----------------------------------------------------------------------------
# Cloze: the last word of a sentence, in held-out simplified passages

CLOZE_SENTENCE_END = re.compile(r"(?<= )([A-Za-z]{3,})(?=[.!?])")


def build_cloze(vocab, val_fraction, min_span_len, max_oov, min_context_words=10, max_context_words=60,
                seen_words=12):
    items, docs, train_text = [], 0, []
    for doc_id, text in iter_documents(DEFAULT_SOURCE):
        if simplify.unit_hash(doc_id, "val") >= val_fraction:   # simplify.py's own train/val rule
            train_text.append(" ".join(text.split()))
            continue
        docs += 1
        for span in spans.filter_spans(text, vocab, min_span_len=min_span_len, max_oov=max_oov):
            ends = [m for m in CLOZE_SENTENCE_END.finditer(span)
                    if len(span[:m.start()].split()) >= min_context_words]
            if not ends:
                continue
            m = ends[-1]   # one item per span: the last sentence end with enough context before it
            context = span[:m.start() - 1]
            starts = [w.start() for w in re.finditer(r"\S+", context)]
            if len(starts) > max_context_words:   # keep the passage well inside 128 tokens
                context = context[starts[-max_context_words]:]
            if keep_example(" ".join(context.split()) + " " + m.group(1), vocab):   # the task filter passes it too
                items.append({"context": context, "target": m.group(1), "doc": doc_id})
    # A held-out document can repeat a training one's words (a Bible verse quoted twice, a fortune told twice): an
    # item whose last seen_words words and answer also stand in a training document was read, answer and all: left out
    train_text = "\n".join(train_text)
    kept = [it for it in items
            if " ".join((it["context"].split() + [it["target"]])[-seen_words - 1:]) not in train_text]
    seen = len(items) - len(kept)
    return {"cloze": dict(
        family="cloze", kind="cloze",
        description="LAMBADA-style: predict the last word of a sentence (scored as the harness scores LAMBADA: "
                    "acc = every token of ' word' is the model's greedy choice). Passages are simplified spans of "
                    "the embedded corpus documents in simplify.py's validation split, which no default model "
                    "trained on.",
        heldout=dict(source="data/corpus", rule="simplify.unit_hash(doc_id, 'val') < val_fraction",
                     val_fraction=val_fraction, min_span_len=min_span_len, max_oov=max_oov, documents=docs,
                     left_out_as_seen_in_training=seen, seen_words=seen_words),
        source="data/corpus (see data/README.md for the sources and licenses of its documents)",
        license="that of each source document (data/README.md)", splits={"test": kept})}

# -----------------------------------------------------------------------------
# BIG-bench: five tasks from the PyPI sdist, converted to the harness's multiple-choice form

BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
BB = "bigbench-1.0.0/bigbench/benchmark_tasks/"
# name: (file in the sdist, prompt format, what the task is)
BIGBENCH_TASKS = {
    "cause_and_effect": (BB + "cause_and_effect/one_sentence_no_prompt/task.json", "{}",
                         "which of two sentences states cause and effect the right way round (COPA-like); "
                         "subtask one_sentence_no_prompt: each choice is scored as a whole sentence"),
    "subject_verb_agreement": (BB + "subject_verb_agreement/simple_english.json", "{}",
                               "the verb form that agrees with the subject; subtask simple_english"),
    "strategyqa": (BB + "strategyqa/task.json", "Question: {}\nAnswer:", "yes/no questions needing implicit reasoning"),
    "truthful_qa": (BB + "truthful_qa/task_mc.json", "Q: {}\nA:",
                    "the truthful answer among several (multiple choice)"),
    "physical_intuition": (BB + "physical_intuition/task.json", "Question: {}\nAnswer:",
                           "the physical mechanism or behaviour of a system"),
}


def fetch_bigbench():
    """The sdist, with pip, checked against its sha256. Its setup.py names a direct-URL dependency, so pip can only
    download it with --no-deps --no-build-isolation, which needs setuptools and wheel: they go in a throwaway venv."""
    path = os.path.join(DOWNLOADS, "bigbench-1.0.0.tar.gz")
    if not (os.path.exists(path) and file_sha256(path) == BIGBENCH_SHA256):
        venv = os.path.join(DOWNLOADS, "pip-venv")
        pip = os.path.join(venv, "bin", "pip")
        print("downloading bigbench-1.0.0.tar.gz (358 MB) with pip ...", flush=True)
        if not os.path.exists(pip):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([pip, "install", "-q", "setuptools", "wheel"], check=True)
        subprocess.run([pip, "download", "-q", "--no-deps", "--no-build-isolation", "bigbench==1.0.0", "-d", DOWNLOADS],
                       check=True)
        if file_sha256(path) != BIGBENCH_SHA256:
            raise SystemExit(f"{path}: sha256 differs from the pinned {BIGBENCH_SHA256}; delete it and retry")
    return path


def build_bigbench():
    out = {}
    with tarfile.open(fetch_bigbench()) as tar:
        for name, (member, fmt, what) in BIGBENCH_TASKS.items():
            task = json.load(tar.extractfile(member))
            items = []
            for ex in task["examples"]:
                choices = list(ex["target_scores"])
                scores = [ex["target_scores"][c] for c in choices]
                if scores.count(max(scores)) != 1:
                    continue       # no single right answer: not a multiple-choice item
                question = ex["input"].strip()
                items.append({"context": fmt.format(question) if question else "", "choices": choices,
                              "gold": scores.index(max(scores)), "fields": ([question] if question else []) + choices})
            out[f"bigbench_{name}"] = dict(
                family="bigbench", kind="choice", canary=task["canary"],
                description=f"BIG-bench {name}: {what}. Converted to the harness's multiple-choice form "
                            f"(context + ' ' + choice); the filter reads only the content fields.",
                source=f"PyPI bigbench==1.0.0 (sdist sha256 {BIGBENCH_SHA256}), {member.split('/', 1)[1]}",
                license="Apache-2.0 (BIG-bench, Copyright 2021 Google LLC and the task authors)",
                splits={"test": items})
    return out

# -----------------------------------------------------------------------------


def write_task(name, task):
    """One example per line, so the files read well and diff well; the large third-party BIG-bench files gzip'd
    (mtime 0, so a rebuild is byte-identical)."""
    head = {"name": name, **{k: v for k, v in task.items() if k != "splits"}}
    parts = [json.dumps(head)[:-1] + ', "splits": {']
    for i, (split, examples) in enumerate(task["splits"].items()):
        rows = ",\n".join(json.dumps(e, ensure_ascii=False) for e in examples)
        parts.append(f'{", " if i else ""}"{split}": [\n{rows}\n]')
    data = ("".join(parts) + "}}\n").encode("utf-8")
    json.loads(data)   # the file must parse
    path = os.path.join(TASKS_DIR, f"{name}.json" + (".gz" if task["family"] == "bigbench" else ""))
    with open(path + ".tmp", "wb") as f:
        if path.endswith(".gz"):
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
                gz.write(data)
        else:
            f.write(data)
    os.replace(path + ".tmp", path)
    n = sum(len(v) for v in task["splits"].values())
    print(f"  {os.path.basename(path)}: {n} examples, sha256 {file_sha256(path)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", default=spans.DEFAULT_VOCAB, help="in-vocabulary check for templates and cloze")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val_fraction", type=float, default=0.01, help="simplify.py's --val_fraction (default 0.01)")
    p.add_argument("--min_span_len", type=int, default=8, help="simplify.py's --min_span_len (default 8)")
    p.add_argument("--max_oov", type=float, default=0.0, help="simplify.py's --max_oov (default 0)")
    p.add_argument("--bigbench", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    vocab = spans.load_vocab(args.vocab)
    os.makedirs(TASKS_DIR, exist_ok=True)
    tasks = build_templates(vocab, args.seed)
    tasks.update(build_cloze(vocab, args.val_fraction, args.min_span_len, args.max_oov))
    if args.bigbench:
        tasks.update(build_bigbench())
    for name, task in tasks.items():
        write_task(name, task)


if __name__ == "__main__":
    main()
