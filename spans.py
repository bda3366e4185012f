"""
spans.py: the paper's simplification rule. A word list (the authors' AO-CHILDES CSV, or one word per line) and the
span filter of their C++ kernel, reproduced byte for byte and vectorised with numpy: which spans of a document are
kept, each starting at a sentence and running until out-of-vocabulary words close it. simplify.py runs it over a
corpus; tests/filter_reference.py is the kernel's walk, line for line, and tests/test_filter.py compares the two.

    from spans import DEFAULT_VOCAB, filter_spans, load_vocab
    filter_spans("The cat sat on the mat. A zyzzyva sat.", load_vocab(DEFAULT_VOCAB), min_span_len=3, max_oov=0)
    # -> ['The cat sat on the mat. A']: a span runs on across sentences until a word out of the vocabulary closes it
"""
import csv
import os
import re

import numpy as np

DEFAULT_VOCAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "vocab", "spoken_10k.txt")  # data/README.md

# -----------------------------------------------------------------------------
# Vocabulary

# pandas' default missing-value strings: the authors read their CSV with pandas, which turned these into NaN and
# then dropped them (`isinstance(w, str)`). In the real list only the word `nan` is affected (21,037 -> 21,036 words).
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
             "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def load_vocab(path):
    """Read a word list -> frozenset of lowercase words. Two formats:
    - the authors' AO-CHILDES CSV: header `,word,frequency`, rows `index,word,count` (read as their pandas call did);
    - a plain list, one word per line (the embedded data/vocab/spoken_10k.txt)."""
    if not os.path.isfile(path):
        raise SystemExit(f"vocabulary file {path} not found: pass --vocab with a ,word,frequency CSV or a word list")
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark (Excel's CSVs) is not part of a word
            lines = [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError as e:
        raise SystemExit(f"vocabulary file {path} is not UTF-8 ({e}): re-save it as UTF-8")
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise SystemExit(f"vocabulary file {path} is empty: it needs one word per line or a ,word,frequency CSV")
    words = []
    if [c.strip() for c in lines[0].split(",")] == ["", "word", "frequency"]:  # the authors' CSV
        for n, row in enumerate(csv.reader(lines[1:]), start=2):
            if len(row) != 3 or not row[2].strip().isdigit():
                raise SystemExit(f"{path} line {n}: expected 'index,word,frequency', got {','.join(row)[:60]!r}")
            if row[1] not in PANDAS_NA:
                words.append(row[1])
    else:
        for n, line in enumerate(lines, start=1):
            if len(line.split()) != 1 or "," in line:
                raise SystemExit(f"{path} line {n}: expected one word per line (or the header ',word,frequency' of a "
                                 f"CSV), got {line[:60]!r}")
            words.append(line.strip())
    if not words:
        raise SystemExit(f"vocabulary file {path} has a header but no words")
    # the filter splits words at digits and delimiters (below): "don't" or "e-mail" can never match as they are
    if dead := sorted({w for w in words if not re.fullmatch(_W + b"+", w.encode())}):   # (_W: a word byte)
        print(f"note: {len(dead)} entries of {path} can never match, the filter splitting words at their digits or "
              f"delimiters ({', '.join(dead[:5])}{', ...' if len(dead) > 5 else ''}): list their pieces (don, t)")
    return frozenset(w.lower() for w in words)

# -----------------------------------------------------------------------------
# The span filter: the authors' C++ kernel, reproduced exactly, vectorised with numpy
#
# The kernel walks the text token by token (tests/filter_reference.py is that walk, line for line). Tokens are words
# and 1-byte delimiters; a span opens at a sentence start, every word counts, and an out-of-vocabulary (OOV) word either
# stays inside (if oov_count / max(word_count, min_span_len) <= max_oov) or closes the span just before itself.
# A Python loop over tokens runs at ~8 MB/s. Here the per-token work happens in C (regex, set lookups, numpy) and the
# Python loop only visits the few places where something happens: span starts and OOV words.

DELIMITERS = b" .,:;?!\n\t-()[]{}=<>\"'&^%$#@*+/|\\~"
_D = b"[" + re.escape(DELIMITERS) + b"]"      # a delimiter byte
_W = b"[^0-9" + re.escape(DELIMITERS) + b"]"  # a word byte. Quirk: \r \f \v _ ` and every non-ASCII byte (NBSP, curly
#                                               quotes, accents) are word bytes, as in the kernel's byte loop.
# The kernel's word tokens: a digit run; a "glued" token, i.e. a delimiter right after a digit plus the word bytes after
# it (quirk: the kernel starts a new token at every digit/non-digit change and appends the following word bytes to it,
# so "3 cats" -> "3", " cats" and "2\nThe" -> "2", "\nThe": OOV words, and that newline ends no sentence; "5. The",
# "7:30", "1,000" are unaffected); or a run of word bytes. Only ASCII 0-9 are digits (quirk: C locale isdigit).
WORD_RE = re.compile(b"[0-9]+|(?<=[0-9])" + _D + _W + b"+|" + _W + b"+")


def _table(chars):
    t = np.zeros(256, bool)
    t[list(chars)] = True
    return t


_IS_DELIM, _IS_DIGIT, _IS_EOS = _table(DELIMITERS), _table(b"0123456789"), _table(b".?!\n")
_IS_SKIP = _table(b" \n")  # with no span open the kernel skips spaces and newlines (quirk: not tabs)
_DELIM_TO_SPACE = bytes(32 if i in DELIMITERS else i for i in range(256))
_vocab_cache = (None, None)


def vocab_bytes(vocab):
    """The kernel compares UTF-8 bytes, so lookups use a set of bytes. Converting 20k words costs ~2 ms, so the result
    is cached for the last frozenset seen (load_vocab returns one); a mutable set is converted on every call."""
    global _vocab_cache
    if _vocab_cache[0] is not vocab:
        vb = frozenset(w.encode("utf-8", "surrogatepass") for w in vocab)
        if not isinstance(vocab, frozenset):
            return vb
        _vocab_cache = (vocab, vb)
    return _vocab_cache[1]


def _word_tokens(low, vb):
    """Tokenize lowercased bytes as the kernel does. -> (starts: byte offset of every word token, is_oov per word token,
    glued: bool per byte, delim: bool per byte, digit: bool per byte)."""
    b = np.frombuffer(low, np.uint8)
    delim, digit = _IS_DELIM[b], _IS_DIGIT[b]
    prev_digit = np.concatenate(([False], digit[:-1]))
    glued = delim & prev_digit & np.concatenate((~digit[1:] & ~delim[1:], [False]))
    prev_lone_delim = np.concatenate(([True], delim[:-1] & ~glued[:-1]))  # a delimiter token of its own (or text start)
    wordb = ~digit & ~delim
    starts = np.flatnonzero((digit & ~prev_digit) | (wordb & (prev_digit | prev_lone_delim)) | glued)
    # Fast path: look up every maximal run of non-delimiter bytes (split() runs in C at ~100 MB/s). A run is a kernel
    # word unless it holds a digit (the kernel cuts it there) or follows a glued delimiter; those few are redone below.
    runs = list(filter(None, low.translate(_DELIM_TO_SPACE).split(b" ")))
    run_starts = np.flatnonzero(~delim & np.concatenate(([True], delim[:-1])))
    in_vocab = np.fromiter(map(vb.__contains__, runs), bool, len(runs))
    special = np.zeros(len(runs), bool)
    special[run_starts.searchsorted(np.flatnonzero(digit), "right") - 1] = True
    special[run_starts.searchsorted(np.flatnonzero(glued) + 1)] = True
    is_oov = np.zeros(len(starts), bool)
    is_oov[starts.searchsorted(run_starts[~special])] = ~in_vocab[~special]
    where, what = [], []
    for r in np.flatnonzero(special).tolist():   # exact kernel tokens around digits, one regex pass each
        begin = int(run_starts[r])
        begin -= bool(begin and glued[begin - 1])
        for m in WORD_RE.finditer(low, begin, begin + len(runs[r]) + 1):
            where.append(m.start())
            what.append(not (m.group().isdigit() or m.group() in vb))
    is_oov[starts.searchsorted(where)] = what
    return starts, is_oov, glued, delim, digit


def filter_spans(text, vocab, min_span_len=32, max_oov=0.01, from_sentence_start=True):
    """Return the spans of `text` that the authors' kernel keeps (original casing, byte for byte). vocab: lowercase words.

    Paper settings: min_span_len=32, max_oov=0.01, from_sentence_start=True. A span closed by an OOV word is kept if it
    holds more than min_span_len words counting that word (so min_span_len words of its own suffice); one that runs to
    the end of the text needs min_span_len + 1. With min_span_len 0 the kernel can emit an empty span; like the
    authors' pipeline (`if len(span) > 0`) we drop it. tests/filter_reference.py is the same rule as a plain walk over
    the tokens, easier to read first; this version does the per-token work in numpy."""
    data = text.encode("utf-8", "surrogatepass")
    n = len(data)
    if n == 0:
        return []
    low = data.lower()  # quirk: bytes.lower() lowercases ASCII only, like the kernel's tolower() in the C locale
    starts, is_oov, glued, delim, digit = _word_tokens(low, vocab_bytes(vocab))
    oov = np.flatnonzero(is_oov)                 # word indices of the OOV words
    b = np.frombuffer(low, np.uint8)
    eos = np.flatnonzero(_IS_EOS[b] & ~glued)    # ". ? ! \n" tokens (a glued one is part of a word)
    opens = np.flatnonzero(~_IS_SKIP[b])         # bytes where a span may begin
    # Anchors: where the kernel is ready to open a span. The text start, then either the byte after each end-of-sentence
    # token (from_sentence_start), or the byte after each OOV word that closed a span (the kernel then reopens at once).
    if from_sentence_start:
        anchors = np.concatenate(([0], eos + 1))
        after_oov = eos.searchsorted(starts[oov], "right") + 1  # anchor to use once OOV word oov[j] closed a span
    else:
        bounds = np.append(np.flatnonzero(delim | (digit != np.concatenate(([False], digit[:-1])))), n)
        anchors = np.concatenate(([0], bounds[bounds.searchsorted(starts[oov], "right")]))  # OOV word ends
        after_oov = np.arange(1, len(oov) + 1)
    # For every anchor at once: the span's first byte, first word, first OOV word, and whether that OOV closes it.
    i = opens.searchsorted(anchors)
    span_start = np.where(i < len(opens), opens[np.minimum(i, len(opens) - 1)], n) if len(opens) else anchors * 0 + n
    first_word = starts.searchsorted(span_start)
    first_oov = oov.searchsorted(first_word)
    k = oov[np.minimum(first_oov, len(oov) - 1)] if len(oov) else first_word
    n_words = np.maximum(k - first_word + 1, 1)  # (>= 1 where the span has no OOV word left; `closes` is False there)
    limit = np.float32(max_oov)                  # quirk: the kernel's ratio test is in float32
    closes = (first_oov < len(oov)) & (np.float32(1) / np.maximum(n_words, min_span_len).astype(np.float32) > limit)
    # Walk from anchor to anchor. The common case (the first OOV word closes the span) costs one step; a span that
    # tolerates OOV words walks them one by one, each with its own ratio test.
    span_start, first_word, first_oov, closes = (x.tolist() for x in (span_start, first_word, first_oov, closes))
    oov_l, starts_l, after_oov = oov.tolist(), starts.tolist(), after_oov.tolist()
    limit = float(limit)
    spans, a = [], 0
    while a < len(anchors):
        s, w0, j = span_start[a], first_word[a], first_oov[a]
        if s >= n:
            break
        if not closes[a]:
            n_oov = 0
            while j < len(oov_l):
                n_oov += 1
                if float(np.float32(n_oov / max(oov_l[j] - w0 + 1, min_span_len))) > limit:  # see README: exact
                    break
                j += 1
            if j == len(oov_l):                  # no OOV word closes it: the span runs to the end of the text
                if len(starts_l) - w0 > min_span_len:
                    spans.append(data[s:].rstrip(b" \n"))
                break
        cut = starts_l[oov_l[j]]                 # the closing word counts, but its bytes are not in the span
        if oov_l[j] - w0 + 1 > min_span_len:
            spans.append(data[s:cut].rstrip(b" \n"))  # quirk: only trailing spaces and newlines are trimmed
        a = after_oov[j]
    return [s.decode("utf-8", "surrogatepass") for s in spans if s]
