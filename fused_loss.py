"""
fused_loss.py: the output head and the cross-entropy in two Triton kernels that never write the logits to memory.

    from fused_loss import fused_cross_entropy
    loss = fused_cross_entropy(x, weight, targets)   # x (N, C), weight (V, C), targets (N,) with -1 ignored
    # == F.cross_entropy(x @ weight.T, targets, ignore_index=-1), the same gradients, no (N, V) tensor anywhere

Why: at the paper's 512 x 128 tokens per step and V = 15,000 the logits are 65,536 x 15,000. The plain path writes
them (2 GB in bf16), reads them for the softmax, writes their gradient and reads it twice more for the two gradient
matmuls: some 12 GB through device memory per step, several milliseconds, while the small models' matmuls take less.
Here each program keeps a tile of logits in registers, FlashAttention-style, and memory sees only x, the weight,
and one float per row (the log-sum-exp).

The gradient of the loss of row n w.r.t. its hidden state is  softmax(z_n) @ w - w[t_n]  (z_n = w @ x_n, its logits):
a softmax-weighted mean of the weight's rows. That is attention, with x as the queries and w as both the keys and
the values, so the kernel that computes the loss can compute it in the same pass, as FlashAttention's forward does:

    rows   one program per BLOCK_N rows, looping over the vocabulary in BLOCK_V columns:
           z = x @ w.T tile; the online max m and sum s of exp(z - m), and (training) acc = sum of exp(z - m) @ w,
           rescaled whenever m grows          -> lse = m + log s, loss_n = lse - x.w[t], grad_x = acc / s - w[t]
    vocab  (backward) one program per BLOCK_V vocabulary rows, looping over all N rows: recompute z, the
           softmax p = exp(z - lse), dz = (p - onehot(t)) * g / n_valid, accumulate dz.T @ x   -> grad_w (BLOCK_V, C)

The price is computing the logits twice (4 matmuls of N x C x V instead of the plain path's 3), cheap while C is
small, where the memory traffic dominates; at C >= 512 the matmuls dominate and model.py's chunked loss is the
better choice (README.md has the measured table). The kernels hold a (BLOCK, C) float32 accumulator in registers,
so C is at most MAX_C here. Checked against the plain loss on the CPU through Triton's interpreter in float32
(TRITON_INTERPRET=1, tests/test_fused_loss.py; the interpreter cannot multiply bf16) and in bf16 on a GPU
(tests/test_gpu.py).
"""
import os

import torch
import triton
import triton.language as tl

MAX_C = 1024   # widest hidden size the kernels take (the register accumulators grow with C)
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"   # Triton's CPU interpreter: tests run the kernels on CPU

# -----------------------------------------------------------------------------
# The kernels. x (N, C) and w (V, C) are row-major; CP is C rounded up to a power of two (Triton's tiles are), the
# columns k >= C load as zeros. Rows n >= N and vocabulary rows v >= V are masked.


@triton.jit
def _load_tile(ptr, idx, ks, n, C):
    """Rows idx of a row-major (n, C) matrix as a (len(idx), CP) tile; rows >= n and columns >= C read as 0."""
    return tl.load(ptr + idx[:, None] * C + ks[None, :], mask=(idx[:, None] < n) & (ks[None, :] < C), other=0.0)


@triton.jit
def _rows_kernel(x_ptr, w_ptr, t_ptr, scale_ptr, lse_ptr, loss_ptr, gx_ptr, N, V, C, BLOCK_N: tl.constexpr,
                 BLOCK_V: tl.constexpr, CP: tl.constexpr, PRECISION: tl.constexpr, WITH_GRAD: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)                              # (BN,)
    ks = tl.arange(0, CP)
    x = _load_tile(x_ptr, rows, ks, N, C)                                                  # (BN, CP)
    t = tl.load(t_ptr + rows, mask=rows < N, other=-1).to(tl.int32)                      # (BN,), -1: ignored
    w_t = _load_tile(w_ptr, tl.maximum(t, 0), ks, V, C)                                    # (BN, CP) target rows
    z_t = tl.sum(x.to(tl.float32) * w_t.to(tl.float32), 1)                                # the target's logit
    m = tl.full((BLOCK_N,), float("-inf"), tl.float32)   # running max of the row's logits
    s = tl.zeros((BLOCK_N,), tl.float32)                 # running sum of exp(logit - m)
    acc = tl.zeros((BLOCK_N, CP), tl.float32)            # running sum of exp(logit - m) * w[v]
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)                                                  # (BV,)
        w = _load_tile(w_ptr, cols, ks, V, C)                                              # (BV, CP)
        z = tl.dot(x, tl.trans(w), input_precision=PRECISION)                             # (BN, BV) float32
        z = tl.where(cols[None, :] < V, z, float("-inf"))
        m_new = tl.maximum(m, tl.max(z, 1))
        alpha = tl.exp(m - m_new)                        # rescales what was summed under the old max
        p = tl.exp(z - m_new[:, None])                                                     # (BN, BV)
        s = s * alpha + tl.sum(p, 1)
        if WITH_GRAD:
            acc = acc * alpha[:, None] + tl.dot(p.to(w.dtype), w, input_precision=PRECISION)   # (BN, BV) @ (BV, CP)
        m = m_new
    lse = m + tl.log(s)
    tl.store(lse_ptr + rows, lse, mask=rows < N)
    tl.store(loss_ptr + rows, tl.where(t >= 0, lse - z_t, 0.0), mask=rows < N)
    if WITH_GRAD:   # (softmax @ w - w[t]) / n_valid; ignored (and out-of-range) rows get no gradient
        row_scale = tl.where(t >= 0, tl.load(scale_ptr), 0.0)
        gx = (acc / s[:, None] - w_t.to(tl.float32)) * row_scale[:, None]
        tl.store(gx_ptr + rows[:, None] * C + ks[None, :], gx.to(gx_ptr.dtype.element_ty),
                 mask=(rows[:, None] < N) & (ks[None, :] < C))


