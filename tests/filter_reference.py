"""A plain, token-by-token transcription of the authors' span filter, kept deliberately simple.

spans.filter_spans is the fast version; tests/test_filter.py checks that both give the same spans, byte for byte.
Works on UTF-8 bytes, as the authors' C++ kernel did."""

DELIMITERS = set(b" .,:;?!\n\t-()[]{}=<>\"'&^%$#@*+/|\\~")
EOS = {b".", b"?", b"!", b"\n"}


def isdigit(c):
    return 48 <= c <= 57  # ASCII only


def tokenize(data):
    """bytes -> list of byte tokens: words and 1-byte delimiters; a digit/non-digit change also splits, and the
    character right after a digit starts a token that absorbs the following word characters."""
    tokens, cur = [], bytearray()
    last_digit = bool(data) and isdigit(data[0])
    for c in data:
        boundary = last_digit != isdigit(c)
        last_digit = isdigit(c)
        if c not in DELIMITERS and not boundary:
            cur.append(c)
            continue
        if cur:
            tokens.append(bytes(cur))
            cur = bytearray()
        if boundary:
            cur.append(c)
            continue
        tokens.append(bytes([c]))
    if cur:
        tokens.append(bytes(cur))
    return tokens


def filter_spans_reference(text, vocab, min_span_len=32, max_oov=0.01, from_sentence_start=True):
    import numpy as np
    vocab = {w.encode("utf-8") for w in vocab}
    limit = np.float32(max_oov)
    spans, chunk, words, oov, sentence_start = [], b"", 0, 0, True
    for tok in tokenize(text.encode("utf-8", "surrogatepass")):
        if from_sentence_start and not chunk and not sentence_start:
            sentence_start = tok in EOS
            continue
        if not chunk and tok in (b" ", b"\n"):
            continue
        is_delim = len(tok) == 1 and tok[0] in DELIMITERS
        if not is_delim:
            words += 1
        if tok.lower() in vocab or tok.isdigit() or is_delim:
            chunk += tok
        else:
            oov += 1
            if np.float32(oov) / np.float32(max(words, min_span_len)) <= limit:
                chunk += tok
            else:
                chunk = chunk.rstrip(b" \n")
                if words > min_span_len:
                    spans.append(chunk)
                chunk, words, oov = b"", 0, 0
        sentence_start = tok in EOS
    if chunk and words > min_span_len:
        spans.append(chunk.rstrip(b" \n"))
    return [s.decode("utf-8", "surrogatepass") for s in spans if s]
