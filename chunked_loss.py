"""
chunked_loss.py: the output head and the cross-entropy without the full (N, V) logits (train.py --loss chunked).

    from chunked_loss import chunked_cross_entropy
    loss = chunked_cross_entropy(x, weight, targets, 8192)   # x (N, C), weight (V, C), targets (N,), -1 ignored
    # == F.cross_entropy(x @ weight.T, targets, ignore_index=-1), the same gradients (to rounding)

At the paper's 512 x 128 tokens per step and V = 15,000 the logits are 65,536 x 15,000: 2 GB in bf16, 4 GB more for
their float32 copy and as much again for their gradient. For the small models that traffic, not the matmuls, is
most of a step. Here the rows go through the head a chunk at a time; since the loss is a scalar, each chunk's
gradients w.r.t. the hidden states and the head weight are taken right away, in the forward pass, and kept (they
are only (N, C) and (V, C)), so backward only scales them: no logits are stored or recomputed. Chunking bounds the
memory (a chunk's logits at a time), not the traffic: each chunk's logits, their float32 copy and their gradient
still go through device memory, so on a GPU it runs at the plain path's speed. fused_loss.py removes the traffic.

matmul_dtype and check_targets are shared with fused_loss.py (the other loss that never holds the logits) and fp8.py.
"""
import torch


def matmul_dtype(x):
    """The dtype a matmul of x runs in, as nn.Linear's would: autocast's where it is on for x's device, else x's."""
    device_type = x.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype


def _chunk_loss_and_grads(x, weight, targets, chunk, with_grads):
    """x (N, C), weight (V, C), targets (N,) with -1 ignored -> mean loss (a float32 scalar), and if with_grads its
    gradients w.r.t. x and weight (float32). Matmuls run in the autocast dtype when autocast is on (as lm_head
    would), the softmax and the sums in float32 (float64 for float64 inputs)."""
    device_type, dt = x.device.type, matmul_dtype(x)
    acc = torch.promote_types(dt, torch.float32)   # softmax and accumulation dtype
    check_targets(targets, weight.size(0))
    n_valid = (targets != -1).sum().to(acc)        # like F.cross_entropy: the mean over the targets not ignored
    grad_scale = 1 / n_valid.clamp(min=1)          # every target ignored: loss NaN (as F.cross_entropy), grads 0
    loss = torch.zeros((), dtype=acc, device=x.device)
    grad_x = torch.empty(x.shape, dtype=acc, device=x.device) if with_grads else None
    grad_w = torch.zeros(weight.shape, dtype=acc, device=x.device) if with_grads else None
    w = weight.to(dt)
    with torch.autocast(device_type, enabled=False):
        for s in range(0, x.size(0), chunk):
            xc, tc = x[s:s + chunk].to(dt), targets[s:s + chunk]              # (n, C), (n,)
            logits = (xc @ w.t()).to(acc)                                      # (n, V), in acc
            keep = tc != -1
            safe = tc.clamp(min=0)                                             # ignored rows pick 0, then drop out
            target_logit = logits.gather(1, safe[:, None])[:, 0]               # (n,)
            # softmax as exp(z - max) / sum, in place of the logits: exp(z - lse) would carry lse's rounding into
            # every probability, which a large shared offset of the logits makes large
            top = logits.amax(dim=-1, keepdim=True)                            # (n, 1)
            g = logits.sub_(top).exp_()                                        # (n, V)
            total = g.sum(dim=-1, keepdim=True)                                # (n, 1)
            loss += ((top[:, 0] + total[:, 0].log() - target_logit) * keep).sum()   # lse - target logit
            if with_grads:
                # d loss / d logits = (softmax - onehot(target)) / n_valid on kept rows, 0 on ignored ones; the
                # 1 / n_valid comes after the matmuls, so g stays in [-1, 1] (float16 would flush g / n_valid to 0)
                g.div_(total)
                g.scatter_add_(1, safe[:, None], -keep[:, None].to(acc))
                g = g.mul_(keep.to(acc)[:, None]).to(dt)
                grad_x[s:s + chunk] = (g @ w).to(acc) * grad_scale             # (n, C)
                # summed over up to `chunk` rows before the 1 / n_valid: in float32 when float16 could overflow
                wide = torch.float32 if dt == torch.float16 else dt
                grad_w += (g.t().to(wide) @ xc.to(wide)).to(acc)              # (V, C)
    return loss / n_valid, grad_x, (grad_w * grad_scale if with_grads else None)


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """cross_entropy(x @ weight.T, targets, ignore_index=-1) with the gradients computed in forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, x, weight, targets, chunk):
        loss, grad_x, grad_w = _chunk_loss_and_grads(x, weight, targets, chunk, with_grads=True)
        ctx.save_for_backward(grad_x, grad_w)
        ctx.dtypes = x.dtype, weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):   # scaled in float32: a GradScaler's 65536 is infinite in float16
        grad_x, grad_w = ctx.saved_tensors
        g = grad_loss.to(grad_x.dtype)
        return (grad_x * g).to(ctx.dtypes[0]), (grad_w * g).to(ctx.dtypes[1]), None, None


def check_targets(targets, V):
    """RuntimeError unless every target is -1 (ignored) or a token id in [0, V): the plain loss refuses others, and
    the chunked and fused ones would silently count them wrong. Asynchronous on a GPU (no host synchronisation);
    compiled, it becomes a device-side assert in the generated kernels."""
    torch._assert_async(((targets == -1) | ((targets >= 0) & (targets < V))).all(),
                        "loss targets must be -1 (ignored) or token ids in [0, vocab_size)")


def chunked_cross_entropy(x, weight, targets, chunk):
    """The mean next-token loss of hidden states x (N, C) under head weight (V, C), targets (N,) (-1 ignored), computed
    `chunk` rows at a time: memory O(chunk * V) instead of O(N * V). Equal to F.cross_entropy(x @ weight.T, targets,
    ignore_index=-1) in value and gradients (up to float rounding)."""
    if chunk < 1:
        raise ValueError(f"loss chunk must be >= 1 rows, got {chunk}")
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return ChunkedLinearCrossEntropy.apply(x, weight, targets, chunk)
    return _chunk_loss_and_grads(x, weight, targets, chunk, with_grads=False)[0]   # evaluation: no gradient work
