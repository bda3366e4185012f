r"""
simplify.py: build the paper's restricted-vocabulary corpus and its token-matched unrestricted control.

raw documents --filter_spans--> "<s> span</s><s> span</s>" documents --BPE--> OUT/simplified/
raw documents (same source, unfiltered, cut to the same token count) ------BPE--> OUT/unrestricted/
Each dataset dir gets train.bin, val.bin, tokenizer.tiktoken, meta.json; OUT gets corpus_stats.{json,md} and a plot.
Stage 1, the filter (filtering.py), writes each shard's kept spans and raw documents; stage 2, here, builds both
datasets from them: tokenizers, token files, the token-matched control, statistics.

    python simplify.py                 # embedded default data and vocabulary, offline, well under a minute on 2 cores
    python simplify.py --paper --vocab AOChildes_word_frequency.csv --source hf:cerebras/SlimPajama-627B \
        --max_train_tokens 2130447357 --control_fraction 0.01 --out_dir data/paper      # the paper's recipe
    python simplify.py --benchmark     # the filter's speed in MB/s
"""
import argparse
import glob
import gzip
import json
import math
import os
import re
import signal
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from bpe import SPECIAL_TOKENS, SPLIT_PATTERN, make_encoding, save_ranks, train_bpe
from files import HelpFormat, file_sha256, read_json, whole_number, write_atomic, write_json
from filtering import (benchmark, file_listing, filter_key, filter_stage, lock_or_exit, record_differs,
                       shards_waited_for, unit_hash)   # stage 1: every shard of the source through the span filter
from report import corpus_stats, plot_rank_frequency, stats_table   # corpus_stats.json, .md, rank_frequency.png
from sources import DEFAULT_SOURCE, list_files   # raw documents: files, folders, the hub
from spans import DEFAULT_VOCAB, load_vocab   # the rule


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


def span_document(spans):
    """A simplified document as its tokens spell it: "<s> span</s>" per span, nothing between. The authors wrote
    "<s> span </s> <s> span </s>" for a whitespace pre-tokenizer, which drops the spaces around the markers; a
    byte-level BPE would make each of those spaces a token of its own, two more per span, all but free to predict
    (6.5% of the embedded corpus' tokens, written that way). Left out, a span costs the authors' two markers. The
    space after <s> stays: a byte-level BPE's words carry the space before them (" cat"), and evaluate.py prompts
    after "<s> "."""
    return "".join(f"<s> {x}</s>" for x in spans)


def encode_docs(enc, docs, budget, workers, span_format=False, dtype=np.uint32):
    """Encode documents in order, each followed by <|endoftext|>, until `budget` tokens (None: all). -> (ids in dtype
    (uint16 where the vocabulary fits: half the memory of 2.1B tokens held twice while they are joined), the
    documents used). The last document is cut so that the total is exactly the budget. Text is encoded as plain
    text. With span_format=True a document is a list of spans, encoded as span_document writes it with the markers as
    their special ids: encoding the formatted text with "<s>" allowed would make a literal "<s>" in a span a marker."""
    eot, chunks, n, used = enc.eot_token, [], 0, []
    start, end = enc.encode_single_token("<s>"), enc.encode_single_token("</s>")
    for i in range(0, len(docs), 512):
        texts = [t for _, t in docs[i:i + 512]]
        if span_format:  # "<s> a</s><s> b</s>": every span as <s>, the ids of " span", </s>
            pieces = iter(enc.encode_ordinary_batch([f" {x}" for t in texts for x in t], num_threads=workers))
            ids = [[tok for _ in t for tok in (start, *next(pieces), end)] for t in texts]
        else:
            ids = enc.encode_ordinary_batch(texts, num_threads=workers)
        for text, doc in zip(texts, ids):
            if budget is not None and n >= budget:
                break
            whole = len(doc) + 1
            doc = (doc + [eot])[:None if budget is None else budget - n]
            chunks.append(np.array(doc, dtype))
            n += len(doc)
            # the statistics count what was kept: a whole document as it is; of a cut simplified one the spans kept
            # whole, one per </s> id kept (encode_ordinary makes no special ids; a span cut short is left out: its
            # words are not all in train.bin); of a cut plain-text one its first tokens
            if len(doc) == whole:
                used.append(text)
            elif span_format:
                used.append(text[:doc.count(end)])
            else:
                used.append(enc.decode(doc))
        if budget is not None and n >= budget:
            break
    return (np.concatenate(chunks) if chunks else np.zeros(0, dtype)), used


