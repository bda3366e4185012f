"""
attention.py: causal self-attention for short sequences and narrow heads, one Triton program per (sequence, head).

    from attention import causal_attention
    y = causal_attention(q, k, v)   # q, k, v (B, n_head, T, hd) -> y (B, n_head, T, hd)
    # == F.scaled_dot_product_attention(q, k, v, is_causal=True), the same gradients (to float32 rounding)

Why: the paper's context is 128 tokens and its heads are C / 8 wide, 4 numbers at h32 and 16 at h128. PyTorch's flash
kernels are built for long sequences and heads of 64 or more: they split the keys into blocks, keep running maxima,
and in backward add each block's gradient of q into float32 with a separate pre- and post-processing kernel; at head
dimension 4 they also need q, k and v padded to 8 columns (three copies, one slice). On an H200 at h32-L2 attention
took 0.55 ms of a 2.6 ms step (bench.py --profile), for 4 MB per tensor.

Here all 128 keys of a (sequence, head) fit in one tile, so a program holds k and v whole in registers and walks the
queries in blocks of BLOCK_M rows; no running maximum, no second kernel:

    forward   s = q k^T / sqrt(hd) (BLOCK_M, T), causal mask, p = softmax(s), o = p v; keeps lse = logsumexp(s)
    backward  recompute p = exp(s - lse); dv += p^T do, dp = do v^T, ds = p * (dp - rowsum(do * o)),
              dq = ds k / sqrt(hd) (stored per block), dk += ds^T q / sqrt(hd)  (dk, dv summed over the blocks
              in registers: one program owns every query of its sequence, so there are no atomic adds)

The kernels read and write (B, T, n_head, hd) tensors, a (B, T, C) layout: q and k come out of RoPE so, v is a slice
of the qkv projection's (B, T, 3C) output and is copied (4 MB at h32-L2, a few microseconds), and y comes back as a
(B, n_head, T, hd) view of a (B, T, C) tensor, so the output projection reads it without a copy. The head dimension
is padded to DP >= 16 columns in registers only (Triton's dot needs 16), never in memory. Softmax terms use exp2 of
scores scaled by log2(e) (the GPU's one-instruction exponential; fused_loss.py says why).

Limits: T <= MAX_T = 128 and hd <= MAX_HD = 32 (h256's heads): the tiles live in registers. Made for bf16 (or fp16)
autocast: float32 inputs (train.py --dtype float32 on a GPU) multiply without tensor cores, and compiled offline
their loops spill from hd = 32 forward and hd = 4 backward: correct, but slow. Checked against PyTorch's attention
on the CPU through Triton's interpreter (TRITON_INTERPRET=1, tests/test_attention.py) and compiled for an H100
offline to check that no bf16 tile spills registers; train.py --attention triton and bench.py's +ta path use it. Not
yet timed on a GPU.
"""
import math
import os

import torch
import triton
import triton.language as tl

LOG2E = math.log2(math.e)   # scores are scaled by log2(e) / sqrt(hd) for exp2
MAX_T, MAX_HD = 128, 32   # the paper's context; heads up to h256's (wider ones are the flash kernels' case)
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"   # Triton's CPU interpreter: tests run the kernels on CPU

# -----------------------------------------------------------------------------
# The kernels. A (B, T, NH, HD) tensor: element (b, t, h, d) at ((b * T + t) * NH + h) * HD + d; lse (B, NH, T).
# Program (h, b) owns head h of sequence b. TP: T rounded up to a power of two, DP: HD rounded up, both >= 16.


@triton.jit
def _load(ptr, rows, d, T, NH, HD):
    """rows x d of one (sequence, head) of a (B, T, NH, HD) tensor (ptr at its row 0, column 0); zeros past T, HD."""
    return tl.load(ptr + rows[:, None] * (NH * HD) + d[None, :], mask=(rows[:, None] < T) & (d[None, :] < HD), other=0)


