"""
fused_loss.py: the output head and the cross-entropy in two Triton kernels that never write the logits to memory.

    from fused_loss import fused_cross_entropy
    loss = fused_cross_entropy(x, weight, targets)   # x (N, C), weight (V, C), targets (N,) with -1 ignored
    # == F.cross_entropy(x @ weight.T, targets, ignore_index=-1), the same gradients, no (N, V) tensor anywhere
    # (to float32 rounding: the kernels work in float32, float64 inputs are multiplied in float32)

Why: at the paper's 512 x 128 tokens per step and V = 15,000 the logits are 65,536 x 15,000. The plain path writes
them (2 GB in bf16), reads them for the log-sum-exp, reads them again in backward for softmax - onehot, writes that
gradient and reads it twice for the two gradient matmuls: 6 x 2 GB = 12 GB through device memory per step, ~4 ms at
3 TB/s, while the small models' matmuls take less. Here each program keeps a tile of logits in registers,
FlashAttention-style, and memory sees x, the weight, their gradients and two floats per row (the log-sum-exp and
the row's loss).

The gradient of the loss of row n w.r.t. its hidden state is  softmax(z_n) @ w - w[t_n]  (z_n = w @ x_n, its logits):
a softmax-weighted mean of the weight's rows minus the target's row. The first term is attention, with x as the
queries and w as both the keys and the values, so the kernel that computes the loss can compute it in the same pass,
as FlashAttention's forward does:

    rows   one program per BLOCK_N rows, looping over the vocabulary in BLOCK_V columns:
           z = x @ w.T tile; the online max m and sum s of exp(z - m), and (training) acc = sum of exp(z - m) @ w,
           rescaled whenever m grows          -> lse = m + log s, loss_n = lse - x.w[t], grad_x = acc / s - w[t]
    vocab  (backward) one program per BLOCK_V vocabulary rows, looping over all N rows: recompute z, the
           softmax p = exp(z - lse), dz = (p - onehot(t)) * g / n_valid, accumulate dz.T @ x   -> grad_w (BLOCK_V, C)

Why not grad_w in the rows pass too: a tile's p = exp(z - lse) needs its rows' final lse, known only after the loop
over the whole vocabulary. grad_x gets around that with one accumulator per row, rescaled as the max grows and
divided by s at the end; grad_w sums over all rows, each with its own lse, so it needs the second pass (or atomic
adds from every program). Sums run in float32: s and acc add up to V = 15,000 terms, and tensor cores accumulate
in float32 at no extra cost.

At small C these loops are bound by what each SM can issue (128 instructions per clock) and by its exponential unit
(16 per clock, one per logit), not by the matmuls (tensor cores) or memory, so the element-wise work is kept lean:
exponentials as exp2 of a multiply-add (tl.exp compiles to six instructions with denormal handling; softmax terms
below 2^-126 do not matter; packed half-precision ones would not halve the count: PTX's ex2.approx.f16x2 compiles
for sm_90 to one MUFU.EX2.F16 per half), only the rows kernel's last tile masks the columns past V, the vocab kernel
never masks them (those rows of its accumulator are not stored) and scales its tile once at the end. Compiled for an
H100 (tests/h100_resources.py), a 64 x 64 tile at C = 32 with 4 warps takes 259 instructions per thread in the rows
loop and 314 in the vocab loop (17.9 per logit), from 454 and 629 with tl.exp and masks everywhere; the earlier
three-kernel version (SPEED.md's H100 figures) took 518 + 474 + 629 (50.7). On an H200 at h32-L2 (65,536 rows, V =
15,000) the rows kernel took 0.45 ms and the vocab kernel 0.73 ms, against some 0.25 ms each for one exponential per
logit. The vocab kernel then had V / BLOCK_V programs (118 with 128-row tiles, for 132 SMs), each looping over every
row; its rows are now also tried in MAX_SPLIT chunks on a second grid axis (partial sums added after it: 4 copies of
the weight's gradient in float32), which the autotuner keeps where it is faster (not yet run on a GPU).

The price is computing the logits twice (4 matmuls of N x C x V instead of the plain path's 3), cheap while C is
small, where the memory traffic dominates; at C >= 512 the matmuls dominate and chunked_loss.py is the better
choice (the earlier three-kernel version, with five head matmuls, ran at 0.74x the plain path at h512-L4 on an H100;
this one, traced, at 0.78x at h1024-L8 on an H200; h512 not yet measured). The kernels hold a (BLOCK, C) float32
accumulator in registers, so C is at most MAX_C here. Checked against the plain loss on the CPU through Triton's
interpreter in float32 (TRITON_INTERPRET=1, tests/test_fused_loss.py; the interpreter cannot multiply bf16);
tests/test_gpu.py checks bf16 on a GPU (passed on an H200), and tests/gpu_check.sh runs tests/test_fused_loss.py there
too.
"""
import os

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from chunked_loss import check_targets, matmul_dtype   # the target rule every loss shares; autocast's dtype or x's

