r"""
simplify.py: build the paper's restricted-vocabulary corpus and its token-matched unrestricted control.

raw documents --filter_spans--> "<s> span </s> <s> span </s>" documents --BPE--> OUT/simplified/
raw documents (same source, unfiltered, cut to the same token count) ------BPE--> OUT/unrestricted/
Each dataset dir gets train.bin, val.bin, tokenizer.tiktoken, meta.json; OUT gets corpus_stats.{json,md} and a plot.

    python simplify.py                 # embedded default data and vocabulary, offline, well under a minute on 2 cores
    python simplify.py --paper --vocab AOChildes_word_frequency.csv --source hf:cerebras/SlimPajama-627B \
        --max_train_tokens 2130447357 --control_fraction 0.01 --out_dir data/paper      # the paper's recipe
    python simplify.py --benchmark     # the filter's speed in MB/s
"""
import argparse
import collections
import glob
import gzip
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from bpe import SPECIAL_TOKENS, SPLIT_PATTERN, make_encoding, save_ranks, train_bpe
from files import HelpFormat, file_sha256, read_json, try_lock, whole_number, write_atomic, write_json
from report import corpus_stats, plot_rank_frequency, stats_table   # corpus_stats.json, .md, rank_frequency.png
from sources import DEFAULT_SOURCE, iter_documents, list_files   # raw documents: files, folders, the hub
from spans import DEFAULT_VOCAB, filter_spans, format_document, load_vocab   # the rule


# -----------------------------------------------------------------------------
# Stage 1, filter: every document -> its kept spans (parallel over documents, shardable over machines)

_worker_state = None


def _init_worker(vocab, settings):
    global _worker_state
    _worker_state = (vocab, settings)


def _filter_batch(texts):
    vocab, settings = _worker_state
    return [filter_spans(t, vocab, **settings) for t in texts]


def unit_hash(key, salt=""):
    """A deterministic number in [0, 1) per document id: decides train/val, the control's pool and the order documents
    are taken in."""
    return int.from_bytes(hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest(), "big") / 2 ** 64


class Progress:
    """A status line every few seconds: amount done, rate and, once the done fraction is known, an ETA."""
    def __init__(self, what):
        self.what, self.t0, self.last = what, time.time(), 0.0

    def __call__(self, mb, fraction=None, extra="", final=False):
        now = time.time()
        if final or now - self.last > 2:
            self.last, dt = now, max(now - self.t0, 1e-9)
            eta = f", ETA {dt * (1 - fraction) / fraction:.0f}s" if fraction and not final else ""
            print(f"  {self.what}: {mb:,.1f} MB ({mb / dt:.1f} MB/s{eta}){extra}", flush=True)


def filter_key(args):
    """The settings the filter's output depends on: a shard is reused, and shards are built together, only if equal."""
    source = args.source if args.source.startswith("hf:") else os.path.normpath(args.source)   # (dir/ is dir)
    return dict(min_span_len=args.min_span_len, max_oov=args.max_oov, from_sentence_start=args.from_sentence_start,
                source=source, vocab_sha256=file_sha256(args.vocab), text_field=args.text_field,
                max_docs=args.max_docs, control_fraction=args.control_fraction)


def source_files(source):
    """The data itself, for the filter's cache: every file's real path, size and modification time (a hub dataset:
    None), so that the same relative path from another directory or a file edited in place is not taken for the old
    data. Reading the file list also stops a wrong --source before anything is written."""
    if source.startswith("hf:"):
        return None
    files = [(os.path.realpath(f), os.path.getsize(f), os.stat(f).st_mtime_ns) for f in list_files(source)]
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


def file_listing(source):
    """What decides which files each shard reads: the sorted names (relative to the source) and sizes. Every shard
    must see the same list, or files are read twice or never: the build compares the shards' listings."""
    if source.startswith("hf:"):
        return None
    files = [(os.path.relpath(f, source) if os.path.isdir(source) else os.path.basename(f), os.path.getsize(f))
             for f in list_files(source)]
    return dict(files=len(files), sha=hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16])


