"""
fp8.py: the transformer blocks' matmuls in 8-bit floats while training (train.py --fp8), for the largest models.

At h1024-L8 the bf16 matmuls already run near the GPU's peak (62% MFU for the whole step on an H200), so no
rearranging of the bf16 step can make it much faster. An H100 or H200 multiplies float8 (E4M3: 4 exponent bits, 3
mantissa bits, largest value 448) at twice the bf16 rate. Each Linear of the blocks (not the embedding and not the
output head, whose V = 15,000 rows are no multiple of 16) then computes, in training:

    forward   y  = x @ W.T        x: a scale per row (token), W: a scale per row (output feature); float8 x float8
    backward  dx = dy @ W         dy: a scale per row (token), W: a scale per column (input feature); float8 x float8
              dW = dy.T @ x       in the autocast dtype (bf16) by default: this sum runs over the tokens, the
                                  dimension the per-token scales are on, so they cannot be taken out of it (torchao's
                                  recipe "rowwise_with_gw_hp" keeps it in high precision too). weight_grad=True
                                  (train.py --fp8_weight_grad; torchao's "rowwise") quantises both operands again,
                                  transposed, with a scale per feature (dy: per output feature, x: per input feature,
                                  each over all the tokens), and multiplies them in float8 too: a third of the blocks'
                                  matmul work more at twice the rate, for two more passes over dy and x

Scaling: each row is divided by a power of two that brings its largest |value| into (224, 448], then rounded to
float8; the matmul multiplies the float32 scales back into its output (torch._scaled_mm, "rowwise" scaling). A power
of two scales exactly, so the only error is float8's rounding: 3 mantissa bits (up to 1/16 of a value, relative) for
values down to 2^-6 of the scale, fewer below, and values under about 2^-19 of their row's largest become 0. A row's
scale needs only that row, so torch.compile may fuse the scaling into the kernel that made the row (the RMSNorm
before qkv, the SwiGLU product before down; not checked on a GPU yet). The weights stay float32 (the optimizer's
master copy); they are quantised again at each forward. In evaluation mode (train.py's val loss and sample,
evaluate.py) the Linears compute as usual, in the autocast dtype: float8 is how the model is trained, not what it is.

    from fp8 import use_fp8
    use_fp8(model)      # before the optimizer and torch.compile; -> the names of the Linears converted
    use_fp8(model, weight_grad=True)   # the weight gradients in float8 too

It changes the numbers (train.py records --fp8 in config.json; a run resumes only with the setting it started with).
Rowwise float8 matmuls need compute capability 9.0 (H100, H200) or later; CPUs run them too (slowly: for tests).
"""
import torch
import torch.nn as nn

from chunked_loss import matmul_dtype   # autocast's dtype, or x's: what nn.Linear computes in

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max   # 448.0


def check_supported(device, dtype):
    """ValueError (one line, what to do instead) where float8 matmuls cannot run: device as "cuda:1", "cpu"; dtype is
    train.py's --dtype."""
    device_type = str(device).split(":")[0]
    where = "ROCm" if device_type == "cuda" and torch.version.hip else device_type   # (ROCm has other float8 types)
    if where not in ("cuda", "cpu"):
        raise ValueError(f"float8 matmuls run on NVIDIA GPUs and CPUs here, not {where}: train without --fp8")
    if device_type == "cuda" and torch.cuda.get_device_capability(device) < (9, 0):
        raise ValueError(f"float8 rowwise matmuls need an H100-class GPU (compute capability 9.0+), this is "
                         f"{torch.cuda.get_device_name(device)} {torch.cuda.get_device_capability(device)}: train "
                         "without --fp8")
    if device_type == "cuda" and dtype != "bfloat16":   # the GPU's rowwise kernels write bf16 only
        raise ValueError(f"float8 matmuls on a GPU run under bfloat16 autocast, not {dtype}: --dtype bfloat16")


def to_fp8_rows(t):
    """t (R, K) -> (q (R, K) float8 E4M3, scale (R, 1) float32) with t ~= q * scale; each row's scale is the power of
    two that brings its largest |value| to at most 448 (an all-zero row gets a tiny scale and stays zero)."""
    amax = t.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-30)            # (R, 1)
    scale = torch.exp2(torch.ceil(torch.log2(amax / E4M3_MAX)))                    # (R, 1), a power of two
    q = (t.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3).contiguous()       # (R, K); the clamp: rounding
    return q, scale