LOG2E = tl.constexpr(1.4426950408889634)   # exp(x) = exp2(x * LOG2E): exp2 is the GPU's one-instruction exponential
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
def _softmax_tile(x, w, cols, V, m, s, acc, LAST: tl.constexpr, WITH_GRAD: tl.constexpr, PRECISION: tl.constexpr):
    """One vocabulary tile of the rows kernel: logits z = x @ w.T, then the running max m, the sum s of exp(z - m)
    and (training) acc, the sum of exp(z - m) * w[v], each rescaled when m grows. LAST: the tile that runs past the
    vocabulary (only that one pays for masking the columns >= V)."""
    z = tl.dot(x, tl.trans(w), input_precision=PRECISION)                                 # (BN, BV) float32
    if LAST:
        z = tl.where(cols[None, :] < V, z, float("-inf"))
    m_new = tl.maximum(m, tl.max(z, 1))
    alpha = tl.math.exp2((m - m_new) * LOG2E)            # rescales what was summed under the old max
    p = tl.math.exp2(z * LOG2E - (m_new * LOG2E)[:, None])   # exp(z - m_new): one multiply-add and one exp2
    s = s * alpha + tl.sum(p, 1)
    if WITH_GRAD:
        acc = acc * alpha[:, None] + tl.dot(p.to(w.dtype), w, input_precision=PRECISION)     # (BN, BV) @ (BV, CP)
    return m_new, s, acc