@triton.jit
def _scores(q, k, rows, keys, qk_scale, PRECISION: tl.constexpr):
    """(BLOCK_M, TP) scores in log2 units, -inf where a key comes after its query (and so past T for rows < T)."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    return tl.where(keys[None, :] <= rows[:, None], s, float("-inf"))


@triton.jit
def _attention_fwd_kernel(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, T, NH, HD, qk_scale,
                          TP: tl.constexpr, DP: tl.constexpr, BLOCK_M: tl.constexpr, PRECISION: tl.constexpr):
    h, b = tl.program_id(0), tl.program_id(1)
    head = (b * T * NH + h) * HD   # offset of (b, 0, h, 0)
    keys, d = tl.arange(0, TP), tl.arange(0, DP)
    k = _load(k_ptr + head, keys, d, T, NH, HD)                        # (TP, DP)
    v = _load(v_ptr + head, keys, d, T, NH, HD)                        # (TP, DP)
    for start in range(0, T, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        q = _load(q_ptr + head, rows, d, T, NH, HD)                    # (BLOCK_M, DP)
        s = _scores(q, k, rows, keys, qk_scale, PRECISION)             # (BLOCK_M, TP)
        m = tl.max(s, 1)                                               # every row sees key 0: finite
        p = tl.exp2(s - m[:, None])
        total = tl.sum(p, 1)
        o = tl.dot(p.to(v.dtype), v, input_precision=PRECISION) / total[:, None]   # (BLOCK_M, DP)
        ok = rows < T
        tl.store(o_ptr + head + rows[:, None] * (NH * HD) + d[None, :], o.to(o_ptr.dtype.element_ty),
                 mask=ok[:, None] & (d[None, :] < HD))
        tl.store(lse_ptr + (b * NH + h) * T + rows, m + tl.log2(total), mask=ok)


@triton.jit
def _attention_bwd_kernel(q_ptr, k_ptr, v_ptr, o_ptr, do_ptr, lse_ptr, dq_ptr, dk_ptr, dv_ptr, T, NH, HD,
                          qk_scale, sm_scale,
                          TP: tl.constexpr, DP: tl.constexpr, BLOCK_M: tl.constexpr, PRECISION: tl.constexpr):
    h, b = tl.program_id(0), tl.program_id(1)
    head = (b * T * NH + h) * HD
    keys, d = tl.arange(0, TP), tl.arange(0, DP)
    k = _load(k_ptr + head, keys, d, T, NH, HD)                        # (TP, DP)
    v = _load(v_ptr + head, keys, d, T, NH, HD)
    dk = tl.zeros((TP, DP), dtype=tl.float32)
    dv = tl.zeros((TP, DP), dtype=tl.float32)
    for start in range(0, T, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        q = _load(q_ptr + head, rows, d, T, NH, HD)                    # (BLOCK_M, DP)
        do = _load(do_ptr + head, rows, d, T, NH, HD)
        o = _load(o_ptr + head, rows, d, T, NH, HD)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)        # (BLOCK_M,) = rowsum(p * dp)
        lse = tl.load(lse_ptr + (b * NH + h) * T + rows, mask=rows < T, other=0.0)
        p = tl.exp2(_scores(q, k, rows, keys, qk_scale, PRECISION) - lse[:, None])   # (BLOCK_M, TP) softmax
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)        # (TP, BLOCK_M) @ (BLOCK_M, DP)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)                      # (BLOCK_M, TP)
        ds = (p * (dp - delta[:, None])).to(q.dtype)   # the gradient of the scores (rows past T: do = 0, so 0)
        dq = tl.dot(ds, k, input_precision=PRECISION) * sm_scale                     # (BLOCK_M, DP)
        dk += tl.dot(tl.trans(ds), q, input_precision=PRECISION)                     # (TP, DP)
        tl.store(dq_ptr + head + rows[:, None] * (NH * HD) + d[None, :], dq.to(dq_ptr.dtype.element_ty),
                 mask=(rows[:, None] < T) & (d[None, :] < HD))
    out = keys[:, None] * (NH * HD) + d[None, :]
    ok = (keys[:, None] < T) & (d[None, :] < HD)
    tl.store(dk_ptr + head + out, (dk * sm_scale).to(dk_ptr.dtype.element_ty), mask=ok)
    tl.store(dv_ptr + head + out, dv.to(dv_ptr.dtype.element_ty), mask=ok)

# -----------------------------------------------------------------------------
# The autograd wrapper


def tiles(T, hd):
    """TP, DP and BLOCK_M for sequences of T tokens and heads of hd; the kernels launch with Triton's defaults, 4 warps
    and 3 pipeline stages. Compiled for an H100 (tests/h100_resources.py attention), 64-query blocks over 4 warps took
    the fewest instructions per score (13.5 forward, 15.5 backward at hd = 4, T = 128; 32-query blocks or 8 warps 23 or
    more) and spill no registers in their loops up to hd = 32 (at hd = 64 the backward does, and at T = 256 every tile
    tried)."""
    tp = max(16, triton.next_power_of_2(T))
    return tp, max(16, triton.next_power_of_2(hd)), min(64, tp)


class CausalAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v):
        B, NH, T, HD = q.shape
        # (B, T, NH, HD) in memory: a no-op where they are (q, k out of RoPE), else a copy (v: a slice of qkv)
        q, k, v = (t.transpose(1, 2).contiguous() for t in (q, k, v))
        o = torch.empty_like(q)
        lse = torch.empty(B, NH, T, dtype=torch.float32, device=q.device)
        tp, dp, bm = tiles(T, HD)
        # float32 multiplies in full float32, as the reference does with TF32 off; bf16/fp16 ignore it
        ctx.consts = dict(TP=tp, DP=dp, BLOCK_M=bm, PRECISION="ieee")
        ctx.scale = 1 / math.sqrt(HD)
        _attention_fwd_kernel[(NH, B)](q, k, v, o, lse, T, NH, HD, ctx.scale * LOG2E, **ctx.consts)
        ctx.save_for_backward(q, k, v, o, lse)
        return o.transpose(1, 2)                                           # (B, NH, T, HD) view

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        B, T, NH, HD = q.shape
        do = do.transpose(1, 2).contiguous()                              # (B, T, NH, HD)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        _attention_bwd_kernel[(NH, B)](q, k, v, o, do, lse, dq, dk, dv, T, NH, HD, ctx.scale * LOG2E, ctx.scale,
                                       **ctx.consts)
        return dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2)


def check_supported(device_type, T, hd):
    """ValueError, saying what to use instead, unless the kernels can run: a CUDA device (or TRITON_INTERPRET=1),
    T <= MAX_T and hd <= MAX_HD."""
    if device_type != "cuda" and not INTERPRET:
        raise ValueError(f"attention.py runs Triton kernels on a CUDA device, got {device_type}: use sdpa")
    if T > MAX_T or hd > MAX_HD:
        raise ValueError(f"attention.py takes up to {MAX_T} tokens and heads of up to {MAX_HD}, got {T} and {hd}: "
                         "use sdpa")


def causal_attention(q, k, v):
    """softmax(q k^T / sqrt(hd) + causal mask) v for q, k, v (B, n_head, T, hd) of one dtype -> (B, n_head, T, hd)."""
    if q.dim() != 4 or not q.shape == k.shape == v.shape or not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"causal_attention takes q, k, v of one shape (B, n_head, T, hd) and dtype, got "
                         f"{tuple(q.shape)} {q.dtype}, {tuple(k.shape)} {k.dtype}, {tuple(v.shape)} {v.dtype}")
    check_supported(q.device.type, q.size(2), q.size(3))
    if q.dtype == torch.float64:   # the kernels' dots take float32 at most
        return causal_attention(q.float(), k.float(), v.float()).double()
    return CausalAttention.apply(q, k, v)
