"""
sources.py: the raw documents simplify.py filters, from local files and folders or streamed from the Hugging Face hub.

    from sources import iter_documents
    for doc_id, text in iter_documents("data/corpus"):            # the embedded default corpus
        ...
    for doc_id, text in iter_documents("slimpajama/train", 3, 8):  # shard 3 of 8: no coordination between machines
        ...

Formats: .txt and .txt.gz (a whole file is one document), .jsonl with a text field per row (.gz, or .zst as
SlimPajama ships), .parquet; hf:NAME streams a hub dataset (needs the `datasets` library). Empty texts are skipped
(they get no id).
"""
import collections
import gzip
import hashlib
import json
import os

DEFAULT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "corpus")
SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")


def list_files(source):
    """A file, or every readable file under a folder, sorted (so shard K of N means the same files everywhere)."""
    if os.path.isfile(source):
        return [source]
    if not os.path.isdir(source):
        raise SystemExit(f"source {source} not found: give a file or folder of {', '.join(SUFFIXES)} files, "
                         f"or hf:NAME for a Hugging Face dataset")
    files, seen = [], set()
    for root, dirs, names in os.walk(source, followlinks=True):   # a corpus gathered with links is read whole
        if os.path.realpath(root) in seen:   # a folder reached twice (two links to it, a link up the tree): once
            dirs.clear()
            continue
        seen.add(os.path.realpath(root))
        files += [os.path.join(root, f) for f in names if f.endswith(SUFFIXES)]
    files.sort()
    if not files:
        raise SystemExit(f"no {', '.join(SUFFIXES)} files under {source}")
    if broken := [f for f in files if not os.path.isfile(f)]:
        raise SystemExit(f"{broken[0]} is a broken link or not a file ({len(broken)} such under {source}): fix or "
                         "remove it")
    stems = collections.Counter(f.removesuffix(".gz").removesuffix(".zst") for f in files)
    both = sorted(f for f, n in stems.items() if n > 1)
    if both:   # `zstd -d` keeps the .zst: its documents would be read twice, under two ids (train and val)
        raise SystemExit(f"{both[0]} is under {source} more than once, as it is or compressed ({len(both)} such "
                         f"files): keep one of each")
    return files


def check_text(text, where, text_field):
    """A document's text must be a string: a number or a list in the text field is refused, never stringified."""
    if not isinstance(text, str):
        raise SystemExit(f"{where}: field {text_field!r} is not a string ({type(text).__name__}): fix the data or "
                         f"pass --text_field with the field that holds the documents")
    return text


def zst_lines(f):
    """The lines of a .zst file, decompressed frame after frame. zstandard's stream_reader ends quietly where a
    truncated file does, so a cut-off chunk would read as fewer documents; here a last frame that never finishes
    raises EOFError, as gzip does."""
    import zstandard
    new = zstandard.ZstdDecompressor().decompressobj  # one object per frame: it refuses data past its frame's end
    frame, started, rest = new(), False, b""
    for block in iter(lambda: f.read(1 << 20), b""):
        while block:
            started = True
            *lines, rest = (rest + frame.decompress(block)).split(b"\n")
            yield from lines
            block = b""
            if frame.eof:  # this frame is complete: what follows it in the block starts the next one
                frame, started, block = new(), False, frame.unused_data
    if started:
        raise EOFError("the file ends inside a zstd frame")
    if rest:
        yield rest


