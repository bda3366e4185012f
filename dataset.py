"""
dataset.py: a dataset simplify.py built, as the other scripts read it back.

    meta = load_meta("data/simplified")            # meta.json, checked against its token files
    enc = load_tokenizer("data/simplified")        # its BPE as a tiktoken.Encoding
    blocks = TokenBlocks("data/simplified/train.bin", meta["dtype"], 128, meta["vocab_size"])
    x, y = blocks.get(block_ids(0, 32, blocks.n, seed=1337), "cpu")   # a batch: inputs and next-token targets

train.py reads train.bin as non-overlapping 128-token blocks visited in a seeded shuffled order (block_ids: one
permutation per epoch, recomputed from (seed, epoch), so a resumed run needs only its position), and measures what a
model that ignores context would get (unigram_baseline).
"""
import json
import os
from functools import lru_cache

import numpy as np
import torch

from bpe import load_ranks, make_encoding
from files import file_sha256

# -----------------------------------------------------------------------------
# meta.json and the tokenizer


def load_meta(dataset_dir):
    """meta.json of a dataset dir, checked against its token files. Clear errors for a missing or incomplete dir."""
    path = os.path.join(dataset_dir, "meta.json")
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: build the dataset with `python simplify.py` (or check --data_dir)")
    try:
        with open(path) as f:
            meta = json.load(f)
        tok = meta["tokenizer"]
        if missing := [k for k in ("name", "dtype", "vocab_size", "eot_token", "train_tokens", "val_tokens")
                       if k not in meta] + [f"tokenizer.{k}" for k in ("file", "sha256", "pattern", "special_tokens")
                                            if k not in tok]:
            raise ValueError(f"meta.json lacks {', '.join(missing)}")
        if not_int := [k for k in ("vocab_size", "eot_token", "train_tokens", "val_tokens")
                       if type(meta[k]) is not int or meta[k] < 0]:
            raise ValueError(f"meta.json's {', '.join(not_int)} must be whole numbers >= 0")
        if meta["dtype"] not in ("uint16", "uint32"):
            raise ValueError(f"meta.json's dtype is {meta['dtype']!r}, not uint16 or uint32")
        itemsize = np.dtype(meta["dtype"]).itemsize
        for split in ("train", "val"):
            size = os.path.getsize(os.path.join(dataset_dir, f"{split}.bin"))
            if size != meta[f"{split}_tokens"] * itemsize:
                raise ValueError(f"{split}.bin is {size:,} bytes, meta.json says {meta[f'{split}_tokens']:,} "
                                 f"{meta['dtype']} tokens ({meta[f'{split}_tokens'] * itemsize:,} bytes)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"dataset {dataset_dir} is incomplete or corrupt ({e}): rebuild it with `python simplify.py`")
    return meta


def load_tokenizer(dataset_dir):
    """The dataset's tokenizer as a tiktoken.Encoding (tiktoken alone could do this: ranks file + meta.json),
    checked against what meta.json says of it (the other scripts read vocab_size and eot_token from there)."""
    meta = load_meta(dataset_dir)
    tok = meta["tokenizer"]
    path = os.path.join(dataset_dir, tok["file"])
    if not os.path.isfile(path) or file_sha256(path) != tok["sha256"]:
        raise SystemExit(f"{path} is missing or does not match the sha256 in meta.json: rebuild the dataset")
    try:
        enc = make_encoding(meta["name"], load_ranks(path), tok["special_tokens"], tok["pattern"])
        if (enc.n_vocab, enc.eot_token) != (meta["vocab_size"], meta["eot_token"]):
            raise ValueError(f"{tok['file']} and its special tokens make {enc.n_vocab} tokens with <|endoftext|> = "
                             f"{enc.eot_token}, meta.json says {meta['vocab_size']} and {meta['eot_token']}")
    except (ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"dataset {dataset_dir}: {e}: rebuild the dataset with `python simplify.py`")
    return enc


def document_start(meta, sos=None):
    """The token ids every training document follows in train.bin: <|endoftext|>, then <s> for the simplified corpus'
    span format ("<s> span</s>"; the control has no <s>). Prompts and samples start the same way; sos=True/False
    forces <s> on or off (evaluate.py --sos)."""
    sos = meta.get("filter") is not None if sos is None else sos
    return [meta["eot_token"]] + ([meta["tokenizer"]["special_tokens"]["<s>"]] if sos else [])

# -----------------------------------------------------------------------------
# A token file as 128-token blocks, visited in a seeded shuffled order


class TokenBlocks:
    """A flat token file as n non-overlapping blocks: block i is tokens[i*T : i*T+T] and its targets are the same
    positions shifted by one, so every token of a block is predicted once."""

    def __init__(self, path, dtype, block_size, vocab_size):
        # read from disk on demand, never loaded whole (an empty file cannot be mapped: no blocks, said by the caller)
        self.tokens = np.memmap(path, dtype=dtype, mode="r") if os.path.getsize(path) else np.zeros(0, dtype)
        self.path, self.T, self.vocab_size = path, block_size, vocab_size
        self.n = max(0, (len(self.tokens) - 1) // block_size)

    def get(self, block_ids, device):
        """block_ids (b,) -> inputs x and targets y, both (b, T) int64 on device (views of self.batch's tensor)."""
        batch = self.batch(block_ids, device)
        return batch[:, :-1], batch[:, 1:]

    def batch(self, block_ids, device):
        """block_ids (b,) -> the blocks and the token after each, (b, T + 1) int64 on device: x = batch[:, :-1],
        y = batch[:, 1:] (step.py's training step takes this one tensor, which a CUDA graph copies into its own)."""
        idx = np.asarray(block_ids, np.int64)[:, None] * self.T + np.arange(self.T + 1)   # (b, T + 1) positions
        # one gather from the memmap: a slice per block costs ~5 us each, 2.7 ms for 512 blocks, as long as a
        # small model's whole GPU step
        buf = torch.from_numpy(self.tokens[idx].astype(np.int64))
        return buf.pin_memory().to(device, non_blocking=True) if device.startswith("cuda") else buf.to(device)

    def counts(self, chunk=1 << 24):
        """Token id counts over the whole file (in chunks: a 2B-token file never sits in memory)."""
        counts = np.zeros(self.vocab_size, np.int64)
        for start in range(0, len(self.tokens), chunk):
            part = self.tokens[start:start + chunk]
            if len(part) and (top := int(part.max())) >= self.vocab_size:   # (before bincount allocates top + 1)
                raise SystemExit(f"{self.path} holds token id {top} >= vocab_size {self.vocab_size} of "
                                 "meta.json: the dataset's files do not belong together; rebuild it")
            counts += np.bincount(part, minlength=self.vocab_size)
        return counts


@lru_cache(maxsize=2)
def epoch_order(n_blocks, seed, epoch):
    """The block order of one epoch: a permutation fixed by (seed, epoch), so it is never stored."""
    return np.random.default_rng([seed, epoch]).permutation(n_blocks)


def block_ids(position, count, n_blocks, seed):
    """The blocks at sequence positions position .. position+count-1 of the run's stream (epoch after epoch)."""
    epochs, offsets = np.divmod(np.arange(position, position + count), n_blocks)
    out = np.empty(count, np.int64)
    for e in np.unique(epochs):
        out[epochs == e] = epoch_order(n_blocks, seed, int(e))[offsets[epochs == e]]
    return out


def unigram_probs(counts):
    """A model that ignores context: token frequencies with add-one smoothing, (V,) -> (V,) probabilities."""
    return (counts + 1) / (counts.sum() + len(counts))


def unigram_logp(data_dir, meta):
    """log p(token) of a dataset's training text (unigram_probs, as train.py's unigram baseline): (V,) array, for
    evaluate.py's unigram baseline of minimal pairs.
    Counted once per dataset and process: a sweep's checkpoints share two datasets (2.1B tokens each in the paper)."""
    path = os.path.realpath(os.path.join(data_dir, "train.bin"))
    return _unigram_logp(path, meta["dtype"], meta["vocab_size"], meta["tokenizer"]["sha256"],
                         os.stat(path).st_mtime_ns)


@lru_cache(maxsize=4)
def _unigram_logp(path, dtype, vocab_size, *_):   # (the tokenizer and file date in the key: a rebuilt dataset)
    return np.log(unigram_probs(TokenBlocks(path, dtype, 1, vocab_size).counts()))


def unigram_baseline(train, val):
    """unigram_probs of train.bin: its cross-entropy on train.bin (about the train tokens' entropy: the smoothing
    adds a little) and on val.bin, in nats per token (what a model must beat)."""
    counts = train.counts()
    p = unigram_probs(counts)
    val_counts = val.counts()
    return {"unigram_train_entropy": float(-(counts / counts.sum() * np.log(p)).sum()),
            "unigram_val_xent": float(-(val_counts * np.log(p)).sum() / max(1, val_counts.sum()))}