def lock_or_exit(path, what):
    """files.try_lock (use it in a with block), or a one-line exit: two processes writing one shard (or one build)
    would mix their bytes in the same temporary files."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = try_lock(path)
    if lock is None:
        raise SystemExit(f"another simplify.py is {what} right now ({path} is locked): wait for it or stop it")
    return lock


def filter_stage(args, vocab, shard, num_shards):
    """Filter this shard's documents; write simplified docs, the raw docs for the control, and the counts."""
    tag = f"{shard}-of-{num_shards}"
    dirs = {k: os.path.join(args.out_dir, k) for k in ("simplified", "unrestricted")}
    done_path = os.path.join(dirs["simplified"], f"filter-{tag}.json")
    settings = dict(min_span_len=args.min_span_len, max_oov=args.max_oov, from_sentence_start=args.from_sentence_start)
    key = dict(filter_key(args), files=source_files(args.source))
    outs = {k: os.path.join(d, f"docs-{tag}.jsonl.gz") for k, d in dirs.items()}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    if os.path.exists(done_path):
        old = read_json(done_path)
        if old.get("key") == key and all(map(os.path.exists, outs.values())) and not args.force:
            print(f"filter {tag}: already done with these settings ({done_path}), reusing it")
            return
        why = ("--force" if args.force else record_differs(old, filter_key(args)) or ("its files are missing" if
               old.get("key") == key else "the source's files changed (their paths, sizes or modification times)"))
        print(f"filter {tag}: redoing the shard in {done_path} ({why})")
        os.remove(done_path)  # this shard is about to be redone: unmark it first
    tmps = {k: f"{p}.tmp" for k, p in outs.items()}
    # mtime 0: the gzip header would otherwise hold the time, and the same documents would give different bytes
    files = {k: io.TextIOWrapper(gzip.GzipFile(p, "wb", compresslevel=3, mtime=0), encoding="utf-8")
             for k, p in tmps.items()}
    c = dict(docs_in=0, docs_out=0, bytes_in=0, words_in=0, words_out=0, spans=0, control_docs=0)
    n_files = None if args.source.startswith("hf:") else len(list_files(args.source))
    progress, files_seen = Progress(f"filter {tag}"), set()  # ETA from the share of files started (when > 1 file)

    def handle(batch, results):
        for (doc_id, text), spans in zip(batch, results):
            c["docs_in"] += 1
            c["bytes_in"] += len(text.encode("utf-8", "surrogatepass"))
            c["words_in"] += len(text.split())
            if spans:
                files["simplified"].write(json.dumps({"id": doc_id, "spans": spans}) + "\n")
                c["docs_out"] += 1
                c["spans"] += len(spans)
                c["words_out"] += sum(len(s.split()) for s in spans)
            if args.control_fraction >= 1 or unit_hash(doc_id, "control") < args.control_fraction:
                files["unrestricted"].write(json.dumps({"id": doc_id, "text": text}) + "\n")
                c["control_docs"] += 1
            files_seen.add(doc_id.rsplit(":", 1)[0])
        fraction = (len(files_seen) - 1) / n_files * num_shards if n_files and n_files > num_shards else None
        progress(c["bytes_in"] / 1e6, fraction, f", kept {c['words_out'] / max(c['words_in'], 1):.1%} of words")

    try:  # a failed or interrupted run leaves no temp files behind
        docs = itertools.islice(iter_documents(args.source, shard, num_shards, args.text_field), args.max_docs)
        batches = iter(lambda: list(itertools.islice(docs, 64)), [])
        if args.workers <= 1:
            _init_worker(vocab, settings)
            for batch in batches:
                handle(batch, _filter_batch([t for _, t in batch]))
        else:  # a bounded window of batches in flight: a hub stream is never read far ahead of the workers
            with multiprocessing.Pool(args.workers, _init_worker, (vocab, settings)) as pool:
                pending = collections.deque()
                for batch in itertools.chain(batches, [None]):
                    if batch is not None:
                        pending.append((batch, pool.apply_async(_filter_batch, ([t for _, t in batch],))))
                    while pending and (batch is None or len(pending) >= 4 * args.workers):
                        batch_done, result = pending.popleft()
                        handle(batch_done, result.get())
        for f in files.values():
            f.close()
        progress(c["bytes_in"] / 1e6, final=True)
        if c["docs_in"] == 0:
            raise SystemExit(f"filter {tag}: the source {args.source} gave no documents")
        for k in outs:
            os.replace(tmps[k], outs[k])
    finally:
        for k, f in files.items():
            f.close()
            if os.path.exists(tmps[k]):
                os.remove(tmps[k])
    write_json(done_path, dict(key=key, counts=c, listing=file_listing(args.source)))  # last: the shard is complete
    print(f"filter {tag}: {c['docs_out']:,}/{c['docs_in']:,} documents and {c['words_out']:,}/{c['words_in']:,} words "
          f"kept ({c['words_out'] / max(c['words_in'], 1):.1%}) in {c['spans']:,} spans")

