"""simplify.py: vocabulary loading, sources, the two-stage pipeline, token matching, statistics and bad input."""
import collections
import gzip
import json
import os
import re
import sys
import time
import types

from pathlib import Path

import numpy as np
import pytest

import dataset
import filtering
import report
import simplify
from simplify import main
from spans import DEFAULT_VOCAB, filter_spans, load_vocab
from files import write_atomic
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


def test_load_vocab_says_which_entries_can_never_match(tmp_path, capsys):
    p = tmp_path / "words.txt"
    p.write_text("don't\ne-mail\ncat\n2nd\n")
    assert load_vocab(str(p)) == {"don't", "e-mail", "cat", "2nd"}
    out = capsys.readouterr().out
    assert "note: 3 entries of" in out and "(2nd, don't, e-mail): list their pieces" in out


def test_load_vocab_ignores_a_byte_order_mark(tmp_path):
    p = tmp_path / "v.csv"
    p.write_text("\ufeff,word,frequency\n0,cat,3\n", encoding="utf-8")  # as Excel saves a CSV
    assert load_vocab(str(p)) == {"cat"}
    p.write_text("\ufeffcat\ndog\n", encoding="utf-8")
    assert load_vocab(str(p)) == {"cat", "dog"}


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
    v = load_vocab(DEFAULT_VOCAB)
    assert len(v) == 10_037  # the top 10,000 spoken words, plus single letters and contraction pieces
    assert set("abcdefghijklmnopqrstuvwxyz") <= v and {"s", "t", "re", "ll", "d", "ve", "m", "don", "isn"} <= v
    assert {"the", "dog", "happy", "mommy"} <= v and not {"fuck", "shit"} & v
    assert all(w.isascii() and w.isalpha() and w == w.lower() for w in v)


@pytest.mark.skipif(not os.environ.get("AOCHILDES_CSV"), reason="set AOCHILDES_CSV=path/to/AOChildes_word_frequency.csv")
def test_overlap_with_the_authors_vocabulary(capsys):
    """Report how close the embedded proxy is to the real AO-CHILDES list (runs only when a path to it is given)."""
    ao, proxy = load_vocab(os.environ["AOCHILDES_CSV"]), load_vocab(DEFAULT_VOCAB)
    assert len(ao) == 21036
    docs = [t for _, t in iter_documents(os.path.join(DEFAULT_SOURCE, "brown.jsonl.gz"))]
    kept = {}  # the complete sentences inside kept spans, per list
    for name, v in (("ao", ao), ("proxy", proxy)):
        spans = [s for d in docs for s in filter_spans(d, v, 8, 0.0)]
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


def _junk_parquet(p):
    p.write_bytes(b"junk")


def _int_parquet(p):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": [1, 2]}), p)


