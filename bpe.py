"""
bpe.py: a byte-level BPE tokenizer trainer (the idea behind GPT-2's tokenizer), trained by simplify.py on each corpus.

The result is a plain tiktoken ranks table, so encoding at train/eval time runs in tiktoken's fast Rust code.
  1. Pre-tokenize: cut text into chunks with SPLIT_PATTERN (a word with its leading space, 1-3 digits, a
     punctuation run, whitespace). Merges never cross a chunk boundary, so each distinct chunk is needed only
     once, with its count: " the" occurring 300,000 times is one entry, not 300,000.
  2. Merge: start from the 256 single bytes and repeatedly turn the most frequent adjacent pair of tokens into
     a new token. Token id == rank == training order, which is exactly how tiktoken ranks are defined.
Fast because nothing is recounted from scratch: an index pair -> chunks containing it means each merge only
touches the chunks it changes, and a heap yields the next most frequent pair.
"""
import base64, heapq, time
from collections import Counter, defaultdict
import regex, tiktoken

from files import write_atomic

# GPT-4 (cl100k) style: contractions, letters with at most one leading non-letter (" the", "(the"), numbers in
# groups of up to 3 digits, punctuation runs, newlines, other whitespace. `regex` and tiktoken split identically.
SPLIT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
                 r"""|\s*[\r\n]|\s+(?!\S)|\s+""")
SPECIAL_TOKENS = ("<|endoftext|>", "<s>", "</s>")


def show(b):
    """Token bytes as a readable string for messages (bytes that are not valid UTF-8 shown as \\x..)."""
    return repr(b.decode("utf-8", errors="backslashreplace"))


def as_tiktoken_sees(text):
    """The text tiktoken encodes: a lone surrogate (from a broken \\ud83d escape in JSON, say) becomes U+FFFD, so
    the trainer counts the chunks the encoder will actually meet."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def count_chunks(texts, special_tokens=SPECIAL_TOKENS, verbose=True):
    """Counter {chunk bytes: occurrences} over an iterable of documents. Special-token strings are cut out
    first, so that "</s>" in the text can never be learned as ordinary tokens like "</" + "s" + ">"."""
    alternatives = "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True))
    split_special, pattern = regex.compile(alternatives) if special_tokens else None, regex.compile(SPLIT_PATTERN)
    counts, n_chars, t0, t_print = Counter(), 0, time.time(), time.time()
    for text in map(as_tiktoken_sees, texts):
        for part in (split_special.split(text) if split_special else (text,)):
            counts.update(pattern.findall(part))  # Counter.update of a list runs in C
        n_chars += len(text)
        if verbose and time.time() - t_print > 2:
            t_print = time.time()
            print(f"  counting: {n_chars / 1e6:.1f}M chars, {n_chars / 1e6 / (t_print - t0):.1f}M chars/s", flush=True)
    chunk_counts = Counter()
    for chunk, n in counts.items():
        chunk_counts[chunk.encode("utf-8")] += n
    if verbose:
        mb, dt = sum(len(c) * n for c, n in chunk_counts.items()) / 1e6, max(time.time() - t0, 1e-9)
        print(f"counted {mb:.1f} MB in {dt:.1f}s ({mb / dt:.1f} MB/s): {sum(chunk_counts.values()):,} chunks, "
              f"{len(chunk_counts):,} distinct", flush=True)
    return chunk_counts


def merge_pair(ids, a, b, new):
    """Replace each non-overlapping (a, b), left to right, by `new`: [a, a, a] with (a, a) -> [new, a]."""
    out, i, n = [], 0, len(ids)
    while i < n:
        hit = ids[i] == a and i + 1 < n and ids[i + 1] == b
        out.append(new if hit else ids[i])
        i += 2 if hit else 1
    return out


def learn_merges(chunk_counts, n_merges, verbose=True):
    """The BPE loop. Returns merges {(id_a, id_b): new_id} in training order, new ids 256, 257, ...
    Ties are deterministic: highest count first, then the smallest pair (id_a, id_b)."""
    chunks = [list(chunk) for chunk in chunk_counts]  # each distinct chunk as token ids (its bytes, at first)
    freqs, token_bytes = list(chunk_counts.values()), [bytes([i]) for i in range(256)]  # id -> the bytes it stands for
    pair_counts, where = defaultdict(int), defaultdict(set)  # pair -> count in corpus; pair -> chunks holding it
    for i, (w, f) in enumerate(zip(chunks, freqs)):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += f
            where[pair].add(i)
    # Max-heap of (-count, pair). A merge lowers the counts of neighbouring pairs, leaving stale heap entries:
    # we check each entry when popped and re-queue it with its true count. Only pairs containing the new token
    # can gain count, and those are pushed as they are created, so the first valid entry is the true maximum.
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges, t0, t_print, k_print = {}, time.time(), time.time(), 0
    while len(merges) < n_merges:
        if not heap:
            if verbose:
                print(f"corpus ran out of pairs after {len(merges):,} of {n_merges:,} merges: every distinct chunk "
                      f"is a single token now, so the vocabulary will be smaller than asked", flush=True)
            break
        neg, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale entry
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        (a, b), new = pair, len(token_bytes)
        merges[pair] = new
        token_bytes.append(token_bytes[a] + token_bytes[b])
        fresh = set()  # pairs containing `new`
        for i in where.pop(pair):
            w = chunks[i]
            w2 = merge_pair(w, a, b, new)
            if len(w2) == len(w):  # chunk lost this pair to an earlier merge (the index is cleaned lazily)
                continue
            f = freqs[i]
            for p in zip(w, w[1:]):  # chunks are short: re-counting one chunk's pairs is cheap and simple
                pair_counts[p] -= f
            for p in zip(w2, w2[1:]):
                pair_counts[p] += f
                if new in p:
                    where[p].add(i)
                    fresh.add(p)
            chunks[i] = w2
        del pair_counts[pair]  # now 0: every occurrence was merged
        for p in fresh:
            heapq.heappush(heap, (-pair_counts[p], p))
        k, now = len(merges), time.time()
        if verbose and (k <= 3 or now - t_print > 1 or k == n_merges):
            rate = (k - k_print) / max(now - t_print, 1e-9)  # recent rate; it rises as merges touch fewer chunks
            speed = f"  {rate:,.0f} merges/s, ETA {(n_merges - k) / rate:.0f}s" if k > 3 else ""
            print(f"  merge {k:,}/{n_merges:,}: {show(token_bytes[a])} + {show(token_bytes[b])} -> "
                  f"{show(token_bytes[new])} (count {count:,}){speed}", flush=True)
            t_print, k_print = now, k
    if verbose:
        dt = max(time.time() - t0, 1e-9)
        print(f"learned {len(merges):,} merges in {dt:.1f}s ({len(merges) / dt:,.0f} merges/s)", flush=True)
    return merges


def ranks_from_merges(merges):
    """tiktoken's table {token bytes: rank}: the 256 bytes in byte order, then one token per merge, in order."""
    vocab = [bytes([i]) for i in range(256)]
    for (a, b), new in merges.items():
        vocab.append(vocab[a] + vocab[b])
    ranks = {tok: i for i, tok in enumerate(vocab)}
    if len(ranks) != len(vocab):  # never seen in practice; tiktoken could not tell two such tokens apart
        raise ValueError("two merges produced the same token bytes; tiktoken needs every token to be unique")
    return ranks