# -----------------------------------------------------------------------------
# Stage 2, build: tokenizers, token files, the token-matched control, statistics

def read_docs(folder, num_shards):
    """All (id, text) the filter stage wrote (docs-K-of-N.jsonl.gz), in a fixed pseudo-random order. A simplified
    document's "text" is its list of spans (see encode_docs)."""
    docs = []
    for k in range(num_shards):
        path = os.path.join(folder, f"docs-{k}-of-{num_shards}.jsonl.gz")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                docs.extend((row["id"], row["text"] if "text" in row else row["spans"]) for row in map(json.loads, f))
        except (OSError, EOFError, ValueError, KeyError) as e:
            raise SystemExit(f"{path} is damaged ({type(e).__name__}: {e}): redo shard {k} (--stage filter --shard "
                             f"{k}/{num_shards} --force)") from None
    docs.sort(key=lambda d: unit_hash(d[0], "order"))
    return docs


def encode_docs(enc, docs, budget, workers, spans=False, dtype=np.uint32):
    """Encode documents in order, each followed by <|endoftext|>, until `budget` tokens (None: all). -> (ids in dtype
    (uint16 where the vocabulary fits: half the memory of 2.1B tokens held twice while they are joined), the
    documents used). The last document is cut so that the total is exactly the budget. Text is encoded as plain
    text. With spans=True a document is a list of spans, encoded as format_document writes it with the markers as
    their special ids: encoding the formatted text with "<s>" allowed would make a literal "<s>" in a span a marker."""
    eot, chunks, n, used = enc.eot_token, [], 0, []
    start, end, space = enc.encode_single_token("<s>"), enc.encode_single_token("</s>"), enc.encode_ordinary(" ")
    for i in range(0, len(docs), 512):
        texts = [t for _, t in docs[i:i + 512]]
        if spans:  # "<s> a </s> <s> b </s>": special, " a ", special, " ", special, " b ", special
            pieces = iter(enc.encode_ordinary_batch([f" {x} " for t in texts for x in t], num_threads=workers))
            ids = []
            for t in texts:                       # every span as <s> " span " </s>, joined by " "
                doc = []
                for _ in t:
                    doc += [start, *next(pieces), end, *space]
                ids.append(doc[:-len(space)])
        else:
            ids = enc.encode_ordinary_batch(texts, num_threads=workers)
        for text, doc in zip(texts, ids):
            if budget is not None and n >= budget:
                break
            doc = (doc + [eot])[:None if budget is None else budget - n]
            chunks.append(np.array(doc, dtype))
            n += len(doc)
            used.append(text)
        if budget is not None and n >= budget:
            break
    return (np.concatenate(chunks) if chunks else np.zeros(0, dtype)), used