def _truncated_gz(p):
    data = gzip.compress(b"".join(b'{"text": "row %d"}\n' % i for i in range(500)))
    p.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("name, write, message", [
    ("bad.txt", lambda p: p.write_bytes(b"fine\n\xff\n"), "bad.txt line 2: not UTF-8"),
    ("bad.jsonl", lambda p: p.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n'), "bad.jsonl line 2"),
    ("bad.jsonl", lambda p: p.write_text('{"text": "ok"}\n{"text": 5}\n'), "bad.jsonl line 2: field 'text' is not a str"),
    ("bad.jsonl", lambda p: p.write_text('{"text": null}\n{"text": 0}\n'), "bad.jsonl line 2: field 'text' is not"),
    ("bad.jsonl", lambda p: p.write_text('{"text": []}\n'), "bad.jsonl line 1: field 'text' is not a str"),
    ("bad.parquet", _int_parquet, "bad.parquet: field 'text' is not a string"),
    ("bad.parquet", _junk_parquet, "bad.parquet: cannot read it"),
    ("bad.jsonl.gz", _truncated_gz, "bad.jsonl.gz after line .*: cannot read it"),
    ("bad.jsonl.gz", lambda p: p.write_text('{"text": "not compressed"}\n'), "bad.jsonl.gz: cannot read it"),
    ("bad.jsonl.zst", lambda p: p.write_bytes(b"junk"), "bad.jsonl.zst: cannot read it"),
    ("notes.md", lambda p: p.write_text("# Notes\n"), "notes.md line 1: expected a UTF-8 JSON object .* name a plain "
                                                     "text file .txt"),
])
def test_unreadable_files_stop_with_one_line_naming_them(tmp_path, name, write, message):
    write(tmp_path / name)
    with pytest.raises(SystemExit, match=message):
        list(iter_documents(str(tmp_path / name)))


def test_a_file_both_plain_and_compressed_is_refused_and_a_bom_is_not_text(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n')
    (tmp_path / "a.jsonl.zst").write_bytes(b"")          # `zstd -d` keeps the original: both would be read
    with pytest.raises(SystemExit, match=r"a.jsonl is under .* more than once, as it is or compressed \(1 such"):
        list(iter_documents(str(tmp_path)))
    (tmp_path / "a.jsonl").rename(tmp_path / "a.jsonl.gz")   # two compressions of one file: the same
    with pytest.raises(SystemExit, match=r"a.jsonl is under .* more than once"):
        list(iter_documents(str(tmp_path)))
    (tmp_path / "a.jsonl.zst").unlink()
    (tmp_path / "a.jsonl.gz").unlink()
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n')
    (tmp_path / "b.txt").write_text("The cat sat.\n", encoding="utf-8-sig")   # a byte-order mark, as Notepad writes
    assert [t for _, t in iter_documents(str(tmp_path))] == ["one", "The cat sat.\n"]
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n', encoding="utf-8-sig")   # in a JSON-lines file too
    (tmp_path / "c.txt").write_text(" \n")                                          # no text: no document
    assert [t for _, t in iter_documents(str(tmp_path))] == ["one", "The cat sat.\n"]


def test_linked_folders_are_read_once_and_a_broken_link_is_named(tmp_path):
    """A corpus gathered from several disks with links: every linked folder is read, a folder reached twice (a
    second link, a link up the tree) once; a link to nothing stops the run with one line."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.jsonl").write_text('{"text": "two"}\n')
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text('{"text": "one"}\n')
    (src / "part2").symlink_to(tmp_path / "elsewhere")
    (src / "again").symlink_to(tmp_path / "elsewhere")
    (src / "loop").symlink_to(src)
    assert [t for _, t in iter_documents(str(src))] == ["one", "two"]
    (src / "c.jsonl").symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(SystemExit, match=r"c.jsonl is a broken link or not a file \(1 such under .*\): fix or remove"):
        list(iter_documents(str(src)))


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
    # a document's id (its split, its place in the order) is the same however many shards read the stream
    whole, halves = (dict((t, i) for k in range(n) for i, t in iter_documents("hf:x/y", k, n)) for n in (1, 2))
    assert whole == halves and len(set(whole.values())) == 6
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
        write_atomic(str(target), crash)
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


def test_pipeline_end_to_end(tmp_path, capsys, monkeypatch):
    src, vocab = _corpus(tmp_path / "src")
    out = tmp_path / "out"
    argv = ["--source", src, "--vocab", vocab, "--out_dir", str(out), "--vocab_size", "300", "--workers", "1",
            "--min_span_len", "3", "--val_fraction", "0.2"]
    walks, walk = [], os.walk   # the source is walked once a run (a download of thousands of files is slow to walk)

    def counted(top, *a, **k):
        walks.extend([top] if top == src else [])
        return walk(top, *a, **k)
    monkeypatch.setattr(os, "walk", counted)
    main(argv)
    assert walks == [src]
    metas = {n: dataset.load_meta(str(out / n)) for n in ("simplified", "unrestricted")}
    s, u = metas["simplified"], metas["unrestricted"]
    # token-matched control: exactly the same number of train and val tokens, from its own tokenizer
    assert s["train_tokens"] == u["train_tokens"] > 1000 and s["val_tokens"] == u["val_tokens"] > 0
    assert s["vocab_size"] == u["vocab_size"] == 300 and s["dtype"] == "uint16"
    assert s["filter"]["min_span_len"] == 3 and u["filter"] is None and s["vocab_sha256"] == u["vocab_sha256"]
    for name, meta in metas.items():
        enc = dataset.load_tokenizer(str(out / name))
        assert enc.n_vocab == 300 and enc.eot_token == meta["eot_token"] == meta["tokenizer"]["special_tokens"]["<|endoftext|>"]
        ids = np.fromfile(out / name / "train.bin", np.uint16)
        assert len(ids) == meta["train_tokens"] and ids.max() < 300
        text = enc.decode(ids[:2000].tolist())
        if name == "simplified":  # the span format (two markers a span, nothing between), and no OOV word survives
            assert text.startswith("<s> ") and "</s><|endoftext|><s> " in text and "</s><s> " in text   # max_oov 0
            assert " </s>" not in text and "</s> " not in text
            assert not any(w in text for w in ODD)
        else:
            assert "<s>" not in text and any(w in text for w in ODD)
    stats = json.loads((out / "corpus_stats.json").read_text())
    assert stats["simplified"]["oov_rate"] == 0 < stats["unrestricted"]["oov_rate"]
    assert stats["simplified"]["train_tokens"] == stats["unrestricted"]["train_tokens"]
    assert 0 < stats["simplified"]["kept_word_fraction"] < 1 and stats["simplified"]["docs_in"] == 120
    # words per span and the share of words kept, counted again from the spans the filter wrote
    with gzip.open(out / "simplified" / "docs-0-of-1.jsonl.gz", "rt") as f:
        spans = [x for line in f for x in json.loads(line)["spans"]]
    words_out = sum(len(x.split()) for x in spans)
    assert stats["simplified"]["mean_span_words"] == pytest.approx(words_out / len(spans))
    assert stats["simplified"]["kept_word_fraction"] == pytest.approx(words_out / stats["simplified"]["words_in"])
    assert (out / "rank_frequency.png").read_bytes()[:4] == b"\x89PNG"
    assert "| oov_rate | 0 |" in (out / "corpus_stats.md").read_text()
    assert "for unrestricted, the raw documents taken to match its tokens" in (out / "corpus_stats.md").read_text()
    # a second run reuses both stages
    capsys.readouterr()
    main(argv)
    assert capsys.readouterr().out.count("reusing") == 2
    assert walks == [src, src]   # (the rebuild check compares the recorded listing with the same walk)


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
    (tmp_path / "src").rename(tmp_path / "moved")   # the build reads the shards only: the source need not be there
    main(common + ["--out_dir", str(tmp_path / "two"), "--stage", "build", "--force"])
    assert (tmp_path / "one" / "simplified" / "train.bin").read_bytes() == (
        tmp_path / "two" / "simplified" / "train.bin").read_bytes()


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
        dataset.load_meta(str(tmp_path / "nowhere"))
    # a token file that does not match meta.json is refused, never trusted
    main(["--source", src, "--vocab", vocab, "--out_dir", str(tmp_path / "ok"), "--vocab_size", "300", "--workers", "1",
          "--min_span_len", "3"])
    with open(tmp_path / "ok" / "simplified" / "train.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(SystemExit, match="incomplete or corrupt .train.bin is [0-9,]+ bytes, meta.json says"):
        dataset.load_meta(str(tmp_path / "ok" / "simplified"))
    with open(tmp_path / "ok" / "unrestricted" / "val.bin", "ab") as f:      # val.bin is checked as well
        f.write(b"\0\0")
    with pytest.raises(SystemExit, match="incomplete or corrupt .val.bin is [0-9,]+ bytes, meta.json says"):
        dataset.load_meta(str(tmp_path / "ok" / "unrestricted"))
    val = tmp_path / "ok" / "unrestricted" / "val.bin"
    val.write_bytes(val.read_bytes()[:-2])
    # meta.json edited by hand: a missing field, or a vocab size / <|endoftext|> id its tokenizer does not have
    meta_path = tmp_path / "ok" / "unrestricted" / "meta.json"
    good = json.loads(meta_path.read_text())
    for edit, error in ((lambda m: m["tokenizer"].pop("pattern"), "lacks tokenizer.pattern"),
                        (lambda m: m.pop("eot_token"), "lacks eot_token"),
                        (lambda m: m.update(vocab_size=1000), "make 300 tokens with <.endoftext.> = 297, meta.json "
                                                              "says 1000 and 297"),
                        (lambda m: m.update(eot_token=3), "says 300 and 3"),
                        (lambda m: m["tokenizer"]["special_tokens"].update({"<|endoftext|>": 5}), "ids must be")):
        meta = json.loads(json.dumps(good))
        edit(meta)
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(SystemExit, match=error):
            dataset.load_tokenizer(str(tmp_path / "ok" / "unrestricted"))
    meta_path.write_text(json.dumps(good))
    assert dataset.load_tokenizer(str(tmp_path / "ok" / "unrestricted")).n_vocab == 300
    (tmp_path / "ok" / "unrestricted" / "tokenizer.tiktoken").write_text("garbage\n")
    with pytest.raises(SystemExit, match="sha256"):
        dataset.load_tokenizer(str(tmp_path / "ok" / "unrestricted"))


def test_failed_filter_leaves_nothing_behind(tmp_path, monkeypatch):
    src, vocab = _corpus(tmp_path / "src")
    (tmp_path / "empty.jsonl").write_text("")
    out = tmp_path / "o"
    with pytest.raises(SystemExit, match="gave no documents"):
        main(["--source", str(tmp_path / "empty.jsonl"), "--vocab", vocab, "--out_dir", str(out), "--workers", "1"])
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(SystemExit, match="not found"):  # a missing source: checked before anything is created
        main(["--source", str(tmp_path / "nope"), "--vocab", vocab, "--out_dir", str(tmp_path / "o2")])
    assert not (tmp_path / "o2").exists()

    def interrupt(texts):
        raise KeyboardInterrupt
    monkeypatch.setattr(filtering, "_filter_batch", interrupt)
    with pytest.raises(SystemExit, match="^interrupted: run the same command again"):
        main(["--source", src, "--vocab", vocab, "--out_dir", str(out), "--workers", "1"])
    assert not list(out.rglob("*.tmp"))


def test_filter_reuse_checks_its_files_and_the_data(tmp_path, monkeypatch, capsys):
    src, vocab = _corpus(tmp_path / "src")
    out = tmp_path / "out"
    run = lambda source=src: main(["--source", source, "--vocab", vocab, "--out_dir", str(out), "--stage", "filter",
                                   "--workers", "1", "--min_span_len", "3"])
    run()
    done = out / "simplified" / "filter-0-of-1.json"
    with pytest.raises(SystemExit, match="not found"):  # a typo in --source keeps the finished shard
        run(src + "x")
    assert done.exists()
    (out / "unrestricted" / "docs-0-of-1.jsonl.gz").unlink()  # a shard whose files are gone is redone
    capsys.readouterr()
    run()
    assert "reusing" not in capsys.readouterr().out and (out / "unrestricted" / "docs-0-of-1.jsonl.gz").exists()
    with open(tmp_path / "src" / "part0.jsonl", "a") as f:  # a file edited in place is new data
        f.write(json.dumps({"text": "The cat sat on the mat."}) + "\n")
    run()
    assert "reusing" not in capsys.readouterr().out and json.loads(done.read_text())["counts"]["docs_in"] == 121
    other = tmp_path / "elsewhere"  # the same relative path from another directory is other data
    other.mkdir()
    _corpus(other / "src", n_docs=40, seed=1)
    for cwd, docs_in in ((tmp_path, 121), (other, 40)):
        monkeypatch.chdir(cwd)
        run("src")
        assert json.loads(done.read_text())["counts"]["docs_in"] == docs_in


def test_build_checks_the_filter_records_and_settings(tmp_path):
    src, vocab = _corpus(tmp_path / "src")
    out = str(tmp_path / "out")
    common = ["--source", src, "--vocab", vocab, "--out_dir", out, "--workers", "1", "--vocab_size", "300"]
    for k, min_len in ((0, "3"), (1, "4")):
        main(common + ["--stage", "filter", "--shard", f"{k}/2", "--min_span_len", min_len])
    with pytest.raises(SystemExit, match="shard 1 was filtered with other settings \\(min_span_len 4 there, 3 here"):
        main(common + ["--stage", "build", "--min_span_len", "3"])
    with pytest.raises(SystemExit, match="shard 0 was filtered with other settings"):
        main(common + ["--stage", "build"])  # the build's own flags must be what the filter used (meta.json says so)
    main(common + ["--stage", "filter", "--shard", "1/2", "--min_span_len", "3"])
    main(common + ["--stage", "build", "--min_span_len", "3"])
    assert dataset.load_meta(os.path.join(out, "simplified"))["filter"]["min_span_len"] == 3
    record = tmp_path / "out" / "simplified" / "filter-1-of-2.json"
    old = json.loads(record.read_text())
    del old["key"]["files"]  # written by an older simplify.py (its simplified documents were formatted text)
    record.write_text(json.dumps(old))
    with pytest.raises(SystemExit, match="older simplify.py.*redo shard 1"):
        main(common + ["--stage", "build", "--min_span_len", "3"])
    record.write_text("{")
    with pytest.raises(SystemExit, match="unreadable.*redo shard 1"):
        main(common + ["--stage", "build", "--min_span_len", "3"])


def test_interrupted_build_is_never_reused(tmp_path, monkeypatch, capsys):
    src, vocab = _corpus(tmp_path / "src")
    out = tmp_path / "out"
    run = lambda size: main(["--source", src, "--vocab", vocab, "--out_dir", str(out), "--workers", "1",
                             "--min_span_len", "3", "--vocab_size", size])
    run("300")
    real = simplify.corpus_stats
    monkeypatch.setattr(simplify, "corpus_stats", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(SystemExit, match="^interrupted: "):  # both rebuilt with 320, interrupted in the statistics
        run("320")
    monkeypatch.setattr(simplify, "corpus_stats", real)
    capsys.readouterr()
    run("300")
    assert "datasets already built" not in capsys.readouterr().out
    assert dataset.load_meta(str(out / "unrestricted"))["vocab_size"] == 300


def test_max_train_tokens_is_a_cap_and_the_control_must_match(tmp_path, capsys):
    src, vocab = _corpus(tmp_path / "src")
    common = ["--source", src, "--vocab", vocab, "--workers", "1", "--min_span_len", "3", "--vocab_size", "300"]
    main(common + ["--out_dir", str(tmp_path / "a"), "--max_train_tokens", "10000000"])
    assert "fewer than --max_train_tokens 10,000,000: using them all" in capsys.readouterr().out
    assert dataset.load_meta(str(tmp_path / "a" / "unrestricted"))["train_tokens"] > 1000
    with pytest.raises(SystemExit, match="unrestricted: its raw documents give only .* raise --control_fraction"):
        main(common + ["--out_dir", str(tmp_path / "b"), "--control_fraction", "0.3"])
    with pytest.raises(SystemExit, match="simplified: no documents for the val split"):
        main(common + ["--out_dir", str(tmp_path / "c"), "--val_fraction", "0.001"])


def test_max_oov_0_keeps_no_oov_word_even_after_a_long_clean_run(tmp_path):
    """--max_oov reaches the filter: 121 clean words then one OOV word close the span at 0 (the CLI default), while
    at 0.01 (filter_spans' own default, the paper's) 1 OOV word in 122 is tolerated and the span runs on."""
    rng = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    clean = lambda n: " ".join(" ".join(rng.choice(WORDS, 8)).capitalize() + "." for _ in range(n))
    with open(tmp_path / "src" / "docs.jsonl", "w") as f:
        for _ in range(4):
            f.write(json.dumps({"text": f"{clean(15)} The zebra sat. {clean(3)}"}) + "\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")

    def spans(*flags):
        out = tmp_path / ("out" + "".join(flags))
        main(["--source", str(tmp_path / "src"), "--vocab", str(vocab), "--out_dir", str(out), "--stage", "filter",
              "--workers", "1", "--min_span_len", "3", *flags])
        rows = [json.loads(line) for line in gzip.open(out / "simplified" / "docs-0-of-1.jsonl.gz", "rt")]
        key = json.loads((out / "simplified" / "filter-0-of-1.json").read_text())["key"]
        return [s for row in rows for s in row["spans"]], key["max_oov"]
    kept, recorded = spans()
    assert recorded == 0.0 and len(kept) == 8  # per document: the 121 words up to "zebra", the 24 after its sentence
    assert not any("zebra" in s for s in kept) and all(len(s.split()) in (121, 24) for s in kept)
    kept, recorded = spans("--max_oov", "0.01")
    assert recorded == 0.01 and len(kept) == 4 and all("The zebra sat." in s for s in kept)


def test_the_control_must_match_the_val_tokens_too(tmp_path):
    """A control whose raw val documents are too few stops, although its train split is enough: here the val
    documents the control draws (by their ids' hashes) are one OOV word each, the others long and clean."""
    rng = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    groups = collections.Counter()
    with open(tmp_path / "src" / "docs.jsonl", "w") as f:
        for i in range(80):
            is_val = filtering.unit_hash(f"docs.jsonl:{i}", "val") < 0.2
            in_control = filtering.unit_hash(f"docs.jsonl:{i}", "control") < 0.5
            groups[is_val, in_control] += 1
            text = "Zebra." if is_val and in_control else " ".join(
                " ".join(rng.choice(WORDS, 8)).capitalize() + "." for _ in range(10))
            f.write(json.dumps({"text": text}) + "\n")
    assert min(groups.values()) >= 4  # simplified val docs, control val docs and control train docs all exist
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    with pytest.raises(SystemExit, match=r"unrestricted: its raw documents give only 2,000 train / \d+ val tokens, "
                                         r"fewer than the simplified corpus' 2,000 / 500: raise --control_fraction"):
        main(["--source", str(tmp_path / "src"), "--vocab", str(vocab), "--out_dir", str(tmp_path / "out"),
              "--workers", "1", "--min_span_len", "3", "--vocab_size", "300", "--max_train_tokens", "2000",
              "--val_fraction", "0.2", "--control_fraction", "0.5"])
    assert not (tmp_path / "out" / "unrestricted" / "meta.json").exists()


def test_literal_markers_in_the_text_stay_text():
    from bpe import SPECIAL_TOKENS, make_encoding
    enc = make_encoding("bytes", {bytes([i]): i for i in range(256)}, SPECIAL_TOKENS)
    s, e, eot = 257, 258, 256
    ids, used = simplify.encode_docs(enc, [("d", ["I <s> like", "x </s> y"])], None, 1, span_format=True)
    assert ids.tolist() == [s, *b" I <s> like", e, s, *b" x </s> y", e, eot]
    assert used == [["I <s> like", "x </s> y"]]
    # without literal markers: exactly what tiktoken gives for the formatted document with the markers allowed
    spans = ["The cat sat.", "A dog ran!"]
    ids, _ = simplify.encode_docs(enc, [("d", spans)], None, 1, span_format=True)
    assert ids.tolist() == enc.encode(simplify.span_document(spans), allowed_special={"<s>", "</s>"}) + [eot]
    assert simplify.span_document(spans) == "<s> The cat sat.</s><s> A dog ran!</s>"   # two markers per span
    ids, _ = simplify.encode_docs(enc, [("d", "raw <s> text")], None, 1)
    assert ids.tolist() == [*b"raw <s> text", eot]
    # cut to a budget (the control's last document): the statistics get the text that was kept
    ids, used = simplify.encode_docs(enc, [("a", "one."), ("b", "two words more")], 8, 1)
    assert ids.tolist() == [*b"one.", eot, *b"two"] and used == ["one.", "two"]
    assert simplify.encode_docs(enc, [("a", "one.")], 5, 1)[1] == ["one."]    # the whole of it: not cut
    doc = ("d", ["ab", "cd", "ef"])              # a simplified one: the spans kept whole
    for budget, kept in ((4, []), (5, ["ab"]), (9, ["ab"]), (10, ["ab", "cd"]), (15, ["ab", "cd", "ef"])):
        ids, used = simplify.encode_docs(enc, [doc], budget, 1, span_format=True)   # <s> " ab" </s>: 5 ids
        assert len(ids) == budget and used == [kept], budget                  # (15: all but the end of text)


def test_tokenizer_sample_is_counted_in_bytes(tmp_path):
    src, vocab = _corpus(tmp_path / "src")
    with open(tmp_path / "src" / "part0.jsonl", "a") as f:
        for i in range(20):
            f.write(json.dumps({"text": "Caf\u00e9 \u00e9t\u00e9 na\u00efve. " * 20}) + "\n")
    out = tmp_path / "out"
    main(["--source", src, "--vocab", vocab, "--out_dir", str(out), "--workers", "1", "--min_span_len", "3",
          "--vocab_size", "300"])
    raw = simplify.read_docs(str(out / "unrestricted"), 1)
    train_bytes = sum(len(t.encode()) for i, t in raw if filtering.unit_hash(i, "val") >= 0.01)
    assert dataset.load_meta(str(out / "unrestricted"))["tokenizer"]["sample_bytes"] == train_bytes


@pytest.mark.parametrize("flags", [["--workers", "0"], ["--max_docs", "-1"], ["--max_docs", "0"],
                                   ["--max_train_tokens", "0"], ["--max_train_tokens", "-5"],
                                   ["--control_fraction", "0"], ["--tokenizer_sample_mb", "0"]])
def test_bad_arguments_are_refused(flags):
    with pytest.raises(SystemExit):
        simplify.get_args(flags)


def test_an_out_dir_inside_the_source_is_refused(tmp_path, capsys):
    """Its next run would read its own output (docs-*.jsonl.gz, a 'text' field each) as source documents."""
    (tmp_path / "src").mkdir()
    for out in ("src/out", "src"):
        with pytest.raises(SystemExit):
            simplify.get_args(["--source", str(tmp_path / "src"), "--out_dir", str(tmp_path / out)])
        assert f"--out_dir {tmp_path / out} is inside --source {tmp_path / 'src'}: put it elsewhere" in \
            capsys.readouterr().err
    simplify.get_args(["--source", str(tmp_path / "src"), "--out_dir", str(tmp_path / "srcs")])   # a sibling: fine
    simplify.get_args(["--source", str(tmp_path / "src"), "--out_dir", str(tmp_path)])   # its parent, as data/ is


def test_paper_settings_are_defaults_that_flags_override():
    args = simplify.get_args(["--paper", "--vocab_size", "8000"])
    assert (args.vocab_size, args.min_span_len, args.max_oov, args.val_fraction) == (8000, 32, 0.01, 0.003)
    assert simplify.get_args(["--paper"]).vocab_size == 15000


def test_corpus_stats_numbers():
    stats, freq = report.corpus_stats(["<s> The cat sat. The dog sat 3 times! </s>", "a cat"],
                                        frozenset({"the", "cat", "sat", "dog", "a"}))
    # words: the cat sat the dog sat times a cat (the number 3 is not a word here); 3 sentence ends (. ! and the
    # second document's end)
    assert stats["train_words"] == 9 and stats["types"] == 6 and freq.tolist() == [2, 2, 2, 1, 1, 1]
    assert stats["oov_rate"] == pytest.approx(1 / 9) and stats["mean_sentence_words"] == pytest.approx(9 / 3)
    assert stats["type_token_ratio_100k"] == pytest.approx(6 / 9)
    # Zipf slope: least squares of log f on log rank
    x, y = np.log(np.arange(1, 7)), np.log([2, 2, 2, 1, 1, 1])
    assert stats["zipf_slope"] == pytest.approx(np.polyfit(x, y, 1)[0])
    # a span's end ends a sentence (spans mostly stop mid-sentence); a word glued after a digit is that word
    stats, _ = report.corpus_stats(["<s> the cat </s> <s> sat on 3 mats </s>", "42."], frozenset({"the", "mats"}))
    assert stats["mean_sentence_words"] == pytest.approx(5 / 2) and stats["oov_rate"] == pytest.approx(3 / 5)
    # the spans as simplify.span_document writes them (no spaces around the markers): the same statistics
    assert report.corpus_stats([simplify.span_document(["the cat", "sat on 3 mats"]), "42."],
                               frozenset({"the", "mats"}))[0] == stats


# --- regressions: the val cap, a failed rebuild, torchrun's wait, truncated .zst, hub fields, memory, small flags

# ceil(2000 x 0.2 / 0.8) = 500: val's share of a 2,500-token corpus; 2001 x 0.25 = 500.25 rounds up to 501
@pytest.mark.parametrize("max_train, val_cap", [(2000, 500), (2001, 501)])
def test_max_train_tokens_caps_val_too_and_the_control_matches_it(tmp_path, capsys, max_train, val_cap):
    """Uncapped, val held --val_fraction of every filtered document (more than the capped train here), and the
    control, drawn from a fifth of the raw documents, could not match it."""
    src, vocab = _corpus(tmp_path / "src", n_docs=600)
    out = tmp_path / "out"
    main(["--source", src, "--vocab", vocab, "--out_dir", str(out), "--workers", "1", "--min_span_len", "3",
          "--vocab_size", "300", "--max_train_tokens", str(max_train), "--val_fraction", "0.2",
          "--control_fraction", "0.2"])
    s, u = (dataset.load_meta(str(out / n)) for n in ("simplified", "unrestricted"))
    assert s["train_tokens"] == u["train_tokens"] == max_train
    assert s["val_tokens"] == u["val_tokens"] == val_cap
    for name in ("simplified", "unrestricted"):  # the token files hold exactly that many
        assert os.path.getsize(out / name / "val.bin") == 2 * val_cap
    assert "using them all" not in capsys.readouterr().out  # the simplified corpus had more than the cap


def test_a_failed_rebuild_leaves_no_dataset_that_looks_complete(tmp_path):
    src, vocab = _corpus(tmp_path / "src")
    out = tmp_path / "out"
    common = ["--source", src, "--vocab", vocab, "--out_dir", str(out), "--workers", "1", "--min_span_len", "3",
              "--vocab_size", "300"]
    main(common)
    stats = (out / "corpus_stats.json").read_text()
    with pytest.raises(SystemExit, match="simplified: no documents for the val split"):   # known before a file is
        main(common + ["--val_fraction", "0.001"])                                        # touched: the old pair stays
    assert (out / "corpus_stats.json").read_text() == stats
    assert dataset.load_meta(str(out / "simplified")) and dataset.load_meta(str(out / "unrestricted"))
    with pytest.raises(SystemExit, match="^unrestricted: no documents for the val split"):   # the control fails, after
        main(common + ["--control_fraction", "0.05", "--force"])       # the simplified corpus was written
    for name in ("simplified", "unrestricted"):  # neither the old pair nor an old control beside a new corpus
        with pytest.raises(SystemExit, match="not found: build the dataset"):
            dataset.load_meta(str(out / name))
    assert not (out / "corpus_stats.json").exists()


def test_rank_0_builds_only_from_this_runs_shard_records(tmp_path, monkeypatch, capsys):
    src, vocab = _corpus(tmp_path / "src")
    out = str(tmp_path / "out")
    common = ["--source", src, "--vocab", vocab, "--out_dir", out, "--workers", "1", "--vocab_size", "300"]
    waited = lambda flags, since=None: filtering.shards_waited_for(out, 2, filtering.filter_key(simplify.get_args(
        common + flags)), since)
    assert waited(["--min_span_len", "3"]) == [0, 1]  # nothing filtered yet
    main(common + ["--stage", "filter", "--shard", "0/2", "--min_span_len", "3"])
    assert waited(["--min_span_len", "3"]) == [1]  # shard 1 still missing
    main(common + ["--stage", "filter", "--shard", "1/2", "--min_span_len", "4"])
    assert waited(["--min_span_len", "3"]) == [1] and waited(["--min_span_len", "4"]) == [0]  # two runs' settings
    main(common + ["--stage", "filter", "--shard", "1/2", "--min_span_len", "3"])
    assert waited(["--min_span_len", "3"]) == waited(["--min_span_len", "3"], since=0) == []
    assert waited(["--min_span_len", "3"], since=time.time() + 1) == [0, 1]  # --force: older records are stale
    # under torchrun, rank 0 of a run with other settings waits for shard 1 to be redone, never builds from it
    main(common + ["--stage", "filter", "--shard", "0/2", "--min_span_len", "5"])

    class Waiting(Exception):
        pass

    def sleep(seconds):
        raise Waiting
    monkeypatch.setattr(simplify.time, "sleep", sleep)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(Waiting):
        main(common + ["--min_span_len", "5"])
    with pytest.raises(Waiting):  # --force: shard 1's record, written before this run began, is about to be redone
        main(common + ["--min_span_len", "3", "--force"])
    assert "waiting for shards 1 of 2 to finish filtering" in capsys.readouterr().out
    monkeypatch.setenv("RANK", "1")   # --stage build under torchrun: rank 0 alone builds
    main(common + ["--min_span_len", "3", "--stage", "build"])
    assert "rank 1: rank 0 builds" in capsys.readouterr().out and not os.path.exists(f"{out}/corpus_stats.json")


def test_shards_of_other_file_lists_are_refused_and_redone_shards_say_why(tmp_path, capsys):
    """Shards deal the files by their place in the sorted list: a machine that saw another list (a partial
    download) reads some files twice and others never, so the build compares the shards' listings."""
    src, vocab = _corpus(tmp_path / "src")
    out = str(tmp_path / "out")
    common = ["--source", src, "--vocab", vocab, "--out_dir", out, "--workers", "1", "--vocab_size", "300"]
    main(common + ["--stage", "filter", "--shard", "0/2"])
    os.rename(f"{src}/part0.jsonl", f"{tmp_path}/part0.jsonl")      # shard 1 sees one file fewer
    main(common + ["--stage", "filter", "--shard", "1/2"])
    with pytest.raises(SystemExit, match=r"shards 0 and 1 were filtered from different file lists .*\(2 files "
                                         r"\(listing \w+\) vs 1 files .*redo the shards"):
        main(common + ["--stage", "build"])
    os.rename(f"{tmp_path}/part0.jsonl", f"{src}/part0.jsonl")
    capsys.readouterr()
    main(common + ["--stage", "filter", "--shard", "1/2"])         # its files changed: redone, and said why
    assert "redoing the shard in" in (o := capsys.readouterr().out) and "the source's files changed" in o
    main(common + ["--stage", "filter", "--shard", "1/2", "--min_span_len", "4"])
    assert "redoing the shard in" in (o := capsys.readouterr().out) and "min_span_len 8 there, 4 here" in o
    main(common + ["--stage", "filter", "--shard", "1/2"])
    main(common + ["--stage", "build"])                             # the same lists again: built
    assert dataset.load_meta(f"{out}/simplified")["vocab_size"] == 300
    with filtering.lock_or_exit(f"{out}/simplified/build.lock", "x"):   # a second simplify.py on the same output
        with pytest.raises(SystemExit, match=r"another simplify.py is building the datasets in .* right now"):
            main(common + ["--stage", "build", "--force"])


def _zst_rows(n, start=0):
    return b"".join(b'{"text": "row %d %s"}\n' % (i, os.urandom(16).hex().encode()) for i in range(start, start + n))


@pytest.mark.parametrize("cut, message", [(100, r"bad.jsonl.zst: cannot read it \(EOFError"),
                                          (0.5, r"bad.jsonl.zst after line \d+: cannot read it \(EOFError")])
def test_a_truncated_zst_stops_with_one_line(tmp_path, cut, message):
    import zstandard
    data = zstandard.ZstdCompressor().compress(_zst_rows(20000))  # ~0.5 MB in several blocks
    p = tmp_path / "bad.jsonl.zst"
    p.write_bytes(data[:cut if isinstance(cut, int) else int(len(data) * cut)])  # inside the first block, or later
    with pytest.raises(SystemExit, match=message):
        list(iter_documents(str(p)))


def test_a_multi_frame_zst_reads_every_row(tmp_path):
    import zstandard
    c = zstandard.ZstdCompressor()
    first, second = _zst_rows(60000), _zst_rows(5, start=60000)  # the first frame spans several 1 MB reads
    cut = len(first) - 10  # a row split across the two frames is one row, as zstd concatenates frames
    p = tmp_path / "two.jsonl.zst"
    p.write_bytes(c.compress(first[:cut]) + c.compress(first[cut:] + second))
    texts = [t for _, t in iter_documents(str(p))]
    assert [t.split()[1] for t in texts] == [str(i) for i in range(60005)]


def test_hub_source_without_the_text_field_stops_at_the_first_row(monkeypatch):
    served = []

    def rows():
        for i in range(1000):
            served.append(i)
            yield {"content": f"doc {i}", "meta": {}}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: rows()))
    with pytest.raises(SystemExit, match="hf:x/y row 0 has no field 'text' \\(fields: content, meta\\)"):
        list(iter_documents("hf:x/y"))
    assert served == [0]  # not the whole dataset first
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(
        load_dataset=lambda *a, **k: iter([{"text": ""}, {"text": "kept"}])))
    assert [t for _, t in iter_documents("hf:x/y")] == ["kept"]  # empty text is still skipped


