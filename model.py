"""
model.py: the paper's LLaMA-style decoder-only transformer (section 4), small enough to read in one sitting.

    pre-norm blocks:  x = x + Attention(RMSNorm(x));  x = x + SwiGLU(RMSNorm(x))
    rotary position embeddings (RoPE), no biases, no dropout, 8 heads at every size,
    untied input embedding and output head, a final RMSNorm, every matrix initialised normal(0, 0.02), norm weights 1.

    from model import GPT, config_from_name, load_checkpoint
    model = GPT(config_from_name("h256-L4", vocab_size=15000))
    logits, loss = model(idx, targets)          # idx, targets: (B, T) int64 -> logits (B, T, V), scalar loss
    model, info = load_checkpoint("out/h64-L2-simplified-1M")   # a run of train.py (here: of scaling.py)
    model.set_loss("chunked")                   # training speed: loss over 8192-row chunks, logits never whole
    model.set_loss("fused")                     # or (a GPU): Triton kernels that never write the logits at all
    model.set_attention("triton")               # (a GPU) attention.py's kernels for short sequences, narrow heads
    logits, loss = model(idx, targets)          # -> logits None (not computed), the same loss and gradients

The paper's 18 models are named h<hidden>-L<layers> (PAPER_GRID). Parameters per layer: attention 4h^2, SwiGLU 12h^2
(three h x 4h matrices), two RMSNorm weights 2h; plus the embedding and head 2Vh and the final norm h.
"""
import importlib.util
import math
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

from chunked_loss import chunked_cross_entropy   # the head and the loss a chunk of rows at a time (--loss chunked)


# -----------------------------------------------------------------------------
# Configuration and the paper's grid


@dataclass
class GPTConfig:
    block_size: int = 128        # training context length (the paper: 128)
    vocab_size: int = 15000      # the paper's BPE size; train.py takes it from the dataset's meta.json
    n_layer: int = 4
    n_head: int = 8              # the paper uses 8 heads at every width
    n_embd: int = 256
    rope_base: float = 10000.0   # RoPE wavelength base (one of the authors' examples used 20 for the smallest model)
    rope_scale: float = 1.0      # position interpolation: positions are divided by this (1 = off; 8 reads 1024 tokens)
    norm_eps: float = 1e-6
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % (2 * self.n_head):
            raise ValueError(f"n_embd {self.n_embd} must be a multiple of 2 * n_head = {2 * self.n_head} "
                             "(RoPE rotates pairs of head dimensions)")
        if not (0 < self.rope_scale < math.inf and 0 < self.rope_base < math.inf and self.norm_eps >= 0):
            raise ValueError(f"rope_scale and rope_base must be finite and > 0, norm_eps >= 0, got {self.rope_scale}, "
                             f"{self.rope_base}, {self.norm_eps}")

    @property
    def head_dim(self):
        return self.n_embd // self.n_head


PAPER_GRID = [f"h{h}-L{n}" for h in (32, 64, 128, 256, 512, 1024) for n in (2, 4, 8)]
PAPER_TRAIN_TOKENS = 2_130_447_357   # tokens of the paper's training corpus: each of its runs saw them once


def config_from_name(name, **overrides):
    """'h256-L4' -> GPTConfig(n_embd=256, n_layer=4, **overrides). Any h<hidden>-L<layers> is accepted; the paper's
    grid is PAPER_GRID."""
    m = re.fullmatch(r"h(\d+)-L(\d+)", name)
    if not m:
        raise ValueError(f"model name {name!r} is not h<hidden>-L<layers>; the paper's grid: {' '.join(PAPER_GRID)}")
    return GPTConfig(n_embd=int(m[1]), n_layer=int(m[2]), **overrides)

# -----------------------------------------------------------------------------
# Building blocks