@triton.jit
def _rows_kernel(x_ptr, w_ptr, t_ptr, inv_n_ptr, lse_ptr, loss_ptr, gx_ptr, N, V, C, BLOCK_N: tl.constexpr,
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
    v_full = V - V % BLOCK_V
    for v0 in range(0, v_full, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)                                                  # (BV,)
        m, s, acc = _softmax_tile(x, _load_tile(w_ptr, cols, ks, V, C), cols, V, m, s, acc, False, WITH_GRAD,
                                  PRECISION)
    if v_full < V:
        cols = v_full + tl.arange(0, BLOCK_V)
        m, s, acc = _softmax_tile(x, _load_tile(w_ptr, cols, ks, V, C), cols, V, m, s, acc, True, WITH_GRAD,
                                  PRECISION)
    lse = m + tl.log(s)
    tl.store(lse_ptr + rows, lse, mask=rows < N)
    tl.store(loss_ptr + rows, tl.where(t >= 0, lse - z_t, 0.0), mask=rows < N)
    if WITH_GRAD:   # the gradient of x: (softmax @ w - w[t]) / n_valid; ignored (and out-of-range) rows get none
        row_scale = tl.where(t >= 0, tl.load(inv_n_ptr), 0.0)
        gx = (acc / s[:, None] - w_t.to(tl.float32)) * row_scale[:, None]
        tl.store(gx_ptr + rows[:, None] * C + ks[None, :], gx.to(gx_ptr.dtype.element_ty),
                 mask=(rows[:, None] < N) & (ks[None, :] < C))


@triton.jit
def _vocab_kernel(x_ptr, w_ptr, t_ptr, lse_ptr, gw_scale_ptr, gw_ptr, N, V, C,
                  BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, CP: tl.constexpr, PRECISION: tl.constexpr,
                  SPLIT: tl.constexpr):
    # program (i, j): vocabulary tile i, summed over the j-th of SPLIT chunks of the rows into slice j of gw (MAX_SPLIT,
    # V, C), which the caller sums (V / BLOCK_V programs alone, each over every row, leave a large GPU's SMs idle).
    # Programs j >= SPLIT have no rows: they store zeros, so every slice is written whatever SPLIT the autotuner picks.
    cols = tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)                              # (BV,)
    ks = tl.arange(0, CP)
    w = _load_tile(w_ptr, cols, ks, V, C)                                                  # (BV, CP)
    acc = tl.zeros((BLOCK_V, CP), tl.float32)
    chunk = tl.cdiv(tl.cdiv(N, SPLIT), BLOCK_N) * BLOCK_N   # whole tiles: no tile spans two chunks
    start = tl.program_id(1) * chunk
    for n0 in range(start, tl.minimum(start + chunk, N), BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        x = _load_tile(x_ptr, rows, ks, N, C)                                              # (BN, CP)
        t = tl.load(t_ptr + rows, mask=rows < N, other=-1).to(tl.int32)
        lse = tl.load(lse_ptr + rows, mask=rows < N, other=0.0)
        shift = tl.where(t >= 0, lse * LOG2E, float("inf"))   # ignored rows: exp2(-inf) = 0, and t = -1 hits no column
        z = tl.dot(x, tl.trans(w), input_precision=PRECISION)                             # (BN, BV) recomputed
        # softmax - onehot(t); columns past the vocabulary (zero weight rows) get exp(-lse), but their rows of acc
        # are never stored
        dz = tl.math.exp2(z * LOG2E - shift[:, None]) - tl.where(cols[None, :] == t[:, None], 1.0, 0.0)
        acc += tl.dot(tl.trans(dz.to(x.dtype)), x, input_precision=PRECISION)              # (BV, BN) @ (BN, CP)
    acc *= tl.load(gw_scale_ptr)                         # g / n_valid, once per program rather than per logit
    gw_ptr += tl.program_id(1) * V * C                   # this chunk's slice
    tl.store(gw_ptr + cols[:, None] * C + ks[None, :], acc, mask=(cols[:, None] < V) & (ks[None, :] < C))

# -----------------------------------------------------------------------------
# Launching: on a GPU each kernel picks its block sizes by timing a few candidates once per (C, V) (triton.autotune);
# the interpreter runs one small fixed configuration.
#
# Candidate tiles (BLOCK_N, BLOCK_V, warps, pipeline stages) of each kernel, by width (the first key >= CP); the
# autotuner times them on the GPU. Chosen by compiling 54 tiles per kernel and width (blocks of 32 to 128, 2 to 8
# warps, 1 or 2 stages; at 512 and 1024, 32 tiles of 2 stages) for an H100 (sm_90, Triton 3.7) without a GPU
# (tests/h100_resources.py): of those that fit its 227 KiB of shared memory, the ones with the fewest loop
# instructions per logit and no register spills inside the loop (at C = 256 the first rows tile spills outside it),
# preferring large tiles (x and w are reread once per tile) and, for the vocab kernel, enough programs (V / BLOCK_V)
# to fill 132 SMs (each tile is also tried with its rows in MAX_SPLIT chunks, for MAX_SPLIT times the programs).
# One pipeline stage (no prefetch of the next tile's loads) takes fewer instructions than two at C = 32, 128 and 256,
# and as many registers or fewer (at 256, where both fill the 255 a thread has, fewer spills). Loop instructions per
# logit of the first tile: rows 6.0 at C = 32, 7.8 at 128, 11.5 at 256, 181 at 1024 (with 24 spill loads and
# stores: at that width every fast tile spills); vocab 7.0, 8.4, 13.3, 155. Too few warps for a tile spill; too many
# make each warp group repeat the softmax (64 x 64 with 8 warps at C = 256: 28.4 per logit). The tiles with the
# fewest instructions fill an SM's registers with 8 warps (2 per scheduler), too few to hide the latency of one warp's
# exponentials, matmuls and loads behind the others', one suspect for the kernels running at a half and a third of
# the rate of their exponentials on an H200 (see above): so at C <= 64, where smaller tiles fit more warps, those are
# tried too (at C = 32, rows 128 x 64 with 8 warps: 16 warps per SM at 7.1 instructions per logit, 64 x 64 with 4:
# 20 at 7.2, 64 x 32: 28 at 9.1; vocab 64 x 64: 16 at 8.2; at C = 64 they hold 12 to 16).
TILES = {64: {"rows": [(128, 128, 8, 1), (64, 128, 4, 1), (128, 128, 4, 2), (128, 64, 8, 1), (64, 64, 4, 1),
                       (64, 32, 4, 1)],
              "vocab": [(64, 128, 4, 1), (128, 128, 8, 1), (64, 128, 4, 2), (64, 64, 4, 1), (128, 64, 8, 1)]},
         128: {"rows": [(128, 128, 8, 1), (128, 128, 4, 2), (64, 128, 4, 1), (64, 64, 4, 1)],
               "vocab": [(128, 128, 8, 1), (128, 128, 8, 2), (64, 64, 4, 1), (128, 64, 8, 1), (128, 64, 4, 2)]},
         256: {"rows": [(128, 128, 8, 1), (128, 128, 8, 2), (128, 64, 8, 1), (64, 64, 4, 1)],
               "vocab": [(64, 64, 4, 1), (128, 64, 8, 1), (64, 64, 4, 2), (128, 64, 8, 2), (32, 128, 8, 1)]},
         512: {"rows": [(64, 64, 8, 2), (32, 128, 8, 2), (32, 64, 8, 2), (64, 32, 8, 2)],
               "vocab": [(64, 32, 4, 2), (128, 32, 8, 2), (32, 64, 8, 2), (32, 32, 4, 2)]},
         1024: {"rows": [(16, 64, 4, 2), (32, 32, 8, 2), (16, 32, 8, 2), (16, 32, 4, 2)],
                "vocab": [(32, 32, 8, 2), (64, 32, 8, 2), (16, 32, 8, 2), (16, 16, 4, 2)]}}


MAX_SPLIT = 4   # the vocab kernel sums its rows in 1 or MAX_SPLIT chunks: its tiles are timed both ways


def _configs(name, cp):
    """The autotuner's candidates for kernel `name` at width CP (a power of two <= MAX_C)."""
    tiles = TILES[min(k for k in TILES if k >= cp)][name]
    splits = [{"SPLIT": 1}, {"SPLIT": MAX_SPLIT}] if name == "vocab" else [{}]
    return [triton.Config({"BLOCK_N": bn, "BLOCK_V": bv, **sp}, num_warps=w, num_stages=stages)
            for sp in splits for bn, bv, w, stages in tiles]


_KERNELS = {"rows": _rows_kernel, "vocab": _vocab_kernel}
# (kernel name, CP) -> the autotuned kernel, re-tuned per width and vocabulary, and per WITH_GRAD (the rows kernel's
# two variants). Made here, not at the first call, so that torch.compile can trace a call (nothing compiles until then).
# Every output is stored, never accumulated into, so the autotuner's trial runs need no reset_to_zero.
_TUNED = {(name, cp): triton.autotune(configs=_configs(name, cp),
                                      key=["V", "C", "WITH_GRAD"] if name == "rows" else ["V", "C"])(k)
          for name, k in _KERNELS.items() for cp in (16, 32, 64, 128, 256, 512, 1024)}


def _launch(name, n, *args, **constants):
    """Run kernel `name` over n rows (vocab: n vocabulary rows), one program per block of them."""
    block = "BLOCK_V" if name == "vocab" else "BLOCK_N"
    splits = MAX_SPLIT if name == "vocab" else 1   # (the grid's second axis: every slice of the vocab kernel's output)
    if INTERPRET:   # the interpreter: small fixed tiles (Triton's dot needs at least 16 x 16), the rows in 2 chunks
        blocks = {"BLOCK_N": 16, "BLOCK_V": 32} | ({"SPLIT": 2} if name == "vocab" else {})
        _KERNELS[name][(triton.cdiv(n, blocks[block]), splits)](*args, **blocks, **constants)
        return
    try:
        _TUNED[name, constants["CP"]][lambda meta: (triton.cdiv(n, meta[block]), splits)](*args, **constants)
    except OutOfResources as e:   # smaller GPUs (an RTX 4090 has 99 KiB of shared memory) at the widest sizes
        raise RuntimeError(f"the fused loss: no tile of its {name} kernel fits this GPU at hidden size "
                           f"{constants['CP']} ({e}); use the chunked loss") from None


class FusedLinearCrossEntropy(torch.autograd.Function):
    """cross_entropy(x @ weight.T, targets, ignore_index=-1): forward computes the loss and, in the same pass, the
    gradient w.r.t. x; backward recomputes the logits tile by tile for the gradient w.r.t. the weight."""

    @staticmethod
    def forward(ctx, x, weight, targets, with_grad_x):
        dt = matmul_dtype(x)
        if dt == torch.float64:   # the kernels work in float32 (a float64 dot would change their loops' types)
            dt = torch.float32
        xc, wc, t = x.to(dt).contiguous(), weight.to(dt).contiguous(), targets.contiguous()   # matmuls in dt
        (N, C), V = xc.shape, wc.shape[0]
        n_valid = (t != -1).sum().to(torch.float32)   # like F.cross_entropy: the mean over targets not ignored
        # on the device (no host synchronisation); every target ignored: loss NaN as F.cross_entropy, gradients 0
        scale = (1 / n_valid.clamp(min=1)).reshape(1)
        lse = torch.empty(N, dtype=torch.float32, device=x.device)
        loss_rows = torch.empty(N, dtype=torch.float32, device=x.device)
        # float32 until backward scales it (it holds 1 / n_valid already: tiny numbers, too small for float16)
        grad_x = torch.empty(N, C, dtype=torch.float32, device=x.device) if with_grad_x else lse   # (lse: a stand-in)
        # float32 inputs multiply in full float32 ("ieee"), as the plain path does with TF32 off; bf16/fp16 ignore it
        ctx.cp, ctx.precision = max(16, triton.next_power_of_2(C)), "ieee"
        _launch("rows", N, xc, wc, t, scale, lse, loss_rows, grad_x, N, V, C, CP=ctx.cp, PRECISION=ctx.precision,
                WITH_GRAD=with_grad_x)
        ctx.save_for_backward(xc, wc, t, lse, scale, grad_x if with_grad_x else None)
        ctx.x_dtype, ctx.w_dtype = x.dtype, weight.dtype
        return loss_rows.sum() / n_valid

    @staticmethod
    def backward(ctx, grad_loss):
        xc, wc, t, lse, scale, grad_x = ctx.saved_tensors
        (N, C), V = xc.shape, wc.shape[0]
        g = grad_loss.to(torch.float32).reshape(1)
        grad_w = None
        if ctx.needs_input_grad[1]:
            # float32: summed over all N rows and multiplied by a GradScaler's g (65,536 is infinite in float16);
            # under autocast the weight is a float32 parameter, so the cast below does nothing
            parts = torch.empty(MAX_SPLIT, V, C, dtype=torch.float32, device=xc.device)   # one per chunk of rows
            _launch("vocab", V, xc, wc, t, lse, scale * g, parts, N, V, C, CP=ctx.cp, PRECISION=ctx.precision)
            grad_w = parts.sum(0).to(ctx.w_dtype)
        return ((grad_x * g).to(ctx.x_dtype) if grad_x is not None else None), grad_w, None, None


def check_supported(device_type, C):
    """ValueError, saying what to use instead, unless the kernels can run: a CUDA device (or TRITON_INTERPRET=1) and
    a hidden size C <= MAX_C."""
    if C > MAX_C:
        raise ValueError(f"the fused loss takes hidden sizes up to {MAX_C}, got {C}: use the chunked loss")
    if device_type != "cuda" and not INTERPRET:
        raise ValueError(f"the fused loss runs Triton kernels on a CUDA device, got {device_type}: use the chunked "
                         "loss")


def fused_cross_entropy(x, weight, targets):
    """The mean next-token loss of hidden states x (N, C) under head weight (V, C) with targets (N,) (-1 ignored),
    never materialising the (N, V) logits. Needs a CUDA device (or TRITON_INTERPRET=1 on CPU) and C <= MAX_C."""
    if x.dim() != 2 or weight.dim() != 2 or weight.size(1) != x.size(1) or targets.shape != x.shape[:1]:
        raise ValueError(f"the fused loss takes x (N, C), weight (V, C) and targets (N,), got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)} and {tuple(targets.shape)}")   # the kernels would read past them
    if max(x.numel(), MAX_SPLIT * weight.numel()) >= 2 ** 31:   # the kernels' offsets (row * C + k) are 32-bit
        raise ValueError(f"the fused loss indexes with 32-bit offsets: x {tuple(x.shape)} or {MAX_SPLIT} copies of "
                         f"the head weight {tuple(weight.shape)} have 2^31 elements or more: use a smaller "
                         "--micro_batch_size or the chunked loss")
    check_supported(x.device.type, x.size(-1))   # (after the shapes: a test gives a 'meta' x, on a GPU machine too)
    check_targets(targets, weight.size(0))
    # the gradient w.r.t. x is computed with the loss, so only when it will be wanted (not in evaluation)
    return FusedLinearCrossEntropy.apply(x, weight, targets, torch.is_grad_enabled() and x.requires_grad)


# Under torch.compile: by default the kernels run as they are, through a graph break (the compiled graph stops before
# the loss and a second one starts after it; launches outside the graphs are not replayed by CUDA graphs). With
# FUSED_LOSS_TRACE=1 torch.compile traces them into the model's graph instead (the autotuned kernels are made at import
# for that: tracing cannot create them), so inductor compiles them with the rest and CUDA graphs cover the whole step.
# Checked on CPU (tests/test_fused_loss.py) and on an H200 (tests/test_gpu.py), where it was 1.09x faster at h32-L2
# in one pair of runs; opt-in until train.py has run with it on a GPU (tests/gpu_check.sh does).
TRACE = os.environ.get("FUSED_LOSS_TRACE") == "1"
if not TRACE:
    fused_cross_entropy = torch.compiler.disable(fused_cross_entropy)