def _naive_corpus_stats(texts, vocab):
    """corpus_stats as a plain reading of its definitions: every word in one list; sentences end at . ? ! newlines
    and span ends, and hold a word."""
    from spans import DELIMITERS, WORD_RE, vocab_bytes
    words, sentences = [], 0
    for t in texts:
        low = t.encode("utf-8", "surrogatepass").lower().replace(b"<s>", b" ").replace(b"</s>", b"\n")
        words.extend(w.lstrip(DELIMITERS) for w in WORD_RE.findall(low) if not w.isdigit())
        sentences += sum(1 for s in re.split(rb"[.?!\n]+", low) if re.search(rb"[a-z]", s))
    counts = collections.Counter(words)
    freq = np.array(sorted(counts.values(), reverse=True), float)
    top = min(len(freq), 1000)
    zipf = float(np.polyfit(np.log(np.arange(1, top + 1)), np.log(freq[:top]), 1)[0]) if top > 1 else float("nan")
    vb, first = vocab_bytes(vocab), words[:100_000]
    return dict(train_words=len(words), types=len(counts),
                oov_rate=sum(n for w, n in counts.items() if w not in vb) / max(len(words), 1),
                mean_sentence_words=len(words) / max(sentences, 1),
                type_token_ratio_100k=len(set(first)) / max(len(first), 1), zipf_slope=zipf), freq


