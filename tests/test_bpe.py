"""Tests for the byte-level BPE trainer (bpe.py)."""
import base64, hashlib, os, random, sys
from collections import Counter

import pytest
import regex
import tiktoken.load

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import bpe

WORDS = ("the cat sat on a mat and the dog ran to the park . She said : don't go ! They'll see , we've "
         "it's I'M you're HE'D big bigger biggest running runner ran 3 42 1234567 3.14 2024 ( yes ) [ no ] "
         "naïve café Zürich señor 日本語 テスト Привет мир 🎉 👍🏽 👨‍👩‍👧 - -- ... ?! \"quoted\" 'single'").split(" ")
SEPARATORS = [" "] * 12 + ["  ", "\n", "\n\n", "\t", "   ", " \n ", "\r\n", ""]


def varied_text(n_words, seed):
    """Deterministic text mixing English words, contractions, digits, punctuation, non-ASCII, emoji and odd
    whitespace (the tests must not depend on any file outside the repository)."""
    r = random.Random(seed)
    return "".join(r.choice(WORDS) + r.choice(SEPARATORS) for _ in range(n_words))


def naive_merges(text, n_merges):
    """Textbook BPE: recount every pair of every chunk occurrence before each merge. Same tie rule."""
    words = [list(c.encode()) for c in regex.findall(bpe.SPLIT_PATTERN, text)]
    merges = {}
    for new in range(256, 256 + n_merges):
        counts = Counter(p for w in words for p in zip(w, w[1:]))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges[pair] = new
        words = [bpe.merge_pair(w, *pair, new) for w in words]
    return merges


def test_split_pattern_same_in_regex_and_tiktoken():
    text = varied_text(3000, seed=1) + " x\u00a0y\u2003z 12345678 I'd WE'RE l'été ''' \n\n\t\n  end  "
    chunks = regex.findall(bpe.SPLIT_PATTERN, text)
    assert "".join(chunks) == text
    # Make every regex chunk a whole token: tiktoken then returns exactly one token per chunk it cuts out,
    # and a chunk cut differently would fall apart into single bytes.
    ranks = {bytes([i]): i for i in range(256)}
    for c in chunks:
        ranks.setdefault(c.encode(), len(ranks))
    enc = bpe.make_encoding("split-check", ranks, ())
    assert [enc.decode_single_token_bytes(t) for t in enc.encode_ordinary(text)] == [c.encode() for c in chunks]
    assert regex.findall(bpe.SPLIT_PATTERN, "don't  go (now) 12345\n\n\"Hi\"") == \
        ["don", "'t", " ", " go", " (", "now", ")", " ", "123", "45", "\n\n", '"Hi', '"']


def test_worked_example_exact_merges_and_early_stop(capsys):
    # One chunk, "aaabdaaabac". (a,a) occurs 4 times; then (a,b) and (aa,a) tie at 2 and the smaller pair
    # (97, 98) wins; then aa+ab; then four pairs tie at 1 and the smallest ids go first, until one token is left.
    merges = bpe.learn_merges(bpe.count_chunks(["aaabdaaabac"], (), verbose=False), 10)
    assert list(merges.items()) == [((97, 97), 256), ((97, 98), 257), ((256, 257), 258), ((97, 99), 259),
                                    ((100, 258), 260), ((258, 260), 261), ((261, 259), 262)]
    assert "ran out of pairs after 7 of 10 merges" in capsys.readouterr().out
    ranks = bpe.train_bpe(["aaabdaaabac"], vocab_size=300, special_tokens=(), verbose=False)
    assert len(ranks) == 263 and ranks[b"aaab"] == 258 and ranks[b"aaabdaaabac"] == 262
    assert [ranks[bytes([i])] for i in range(256)] == list(range(256))
    assert bpe.make_encoding("tiny", ranks, ()).encode_ordinary("aaabdaaabac") == [262]


def test_incremental_counts_match_naive_bpe():
    text = varied_text(1500, seed=2)
    assert bpe.learn_merges(bpe.count_chunks([text], (), verbose=False), 150, verbose=False) == \
        naive_merges(text, 150)


def test_vocab_size_accounting_and_special_ids():
    ranks = bpe.train_bpe([varied_text(2000, seed=3)], vocab_size=400, verbose=False)
    assert len(ranks) + 3 == 400 and sorted(ranks.values()) == list(range(397))
    enc = bpe.make_encoding("t", ranks, {"<|endoftext|>": 397, "<s>": 398, "</s>": 399})
    assert enc.n_vocab == 400 and enc.eot_token == 397
    assert enc.encode("<s> hi </s>", allowed_special="all")[0] == 398
    with pytest.raises(ValueError, match="too small"):
        bpe.train_bpe(["abc"], vocab_size=258)
    with pytest.raises(ValueError, match="right after the 397 ranks"):
        bpe.make_encoding("t", ranks, {"<s>": 5})