def build_dataset(name, out_dir, train_docs, val_docs, budget, args, extra_meta):
    """Train this corpus' tokenizer, write train.bin/val.bin (capped at budget = (train, val) tokens, None: no cap),
    meta.json last. The simplified corpus' budget is a cap; the control's must be met exactly."""
    d, spans = os.path.join(out_dir, name), name == "simplified"  # simplified documents are lists of spans
    more = " or a larger --control_fraction" if name == "unrestricted" and args.control_fraction < 1 else ""
    for split, docs in (("train", train_docs), ("val", val_docs)):
        if not docs:
            raise SystemExit(f"{name}: no documents for the {split} split ({len(train_docs) + len(val_docs):,} in "
                             f"all, --val_fraction {args.val_fraction}): use a larger source{more} or another "
                             f"--val_fraction")
    sample, size = [], 0
    for _, doc in train_docs:  # the tokenizer learns from a sample of the training documents (all of them if small)
        if size > args.tokenizer_sample_mb * 1e6:
            break
        sample.append(format_document(doc) if spans else doc)
        size += len(sample[-1].encode("utf-8", "surrogatepass"))  # bytes, as --tokenizer_sample_mb says
    print(f"{name}: training a {args.vocab_size:,}-token BPE on {size / 1e6:.1f} MB")
    ranks = train_bpe(sample, args.vocab_size, SPECIAL_TOKENS, verbose=True)
    specials = {s: len(ranks) + i for i, s in enumerate(SPECIAL_TOKENS)}  # right after the ranks
    save_ranks(os.path.join(d, "tokenizer.tiktoken"), ranks)
    enc = make_encoding(name, ranks, specials)
    dtype = "uint16" if len(ranks) + len(specials) <= 65536 else "uint32"
    train, train_used = encode_docs(enc, train_docs, budget[0], args.workers, spans, dtype)
    val, val_used = encode_docs(enc, val_docs, budget[1], args.workers, spans, dtype)
    if name == "simplified" and budget[0] is not None and len(train) < budget[0]:  # --max_train_tokens is a cap
        print(f"{name}: {len(train):,} train tokens, fewer than --max_train_tokens {budget[0]:,}: using them all")
    if name == "unrestricted" and (len(train) < budget[0] or len(val) < budget[1]):  # the control must match
        why = (f"raise --control_fraction (now {args.control_fraction})" if args.control_fraction < 1 else
               "the filter keeps nearly all of this source: use a larger one")
        raise SystemExit(f"{name}: its raw documents give only {len(train):,} train / {len(val):,} val tokens, fewer "
                         f"than the simplified corpus' {budget[0]:,} / {budget[1]:,}: {why}")
    for split, ids in (("train", train), ("val", val)):
        write_atomic(os.path.join(d, f"{split}.bin"), lambda tmp: ids.tofile(tmp))
    meta = dict(format_version=1, name=name, vocab_size=len(ranks) + len(specials), dtype=dtype,
                eot_token=enc.eot_token, train_tokens=len(train), val_tokens=len(val),
                train_documents=len(train_used), val_documents=len(val_used),
                tokenizer=dict(file="tokenizer.tiktoken", pattern=SPLIT_PATTERN, special_tokens=specials,
                               sha256=file_sha256(os.path.join(d, "tokenizer.tiktoken")),
                               requested_vocab_size=args.vocab_size, sample_bytes=size),
                **extra_meta)
    write_json(os.path.join(d, "meta.json"), meta)  # last: a dataset dir with a meta.json is complete
    print(f"{name}: {len(train):,} train + {len(val):,} val tokens, {len(train_used):,} documents -> {d}")
    return meta, train_used, val_used


def record_differs(record, settings):
    """Why a shard's filter-K-of-N.json cannot be built from with these filter settings: "unreadable" (not a record
    of this simplify.py), the settings that differ ("min_span_len 8 there, 9 here"), or None."""
    key = record.get("key") if isinstance(record, dict) and "counts" in record else None
    if not isinstance(key, dict) or key.keys() != settings.keys() | {"files"}:
        return "unreadable"
    return ", ".join(f"{n} {key[n]!r} there, {v!r} here" for n, v in settings.items() if key[n] != v) or None