def scaled_mm(aq, a_scale, bq, b_scale, out_dtype):
    """(aq * a_scale) @ (bq * b_scale).T for float8 aq (M, K), bq (N, K) and their row scales (M, 1), (N, 1): float8
    products summed (on a GPU in the tensor cores' own accumulator, a little narrower than float32), the scales
    applied to the sum. -> (M, N) in out_dtype."""
    # _scaled_mm wants its second operand column-major: bq.t() is (K, N) on bq's row-major storage. GPUs' rowwise
    # kernels write bf16 (float32 only in some versions): a float32 product is cast up from it there. use_fast_accum:
    # the rowwise kernels are only fast with it (torchao's rowwise recipes set it for every float8 matmul); without it
    # the kernel moves its partial sums into float32 every few steps along K. CPUs ignore it
    dt = out_dtype if aq.device.type == "cpu" else torch.bfloat16
    return torch._scaled_mm(aq, bq.t(), scale_a=a_scale, scale_b=b_scale.t(), out_dtype=dt,
                            use_fast_accum=True).to(out_dtype)


class FP8Matmul(torch.autograd.Function):
    """x (M, K) @ weight (N, K).T with float8 operands in the forward and input-gradient matmuls, and with weight_grad
    in the weight-gradient one too (module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, weight_grad=False):
        xq, xs = to_fp8_rows(x)                                  # (M, K), (M, 1): a scale per token
        wq, ws = to_fp8_rows(weight)                             # (N, K), (N, 1): a scale per output feature
        ctx.save_for_backward(x, weight)
        ctx.weight_grad = weight_grad and x.size(0) % 16 == 0   # (the tokens are that matmul's inner dimension)
        return scaled_mm(xq, xs, wq, ws, x.dtype)                # (M, N)

    @staticmethod
    def backward(ctx, grad_y):                                   # grad_y (M, N)
        x, weight = ctx.saved_tensors
        gq, gs = to_fp8_rows(grad_y)                             # (M, N), (M, 1): a scale per token
        wtq, wts = to_fp8_rows(weight.t())                       # (K, N), (K, 1): a scale per input feature
        grad_x = scaled_mm(gq, gs, wtq, wts, x.dtype)            # (M, K)
        if ctx.weight_grad:                                      # summed over the tokens: scales per feature
            gtq, gts = to_fp8_rows(grad_y.t())                   # (N, M), (N, 1): a scale per output feature
            xtq, xts = to_fp8_rows(x.t())                        # (K, M), (K, 1): a scale per input feature
            grad_w = scaled_mm(gtq, gts, xtq, xts, x.dtype)      # (N, K)
        else:
            grad_w = grad_y.to(x.dtype).t() @ x                  # (N, K), in x's dtype (bf16 under autocast)
        return grad_x, grad_w.to(weight.dtype), None


class FP8Linear(nn.Linear):
    """An nn.Linear (no bias) that multiplies in float8 in training mode, as usual in evaluation mode;
    fp8_weight_grad: its weight gradient in float8 too."""
    fp8_weight_grad = False

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        y = FP8Matmul.apply(x.reshape(-1, x.size(-1)).to(matmul_dtype(x)), self.weight,   # (B*T, out_features)
                            self.fp8_weight_grad)
        return y.view(*x.shape[:-1], -1)


def use_fp8(model, weight_grad=False):
    """Turn every Linear of model.blocks into an FP8Linear, in place: the same Parameter objects, the same state_dict;
    weight_grad: their weight gradients in float8 too. Call it before creating the optimizer and compiling. Returns the
    names of the Linears converted; ValueError if one has a size that is no multiple of 16 (float8 matmuls need them;
    n_embd is a multiple of 2 x 8 heads)."""
    linears = {f"blocks.{name}": m for name, m in model.blocks.named_modules() if isinstance(m, nn.Linear)}
    for name, m in linears.items():
        if m.in_features % 16 or m.out_features % 16 or m.bias is not None:
            raise ValueError(f"{name} is {m.in_features} -> {m.out_features}{' with a bias' * (m.bias is not None)}:"
                             " float8 matmuls need sizes that are multiples of 16 and no bias")
    for m in linears.values():
        m.__class__ = FP8Linear   # only forward differs: weight, hooks and registrations are kept
        m.fp8_weight_grad = weight_grad
    return list(linears)
