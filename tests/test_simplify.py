"""simplify.py: vocabulary loading, sources, the two-stage pipeline, token matching, statistics and bad input."""
import gzip
import json
import os
import re
import sys
import types

import numpy as np
import pytest

import simplify
from simplify import load_vocab, main
from sources import DEFAULT_SOURCE, iter_documents


# --- vocabulary

def test_load_vocab_authors_csv(tmp_path):
    p = tmp_path / "ao.csv"
    p.write_text(",word,frequency\n0,whats,23729\n1,That,84333\n2,nan,31\n3,TRUE,567\n4,don,12\n")
    assert load_vocab(str(p)) == {"whats", "that", "true", "don"}  # `nan` dropped as pandas did, all lowercased


def test_load_vocab_word_list(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("The\ncat\n\nSAT\n")
    v = load_vocab(str(p))
    assert v == {"the", "cat", "sat"} and isinstance(v, frozenset)


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    (",word,frequency\n", "no words"),
    (",word,frequency\n0,cat\n", "line 2"),
    (",word,frequency\n0,cat,many\n", "line 2"),
    ("cat\ntwo words\n", "line 2"),
    ("cat,dog\n", "line 1"),
])
def test_load_vocab_rejects_bad_files(tmp_path, content, message):
    p = tmp_path / "v.txt"
    p.write_text(content)
    with pytest.raises(SystemExit, match=message):
        load_vocab(str(p))
    with pytest.raises(SystemExit, match="not found"):
        load_vocab(str(tmp_path / "missing.csv"))


def test_embedded_vocab_is_a_sane_proxy():
    v = load_vocab(simplify.DEFAULT_VOCAB)
    assert len(v) == 10_037  # the top 10,000 spoken words, plus single letters and contraction pieces
    assert set("abcdefghijklmnopqrstuvwxyz") <= v and {"s", "t", "re", "ll", "d", "ve", "m", "don", "isn"} <= v
    assert {"the", "dog", "happy", "mommy"} <= v and not {"fuck", "shit"} & v
    assert all(w.isascii() and w.isalpha() and w == w.lower() for w in v)


@pytest.mark.skipif(not os.environ.get("AOCHILDES_CSV"), reason="set AOCHILDES_CSV=path/to/AOChildes_word_frequency.csv")
def test_overlap_with_the_authors_vocabulary(capsys):
    """Report how close the embedded proxy is to the real AO-CHILDES list (runs only when a path to it is given)."""
    ao, proxy = load_vocab(os.environ["AOCHILDES_CSV"]), load_vocab(simplify.DEFAULT_VOCAB)
    assert len(ao) == 21036
    docs = [t for _, t in iter_documents(os.path.join(DEFAULT_SOURCE, "brown.jsonl.gz"))]
    kept = {}  # the complete sentences inside kept spans, per list
    for name, v in (("ao", ao), ("proxy", proxy)):
        spans = [s for d in docs for s in simplify.filter_spans(d, v, 8, 0.0)]
        kept[name] = {x for s in spans for x in re.split(r"(?<=[.?!])\s+", s) if x.endswith((".", "?", "!"))}
    jaccard = len(kept["ao"] & kept["proxy"]) / len(kept["ao"] | kept["proxy"])
    with capsys.disabled():
        print(f"\nproxy {len(proxy):,} words, AO-CHILDES {len(ao):,}, shared {len(ao & proxy):,}; Brown sentences "
              f"kept (8, 0.0): AO {len(kept['ao']):,}, proxy {len(kept['proxy']):,}, Jaccard {jaccard:.2f}")
    assert len(ao & proxy) > 0.6 * len(proxy) and jaccard > 0.4


# --- sources