def check_not_replacing_trained_on(args):
    """Refuse (unless --force) to rebuild with other settings datasets that runs in out/ trained on: the new tokenizer
    would leave them unresumable and unevaluable. Checked before the filter stage, which could take hours. Only the
    settings count: source files that were merely touched (new dates) give the same datasets again."""
    built = read_json(os.path.join(args.out_dir, "corpus_stats.json")).get("key")
    same = isinstance(built, dict) and all(
        isinstance(f, dict) and {k: v for k, v in f.items() if k != "files"} == filter_key(args)
        for f in built.get("filters") or [None]) and all(
        built.get(k) == getattr(args, k) for k in ("vocab_size", "val_fraction", "max_train_tokens",
                                                   "tokenizer_sample_mb"))
    if same or args.force:
        return
    trained = []
    for n in ("simplified", "unrestricted"):
        sha = read_json(os.path.join(args.out_dir, n, "meta.json")).get("tokenizer", {}).get("sha256")
        for c in sorted(Path("out").glob("*/config.json")):
            d = read_json(c).get("dataset")
            if sha and isinstance(d, dict) and d.get("tokenizer_sha256") == sha and \
                    d.get("dir_abs") == os.path.realpath(os.path.join(args.out_dir, n)):
                trained.append(f"{c.parent} ({n})")
    if trained:
        raise SystemExit(f"{args.out_dir} would be rebuilt with other settings, but runs in out/ trained on it "
                         f"({', '.join(trained[:3])}{', ...' if len(trained) > 3 else ''}): pass another --out_dir "
                         "to keep both, or --force to replace it")


def corpus_stats_of(st, meta, texts, vocab):
    """Complete a corpus' statistics st (counts in and out) with its dataset's and its training text's (report.py);
    -> its word frequencies, for the rank-frequency plot."""
    st["kept_word_fraction"] = st["words_out"] / max(st["words_in"], 1)
    st.update({k: meta[k] for k in ("vocab_size", "train_tokens", "val_tokens", "train_documents")})
    more, freqs = corpus_stats(texts, vocab)
    st.update(more)
    return freqs