def test_corpus_stats_counts_incrementally_with_the_same_results():
    rng = np.random.default_rng(0)
    pool = WORDS + ODD + [f"w{i}" for i in range(3000)] + ["3", "42"]  # enough types that the first 100k matter
    texts = [" ".join(rng.choice(pool, rng.integers(1, 900))) + ". <s> Done! </s>" for _ in range(400)]
    vocab = frozenset(WORDS)
    got, want = report.corpus_stats(iter(texts), vocab), _naive_corpus_stats(texts, vocab)
    assert got[0] == want[0] and got[0]["train_words"] > 100_000 and got[1].tolist() == want[1].tolist()
    assert report.corpus_stats([], vocab)[0]["type_token_ratio_100k"] == _naive_corpus_stats([], vocab)[0][
        "type_token_ratio_100k"] == 0


def test_corpus_stats_memory_does_not_grow_with_the_corpus():
    import tracemalloc
    docs = [" ".join(WORDS * 20) + "." for _ in range(10)]  # ~500 words each, half a million in all below
    tracemalloc.start()
    try:
        stats, _ = report.corpus_stats((docs[i % 10] for i in range(1000)), frozenset(WORDS))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats["train_words"] == 1000 * len(WORDS) * 20
    assert peak < 5e6  # a list of every word: ~18 MB here


