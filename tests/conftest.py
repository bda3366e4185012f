"""A tiny dataset directory in simplify.py's format, for the model and training tests. Without a GPU, Triton's
kernels (fused_loss.py) run in its CPU interpreter: the variable must be set before anything imports Triton."""
import base64
import hashlib
import json
import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    # the interpreter's kernels cannot be traced into a compiled graph: tests that trace set it in a subprocess
    os.environ.pop("FUSED_LOSS_TRACE", None)

SUBJECTS = ["the dog", "a cat", "my mom", "the big bird", "we", "they", "the little boy"]
VERBS = ["sees", "likes", "wants", "eats", "finds", "makes"]
OBJECTS = ["the ball", "a cookie", "the red car", "some milk", "a book", "the toy"]


def write_dataset(path, n_docs=400, seed=0):
    """Byte-level tokens (ids 0..255) of simple generated sentences; ids 256-258 are <|endoftext|>, <s>, </s>."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    ranks = b"".join(base64.b64encode(bytes([i])) + b" %d\n" % i for i in range(256))
    (path / "tokenizer.tiktoken").write_bytes(ranks)
    special = {"<|endoftext|>": 256, "<s>": 257, "</s>": 258}
    docs = []
    for _ in range(n_docs):
        text = " ".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
                        for _ in range(rng.integers(2, 6)))
        docs.append([257] + list(text.encode()) + [258, 256])
    n_val = n_docs // 10
    for name, part in (("train", docs[n_val:]), ("val", docs[:n_val])):
        np.concatenate(part).astype(np.uint16).tofile(path / f"{name}.bin")
    meta = {"format_version": 1, "name": "tiny", "vocab_size": 259, "dtype": "uint16", "eot_token": 256,
            "tokenizer": {"file": "tokenizer.tiktoken", "special_tokens": special,
                          "pattern": r"""'s|'t| ?\w+| ?\d+| ?[^\s\w\d]+|\s+(?!\S)|\s+""",
                          "sha256": hashlib.sha256(ranks).hexdigest()},
            "train_tokens": int(sum(map(len, docs[n_val:]))), "val_tokens": int(sum(map(len, docs[:n_val])))}
    (path / "meta.json").write_text(json.dumps(meta, indent=1))
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "tiny")
