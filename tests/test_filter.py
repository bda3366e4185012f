"""The span filter, rule by rule, and the fast version against the plain token walk (tests/filter_reference.py)."""
import random

import pytest

from filter_reference import filter_spans_reference, tokenize
from spans import DELIMITERS, WORD_RE, filter_spans

V = frozenset("the a cat dog sat on mat is big and i don t s it was very happy to see you".split())


def spans(text, min_span_len=2, max_oov=0.0, from_sentence_start=True, vocab=V):
    out = filter_spans(text, vocab, min_span_len, max_oov, from_sentence_start)
    assert out == filter_spans_reference(text, vocab, min_span_len, max_oov, from_sentence_start)
    return out


def test_tokenizer_quirks():
    assert tokenize(b"don't") == [b"don", b"'", b"t"]
    assert tokenize(b"2nd") == [b"2", b"nd"]
    assert tokenize(b"3 cats") == [b"3", b" cats"]          # the delimiter after a digit glues to the next word
    assert tokenize(b"2\nThe") == [b"2", b"\nThe"]
    assert tokenize(b"5. The") == [b"5", b".", b" ", b"The"]
    assert tokenize(b"7:30") == [b"7", b":", b"30"]
    assert tokenize(b"1,000") == [b"1", b",", b"000"]
    assert tokenize(b"a_b`c\rd\xc2\xa0e") == [b"a_b`c\rd\xc2\xa0e"]  # _ ` \r and non-ASCII are word bytes
    # the fast path's word tokens are exactly the walk's non-delimiter tokens
    for text in [b"3 cats and 2\nThe 5. The 7:30 1,000 x2y 9(a) 4-", b"don't 2nd 3rd!", b"12", b" 1 2 3 "]:
        walk = [t for t in tokenize(text) if not (len(t) == 1 and t[0] in DELIMITERS)]
        assert WORD_RE.findall(text) == walk


@pytest.mark.parametrize("d", sorted(set(DELIMITERS.decode())))
def test_every_delimiter_separates_words(d):
    text = f"the{d}cat{d}sat on the mat"
    assert spans(text, min_span_len=3) == ([text.strip(" \n")] if d not in " \n" else [text])


@pytest.mark.parametrize("c", ["_", "`", "\r", "\f", "\v", "\u00a0", "\u2019", "\u00e9"])
def test_other_characters_join_words(c):
    # "cat<c>sat" is one OOV word: the span closes before it, holding 2 words + the rejected one = 3 > 2
    assert spans(f"the big cat{c}sat on the mat") == ["the big"]


def test_sentence_starts():
    # after an OOV word the next span waits for . ? ! or newline; a comma or semicolon is no sentence end
    assert spans("the zebra sat. the cat sat on the mat") == ["the cat sat on the mat"]
    assert spans("the zebra sat? the cat sat on the mat!") == ["the cat sat on the mat!"]
    assert spans("the zebra sat\n  \nthe cat sat on the mat") == ["the cat sat on the mat"]
    assert spans("the zebra sat, the cat sat on the mat") == []
    assert spans("the zebra sat; the cat sat on the mat") == []
    # a tab is not skipped at a span's start, a space or newline is
    assert spans("the zebra. \tthe cat sat") == ["\tthe cat sat"]
    # a newline glued to a digit is part of a word: no sentence start
    assert spans("the zebra 2\nthe cat sat on the mat") == []
    # without from_sentence_start the next span opens right after the rejected word
    assert spans("the zebra, the cat sat on the mat", from_sentence_start=False) == [", the cat sat on the mat"]


def test_casing_kept_lookup_ascii_lowercased():
    assert spans("The CAT Sat On THE mat") == ["The CAT Sat On THE mat"]
    vocab = V | {"café"}
    assert spans("the café is big", vocab=vocab) == ["the café is big"]
    assert spans("the CAFÉ is big and the cat sat", vocab=vocab) == []  # É is not ASCII: not lowercased, so OOV


def test_digits_and_apostrophes():
    assert spans("i don't see 42 cat") == ["i don't see 42"]       # " cat" (glued to 42) is OOV: the span ends
    assert spans("i don't see 42 and the cat", min_span_len=6) == []  # 5 words + the rejected " and" = 6, not > 6
    assert spans("i don't see 42 cat. the cat sat on the mat") == ["i don't see 42", "the cat sat on the mat"]
    assert spans("it was 1999. the cat sat") == ["it was 1999. the cat sat"]  # numbers are words, accepted
    assert spans("it was 1999 and the cat sat") == ["it was 1999"]  # ... but the space after one glues to " and"


def test_oov_budget_arithmetic():
    # paper settings: one OOV is tolerated only once the span has 100 words (1/100 <= 0.01 in float32, 1/99 is not)
    body = "the " * 98
    assert filter_spans(body + "zebra the cat", V) == [body.strip()]
    kept = filter_spans(body + "the zebra the cat", V)
    assert kept == [body + "the zebra the cat"]
    # a second OOV needs 200 words: at word 199 (2/199 > 0.01) it closes the span, at word 200 it would stay
    two = "the " * 150 + "zebra " + "the " * 47
    assert filter_spans(two + "zebra the", V) == [two.strip()]
    assert filter_spans(two + "the zebra the", V) == [two + "the zebra the"]
    # closed by an OOV: min_span_len words of its own suffice (the closing word counts); to the end: min + 1
    assert spans("the cat zebra") == ["the cat"]
    assert spans("the cat") == []
    assert spans("the cat sat") == ["the cat sat"]
    # a larger budget: 1 OOV per 2 words
    assert spans("the zebra cat zebra lion", min_span_len=2, max_oov=0.5) == ["the zebra cat zebra"]  # 3/5 > 0.5


def test_trimming_and_empty_input():
    assert spans("the cat sat \n \n zebra") == ["the cat sat"]
    assert spans("the cat sat\t zebra") == ["the cat sat\t"]      # only spaces and newlines are trimmed
    assert spans("") == [] and spans("   \n") == [] and spans("zebra") == []
    assert spans("\u00e9\u00e9 \u2603 zebra", min_span_len=0) == []   # all OOV: empty spans are dropped


def test_fast_filter_matches_reference_on_random_text():
    rng = random.Random(0)
    pieces = ["the", "cat", "Cat", "THE", "dog", "zebra", "don", "t", "42", "7", "x9", "café", "\u00a0", "\u2019", "_",
              "\r", "\t", "\n", " ", "  ", ". ", "? ", "!", ",", "'", "-", "(", ")", '"', "3.", ". 2", "\n\n"]
    for trial in range(400):
        text = "".join(rng.choice(pieces) + rng.choice(["", " ", " ", "\n"]) for _ in range(rng.randint(0, 120)))
        for args in [(2, 0.0, True), (3, 0.2, False), (0, 0.0, True), (1, 0.5, True), (5, 0.1, False)]:
            assert filter_spans(text, V, *args) == filter_spans_reference(text, V, *args), (text, args)