@pytest.mark.parametrize("env, flags, message", [
    ({}, ["--shard", ""], "--shard '': expected K/N"),
    ({"RANK": "abc", "WORLD_SIZE": "2"}, [], "RANK='abc' WORLD_SIZE='2' in the environment: expected whole numbers"),
    ({"RANK": "1", "WORLD_SIZE": "1"}, [], "RANK='1' WORLD_SIZE='1' in the environment"),
])
def test_bad_shards_stop_with_one_line(tmp_path, monkeypatch, env, flags, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    src, vocab = _corpus(tmp_path / "src")
    with pytest.raises(SystemExit, match=message):
        main(["--source", src, "--vocab", vocab, "--out_dir", str(tmp_path / "o"), "--workers", "1"] + flags)
    assert not (tmp_path / "o").exists()


def test_out_dir_that_is_a_file_stops_with_one_line(tmp_path):
    src, vocab = _corpus(tmp_path / "src")
    (tmp_path / "f").write_text("x")
    for out in ("f", "f/sub"):
        with pytest.raises(SystemExit, match=f"--out_dir .*{out}: .*f is a file, not a folder"):
            main(["--source", src, "--vocab", vocab, "--out_dir", str(tmp_path / out), "--workers", "1"])


def test_filtered_documents_are_byte_identical_across_runs(tmp_path):
    src, vocab = _corpus(tmp_path / "src")
    for out in ("a", "b"):
        main(["--source", src, "--vocab", vocab, "--out_dir", str(tmp_path / out), "--stage", "filter",
              "--workers", "1", "--min_span_len", "3"])
    for name in ("simplified", "unrestricted"):
        a, b = ((tmp_path / out / name / "docs-0-of-1.jsonl.gz").read_bytes() for out in ("a", "b"))
        assert a[4:8] == b"\0\0\0\0" and a == b  # gzip mtime 0: no clock in the header


def test_a_dataset_runs_trained_on_is_not_rebuilt_without_force(tmp_path, monkeypatch, capsys):
    """A rebuild with other settings makes a new tokenizer: runs in out/ trained on the old one could no longer be
    resumed or evaluated, so it is refused (another --out_dir keeps both; --force replaces it)."""
    src, vocab = _corpus(tmp_path / "src")
    out = tmp_path / "data"
    common = ["--source", src, "--vocab", vocab, "--out_dir", str(out), "--workers", "1", "--min_span_len", "3"]
    main(common + ["--vocab_size", "300"])
    monkeypatch.chdir(tmp_path)
    sha = dataset.load_meta(str(out / "unrestricted"))["tokenizer"]["sha256"]
    run = tmp_path / "out" / "some-run"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"dataset": {"dir": "data/unrestricted", "tokenizer_sha256": sha,
                                                             "dir_abs": os.path.realpath(out / "unrestricted")}}))
    main(common + ["--vocab_size", "300"])                      # the same settings: reused, nothing replaced
    for f in Path(src).iterdir():                               # source files touched: filtered and built again,
        os.utime(f, (1e9, 1e9))                                 # into the same datasets
    main(common + ["--vocab_size", "300"])
    assert dataset.load_meta(str(out / "unrestricted"))["tokenizer"]["sha256"] == sha
    record = (out / "simplified" / "filter-0-of-1.json").read_text()
    (Path(src) / "part2.jsonl").write_text((Path(src) / "part0.jsonl").read_text().replace("the", "a"))
    for other in (["--vocab_size", "320"], ["--vocab_size", "300", "--min_span_len", "4"], ["--vocab_size", "300"]):
        with pytest.raises(SystemExit, match=r"would be rebuilt with other settings or source files, but runs in "
                                             r"out/ trained on it \(out/some-run \(unrestricted\)\): pass another"):
            main(common[:-2] + other)       # (the last: the same settings, but a file was added to the source)
    assert dataset.load_meta(str(out / "unrestricted"))["tokenizer"]["sha256"] == sha     # untouched, and refused
    assert (out / "simplified" / "filter-0-of-1.json").read_text() == record             # before any filtering
    main(common + ["--vocab_size", "320", "--force"])
    assert dataset.load_meta(str(out / "unrestricted"))["vocab_size"] == 320
    # runs kept in another folder: checked where --runs_dir says; a rebuild with none found says what was checked
    (tmp_path / "out").rename(tmp_path / "elsewhere")
    sha = dataset.load_meta(str(out / "unrestricted"))["tokenizer"]["sha256"]
    config = json.loads((tmp_path / "elsewhere" / "some-run" / "config.json").read_text())
    config["dataset"]["tokenizer_sha256"] = sha
    (tmp_path / "elsewhere" / "some-run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match=r"but runs in out/ or elsewhere/ trained on it \(elsewhere/some-run"):
        main(common + ["--vocab_size", "300", "--runs_dir", "out,elsewhere"])
    capsys.readouterr()
    main(common + ["--vocab_size", "300"])
    assert "note: " + str(out) + " is rebuilt with other settings or source files: no run in out/ trained on it " \
           "(runs kept elsewhere would no longer resume" in capsys.readouterr().out


def test_benchmark_prints_the_filter_rates_and_refuses_an_empty_source(tmp_path, capsys):
    src, vocab = _corpus(tmp_path / "src")
    main(["--source", src, "--vocab", vocab, "--benchmark", "--workers", "2", "--min_span_len", "3"])
    out = capsys.readouterr().out.splitlines()
    docs = [t for _, t in iter_documents(src)]
    size = sum(len(t.encode()) for t in docs)
    assert out[1] == f"benchmark: 120 documents, {size / 1e6:.1f} MB from {src}, vocabulary {vocab} (" + \
        f"{len(load_vocab(vocab)):,})"
    rates = [line for line in out if "MB/s" in line]
    assert len(rates) == 2 and all(line.count("MB/s") == 3 and "| 2 workers " in line for line in rates)
    kept = sum(len(sp) for t in docs for sp in filter_spans(t, load_vocab(vocab), min_span_len=3, max_oov=0.0))
    assert f"kept {kept / size:.1%} of bytes" in rates[1]            # the second line: the flags given
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SystemExit, match="benchmark: .*empty.jsonl holds no text to filter"):   # (was 0.0 MB/s)
        main(["--source", str(tmp_path / "empty.jsonl"), "--vocab", vocab, "--benchmark", "--workers", "1"])


def _worker_signals(_):
    import signal
    return signal.pthread_sigmask(signal.SIG_BLOCK, []), signal.getsignal(signal.SIGTERM)


def test_filter_workers_start_with_stop_signals_held_back_until_their_own_handlers_are_set():
    """A pool stopped at once (SIGTERM to its workers) could reach a worker still running the parent's handler, which
    turns it into a KeyboardInterrupt, and hang (2 of 24 quick `--benchmark` runs did): start_pool blocks SIGINT and
    SIGTERM while it forks, each worker unblocks them once its handlers are set, and the parent's mask is restored."""
    import signal
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with filtering.start_pool(2, frozenset(), {}) as pool:
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
        for mask, handler in pool.map(_worker_signals, range(4)):
            assert not mask & {signal.SIGINT, signal.SIGTERM} and handler == signal.SIG_DFL


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_kill_during_the_filter_is_one_line(tmp_path, sig):
    """Ctrl-C reaches every process of the terminal's group, the filter's pool workers too: the parent stops the pool
    and says how to go on in one line; no worker prints a traceback. `kill` (SIGTERM to the parent) does the same."""
    import signal
    import subprocess
    proc = subprocess.Popen([sys.executable, "simplify.py", "--out_dir", str(tmp_path / "data"), "--workers", "2"],
                            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            start_new_session=True,   # its own process group, as a terminal's job
                            # with SIGINT as a terminal leaves it: a test run in the background (`cmd &` without
                            # job control) has it ignored, and the child would inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().startswith("vocabulary: ")
    assert proc.stdout.readline().startswith("  filter 0-of-1: ")   # its first progress line: the pool is at work
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    # (a worker interrupted mid-task prints "Process ForkPoolWorker-1:" and, unless killed first, a traceback)
    assert proc.returncode == 1 and err.strip().splitlines() == [
        "interrupted: run the same command again (each shard's finished filter is reused; a build is redone)"], err
    assert "documents and" not in out   # (the filter's closing line: it was stopped, not finished)
    assert not (tmp_path / "data" / "simplified" / "meta.json").exists()