class RMSNorm(nn.Module):
    """x / rms(x) * weight, the normalisation in float32 (as LLaMA does), cast back to x's dtype before the float32
    weight multiplies it (so the result is float32: under autocast the residual stream stays float32, and the next
    Linear casts its input)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return x32.type_as(x) * self.weight


def rope_cos_sin(seq_len, head_dim, base, scale, device):
    """Rotation angles for positions 0..seq_len-1 -> cos, sin of shape (seq_len, head_dim), float32.
    Dimension pair (i, i + head_dim/2) turns by angle (position / scale) * base^(-2i / head_dim): the 'rotate half'
    layout of LLaMA's Hugging Face port, which the authors trained with. Dividing positions by `scale` is linear
    position interpolation: a model trained on 128 tokens reads 128 * scale tokens at the angles it has seen."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)  # (hd/2,)
    pos = torch.arange(seq_len, device=device, dtype=torch.float32) / scale                            # (T,)
    angles = torch.outer(pos, inv_freq)                                                                # (T, hd/2)
    angles = torch.cat((angles, angles), dim=-1)                                                       # (T, hd)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """x: (B, n_head, T, head_dim); rotate each pair (x1[i], x2[i]) = (x[i], x[i + hd/2]) by its angle."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos + rotated * sin).type_as(x)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)  # q, k, v projections in one matmul
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.triton = False   # attention.py's kernels instead of PyTorch's (GPT.set_attention): a speed setting

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        hd = C // self.n_head                                          # head dimension
        q, k, v = self.qkv(x).split(C, dim=2)                          # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, hd).transpose(1, 2) for t in (q, k, v))   # (B, nh, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.triton:   # whole-sequence tiles in registers: no padding, y a view of a (B, T, C) tensor
            return self.proj(triton_module("attention").causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C))
        if hd % 8:   # the flash kernels need head_dim % 8 == 0 (h32 has 4): zero columns change no q.k and no output
            q, k, v = (F.pad(t, (0, -hd % 8)) for t in (q, k, v))
        # scale given: after the padding, SDPA's default 1/sqrt(q.size(-1)) would divide by sqrt(8), not sqrt(hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=hd ** -0.5)[..., :hd]  # (B, nh, T, hd)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with inner size 4h: three h x 4h matrices, 12h^2 parameters."""

    def __init__(self, config):
        super().__init__()
        self.gate = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.up = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.down = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))

# -----------------------------------------------------------------------------
# The loss and attention a model computes with (GPT.set_loss, set_attention): the chunked loss is
# chunked_loss.py, the fused one fused_loss.py, attention.py the Triton attention


_TRITON = {}   # the Triton modules once imported (set_loss and set_attention import them, outside compiled code)


def triton_module(name):
    """fused_loss.py or attention.py ("fused_loss", "attention"), imported on first use (Triton takes a second to
    import); ValueError without Triton."""
    if name not in _TRITON:
        try:
            _TRITON[name] = importlib.import_module(name)
        except ImportError as e:
            if e.name != "triton":
                raise
            raise ValueError(f"{name}.py needs Triton (PyTorch's CUDA builds bring it): use "
                             f"{'the chunked loss' if name == 'fused_loss' else 'sdpa attention'}") from None
    return _TRITON[name]


LOSS_KINDS = ("auto", "plain", "chunked", "fused")
ATTENTION_KINDS = ("sdpa", "triton")
FUSED_MAX_AUTO = 256   # "auto" takes the fused loss up to this width, the chunked one above (bench.py measured,
# with the earlier three-kernel fused loss: the two-kernel one may move the crossover)


def choose_loss(kind, n_embd, device_type):
    """The training loss a kind names: auto is plain off CUDA; on CUDA the fused kernels while the logits' memory
    traffic dominates (n_embd <= FUSED_MAX_AUTO, Triton installed), else the chunked loss (the fused one recomputes
    the logits, which costs more than it saves at larger widths)."""
    if kind not in LOSS_KINDS:
        raise ValueError(f"loss {kind!r} is not one of {', '.join(LOSS_KINDS)}")
    if kind == "auto":
        if device_type != "cuda":
            return "plain"
        return "fused" if n_embd <= FUSED_MAX_AUTO and importlib.util.find_spec("triton") else "chunked"
    return kind