def build_stage(args, vocab):
    """Both datasets from the filter stage's files: the simplified one first, then the control matched to its tokens."""
    found = glob.glob(os.path.join(args.out_dir, "simplified", "filter-*-of-*.json"))
    shard_counts = {int(re.search(r"-of-(\d+)\.json$", p)[1]) for p in found}
    if len(shard_counts) != 1:
        raise SystemExit(f"filter stage not finished in {args.out_dir} (found {len(found)} shard files for "
                         f"{len(shard_counts)} shard counts N): run `--stage filter` for every shard K/N and delete "
                         "stale filter-*.json")
    num_shards = shard_counts.pop()
    done = [os.path.join(args.out_dir, "simplified", f"filter-{k}-of-{num_shards}.json") for k in range(num_shards)]
    missing = [p for p in done if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"filter stage not finished: {missing[0]} is missing (run that shard with --stage filter)")
    filters, settings = [read_json(p) for p in done], filter_key(args)
    for k, f in enumerate(filters):
        docs, differ = f"docs-{k}-of-{num_shards}.jsonl.gz", record_differs(f, settings)
        if differ == "unreadable" or not all(
                os.path.exists(os.path.join(args.out_dir, n, docs)) for n in ("simplified", "unrestricted")):
            raise SystemExit(f"{done[k]} is unreadable or from an older simplify.py, or its documents are missing: "
                             f"redo shard {k} (--stage filter --shard {k}/{num_shards})")
        if differ:  # shards made with other settings would be mixed, and meta.json would record the wrong ones
            raise SystemExit(f"shard {k} was filtered with other settings ({differ}): build with the flags the filter "
                             f"used, or redo the filter with these")
        if None not in (f.get("listing"), filters[0].get("listing")) and f["listing"] != filters[0]["listing"]:
            # then some files were read twice, others never (a record of an older simplify.py has no listing)
            seen = [f"{x['files']} files (listing {x['sha']})" for x in (filters[0]["listing"], f["listing"])]
            raise SystemExit(f"shards 0 and {k} were filtered from different file lists under the source ({seen[0]} "
                             f"vs {seen[1]}): every shard must see the same files; redo the shards whose files "
                             f"differ (--stage filter --shard K/{num_shards})")
    counts = {k: sum(f["counts"][k] for f in filters) for k in filters[0]["counts"]}
    key = dict(filters=[f["key"] for f in filters], vocab_size=args.vocab_size, val_fraction=args.val_fraction,
               max_train_tokens=args.max_train_tokens, tokenizer_sample_mb=args.tokenizer_sample_mb)
    stats_path = os.path.join(args.out_dir, "corpus_stats.json")
    if os.path.exists(stats_path) and read_json(stats_path).get("key") == key and not args.force and all(
            os.path.exists(os.path.join(args.out_dir, n, "meta.json")) for n in ("simplified", "unrestricted")):
        print(f"build: datasets already built with these settings ({stats_path}), reusing them")
        return
    # the datasets are about to be rebuilt: unmark the build first (all three are written last, below), so that a
    # rebuild that fails halfway never leaves an old control beside a new simplified corpus, or an old pair, that
    # load_meta would take for complete
    for path in (stats_path, *(os.path.join(args.out_dir, n, "meta.json") for n in ("simplified", "unrestricted"))):
        if os.path.exists(path):
            os.remove(path)
    common = dict(source=args.source, filter=dict(settings, shards=num_shards),
                  vocab_file=os.path.abspath(args.vocab), vocab_sha256=file_sha256(args.vocab),
                  val_fraction=args.val_fraction, command=" ".join(sys.argv))
    is_val = lambda doc: unit_hash(doc[0], "val") < args.val_fraction  # same original document -> same split in both
    simple = read_docs(os.path.join(args.out_dir, "simplified"), num_shards)
    if not simple:
        raise SystemExit("the filter kept no text at all: use a larger source or less strict settings "
                         "(--min_span_len, --max_oov)")
    # --max_train_tokens caps val too, at the share --val_fraction gives of a corpus that size: uncapped, val would
    # hold --val_fraction of every filtered document, could outgrow train, and the control could not match it
    # (in Fractions of the decimal given: in floats 297 x 0.01 / 0.99 is 3.0000000000000004, and its ceiling 4)
    val_cap = None if args.max_train_tokens is None else math.ceil(
        args.max_train_tokens * Fraction(str(args.val_fraction)) / (1 - Fraction(str(args.val_fraction))))
    budget = (args.max_train_tokens, val_cap)
    meta_s, *used_s = build_dataset("simplified", args.out_dir, [d for d in simple if not is_val(d)],
                                   [d for d in simple if is_val(d)], budget, args, common)
    # statistics, side by side: what went in and out, then the training text itself (the simplified corpus' now, so
    # its text is freed before the control's larger pool is read: at the paper's scale some 8 GB less at the peak)
    words = lambda texts: sum(len(t.split()) for t in texts)
    sim = dict(docs_in=counts["docs_in"], docs_out=counts["docs_out"], words_in=counts["words_in"],
               words_out=counts["words_out"], mean_span_words=counts["words_out"] / max(counts["spans"], 1))
    freqs = {"simplified": corpus_stats_of(sim, meta_s, map(format_document, used_s[0]), vocab)}
    del simple, used_s
    budget = (meta_s["train_tokens"], meta_s["val_tokens"])  # the control: same numbers of tokens, unfiltered text
    try:
        raw = read_docs(os.path.join(args.out_dir, "unrestricted"), num_shards)
        meta_u, *used_u = build_dataset("unrestricted", args.out_dir, [d for d in raw if not is_val(d)],
                                        [d for d in raw if is_val(d)], budget, args, dict(common, filter=None))
    except BaseException:   # no simplified corpus without its control: a sweep would train one half of the pair
        os.remove(os.path.join(args.out_dir, "simplified", "meta.json"))
        raise
    unr = dict(docs_in=len(raw), docs_out=len(used_u[0]) + len(used_u[1]), words_in=words(t for _, t in raw),
               words_out=words(used_u[0]) + words(used_u[1]), mean_span_words=None)
    freqs["unrestricted"] = corpus_stats_of(unr, meta_u, used_u[0], vocab)
    table = stats_table(sim, unr)
    print(table)
    write_json(stats_path, dict(key=key, simplified=sim, unrestricted=unr))
    write_atomic(os.path.join(args.out_dir, "corpus_stats.md"), lambda tmp: open(tmp, "w").write(table + "\n"))
    plot_rank_frequency(freqs,
                        os.path.join(args.out_dir, "rank_frequency.png"))


# -----------------------------------------------------------------------------
# Benchmark and command line