@pytest.fixture(scope="module")
def trained():
    docs = [varied_text(400, seed=s) for s in range(10, 30)]
    merges = bpe.learn_merges(bpe.count_chunks(docs, verbose=False), 700, verbose=False)
    return merges, bpe.make_encoding("t", bpe.ranks_from_merges(merges))


@pytest.mark.parametrize("text", ["Hello, world! The cat sat on the mat.", "naïve café, Zürich; 日本語のテキスト; Привет",
                                  "🎉👍🏽👨‍👩‍👧 emoji🙂mixed", "a  b\t\t\n\n\n   c \r\n\u00a0 ", "",
                                  "<s> the dog ran </s> <s> home </s><|endoftext|>next doc", "\x00\x7f control"])
def test_round_trip(trained, text):
    _, enc = trained
    ids = enc.encode(text, allowed_special="all")
    assert enc.decode(ids) == text
    assert ids.count(enc.eot_token) == text.count("<|endoftext|>")


def test_tiktoken_ids_equal_reference_encoder(trained):
    merges, enc = trained
    text = varied_text(1500, seed=99) + "Unseen words: antidisestablishment, QUICKLY, 987654321, ¿qué? 🙃\n"
    assert len(text.encode()) > 4000
    ids = enc.encode_ordinary(text)
    assert ids == bpe.encode_reference(text, merges)
    assert len(ids) < 0.6 * len(text.encode())  # the merges really compress this text


def test_special_tokens_are_never_merged():
    docs = ["<s> the cat sat </s> <s> on the mat </s><|endoftext|>"] * 50
    ranks = bpe.train_bpe(docs, vocab_size=300, verbose=False)
    assert not [t for t in ranks if len(t) > 1 and (b"<" in t or b">" in t)]
    ranks_plain = bpe.train_bpe(docs, vocab_size=300, special_tokens=(), verbose=False)  # control: would merge
    assert [t for t in ranks_plain if b"</" in t]
    # A special token that starts with another one must still be cut out whole (longest match first).
    counts = bpe.count_chunks(["<s>x<s> y"], special_tokens=("<s>", "<s>x"), verbose=False)
    assert counts == {b" y": 1}


def test_save_load_round_trip_and_tiktoken_reader(trained, tmp_path, monkeypatch):
    ranks = bpe.ranks_from_merges(trained[0])
    path = tmp_path / "tokenizer.tiktoken"
    bpe.save_ranks(path, ranks)
    assert os.listdir(tmp_path) == ["tokenizer.tiktoken"]  # no temp file left behind
    lines = path.read_text().splitlines()
    assert len(lines) == len(ranks) and lines[65] == f"{base64.b64encode(b'A').decode()} 65"
    assert bpe.load_ranks(path) == ranks
    # tiktoken 0.14 reads local paths too (no extra packages), but caches by path: pass the file's sha256.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=sha) == ranks


@pytest.mark.parametrize("bad_line, error", [("QQ== 0 extra", "line 3 .*3 fields"), ("@@@ 2", "line 3 .*base64"),
                                             ("Qw== two", "line 3 .*non-negative integer"),
                                             ("QQ== 2", "line 3 .*already has rank 0"),
                                             ("Qw== 7", "ranks must be 0..2"),
                                             ("Qw== 2", "253 of the 256 single bytes have no rank .byte 0")])
def test_load_ranks_malformed(tmp_path, bad_line, error):
    path = tmp_path / "bad.tiktoken"
    path.write_text(f"QQ== 0\nQg== 1\n{bad_line}\n")
    with pytest.raises(ValueError, match=error):
        bpe.load_ranks(path)


def test_lone_surrogates_are_trained_as_tiktoken_encodes_them():
    # json.loads turns a broken escape like "\\ud83d" into a lone surrogate; tiktoken encodes it as U+FFFD, so the
    # trainer must count U+FFFD too (it used to learn the surrogate's bytes: tokens no encoding can produce)
    text = "x\ud83dy " * 50 + varied_text(300, seed=3)
    merges = bpe.learn_merges(bpe.count_chunks([text], verbose=False), 60, verbose=False)
    learned = set(bpe.ranks_from_merges(merges))
    assert b"\xef\xbf\xbdy" in learned and not any(b"\xed\xa0" in t for t in learned)
    enc = bpe.make_encoding("t", bpe.ranks_from_merges(merges), ())
    assert enc.encode_ordinary(text) == bpe.encode_reference(text, merges)
    assert enc.decode(enc.encode_ordinary("x\ud83dy")) == "x\ufffdy"


def test_deterministic_and_independent_of_document_order():
    docs = [varied_text(200, seed=s) for s in range(40)]
    first = bpe.train_bpe(docs, vocab_size=600, verbose=False)
    assert bpe.train_bpe(list(docs), vocab_size=600, verbose=False) == first
    assert bpe.train_bpe(docs[::-1], vocab_size=600, verbose=False) == first


def test_progress_output(capsys):
    bpe.train_bpe([varied_text(500, seed=5)], vocab_size=300)
    out = capsys.readouterr().out
    assert "counted" in out and "MB/s" in out and "merge 1/41: " in out and "learned 41 merges" in out
