"""
filtering.py: simplify.py's first stage. Every document of one shard of the source goes through the paper's span
filter (spans.filter_spans) in a pool of processes; the kept spans go to OUT/simplified/docs-K-of-N.jsonl.gz, a
seeded share of the raw documents to OUT/unrestricted/docs-K-of-N.jsonl.gz (the control's pool), and the counts and
settings to OUT/simplified/filter-K-of-N.json, written last. Shards split the source's files by their place in the
sorted list, so N processes or machines filter one source with no coordination beyond K/N; simplify.py's build stage
checks that the shards' records agree (record_differs) before it reads them.

    python simplify.py --stage filter --shard 3/8 ...    # this module's filter_stage, for shard 3 of 8
    python simplify.py --benchmark                       # the filter's speed in MB/s (benchmark)
"""
import collections
import gzip
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import signal
import time

from files import file_sha256, make_dir, read_json, try_lock, write_json
from sources import iter_documents, list_files   # raw documents: files, folders, the hub
from spans import filter_spans   # the rule

# -----------------------------------------------------------------------------
# Stage 1, filter: every document -> its kept spans (parallel over documents, shardable over machines)

_worker_state = None


def _init_worker(vocab, settings):
    global _worker_state
    _worker_state = (vocab, settings)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
CAN_MASK = hasattr(signal, "pthread_sigmask")   # (POSIX)


def _init_pool_worker(vocab, settings):
    # Ctrl-C reaches the workers too: they ignore it, and the parent stops the pool (SIGTERM, which the workers must
    # not turn into the parent's KeyboardInterrupt) and says how to go on in one line; no worker prints a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if CAN_MASK:   # blocked by start_pool until now: a SIGTERM that came meanwhile ends the worker here
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _init_worker(vocab, settings)


def start_pool(workers, vocab, settings):
    """multiprocessing.Pool of filter workers. They start with SIGINT and SIGTERM blocked until their initializer has
    set their own handlers: a pool stopped at once could otherwise reach a worker still running the parent's handler
    (KeyboardInterrupt), and hang on it. Use it in a with block (that stops it)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if CAN_MASK else None
    try:
        return multiprocessing.Pool(workers, _init_pool_worker, (vocab, settings))
    finally:   # the parent's own mask again: a signal held back meanwhile is delivered now
        if CAN_MASK:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


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


def source_files(source, listed):
    """The data itself, for the filter's cache: every file's real path, size and modification time (a hub dataset:
    None), so that the same relative path from another directory or a file edited in place is not taken for the old
    data. listed: list_files(source) (walking it also stops a wrong --source before anything is written)."""
    if source.startswith("hf:"):
        return None
    files = [(os.path.realpath(f), os.path.getsize(f), os.stat(f).st_mtime_ns) for f in listed]
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


def file_listing(source, listed=None):
    """What decides which files each shard reads: the sorted names (relative to the source) and sizes. Every shard
    must see the same list, or files are read twice or never: the build compares the shards' listings. listed:
    list_files(source), if already walked."""
    if source.startswith("hf:"):
        return None
    files = [(os.path.relpath(f, source) if os.path.isdir(source) else os.path.basename(f), os.path.getsize(f))
             for f in (list_files(source) if listed is None else listed)]
    return dict(files=len(files), sha=hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16])


def lock_or_exit(path, what):
    """files.try_lock (use it in a with block), or a one-line exit: two processes writing one shard (or one build)
    would mix their bytes in the same temporary files."""
    make_dir(os.path.dirname(path), "--out_dir")   # (one that cannot be made: one line, not a traceback)
    lock = try_lock(path)
    if lock is None:
        raise SystemExit(f"another simplify.py is {what} right now ({path} is locked): wait for it or stop it")
    return lock


def filter_stage(args, vocab, shard, num_shards, listed=None):
    """Filter this shard's documents; write simplified docs, the raw docs for the control, and the counts. listed:
    list_files(args.source), if already walked (a big source is slow to walk: it is walked once)."""
    tag = f"{shard}-of-{num_shards}"
    dirs = {k: os.path.join(args.out_dir, k) for k in ("simplified", "unrestricted")}
    done_path = os.path.join(dirs["simplified"], f"filter-{tag}.json")
    settings = dict(min_span_len=args.min_span_len, max_oov=args.max_oov, from_sentence_start=args.from_sentence_start)
    if listed is None and not args.source.startswith("hf:"):
        listed = list_files(args.source)
    key = dict(filter_key(args), files=source_files(args.source, listed))
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
    n_files = listed and len(listed)
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
        docs = itertools.islice(iter_documents(args.source, shard, num_shards, args.text_field, files=listed),
                                args.max_docs)
        batches = iter(lambda: list(itertools.islice(docs, 64)), [])
        if args.workers <= 1:
            _init_worker(vocab, settings)
            for batch in batches:
                handle(batch, _filter_batch([t for _, t in batch]))
        else:  # a bounded window of batches in flight: a hub stream is never read far ahead of the workers
            with start_pool(args.workers, vocab, settings) as pool:
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
    write_json(done_path, dict(key=key, counts=c, listing=file_listing(args.source, listed)))  # last: shard complete
    print(f"filter {tag}: {c['docs_out']:,}/{c['docs_in']:,} documents and {c['words_out']:,}/{c['words_in']:,} words "
          f"kept ({c['words_out'] / max(c['words_in'], 1):.1%}) in {c['spans']:,} spans")

# -----------------------------------------------------------------------------
# Shards built together: their records must agree


def record_differs(record, settings):
    """Why a shard's filter-K-of-N.json cannot be built from with these filter settings: "unreadable" (not a record
    of this simplify.py), the settings that differ ("min_span_len 8 there, 9 here"), or None."""
    key = record.get("key") if isinstance(record, dict) and "counts" in record else None
    if not isinstance(key, dict) or key.keys() != settings.keys() | {"files"}:
        return "unreadable"
    return ", ".join(f"{n} {key[n]!r} there, {v!r} here" for n, v in settings.items() if key[n] != v) or None


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

# -----------------------------------------------------------------------------
# The filter's speed


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
    if not size:
        raise SystemExit(f"benchmark: {args.source} holds no text to filter: give a source with documents")
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
        with start_pool(args.workers, vocab, s) as pool:
            pool.map(_filter_batch, [docs[i:i + 64] for i in range(0, len(docs), 64)])
        par = mb / (time.perf_counter() - t)
        print(f"  {s}: kept {kept / max(size, 1):.1%} of bytes | 1 core per document {per_doc:.1f} MB/s | "
              f"1 core whole corpus {whole:.1f} MB/s | {args.workers} workers {par:.1f} MB/s")