@triton.jit
def _vocab_kernel(x_ptr, w_ptr, t_ptr, lse_ptr, scale_ptr, gw_ptr, N, V, C,
                  BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, CP: tl.constexpr, PRECISION: tl.constexpr):
    cols = tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)                              # (BV,)
    ks = tl.arange(0, CP)
    w = _load_tile(w_ptr, cols, ks, V, C)                                                  # (BV, CP)
    scale = tl.load(scale_ptr)
    acc = tl.zeros((BLOCK_V, CP), tl.float32)
    for n0 in range(0, N, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        x = _load_tile(x_ptr, rows, ks, N, C)                                              # (BN, CP)
        t = tl.load(t_ptr + rows, mask=rows < N, other=-1).to(tl.int32)
        lse = tl.load(lse_ptr + rows, mask=rows < N, other=0.0)
        z = tl.dot(x, tl.trans(w), input_precision=PRECISION)                             # (BN, BV) recomputed
        p = tl.where(cols[None, :] < V, tl.exp(z - lse[:, None]), 0.0)                    # the softmax
        dz = (p - tl.where(cols[None, :] == t[:, None], 1.0, 0.0)) * tl.where(t >= 0, scale, 0.0)[:, None]
        acc += tl.dot(tl.trans(dz.to(x.dtype)), x, input_precision=PRECISION)              # (BV, BN) @ (BN, CP)
    tl.store(gw_ptr + cols[:, None] * C + ks[None, :], acc, mask=(cols[:, None] < V) & (ks[None, :] < C))

# -----------------------------------------------------------------------------
# Launching: on a GPU each kernel picks its block sizes by timing a few candidates once per (C, V) (triton.autotune);
# the interpreter runs one small fixed configuration.


def _configs(cp, swap):
    """Candidate tiles (BLOCK_N, BLOCK_V, warps, pipeline stages) for width CP: a few, since each costs a compile.
    The (BLOCK, CP) float32 accumulator must sit in registers: compiled for an H100 (sm_90, Triton 3.7), the 64- and
    128-row tiles stay within its 255 registers per thread up to CP = 64; at CP = 128 most of them and at CP = 256
    all of them spill to local memory (160 to 1,950 bytes per thread), where 32-row tiles with 8 warps still fit.
    Smaller tiles reread x and w more often, so both kinds are offered there and the autotuner times them. Wide
    hidden sizes need short row tiles. The vocab kernel tiles the vocabulary where the rows kernel tiles rows (swap:
    its BLOCK_V takes the rows kernel's BLOCK_N)."""
    large = [(64, 64, 4, 2), (64, 128, 8, 2), (128, 64, 8, 2), (128, 128, 8, 3)]
    tiles = ([(16, 64, 4, 2), (32, 64, 8, 2), (16, 128, 8, 2), (32, 128, 8, 2)] if cp > 256 else
             large + [(32, 32, 8, 2), (32, 64, 8, 2)] if cp > 64 else large)
    return [triton.Config({"BLOCK_N": bv, "BLOCK_V": bn} if swap else {"BLOCK_N": bn, "BLOCK_V": bv}, num_warps=w,
                          num_stages=s) for bn, bv, w, s in tiles]


_KERNELS = {"rows": _rows_kernel, "vocab": _vocab_kernel}
_TUNED = {}   # (kernel name, CP) -> the autotuned kernel


def _launch(name, n, *args, **constants):
    """Run kernel `name` over n rows (vocab: n vocabulary rows), one program per block of them."""
    block = "BLOCK_V" if name == "vocab" else "BLOCK_N"
    if INTERPRET:   # the interpreter: small fixed tiles (Triton's dot needs at least 16 x 16)
        blocks = {"BLOCK_N": 16, "BLOCK_V": 32}
        _KERNELS[name][(triton.cdiv(n, blocks[block]),)](*args, **blocks, **constants)
        return
    key = (name, constants["CP"])
    if key not in _TUNED:   # re-tuned per width and vocabulary, and per WITH_GRAD (the rows kernel's two variants)
        _TUNED[key] = triton.autotune(configs=_configs(key[1], name == "vocab"),
                                      key=["V", "C"] + ["WITH_GRAD"] * (name == "rows"))(_KERNELS[name])
    _TUNED[key][lambda meta: (triton.cdiv(n, meta[block]),)](*args, **constants)


class FusedLinearCrossEntropy(torch.autograd.Function):
    """cross_entropy(x @ weight.T, targets, ignore_index=-1): forward computes the loss and, in the same pass, the
    gradient w.r.t. x; backward recomputes the logits tile by tile for the gradient w.r.t. the weight."""

    @staticmethod
    def forward(ctx, x, weight, targets, with_grad_x):
        device_type = x.device.type
        dt = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
        xc, wc, t = x.to(dt).contiguous(), weight.to(dt).contiguous(), targets.contiguous()   # matmuls in dt
        (N, C), V = xc.shape, wc.shape[0]
        n_valid = (t != -1).sum().to(torch.float32)   # like F.cross_entropy: the mean over targets not ignored
        scale = (1 / n_valid).reshape(1)              # on the device: no host synchronisation
        lse = torch.empty(N, dtype=torch.float32, device=x.device)
        loss_rows = torch.empty(N, dtype=torch.float32, device=x.device)
        grad_x = torch.empty(N, C, dtype=x.dtype, device=x.device) if with_grad_x else lse   # (lse: unused stand-in)
        # float32 inputs multiply in full float32 ("ieee"), as the plain path does with TF32 off; bf16/fp16 ignore it
        ctx.cp, ctx.precision = max(16, triton.next_power_of_2(C)), "ieee" if dt.itemsize >= 4 else "tf32"
        _launch("rows", N, xc, wc, t, scale, lse, loss_rows, grad_x, N, V, C, CP=ctx.cp, PRECISION=ctx.precision,
                WITH_GRAD=with_grad_x)
        ctx.save_for_backward(xc, wc, t, lse, scale, grad_x if with_grad_x else None)
        ctx.w_dtype = weight.dtype
        return loss_rows.sum() / n_valid

    @staticmethod
    def backward(ctx, grad_loss):
        xc, wc, t, lse, scale, grad_x = ctx.saved_tensors
        (N, C), V = xc.shape, wc.shape[0]
        g = grad_loss.to(torch.float32).reshape(1)
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.empty(V, C, dtype=torch.float32, device=xc.device)
            _launch("vocab", V, xc, wc, t, lse, scale * g, grad_w, N, V, C, CP=ctx.cp, PRECISION=ctx.precision)
            grad_w = grad_w.to(ctx.w_dtype)
        return (grad_x * g.to(grad_x.dtype) if grad_x is not None else None), grad_w, None, None


def check_supported(device_type, C):
    """ValueError, saying what to use instead, unless the kernels can run: a CUDA device (or TRITON_INTERPRET=1) and
    a hidden size C <= MAX_C."""
    if C > MAX_C:
        raise ValueError(f"the fused loss takes hidden sizes up to {MAX_C}, got {C}: use the chunked loss")
    if device_type != "cuda" and not INTERPRET:
        raise ValueError(f"the fused loss runs Triton kernels on a CUDA device, got {device_type}: use the chunked "
                         "loss")


@torch.compiler.disable   # the kernels run as they are; a compiled model calls them through a graph break
def fused_cross_entropy(x, weight, targets):
    """The mean next-token loss of hidden states x (N, C) under head weight (V, C) with targets (N,) (-1 ignored),
    never materialising the (N, V) logits. Needs a CUDA device (or TRITON_INTERPRET=1 on CPU) and C <= MAX_C."""
    check_supported(x.device.type, x.size(-1))
    # the gradient w.r.t. x is computed with the loss, so only when it will be wanted (not in evaluation)
    return FusedLinearCrossEntropy.apply(x, weight, targets, torch.is_grad_enabled() and x.requires_grad)
