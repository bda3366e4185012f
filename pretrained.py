"""
pretrained.py: the paper's reference models, Pythia and OPT checkpoints (or any causal LM that Hugging Face's
transformers loads), behind the small interface evaluate.py scores our GPTs through, so they are scored by the
same prompts, filter and rules:

    python evaluate.py --hf_model EleutherAI/pythia-160m,facebook/opt-125m --tasks paper --vocab ... --shots 0,5
    python evaluate.py --hf_model path/to/a/saved/model      # a directory written by save_pretrained also works

    model, tokenizer, info = load_pretrained("EleutherAI/pythia-160m", "cpu")
    logits, _ = model(idx)                      # idx (B, T) int64 -> logits (B, T, V), as GPT's forward
    ids = tokenizer.encode_ordinary(" the cat") # no special tokens added, as tiktoken's encode_ordinary

Every prompt starts with the model's document-start token (its BOS token, else its EOS token: Pythia's
<|endoftext|>, OPT's </s>), as our runs' prompts start with <|endoftext|>. The models read 2,048 tokens (their
max_position_embeddings), so prompts are never stretched with RoPE interpolation; a longer one would be
left-truncated. transformers is the one dependency only this file needs (imported when it is used).
"""
from types import SimpleNamespace

import torch
import torch.nn as nn

from model import GPT, first_sentence
from results import hub_key


class PretrainedModel(nn.Module):
    """A transformers causal LM with GPT's interface: model(idx) -> (logits, None), config.block_size (the longest
    input), max_seq_len, generate, num_params."""
    interpolates = False   # positions are the model's own: evaluate.py never stretches them (GPT's RoPE scale)

    def __init__(self, hf):
        super().__init__()
        self.hf = hf.eval()
        n = getattr(hf.config, "max_position_embeddings", None) or getattr(hf.config, "n_positions", None) or 2048
        self.config = SimpleNamespace(block_size=n, rope_scale=1.0)   # (score_requests sets rope_scale: unused)

    def forward(self, idx, targets=None):
        return self.hf(input_ids=idx).logits, None   # (B, T, V); no attention mask: right padding is never seen

    @property
    def max_seq_len(self):
        return self.config.block_size

    generate = GPT.generate   # the same sampling as our models' (temperature, top_k, context cropping)

    def num_params(self, non_embedding=False):
        """Every parameter once (OPT's head is its embedding: parameters() yields it once). non_embedding=True leaves
        out every embedding table (tokens, and OPT's learned positions: Kaplan's N) and an untied output head, as
        GPT.num_params leaves out both vocabulary matrices."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            tables = {id(m.weight): m.weight for m in self.modules() if isinstance(m, nn.Embedding)}
            head = self.hf.get_output_embeddings()
            if head is not None:
                tables[id(head.weight)] = head.weight
            n -= sum(w.numel() for w in tables.values())
        return n


class PretrainedTokenizer:
    """A transformers tokenizer with the two methods evaluate.py calls on tiktoken's: encode_ordinary, decode."""

    def __init__(self, tok):
        self.tok = tok

    def encode_ordinary(self, text):   # as tiktoken's: no special tokens added, and "<|endoftext|>" in text is text
        return self.tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def decode(self, ids):
        return self.tok.decode(ids)


def load_pretrained(name, device):
    """A hub id (EleutherAI/pythia-160m) or a local directory -> (PretrainedModel in float32 on device, tokenizer,
    info: the document-start token and the special tokens that end a sample). SystemExit with one line if it
    cannot be loaded."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise SystemExit("--hf_model needs transformers: pip install -r requirements.txt") from None
    source = hub_key(name)   # a local directory's absolute path, or the hub id
    try:
        tok = AutoTokenizer.from_pretrained(source)
        hf = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:   # no such directory or hub id, offline, not a causal LM
        raise SystemExit(f"--hf_model {name}: not a model directory or hub id transformers can load as a causal LM "
                         f"({type(e).__name__}: {first_sentence(e)})") from None
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if start is None:
        raise SystemExit(f"--hf_model {name}: its tokenizer has neither a BOS nor an EOS token to start prompts with")
    if len(tok) > hf.config.vocab_size:
        raise SystemExit(f"--hf_model {name}: its tokenizer has {len(tok):,} tokens, the model's embedding "
                         f"{hf.config.vocab_size:,}: they do not belong together")
    stop = {t for t in (tok.eos_token_id, tok.bos_token_id) if t is not None}
    return PretrainedModel(hf).to(device), PretrainedTokenizer(tok), {"start": start, "stop": stop}