def check_splits(name, train_docs, val_docs, args):
    """Both splits need documents (an empty val split is a tiny source or a tiny --val_fraction)."""
    more = " or a larger --control_fraction" if name == "unrestricted" and args.control_fraction < 1 else ""
    for split, docs in (("train", train_docs), ("val", val_docs)):
        if not docs:
            raise SystemExit(f"{name}: no documents for the {split} split ({len(train_docs) + len(val_docs):,} in "
                             f"all, --val_fraction {args.val_fraction}): use a larger source{more} or another "
                             f"--val_fraction (a .txt file is one document: a .jsonl line each gives many)")


def build_dataset(name, out_dir, train_docs, val_docs, budget, args, extra_meta):
    """Train this corpus' tokenizer, write train.bin/val.bin (capped at budget = (train, val) tokens, None: no cap),
    meta.json last; both splits have documents (check_splits). The simplified corpus' budget is a cap; the control's must be met exactly."""
    d, span_format = os.path.join(out_dir, name), name == "simplified"  # simplified documents are lists of spans
    sample, size = [], 0
    for _, doc in train_docs:  # the tokenizer learns from a sample of the training documents (all of them if small)
        if size > args.tokenizer_sample_mb * 1e6:
            break
        sample.append(span_document(doc) if span_format else doc)
        size += len(sample[-1].encode("utf-8", "surrogatepass"))  # bytes, as --tokenizer_sample_mb says
    print(f"{name}: training a {args.vocab_size:,}-token BPE on {size / 1e6:.1f} MB")
    ranks = train_bpe(sample, args.vocab_size, SPECIAL_TOKENS, verbose=True)
    specials = {s: len(ranks) + i for i, s in enumerate(SPECIAL_TOKENS)}  # right after the ranks
    save_ranks(os.path.join(d, "tokenizer.tiktoken"), ranks)
    enc = make_encoding(name, ranks, specials)
    dtype = "uint16" if len(ranks) + len(specials) <= 65536 else "uint32"
    train, train_used = encode_docs(enc, train_docs, budget[0], args.workers, span_format, dtype)
    val, val_used = encode_docs(enc, val_docs, budget[1], args.workers, span_format, dtype)
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