# -----------------------------------------------------------------------------
# The model


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # untied from wte, as in the paper
        self.apply(self._init_weights)
        self._build_rope()
        # How the training loss is computed: speed settings, not part of the model (not in config or checkpoints; a
        # run may be resumed with or without them). loss_chunk: rows per chunk of the chunked loss (0: off);
        # fused_loss: the Triton kernels of fused_loss.py (a CUDA device; wins over loss_chunk). Both off: plain.
        self.loss_chunk = 0
        self.fused_loss = False

    def _init_weights(self, module):
        # Every matrix normal(0, 0.02) (the Hugging Face LLaMA init the authors used); norm weights stay 1.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    @property
    def max_seq_len(self):
        """The longest input the model reads: block_size, stretched by position interpolation."""
        return int(self.config.block_size * self.config.rope_scale + 1e-9)   # (100 x 1.15 is 114.99999999999999)

    def forward(self, idx, targets=None):
        """idx (B, T) int64 -> logits (B, T, V), and the mean next-token cross-entropy if targets (B, T) are given
        (target -1 is ignored). With a chunked or fused loss set (set_loss) and targets given, logits is None: the
        full logits never exist."""
        B, T = idx.shape
        if T > self.max_seq_len:
            raise ValueError(f"input of {T} tokens exceeds the model's {self.max_seq_len} (block_size "
                             f"{self.config.block_size} x rope_scale {self.config.rope_scale}); set "
                             f"config.rope_scale = {math.ceil(T / self.config.block_size)} to interpolate positions")
        cos, sin = self.rope(T)                                  # 2 x (T, head_dim)
        x = self.wte(idx)                                        # (B, T, C)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head_and_loss(self.norm(x), targets)

    def _build_rope(self):
        # RoPE's cos/sin for every position the model reads, computed once: built inside forward, torch.compile fused
        # pow, cos and sin into the rotation and recomputed them for each element of q and k (measured on an H200:
        # a fifth of the step at h256-L4). Non-persistent buffers: they stay out of checkpoints.
        c = self.config
        self._rope_for = (c.rope_base, c.rope_scale)
        cos, sin = rope_cos_sin(self.max_seq_len, c.head_dim, c.rope_base, c.rope_scale, self.lm_head.weight.device)
        self.register_buffer("rope_cos", cos, persistent=False)   # (max_seq_len, head_dim), float32
        self.register_buffer("rope_sin", sin, persistent=False)

    def _apply(self, fn, recurse=True):
        # .to(device or dtype), .half(), .to_empty(): the tables are rebuilt in float32 beside the weights, never cast
        # to half precision nor left as the uninitialised memory of to_empty
        super()._apply(fn, recurse)
        self._build_rope()
        return self

    def rope(self, T):
        """cos, sin (T, head_dim) for positions 0..T-1: the tables built at init, or, where rope_scale or rope_base
        changed since (evaluate.py stretches the positions of long prompts), computed for this call."""
        c = self.config
        if (c.rope_base, c.rope_scale) == self._rope_for and T <= self.rope_cos.size(0):
            return self.rope_cos[:T], self.rope_sin[:T]
        return rope_cos_sin(T, c.head_dim, c.rope_base, c.rope_scale, self.rope_cos.device)

    def head_and_loss(self, x, targets):
        """The one place logits and the loss are computed from the final hidden states x (B, T, C).
        The loss is taken in float32 even under autocast (log-softmax over V in bf16 loses precision).
        With self.fused_loss or self.loss_chunk > 0, and targets: (None, loss), from fused_loss.fused_cross_entropy or
        chunked_cross_entropy (the same loss and gradients, up to rounding)."""
        if targets is not None and self.fused_loss:
            fused = triton_module("fused_loss").fused_cross_entropy
            return None, fused(x.reshape(-1, x.size(-1)), self.lm_head.weight, targets.reshape(-1))
        if targets is not None and self.loss_chunk > 0:
            loss = chunked_cross_entropy(x.reshape(-1, x.size(-1)), self.lm_head.weight, targets.reshape(-1),
                                         self.loss_chunk)
            return None, loss
        logits = self.lm_head(x)                                 # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def set_loss(self, kind, chunk=8192):
        """kind: plain | chunked (chunk rows at a time) | fused | auto (see choose_loss), for the device the model is
        on. Returns the kind set; ValueError (saying what to use instead) for a fused loss that cannot run here."""
        device_type = self.lm_head.weight.device.type
        kind = choose_loss(kind, self.config.n_embd, device_type)
        if kind == "chunked" and chunk < 1:
            raise ValueError(f"loss chunk must be >= 1 rows, got {chunk}")
        if kind == "fused":
            triton_module("fused_loss").check_supported(device_type, self.config.n_embd)
        self.fused_loss, self.loss_chunk = kind == "fused", chunk if kind == "chunked" else 0
        return kind

    def set_attention(self, kind):
        """kind: sdpa (PyTorch's scaled_dot_product_attention: its flash kernels on a GPU) | triton (attention.py:
        for the paper's short context and narrow heads, h256 and below). The same numbers, differently fast; ValueError
        (saying what to use instead) for kernels that cannot run here."""
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention {kind!r} is not one of {', '.join(ATTENTION_KINDS)}")
        if kind == "triton":
            triton_module("attention").check_supported(self.lm_head.weight.device.type, self.max_seq_len,
                                                      self.config.head_dim)
        for block in self.blocks:
            block.attn.triton = kind == "triton"

    def num_params(self, non_embedding=False):
        """All parameters (the paper's table counts these). non_embedding=True leaves out both vocabulary matrices
        (input embedding and the untied head), so the count no longer depends on V (Kaplan et al.'s N)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + self.lm_head.weight.numel()
        return n

    def flops_per_token(self):
        """Training FLOPs (forward + backward) per token, as in the PaLM paper's appendix B:
        6 * (weights used in matmuls: every Linear, head included; the embedding is a lookup, norms are negligible)
        + 12 * n_layer * n_embd * block_size for the attention scores and the weighted sum of values
        (2 matmuls x 2 FLOPs per multiply-add x 3 for forward + backward; the causal mask's skipped half is counted,
        as PaLM and nanoGPT do)."""
        c = self.config
        n_matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        return 6 * n_matmul + 12 * c.n_layer * c.n_embd * c.block_size

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """Append max_new_tokens sampled tokens to idx (B, T). temperature 0 picks the most likely token; top_k keeps
        only the k most likely before sampling. The context is cropped to the last max_seq_len tokens."""
        if (idx.dim() != 2 or idx.size(1) == 0 or max_new_tokens < 0 or not temperature >= 0   # (NaN too)
                or (top_k is not None and top_k < 0)):
            raise ValueError(f"generate needs a (B, T >= 1) context, max_new_tokens >= 0, temperature >= 0 and top_k "
                             f">= 0 (or None), got shape {tuple(idx.shape)}, max_new_tokens {max_new_tokens}, "
                             f"temperature {temperature}, top_k {top_k}")
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.max_seq_len:])
            logits = logits[:, -1, :].float()                    # (B, V)
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:                                          # None or 0: no cut
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, next_id), dim=1)
        return idx

# -----------------------------------------------------------------------------
# Loading a trained model (train.py writes out/<run>/ckpt.pt)


def read_checkpoint(path, device="cpu", mmap=False):
    """The checkpoint dict of a run directory or ckpt.pt path, with clear errors for a missing or corrupt file.
    mmap=True maps the tensors instead of reading them: cheap when only the settings and counters are wanted."""
    path = Path(path)
    if path.is_dir():
        path = path / "ckpt.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give a run directory holding ckpt.pt (train one with train.py)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except (MemoryError, torch.OutOfMemoryError) as e:       # the file may be fine: do not send anyone to delete it
        raise MemoryError(f"{path}: not enough memory on {device} to load it ({first_sentence(e)}): free some"
                          + ("" if str(device) == "cpu" else ", or load it on the CPU")) from None
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint, perhaps truncated or corrupt ({type(e).__name__}: "
                         f"{first_sentence(e)})") from None
    if not isinstance(ckpt, dict) or not {"model", "model_config", "step"} <= ckpt.keys():
        raise ValueError(f"{path} is not a train.py checkpoint (no model, model_config or step in it)")
    return ckpt


def first_sentence(e, limit=200):
    """An exception's message cut to its first sentence (torch's run on for lines), for one-line errors; a first line
    that only announces the next (load_state_dict's "Error(s) in loading state_dict for GPT:") keeps that one too."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = " ".join(lines[:2] if len(lines) > 1 and lines[0].endswith(":") else lines[:1]).split(". ")[0]
    return text if len(text) <= limit else text[:limit] + "..."


def check_device_name(name):
    """SystemExit (one line) unless name is a --device the scripts take: auto, cpu, cuda, cuda:N or mps."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise SystemExit(f"--device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def pick_device(name="auto"):
    """--device as train.py, evaluate.py and bench.py take it -> the device to use (auto: cuda where torch sees a
    GPU, else cpu); SystemExit (one line) for a name torch does not know or a device this machine does not have."""
    check_device_name(name)
    device = name if name != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise SystemExit(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered "
                         "from 0")
    if device == "mps" and not torch.backends.mps.is_available():
        raise SystemExit(f"--device mps: this torch ({torch.__version__}) sees no Apple GPU; use --device cpu")
    return device


def load_checkpoint(path, device="cpu"):
    """A run directory (or its ckpt.pt) -> (GPT in eval mode on device, info dict: model_config, train_config, step,
    tokens, val_loss, data_dir, tokenizer_sha256, vocab_size, ...). Raises FileNotFoundError / ValueError (or
    MemoryError: not enough on device) with a message saying what is wrong."""
    ckpt = read_checkpoint(path, device)
    try:
        model = GPT(GPTConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as e:   # a config or weights of another model, or another version
        raise ValueError(f"{path}: its model_config or weights do not make this project's GPT ({type(e).__name__}: "
                         f"{first_sentence(e)})") from None
    info = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scaler", "rng")}
    return model.to(device).eval(), info

# -----------------------------------------------------------------------------
# Model FLOPs utilisation

# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s from the vendors' datasheets; fp16 for cards without bf16.
# The first pattern found in torch.cuda.get_device_name() wins, so specific names come before general ones.
PEAK_FLOPS = [
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("GH200", 989e12), ("H200", 989e12), ("H100", 989e12),  # SXM
    ("H800", 989e12), ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12),
    ("L40", 181e12), ("L4", 121e12), ("A6000", 155e12), ("RTX 4090", 165e12),
    ("RTX 3090", 71e12), ("V100", 125e12), ("T4", 65e12), ("MI300X", 1307e12), ("MI250X", 383e12),
]


def peak_flops(device_name):
    """Peak FLOP/s of one device from its name, or None if unknown (CPUs included)."""
    for pattern, flops in PEAK_FLOPS:
        if pattern.lower() in (device_name or "").lower():
            return flops
    return None


def auto_dtype(device):
    """The --dtype auto of train.py and bench.py: bf16 autocast on a GPU that has it, fp16 on an older
    one (train.py adds a GradScaler), float32 on a CPU."""
    if not str(device).startswith("cuda"):
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported(False) else "float16"


def autocast_for(device, dtype):
    """The context to run the model in: bf16/fp16 autocast (matmuls in half precision, weights and optimizer state in
    float32; fp16 also needs train.py's loss scaling), or nothing for float32."""
    return nullcontext() if dtype == "float32" else torch.autocast(str(device).split(":")[0], getattr(torch, dtype))


def mfu(flops_per_token, tokens_per_s, peak_per_device, n_devices=1):
    """Model FLOPs utilisation: achieved training FLOP/s over the devices' peak; None when the peak is unknown."""
    if not peak_per_device:
        return None
    return flops_per_token * tokens_per_s / (peak_per_device * n_devices)