def benchmark(args, vocab):
    """Filter throughput in MB/s: one core per document (how the pipeline calls it), one core on the whole corpus in
    one call, and all workers together."""
    docs, size = [], 0
    for _, text in iter_documents(args.source, text_field=args.text_field):
        docs.append(text)
        size += len(text.encode("utf-8", "surrogatepass"))
        if size > 64e6:
            break
    mb = size / 1e6
    print(f"benchmark: {len(docs):,} documents, {mb:.1f} MB from {args.source}, vocabulary {args.vocab} ({len(vocab):,})")
    for s in [dict(min_span_len=32, max_oov=0.01, from_sentence_start=True),
              dict(min_span_len=args.min_span_len, max_oov=args.max_oov, from_sentence_start=args.from_sentence_start)]:
        t = time.perf_counter()
        kept = sum(len(sp) for d in docs for sp in filter_spans(d, vocab, **s))
        per_doc = mb / (time.perf_counter() - t)
        t = time.perf_counter()
        filter_spans("\n\n".join(docs), vocab, **s)
        whole = mb / (time.perf_counter() - t)
        t = time.perf_counter()
        with multiprocessing.Pool(args.workers, _init_worker, (vocab, s)) as pool:
            pool.map(_filter_batch, [docs[i:i + 64] for i in range(0, len(docs), 64)])
        par = mb / (time.perf_counter() - t)
        print(f"  {s}: kept {kept / max(size, 1):.1%} of bytes | 1 core per document {per_doc:.1f} MB/s | "
              f"1 core whole corpus {whole:.1f} MB/s | {args.workers} workers {par:.1f} MB/s")


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormat)
    p.add_argument("--source", default=DEFAULT_SOURCE, help="file, folder (.txt .jsonl[.gz|.zst] .parquet) or hf:NAME")
    p.add_argument("--text_field", default="text", help="JSON/parquet field holding the text")
    p.add_argument("--vocab", default=DEFAULT_VOCAB, help="word list: ,word,frequency CSV or one word per line "
                   "(default: the embedded spoken-English proxy of AO-CHILDES)")
    p.add_argument("--min_span_len", type=int, default=8, help="span must exceed this many words (paper: 32)")
    p.add_argument("--max_oov", type=float, default=0.0, help="largest OOV share inside a span (paper: 0.01)")
    p.add_argument("--from_sentence_start", action=argparse.BooleanOptionalAction, default=True,
                   help="spans open only at sentence starts (paper: yes)")
    p.add_argument("--vocab_size", type=int, default=4096, help="BPE tokens incl. 3 special ones (paper: 15000)")
    p.add_argument("--paper", action="store_true", help="the paper's settings: --min_span_len 32 --max_oov 0.01 "
                   "--vocab_size 15000 --val_fraction 0.003")
    p.add_argument("--val_fraction", type=float, default=0.01, help="share of documents held out for validation")
    p.add_argument("--max_train_tokens", type=whole_number, default=None, help="cap the simplified train tokens "
                   "(paper: 2130447357 or 2.130447357e9); the control always matches the simplified corpus")
    p.add_argument("--control_fraction", type=float, default=1.0, help="share of raw documents kept as the control's "
                   "pool (lower it for huge sources: the control only needs as many tokens as the simplified corpus)")
    p.add_argument("--max_docs", type=int, default=None, help="read at most this many documents (per shard)")
    p.add_argument("--tokenizer_sample_mb", type=float, default=200, help="train each BPE on this much text at most")
    p.add_argument("--out_dir", default="data", help="writes OUT_DIR/simplified, OUT_DIR/unrestricted and statistics")
    p.add_argument("--stage", choices=["all", "filter", "build"], default="all")
    p.add_argument("--shard", default=None, help="K/N: filter only shard K of N (default: torchrun's RANK/WORLD_SIZE)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for filtering and encoding")
    p.add_argument("--force", action="store_true", help="redo stages even if their outputs match the settings")
    p.add_argument("--benchmark", action="store_true", help="print the filter's MB/s on the source and exit")
    args = p.parse_args(argv)
    if args.paper:  # the paper's values become the defaults: a flag given explicitly still wins
        p.set_defaults(min_span_len=32, max_oov=0.01, vocab_size=15000, val_fraction=0.003)
        args = p.parse_args(argv)
    if args.min_span_len < 0 or not 0 <= args.max_oov <= 1 or not 0 < args.val_fraction < 1:
        p.error("need --min_span_len >= 0, 0 <= --max_oov <= 1 and 0 < --val_fraction < 1")
    if any(v is not None and v < 1 for v in (args.workers, args.max_docs, args.max_train_tokens)) or not (
            0 < args.control_fraction <= 1 and args.tokenizer_sample_mb > 0):  # (None: no limit)
        p.error("need --workers, --max_docs and --max_train_tokens >= 1, 0 < --control_fraction <= 1 and "
                "--tokenizer_sample_mb > 0")
    if not 256 + len(SPECIAL_TOKENS) < args.vocab_size <= 2 ** 32:
        p.error(f"--vocab_size must exceed {256 + len(SPECIAL_TOKENS)} (256 bytes + special tokens)")
    return args