def check_not_replacing_trained_on(args, listed=None):
    """Refuse (unless --force) to rebuild with other settings or other source files datasets that runs in
    --runs_dir (out/) trained on: the new tokenizer would leave them unresumable and unevaluable. Checked before the
    filter stage, which could take hours. Files count by name and size: ones that were merely touched (new dates) give
    the same datasets. listed: list_files(args.source), if already walked."""
    stats = read_json(os.path.join(args.out_dir, "corpus_stats.json"))
    built = stats.get("key")
    listing = stats.get("listing")   # (the source walked only if a build recorded its files)
    if listing is None:
        now = None
    elif args.stage == "build":   # the files the shards read: the source need not be on this machine
        shard0 = glob.glob(os.path.join(args.out_dir, "simplified", "filter-0-of-*.json"))
        now = read_json(shard0[0]).get("listing") if shard0 else listing   # (none: build_stage says so)
    else:
        now = file_listing(args.source, listed)
    same = listing == now and isinstance(built, dict) and all(
        isinstance(f, dict) and {k: v for k, v in f.items() if k != "files"} == filter_key(args)
        for f in built.get("filters") or [None]) and all(
        built.get(k) == getattr(args, k) for k in ("vocab_size", "val_fraction", "max_train_tokens",
                                                   "tokenizer_sample_mb"))
    if same or args.force:
        return
    trained, built_before = [], False
    runs_dirs = [d.strip() for d in args.runs_dir.split(",") if d.strip()]
    where = " or ".join(f"{d}/" for d in runs_dirs)
    for n in ("simplified", "unrestricted"):
        sha = read_json(os.path.join(args.out_dir, n, "meta.json")).get("tokenizer", {}).get("sha256")
        built_before |= sha is not None
        for c in sorted(c for runs in runs_dirs for c in Path(runs).glob("*/config.json")):
            d = read_json(c).get("dataset")
            if sha and isinstance(d, dict) and d.get("tokenizer_sha256") == sha and \
                    d.get("dir_abs") == os.path.realpath(os.path.join(args.out_dir, n)):
                trained.append(f"{c.parent} ({n})")
    if trained:
        raise SystemExit(f"{args.out_dir} would be rebuilt with other settings or source files, but runs in "
                         f"{where} trained on it ({', '.join(trained[:3])}{', ...' if len(trained) > 3 else ''})"
                         ": pass another --out_dir to keep both, or --force to replace it")
    if built_before:
        print(f"note: {args.out_dir} is rebuilt with other settings or source files: no run in {where} "
              "trained on it (runs kept elsewhere would no longer resume or evaluate: --runs_dir DIR,DIR checks them)")


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
    common = dict(source=args.source, filter=dict(settings, shards=num_shards),
                  vocab_file=os.path.abspath(args.vocab), vocab_sha256=file_sha256(args.vocab),
                  val_fraction=args.val_fraction, command=" ".join(sys.argv))
    is_val = lambda doc: unit_hash(doc[0], "val") < args.val_fraction  # same original document -> same split in both
    simple = read_docs(os.path.join(args.out_dir, "simplified"), num_shards)
    if not simple:
        raise SystemExit("the filter kept no text at all: use a larger source or less strict settings "
                         "(--min_span_len, --max_oov)")
    train_s, val_s = [d for d in simple if not is_val(d)], [d for d in simple if is_val(d)]
    check_splits("simplified", train_s, val_s, args)   # (before the old datasets are unmarked: they stay usable)
    # the datasets are about to be rebuilt: unmark the build first (all three are written last, below), so that a
    # rebuild that fails halfway never leaves an old control beside a new simplified corpus, or an old pair, that
    # load_meta would take for complete
    for path in (stats_path, *(os.path.join(args.out_dir, n, "meta.json") for n in ("simplified", "unrestricted"))):
        if os.path.exists(path):
            os.remove(path)
    # --max_train_tokens caps val too, at the share --val_fraction gives of a corpus that size: uncapped, val would
    # hold --val_fraction of every filtered document, could outgrow train, and the control could not match it
    # (in Fractions of the decimal given: in floats 297 x 0.01 / 0.99 is 3.0000000000000004, and its ceiling 4)
    val_cap = None if args.max_train_tokens is None else math.ceil(
        args.max_train_tokens * Fraction(str(args.val_fraction)) / (1 - Fraction(str(args.val_fraction))))
    budget = (args.max_train_tokens, val_cap)
    meta_s, *used_s = build_dataset("simplified", args.out_dir, train_s, val_s, budget, args, common)
    # statistics, side by side: what went in and out, then the training text itself (the simplified corpus' now, so
    # its text is freed before the control's larger pool is read: at the paper's scale some 8 GB less at the peak)
    words = lambda texts: sum(len(t.split()) for t in texts)
    sim = dict(docs_in=counts["docs_in"], docs_out=counts["docs_out"], words_in=counts["words_in"],
               words_out=counts["words_out"], mean_span_words=counts["words_out"] / max(counts["spans"], 1))
    freqs = {"simplified": corpus_stats_of(sim, meta_s, map(span_document, used_s[0]), vocab)}
    del simple, train_s, val_s, used_s
    budget = (meta_s["train_tokens"], meta_s["val_tokens"])  # the control: same numbers of tokens, unfiltered text
    try:
        raw = read_docs(os.path.join(args.out_dir, "unrestricted"), num_shards)
        train_u, val_u = [d for d in raw if not is_val(d)], [d for d in raw if is_val(d)]
        check_splits("unrestricted", train_u, val_u, args)
        meta_u, *used_u = build_dataset("unrestricted", args.out_dir, train_u, val_u, budget, args,
                                        dict(common, filter=None))
    except BaseException:   # no simplified corpus without its control: a sweep would train one half of the pair
        os.remove(os.path.join(args.out_dir, "simplified", "meta.json"))
        raise
    unr = dict(docs_in=len(raw), docs_out=len(used_u[0]) + len(used_u[1]), words_in=words(t for _, t in raw),
               words_out=words(used_u[0]) + words(used_u[1]), mean_span_words=None)
    freqs["unrestricted"] = corpus_stats_of(unr, meta_u, used_u[0], vocab)
    table = stats_table(sim, unr)
    print(table)
    if meta_s["vocab_size"] != meta_u["vocab_size"]:   # a BPE ran out of pairs: the pair differs in more than its text
        print(f"note: the tokenizers have {meta_s['vocab_size']:,} (simplified) and {meta_u['vocab_size']:,} "
              f"(unrestricted) tokens, not both {args.vocab_size:,}: their corpora are too small for --vocab_size "
              f"{args.vocab_size}; use a larger source or a smaller --vocab_size for a matched pair")
    write_json(stats_path, dict(key=key, listing=filters[0].get("listing"), simplified=sim, unrestricted=unr))
    write_atomic(os.path.join(args.out_dir, "corpus_stats.md"), lambda tmp: open(tmp, "w").write(table + "\n"))
    plot_rank_frequency(freqs,
                        os.path.join(args.out_dir, "rank_frequency.png"))


