"""
sources.py: the raw documents simplify.py filters, from local files and folders or streamed from the Hugging Face hub.

    from sources import iter_documents
    for doc_id, text in iter_documents("data/corpus"):            # the embedded default corpus
    for doc_id, text in iter_documents("slimpajama/train", 3, 8):  # shard 3 of 8: no coordination between machines

Formats: .txt (a whole file is one document), .jsonl with a text field per row (.gz, or .zst as SlimPajama ships),
.parquet; hf:NAME streams a hub dataset (needs the `datasets` library).
"""
import gzip
import io
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
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(source) for f in names if f.endswith(SUFFIXES))
    if not files:
        raise SystemExit(f"no {', '.join(SUFFIXES)} files under {source}")
    return files


def read_file(path, text_field="text"):
    """Yield the documents of one file: a .txt file is one document; .jsonl (.gz, .zst) and .parquet have one per
    row, in the column `text_field` (SlimPajama's layout)."""
    if path.endswith((".txt", ".txt.gz")):
        with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")) as f:
            yield f.read()
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
            yield from (t for t in batch.column(0).to_pylist() if t)
        return
    if path.endswith(".zst"):
        import zstandard  # SlimPajama's chunks are .jsonl.zst
        f = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")), encoding="utf-8")
    else:
        f = gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")
    with f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row[text_field]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SystemExit(f"{path} line {n}: expected a JSON object with a {text_field!r} field; "
                                 f"fix the file or pass --text_field")
            if text:
                yield text


def iter_documents(source, shard=0, num_shards=1, text_field="text", split="train"):
    """Yield (doc_id, text) for shard `shard` of `num_shards`: whole files are dealt round-robin when a folder has
    enough of them, else documents; hf:NAME streams a hub dataset, sharded by the `datasets` library."""
    if source.startswith("hf:"):
        try:
            import datasets
        except ImportError:
            raise SystemExit("reading from the Hugging Face hub needs the datasets library: pip install datasets")
        ds = datasets.load_dataset(source[3:], split=split, streaming=True)
        if num_shards > 1:
            ds = ds.shard(num_shards=num_shards, index=shard)
        for i, row in enumerate(ds):
            if row.get(text_field):
                yield f"{source}/{shard}:{i}", row[text_field]
        return
    files = list_files(source)
    by_file = len(files) >= num_shards
    for f, path in enumerate(files):
        if by_file and f % num_shards != shard:
            continue
        name = os.path.relpath(path, source) if os.path.isdir(source) else os.path.basename(path)
        for i, text in enumerate(read_file(path, text_field)):
            if by_file or i % num_shards == shard:
                yield f"{name}:{i}", text