def read_file(path, text_field="text"):
    """Yield the documents of one file: a .txt file is one document; .jsonl (.gz, .zst) and .parquet have one per
    row, in the column `text_field` (SlimPajama's layout). A file that cannot be read (not UTF-8, truncated, not the
    format its name says) stops the run with one line naming it and, where there is one, the line."""
    n, errors = 0, (OSError, EOFError, ValueError)  # n: lines read, for messages
    try:
        if path.endswith((".txt", ".txt.gz")):
            with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
                data = f.read()
            try:
                text = data.decode("utf-8-sig")   # a byte-order mark (Windows editors) is not part of the text
            except UnicodeDecodeError as e:
                line = data.count(b"\n", 0, e.start) + 1
                raise SystemExit(f"{path} line {line}: not UTF-8 ({e}); re-save the file as UTF-8")
            if text.strip():
                yield text.replace("\r\n", "\n").replace("\r", "\n")  # newlines as Python's text mode reads them
            return
        if path.endswith(".parquet"):
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise SystemExit(f"reading {path} needs pyarrow: pip install pyarrow")
            table = pq.ParquetFile(path)
            if text_field not in table.schema_arrow.names:
                raise SystemExit(f"{path} has no column {text_field!r} (columns: {table.schema_arrow.names}): "
                                 f"pass --text_field")
            for batch in table.iter_batches(columns=[text_field]):
                yield from (t for t in batch.column(0).to_pylist() if t is not None and check_text(t, path, text_field))
            return
        if path.endswith(".zst"):
            import zstandard  # SlimPajama's chunks are .jsonl.zst
            errors += (zstandard.ZstdError,)
            f = open(path, "rb")
            lines = zst_lines(f)
        else:
            f = lines = gzip.open(path) if path.endswith(".gz") else open(path, "rb")
        with f:  # read as bytes and decoded line by line, so that an error names its line
            for n, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line.decode("utf-8-sig" if n == 1 else "utf-8"))[text_field]   # (a BOM)
                except (ValueError, KeyError, TypeError) as e:  # ValueError: not JSON, or not UTF-8
                    named = path.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz"))
                    raise SystemExit(f"{path} line {n}: expected a UTF-8 JSON object with a {text_field!r} field "
                                     f"({type(e).__name__}: {e}); fix the file or pass --text_field" + ("" if named else
                                     " (a file not named .txt, .parquet or .jsonl[.gz|.zst] is read as JSON lines: "
                                     "name a plain text file .txt)"))
                if text is not None and check_text(text, f"{path} line {n}", text_field):   # 0 or [] is refused
                    yield text
    except errors as e:
        where = f"{path} after line {n}" if n else path
        raise SystemExit(f"{where}: cannot read it ({type(e).__name__}: {e}): the file is corrupt, truncated or "
                         f"not the format its name says; fix or remove it")


def iter_documents(source, shard=0, num_shards=1, text_field="text", split="train", files=None):
    """Yield (doc_id, text) for shard `shard` of `num_shards`: whole files are dealt round-robin when a folder has
    enough of them, else documents; hf:NAME streams a hub dataset, sharded by the `datasets` library. files:
    list_files(source), if already walked."""
    if source.startswith("hf:"):
        try:
            import datasets
        except ImportError:
            raise SystemExit("reading from the Hugging Face hub needs the datasets library: pip install datasets==5.2.0")
        ds = datasets.load_dataset(source[3:], split=split, streaming=True)
        if num_shards > 1:
            ds = ds.shard(num_shards=num_shards, index=shard)
        for i, row in enumerate(ds):
            if text_field not in row:  # at the first row: never stream a whole dataset to find no text in it
                raise SystemExit(f"{source} row {i} has no field {text_field!r} (fields: {', '.join(row)}): pass "
                                 f"--text_field with the field that holds the documents")
            text = row[text_field]   # null: no document; a number or a list is refused
            if text is not None and check_text(text, f"{source} row {i}", text_field):
                # id from the text: a row's split and order must not depend on the shard count
                digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()
                yield f"{source}:{digest}", text
        return
    files = files or list_files(source)
    by_file = len(files) >= num_shards
    for f, path in enumerate(files):
        if by_file and f % num_shards != shard:
            continue
        name = os.path.relpath(path, source) if os.path.isdir(source) else os.path.basename(path)
        for i, text in enumerate(read_file(path, text_field)):
            if by_file or i % num_shards == shard:
                yield f"{name}:{i}", text