def _write_sources(d):
    d.mkdir()
    (d / "a.txt").write_text("First document.")
    rows = [{"text": f"row {i}", "meta": {"redpajama_set_name": "RedPajamaC4"}} for i in range(5)]
    (d / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(d / "c.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "gz row"}) + "\n\n")
    import zstandard
    (d / "sub").mkdir()
    (d / "sub" / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "zst row"}\n'))
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": ["pq one", "pq two"], "n": [1, 2]}), d / "e.parquet")
    (d / "ignored.csv").write_text("x")


def test_local_sources(tmp_path):
    _write_sources(tmp_path / "src")
    docs = list(iter_documents(str(tmp_path / "src")))
    assert [t for _, t in docs] == ["First document.", "row 0", "row 1", "row 2", "row 3", "row 4", "gz row",
                                    "pq one", "pq two", "zst row"]
    assert docs[0][0] == "a.txt:0" and docs[-1][0] == "sub/d.jsonl.zst:0"
    # shards split the documents with no overlap: by file when there are enough files, else by document
    for n in (2, 3, 7):
        parts = [list(iter_documents(str(tmp_path / "src"), k, n)) for k in range(n)]
        assert sorted(sum(parts, [])) == sorted(docs)


def test_source_errors(tmp_path):
    with pytest.raises(SystemExit, match="not found"):
        list(iter_documents(str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no .txt"):
        list(iter_documents(str(tmp_path / "empty")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"content": "no text field"}\n')
    with pytest.raises(SystemExit, match="line 2"):
        list(iter_documents(str(bad)))
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(SystemExit, match="line 2"):
        list(iter_documents(str(bad)))


def test_hub_source_streams_rows_like_slimpajama(tmp_path, monkeypatch):
    """hf:NAME goes through datasets.load_dataset(streaming=True); checked with a stand-in that serves local rows of
    SlimPajama's shape ({"text", "meta": {"redpajama_set_name"}})."""
    rows = [{"text": f"doc {i}", "meta": {"redpajama_set_name": "RedPajamaBook"}} for i in range(6)]
    calls = []

    class Stream:
        def __init__(self, rows):
            self.rows = rows

        def shard(self, num_shards, index):
            return Stream(self.rows[index::num_shards])

        def __iter__(self):
            return iter(self.rows)

    def load_dataset(name, split, streaming):
        calls.append((name, split, streaming))
        return Stream(rows)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    got = list(iter_documents("hf:cerebras/SlimPajama-627B", 1, 2))
    assert calls == [("cerebras/SlimPajama-627B", "train", True)]
    assert [t for _, t in got] == ["doc 1", "doc 3", "doc 5"]
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed: a clear message
    with pytest.raises(SystemExit, match="pip install datasets"):
        list(iter_documents("hf:x/y"))


# --- writing

def test_write_atomic_never_leaves_a_half_file(tmp_path):
    target = tmp_path / "train.bin"
    target.write_bytes(b"old")

    def crash(tmp):
        open(tmp, "wb").write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simplify.write_atomic(str(target), crash)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["train.bin"]


# --- the pipeline, end to end on a small generated corpus

WORDS = "the a cat dog sat on mat is big and i you we see it was very happy to run ball red".split()
ODD = "zebra quantum xylophone bureaucracy photosynthesis".split()


def _corpus(folder, n_docs=120, seed=0):
    """Documents of simple sentences with a few out-of-vocabulary words, in two files."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for part in range(2):
        with open(folder / f"part{part}.jsonl", "w") as f:
            for _ in range(n_docs // 2):
                sents = []
                for _ in range(rng.integers(3, 12)):
                    ws = list(rng.choice(WORDS, rng.integers(4, 12)))
                    if rng.random() < 0.3:
                        ws.insert(rng.integers(0, len(ws)), str(rng.choice(ODD)))
                    sents.append(" ".join(ws).capitalize() + ".")
                f.write(json.dumps({"text": " ".join(sents)}) + "\n")
    vocab = folder.parent / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    return str(folder), str(vocab)


def test_pipeline_end_to_end(tmp_path, capsys):
    src, vocab = _corpus(tmp_path / "src")
    out = tmp_path / "out"
    argv = ["--source", src, "--vocab", vocab, "--out_dir", str(out), "--vocab_size", "300", "--workers", "1",
            "--min_span_len", "3", "--val_fraction", "0.2"]
    main(argv)
    metas = {n: simplify.load_meta(str(out / n)) for n in ("simplified", "unrestricted")}
    s, u = metas["simplified"], metas["unrestricted"]
    # token-matched control: exactly the same number of train and val tokens, from its own tokenizer
    assert s["train_tokens"] == u["train_tokens"] > 1000 and s["val_tokens"] == u["val_tokens"] > 0
    assert s["vocab_size"] == u["vocab_size"] == 300 and s["dtype"] == "uint16"
    assert s["filter"]["min_span_len"] == 3 and u["filter"] is None and s["vocab_sha256"] == u["vocab_sha256"]
    for name, meta in metas.items():
        enc = simplify.load_tokenizer(str(out / name))
        assert enc.n_vocab == 300 and enc.eot_token == meta["eot_token"] == meta["tokenizer"]["special_tokens"]["<|endoftext|>"]
        ids = np.fromfile(out / name / "train.bin", np.uint16)
        assert len(ids) == meta["train_tokens"] and ids.max() < 300
        text = enc.decode(ids[:2000].tolist())
        if name == "simplified":  # the authors' document format, and no OOV word survives max_oov 0
            assert text.startswith("<s> ") and " </s><|endoftext|><s> " in text
            assert not any(w in text for w in ODD)
        else:
            assert "<s>" not in text and any(w in text for w in ODD)
    stats = json.load(open(out / "corpus_stats.json"))
    assert stats["simplified"]["oov_rate"] == 0 < stats["unrestricted"]["oov_rate"]
    assert stats["simplified"]["train_tokens"] == stats["unrestricted"]["train_tokens"]
    assert 0 < stats["simplified"]["kept_word_fraction"] < 1 and stats["simplified"]["docs_in"] == 120
    assert (out / "rank_frequency.png").read_bytes()[:4] == b"\x89PNG"
    assert "| oov_rate | 0 |" in (out / "corpus_stats.md").read_text()
    # a second run reuses both stages
    capsys.readouterr()
    main(argv)
    assert capsys.readouterr().out.count("reusing") == 2


def test_sharded_filter_then_build_matches_one_process(tmp_path):
    src, vocab = _corpus(tmp_path / "src")
    common = ["--source", src, "--vocab", vocab, "--vocab_size", "300", "--min_span_len", "3", "--workers", "1"]
    main(common + ["--out_dir", str(tmp_path / "one")])
    for k in range(2):  # two machines, no coordination beyond the shard index
        main(common + ["--out_dir", str(tmp_path / "two"), "--stage", "filter", "--shard", f"{k}/2"])
    main(common + ["--out_dir", str(tmp_path / "two"), "--stage", "build"])
    for name in ("simplified", "unrestricted"):
        for f in ("train.bin", "val.bin", "tokenizer.tiktoken"):
            assert (tmp_path / "one" / name / f).read_bytes() == (tmp_path / "two" / name / f).read_bytes()


def test_parallel_filter_gives_the_same_documents(tmp_path):
    src, vocab = _corpus(tmp_path / "src")
    for w in ("1", "2"):
        main(["--source", src, "--vocab", vocab, "--out_dir", str(tmp_path / w), "--stage", "filter", "--workers", w,
              "--min_span_len", "3"])
    read = lambda w: gzip.open(tmp_path / w / "simplified" / "docs-0-of-1.jsonl.gz").read()
    assert read("1") == read("2")


def test_pipeline_errors(tmp_path):
    src, vocab = _corpus(tmp_path / "src")
    with pytest.raises(SystemExit, match="shard 1 of 2|filter stage not finished"):
        main(["--source", src, "--vocab", vocab, "--out_dir", str(tmp_path / "o"), "--stage", "build", "--shard", "0/2"])
    with pytest.raises(SystemExit, match="expected K/N"):
        main(["--source", src, "--vocab", vocab, "--shard", "2/2"])
    with pytest.raises(SystemExit, match="kept no text"):  # nothing survives a 1000-word minimum
        main(["--source", src, "--vocab", vocab, "--out_dir", str(tmp_path / "o"), "--min_span_len", "1000",
              "--workers", "1"])
    with pytest.raises(SystemExit, match="not found: build the dataset"):
        simplify.load_meta(str(tmp_path / "nowhere"))
    # a token file that does not match meta.json is refused, never trusted
    main(["--source", src, "--vocab", vocab, "--out_dir", str(tmp_path / "ok"), "--vocab_size", "300", "--workers", "1",
          "--min_span_len", "3"])
    with open(tmp_path / "ok" / "simplified" / "train.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(SystemExit, match="incomplete or corrupt"):
        simplify.load_meta(str(tmp_path / "ok" / "simplified"))
    (tmp_path / "ok" / "unrestricted" / "tokenizer.tiktoken").write_text("garbage\n")
    with pytest.raises(SystemExit, match="sha256"):
        simplify.load_tokenizer(str(tmp_path / "ok" / "unrestricted"))


def test_corpus_stats_numbers():
    stats, freq = simplify.corpus_stats(["<s> The cat sat. The dog sat 3 times! </s>", "a cat"],
                                        frozenset({"the", "cat", "sat", "dog", "a"}))
    # words: the cat sat the dog sat times a cat (the number 3 is not a word here); 3 sentence ends (. ! and the
    # second document's end)
    assert stats["train_words"] == 9 and stats["types"] == 6 and freq.tolist() == [2, 2, 2, 1, 1, 1]
    assert stats["oov_rate"] == pytest.approx(1 / 9) and stats["mean_sentence_words"] == pytest.approx(9 / 3)
    assert stats["type_token_ratio_100k"] == pytest.approx(6 / 9)
    # Zipf slope: least squares of log f on log rank
    x, y = np.log(np.arange(1, 7)), np.log([2, 2, 2, 1, 1, 1])
    assert stats["zipf_slope"] == pytest.approx(np.polyfit(x, y, 1)[0])