# -----------------------------------------------------------------------------
# Command line

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
    p.add_argument("--runs_dir", default="out", help="where train.py's runs are (comma-separated folders): a dataset "
                   "they trained on is not rebuilt with other settings without --force")
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
    source, out = os.path.realpath(args.source), os.path.realpath(args.out_dir)
    if os.path.isdir(source) and os.path.commonpath([source, out]) == source:   # (the next run would read its own
        p.error(f"--out_dir {args.out_dir} is inside --source {args.source}: put it elsewhere")   # output as text)
    return args


def main(argv=None):
    try:
        return run(argv)
    except KeyboardInterrupt:
        raise SystemExit("interrupted: run the same command again (each shard's finished filter is reused; a build "
                         "is redone)") from None


def run(argv=None):
    started = time.time()  # with --force, only shard records written after this are this run's
    args = get_args(argv)
    # --shard K/N, or under torchrun every rank filters its own shard (an explicit --shard "" is a mistake)
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    m = re.fullmatch(r"([0-9]+)/([0-9]+)", f"{rank}/{world}" if args.shard is None else args.shard)
    if not m or not int(m[1]) < int(m[2]):
        raise SystemExit(f"--shard {args.shard!r}: expected K/N with 0 <= K < N, e.g. --shard 3/8" if args.shard
                         is not None else f"RANK={rank!r} WORLD_SIZE={world!r} in the environment: expected whole "
                         "numbers with 0 <= RANK < WORLD_SIZE (torchrun sets them so); unset them or pass --shard K/N")
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
    # the source's files, walked once (slow for a big source); a wrong --source stops here, before anything is created
    walk = args.stage in ("all", "filter") and not args.source.startswith("hf:")
    listed = list_files(args.source) if walk else None
    if args.stage in ("all", "build"):
        check_not_replacing_trained_on(args, listed)
    if args.stage in ("all", "filter"):
        with lock_or_exit(os.path.join(lock_dir, f"filter-{shard}-of-{num_shards}.lock"),
                          f"filtering shard {shard}/{num_shards} into {args.out_dir}"):
            filter_stage(args, vocab, shard, num_shards, listed)
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
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # `kill` stops it as Ctrl-C does: one line
    main()