def train_bpe(texts, vocab_size, special_tokens=SPECIAL_TOKENS, verbose=True):
    """Train a byte-level BPE on an iterable of documents (strings). vocab_size counts the 256 bytes, the merges
    and the special tokens. Returns ranks {token bytes: id}; specials take the next ids (see make_encoding)."""
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size={vocab_size} is too small: it must be at least 256 bytes + "
                         f"{len(special_tokens)} special tokens = {256 + len(special_tokens)}")
    if len(set(special_tokens)) != len(special_tokens) or "" in special_tokens:
        raise ValueError(f"special tokens must be distinct non-empty strings, got {special_tokens!r}")
    return ranks_from_merges(learn_merges(count_chunks(texts, special_tokens, verbose), n_merges, verbose))


def make_encoding(name, ranks, special_tokens=SPECIAL_TOKENS, pattern=SPLIT_PATTERN):
    """tiktoken.Encoding over our ranks. special_tokens: a dict {string: id} using exactly the ids right after
    the ranks, or just the strings (then they get those ids in order). pattern: the pre-tokenizer's regex."""
    if not isinstance(special_tokens, dict):
        special_tokens = {s: len(ranks) + i for i, s in enumerate(special_tokens)}
    if sorted(special_tokens.values()) != list(range(len(ranks), len(ranks) + len(special_tokens))):
        raise ValueError(f"special token ids must be {len(ranks)}..{len(ranks) + len(special_tokens) - 1}, right "
                         f"after the {len(ranks)} ranks; got {special_tokens}")
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special_tokens,
                             explicit_n_vocab=len(ranks) + len(special_tokens))


def encode_reference(text, merges):
    """Slow, obviously correct encoder (no special tokens), used to check tiktoken: in each chunk, apply the
    earliest-learned merge present, again and again, until no learned pair is left."""
    out = []
    for chunk in regex.findall(SPLIT_PATTERN, as_tiktoken_sees(text)):
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            ids = merge_pair(ids, *pair, merges[pair])
        out += ids
    return out


def save_ranks(path, ranks):
    """Write tiktoken's ranks file, "base64(token bytes) rank" per line in rank order; atomic (temp + rename)."""
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    def write(tmp):   # readers see the old file or the new one, never half of one
        with open(tmp, "w", encoding="ascii") as f:
            f.writelines(f"{base64.b64encode(tok).decode()} {rank}\n" for tok, rank in by_rank)
    write_atomic(path, write)


def load_ranks(path):
    """Read a ranks file, naming the bad line and what is wrong with it. (tiktoken.load.load_tiktoken_bpe also
    reads local files, but caches them by path in a temp dir: a file rewritten in place can come back stale
    unless expected_hash is given.)"""
    with open(path, "rb") as f:
        lines, ranks = f.read().splitlines(), {}
    for n, line in enumerate(lines, 1):
        if not (parts := line.split()):
            continue
        at = f"{path} line {n} ({line[:60]!r})"
        if len(parts) != 2:
            raise ValueError(f"{at}: expected 'base64_token rank', found {len(parts)} fields")
        try:
            tok = base64.b64decode(parts[0], validate=True)
        except ValueError:
            raise ValueError(f"{at}: the token is not valid base64") from None
        if not parts[1].isdigit():
            raise ValueError(f"{at}: the rank must be a non-negative integer")
        if tok in ranks:
            raise ValueError(f"{at}: token {show(tok)} already has rank {ranks[tok]}")
        ranks[tok] = int(parts[1])
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{path}: ranks must be 0..{len(ranks) - 1} with each used once (some are repeated or "
                         f"missing); is this a complete tiktoken ranks file?")
    if missing := [i for i in range(256) if bytes([i]) not in ranks]:   # tiktoken panics on text it cannot encode
        raise ValueError(f"{path}: {len(missing)} of the 256 single bytes have no rank (byte {missing[0]} first): "
                         f"a byte-level BPE needs all of them; is this a complete tiktoken ranks file?")
    return ranks