def shards_waited_for(out_dir, num_shards, settings, since=None):
    """The shards whose filter-K-of-N.json is not yet this run's (rank 0 builds when there are none): missing, with
    other filter settings (record_differs, as build_stage checks them) or, if `since` is given (--force), written
    before it. A record left by an earlier run is about to be redone by its rank: building from it would mix old
    shards in."""
    waited = []
    for k in range(num_shards):
        path = os.path.join(out_dir, "simplified", f"filter-{k}-of-{num_shards}.json")
        try:
            mtime = os.path.getmtime(path)
        except OSError:  # not written yet (or removed by its rank, about to redo it)
            waited.append(k)
            continue
        if record_differs(read_json(path), settings) or (since is not None and mtime < since):
            waited.append(k)
    return waited


def main(argv=None):
    started = time.time()  # with --force, only shard records written after this are this run's
    args = get_args(argv)
    if args.shard is not None:  # an explicit --shard "" is a mistake, not "no sharding"
        m = re.fullmatch(r"([0-9]+)/([0-9]+)", args.shard)
        if not m or not int(m[1]) < int(m[2]):
            raise SystemExit(f"--shard {args.shard!r}: expected K/N with 0 <= K < N, e.g. --shard 3/8")
    else:  # under torchrun every rank filters its own shard
        rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
        m = re.fullmatch(r"([0-9]+)/([0-9]+)", f"{rank}/{world}")
        if not m or not int(m[1]) < int(m[2]):
            raise SystemExit(f"RANK={rank!r} WORLD_SIZE={world!r} in the environment: expected whole numbers with "
                             f"0 <= RANK < WORLD_SIZE (torchrun sets them so); unset them or pass --shard K/N")
    shard, num_shards = int(m[1]), int(m[2])
    parent = args.out_dir  # its nearest existing folder must be a folder (checked before anything is written)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise SystemExit(f"--out_dir {args.out_dir}: {parent} is a file, not a folder; pass a folder (it is created "
                         f"if missing)")
    vocab = load_vocab(args.vocab)
    print(f"vocabulary: {len(vocab):,} words from {args.vocab}")
    if args.benchmark:
        return benchmark(args, vocab)
    t0, lock_dir = time.time(), os.path.join(args.out_dir, "simplified")
    if args.stage in ("all", "build"):
        check_not_replacing_trained_on(args)
    if args.stage in ("all", "filter"):
        source_files(args.source)   # a wrong --source stops before anything is created
        with lock_or_exit(os.path.join(lock_dir, f"filter-{shard}-of-{num_shards}.lock"),
                          f"filtering shard {shard}/{num_shards} into {args.out_dir}"):
            filter_stage(args, vocab, shard, num_shards)
    if args.stage == "build" and args.shard is None and shard > 0:   # torchrun: rank 0 builds, once
        print(f"rank {shard}: rank 0 builds the datasets")
    elif args.stage == "build" or (args.stage == "all" and shard == 0):
        waiting = args.stage == "all" and num_shards > 1
        while waiting and (waiting := shards_waited_for(args.out_dir, num_shards, filter_key(args),
                                                        started if args.force else None)):
            print(f"waiting for shards {', '.join(map(str, waiting))} of {num_shards} to finish filtering (their "
                  f"filter-K-of-{num_shards}.json in {lock_dir}, from this run)...", flush=True)
            time.sleep(10)
        with lock_or_exit(os.path.join(lock_dir, "build.lock"), f"building the datasets in {args.out_dir}"):
            build_stage(args, vocab)
    print(f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
