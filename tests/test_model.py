import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from chunked_loss import chunked_cross_entropy
from model import GPT, PAPER_GRID, GPTConfig, apply_rope, config_from_name, load_checkpoint, mfu, peak_flops, rope_cos_sin

# The paper's parameter table (V = 15,000), rows h, columns L = 2, 4, 8.
PAPER_TABLE = {
    32: (992_928, 1_025_824, 1_091_616),
    64: (2_051_392, 2_182_720, 2_445_376),
    128: (4_364_928, 4_889_728, 5_939_328),
    256: (9_778_432, 11_876_608, 16_072_960),
    512: (23_751_168, 32_141_824, 48_923_136),
    1024: (64_279_552, 97_838_080, 164_955_136),
}


def test_grid_parameter_counts_equal_the_paper_table():
    assert len(PAPER_GRID) == 18
    for name in PAPER_GRID:
        h, L = (int(s[1:]) for s in name.split("-"))
        with torch.device("meta"):   # shapes only: the 165M model costs no memory or init time
            model = GPT(config_from_name(name, vocab_size=15000))
        expected = PAPER_TABLE[h][(2, 4, 8).index(L)]
        assert model.num_params() == expected, name
        assert sum(p.numel() for p in model.parameters()) == expected, name
        assert model.num_params(non_embedding=True) == expected - 2 * 15000 * h, name
        assert model.config.n_head == 8 and model.config.block_size == 128 and model.config.rope_base == 10000


def test_architecture_has_no_biases_untied_head_and_paper_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_embd=128, vocab_size=2000))
    assert all(not name.endswith("bias") for name, _ in model.named_parameters())
    assert model.wte.weight.data_ptr() != model.lm_head.weight.data_ptr()
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            assert torch.all(p == 1), name
        else:
            assert abs(p.std().item() - 0.02) < 0.001 and abs(p.mean().item()) < 0.001, name
    assert model.blocks[0].mlp.gate.weight.shape == (512, 128)   # SwiGLU inner size 4h
    assert model.norm.eps == 1e-6


def test_bad_names_and_shapes_are_refused():
    with pytest.raises(ValueError, match="h<hidden>-L<layers>"):
        config_from_name("gpt2")
    with pytest.raises(ValueError, match="multiple of 2 \\* n_head"):
        GPTConfig(n_embd=40)


# --- a plain reference written here, in float64, with its own RoPE (complex numbers) and attention (explicit mask)

def reference_rope(x, positions, base):
    """x (..., T, hd): pair (x[i], x[i + hd/2]) as a complex number, turned by position * base^(-2i/hd)."""
    half = x.shape[-1] // 2
    theta = torch.tensor([[p * base ** (-2 * i / x.shape[-1]) for i in range(half)] for p in positions],
                         dtype=torch.float64)
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(torch.ones_like(theta), theta)
    return torch.cat([z.real, z.imag], dim=-1)


def reference_logits(model, idx):
    c = model.config
    w = {k: v.detach().double() for k, v in model.state_dict().items()}
    B, T = idx.shape
    h, nh = c.n_embd, c.n_head
    hd = h // nh

    def rms(x, weight):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + c.norm_eps) * weight

    positions = [t / c.rope_scale for t in range(T)]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    x = w["wte.weight"][idx]
    for layer in range(c.n_layer):
        p = f"blocks.{layer}."
        a = rms(x, w[p + "attn_norm.weight"])
        q, k, v = (a @ w[p + "attn.qkv.weight"].T).split(h, dim=-1)
        q, k, v = (t.view(B, T, nh, hd).transpose(1, 2) for t in (q, k, v))
        q, k = reference_rope(q, positions, c.rope_base), reference_rope(k, positions, c.rope_base)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(hd)).masked_fill(~causal, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, h)
        x = x + y @ w[p + "attn.proj.weight"].T
        m = rms(x, w[p + "mlp_norm.weight"])
        x = x + (F.silu(m @ w[p + "mlp.gate.weight"].T) * (m @ w[p + "mlp.up.weight"].T)) @ w[p + "mlp.down.weight"].T
    return rms(x, w["norm.weight"]) @ w["lm_head.weight"].T


# head_dim 4 (h32, the paper's smallest) and 6 go through the zero-padded attention, 8 does not
@pytest.mark.parametrize("rope_scale,n_embd", [(1.0, 32), (2.0, 32), (1.0, 48), (1.0, 64)])
def test_model_matches_plain_reference(rope_scale, n_embd):
    torch.manual_seed(1)
    model = GPT(GPTConfig(n_layer=2, n_embd=n_embd, vocab_size=50, block_size=12, rope_scale=rope_scale))
    for p in model.parameters():   # norms away from 1, so a wrong norm weight would show
        p.data += 0.05 * torch.randn_like(p)
    idx = torch.randint(0, 50, (3, 20 if rope_scale > 1 else 12))
    targets = torch.randint(0, 50, idx.shape)
    logits, loss = model(idx, targets)
    ref = reference_logits(model, idx)
    assert logits.shape == (*idx.shape, 50)
    torch.testing.assert_close(logits.double(), ref, atol=2e-5, rtol=1e-4)
    ref_loss = F.cross_entropy(ref.view(-1, 50), targets.view(-1))
    assert abs(loss.item() - ref_loss.item()) < 1e-5
    targets[0, :5] = -1                     # ignored positions do not count
    _, partial = model(idx, targets)
    keep = targets.view(-1) != -1
    assert abs(partial.item() - F.cross_entropy(ref.view(-1, 50)[keep], targets.view(-1)[keep]).item()) < 1e-5


def test_rope_rotation_interpolation_and_relative_positions():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 16)
    cos, sin = rope_cos_sin(10, 16, 10000.0, 1.0, "cpu")
    torch.testing.assert_close(apply_rope(x, cos, sin).double(), reference_rope(x, range(10), 10000.0), atol=1e-5,
                               rtol=1e-5)
    # position interpolation: scale 4 at position p is scale 1 at position p / 4
    cos4, sin4 = rope_cos_sin(10, 16, 10000.0, 4.0, "cpu")
    torch.testing.assert_close(apply_rope(x, cos4, sin4).double(), reference_rope(x, [p / 4 for p in range(10)],
                                                                                  10000.0), atol=1e-5, rtol=1e-5)
    # q.k after rotation depends only on the distance between the positions
    q, k = torch.randn(16), torch.randn(16)
    rq = apply_rope(q.expand(1, 1, 10, 16), cos, sin)[0, 0]
    rk = apply_rope(k.expand(1, 1, 10, 16), cos, sin)[0, 0]
    assert abs(rq[7] @ rk[4] - rq[5] @ rk[2]) < 1e-4 and abs(rq[3] @ rk[3] - q @ k) < 1e-4


def test_rope_tables_are_built_once_and_followed_when_the_scale_changes():
    """forward reads cos/sin from tables built at init (not in checkpoints); a rope_scale set later is obeyed."""
    model = GPT(GPTConfig(n_layer=1, n_embd=32, vocab_size=30, block_size=8, rope_scale=2.0))
    assert model.rope_cos.shape == (16, 4) and not any("rope" in k for k in model.state_dict())
    for T in (16, 5):
        for got, want in zip(model.rope(T), rope_cos_sin(T, 4, 10000.0, 2.0, "cpu")):
            assert torch.equal(got, want)          # the same numbers as computing them for the call
    model.config.rope_scale = 4.0                  # as evaluate.py does for a long prompt
    for T in (32, 8):   # 8: within the tables built for scale 2, which must not be read at scale 4 (a short batch
        for got, want in zip(model.rope(T), rope_cos_sin(T, 4, 10000.0, 4.0, "cpu")):   # of a long example's group)
            assert torch.equal(got, want)
    model.config.rope_base = 500.0
    for got, want in zip(model.rope(8), rope_cos_sin(8, 4, 500.0, 4.0, "cpu")):
        assert torch.equal(got, want)
    # cast to bf16, or made on the meta device then given memory: the tables are float32 and right again
    assert model.to(torch.bfloat16).rope_cos.dtype == torch.float32 and model.rope_cos.shape == (32, 4)
    with torch.device("meta"):
        empty = GPT(GPTConfig(n_layer=1, n_embd=32, vocab_size=30, block_size=8))
    assert torch.equal(empty.to_empty(device="cpu").rope_sin, rope_cos_sin(8, 4, 10000.0, 1.0, "cpu")[1])


def test_causal_and_long_inputs_need_rope_scale():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_embd=32, vocab_size=30, block_size=8))
    idx = torch.randint(0, 30, (1, 8))
    changed = idx.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 30
    torch.testing.assert_close(model(idx)[0][:, :5], model(changed)[0][:, :5])   # the future is not seen
    assert not torch.allclose(model(idx)[0][:, 5:], model(changed)[0][:, 5:])
    with pytest.raises(ValueError, match="rope_scale = 4"):
        model(torch.randint(0, 30, (1, 32)))
    model.config.rope_scale = 4.0
    assert model(torch.randint(0, 30, (1, 32)))[0].shape == (1, 32, 30)


def test_flops_per_token_equal_counted_flops():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_embd=64, vocab_size=100, block_size=16))
    idx = torch.randint(0, 100, (2, 16))
    # the math attention backend runs as plain matmuls, which the counter sees (the fused CPU kernel it does not)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx, idx)[1].backward()
    assert counter.get_total_flops() / idx.numel() == model.flops_per_token()
    h, L, V, T = 64, 2, 100, 16
    assert model.flops_per_token() == 6 * (L * 16 * h * h + V * h) + 12 * L * h * T


def test_peak_table_and_mfu():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L40S") == 362e12 and peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("x86_64") is None and peak_flops(None) is None
    assert mfu(1e9, 1e5, 1e15, n_devices=2) == pytest.approx(0.05)
    assert mfu(1e9, 1e5, None) is None


def test_generate_greedy_top_k_and_cropping():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_embd=32, vocab_size=40, block_size=8)).eval()
    start = torch.randint(0, 40, (2, 3))
    out = model.generate(start, 10, temperature=0)        # 13 tokens: the context is cropped to the last 8
    assert out.shape == (2, 13) and torch.equal(out[:, :3], start)
    expected = start
    for _ in range(10):
        expected = torch.cat([expected, model(expected[:, -8:])[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, expected)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(model.generate(start, 10, top_k=1, generator=g), out)   # top-1 sampling is greedy
    samples = model.generate(start.repeat(50, 1), 1, temperature=1.0, top_k=3, generator=g)[:, -1]
    allowed = torch.topk(model(start)[0][:, -1], 3).indices.repeat(50, 1)
    assert (samples[:, None] == allowed).any(dim=1).all() and len(set(samples.tolist())) > 1


def test_generate_crops_to_max_seq_len_under_rope_scale():
    """With rope_scale 2 the model reads 2 x block_size tokens: generate keeps the last 16 here, not the last 8."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_embd=32, vocab_size=40, block_size=8, rope_scale=2.0)).eval()
    assert model.max_seq_len == 16
    assert GPT(GPTConfig(n_layer=1, n_embd=16, vocab_size=40, block_size=100, rope_scale=1.15)).max_seq_len == 115
    for bad in (dict(rope_scale=math.nan), dict(rope_base=math.inf), dict(norm_eps=-1e-6)):   # (100 x 1.15 is
        with pytest.raises(ValueError, match="must be finite and > 0, norm_eps >= 0"):         # 114.999...)
            GPTConfig(**bad)
    start = torch.randint(0, 40, (4, 20))                 # longer than max_seq_len: cropped from the first step on
    out = model.generate(start, 6, temperature=0)

    def greedy(crop):
        expected = start
        for _ in range(6):
            expected = torch.cat([expected, model(expected[:, -crop:])[0][:, -1].argmax(-1, keepdim=True)], dim=1)
        return expected
    assert out.shape == (4, 26) and torch.equal(out, greedy(16))
    assert not torch.equal(out, greedy(8))                 # the input is one where the 8 older tokens matter


# --- the chunked loss (model.loss_chunk): the same loss and gradients as the plain path, without the full logits

def plain_and_chunked(x, weight, targets, chunk):
    """Loss and gradients w.r.t. x and weight of F.cross_entropy(x @ weight.T) and of chunked_cross_entropy."""
    out = []
    for fn in (lambda a, w: F.cross_entropy(a @ w.T, targets, ignore_index=-1),
               lambda a, w: chunked_cross_entropy(a, w, targets, chunk)):
        a, w = x.clone().requires_grad_(), weight.clone().requires_grad_()
        loss = fn(a, w)
        (2.5 * loss).backward()                 # a non-unit upstream gradient must be passed through
        out.append((loss.detach(), a.grad, w.grad))
    return out


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("chunk", [7, 16, 1000])   # 40 rows: not divisible by 7, divisible by 16, a single chunk
def test_chunked_cross_entropy_equals_plain(dtype, tol, chunk):
    torch.manual_seed(0)
    x, weight = torch.randn(40, 24, dtype=dtype), torch.randn(300, 24, dtype=dtype)
    targets = torch.randint(0, 300, (40,))
    targets[::3] = -1                           # ignored rows
    (loss, gx, gw), (closs, cgx, cgw) = plain_and_chunked(x, weight, targets, chunk)
    assert closs.dtype == dtype and cgx.dtype == dtype and cgw.dtype == dtype
    torch.testing.assert_close(closs, loss, atol=tol, rtol=tol)
    torch.testing.assert_close(cgx, gx, atol=tol, rtol=tol)
    torch.testing.assert_close(cgw, gw, atol=tol, rtol=tol)
    assert gx[::3].abs().max() == 0 and cgx[::3].abs().max() == 0   # ignored rows get no gradient
    with torch.no_grad():                       # evaluation: no autograd, the same value
        torch.testing.assert_close(chunked_cross_entropy(x, weight, targets, chunk), loss, atol=tol, rtol=tol)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        chunked_cross_entropy(x, weight, targets, 0)


def test_chunked_cross_entropy_in_float16_under_a_grad_scaler():
    """float16 inputs and an upstream gradient of 65536 (a GradScaler's first scale, beyond float16's 65504): the
    gradients are scaled in float32, and dlogits stay unscaled through the float16 matmuls, so nothing overflows or
    flushes to zero (g / n_valid is under float16's smallest normal number here)."""
    g = torch.Generator().manual_seed(4)
    x, weight = torch.randn(3000, 32, generator=g).half(), (0.3 * torch.randn(200, 32, generator=g)).half()
    targets = torch.randint(0, 200, (3000,), generator=g)
    ref = [t.double().requires_grad_() for t in (x, weight)]
    F.cross_entropy(ref[0] @ ref[1].T, targets).backward()
    a, w = x.clone().requires_grad_(), weight.clone().requires_grad_()
    (65536.0 * chunked_cross_entropy(a, w, targets, 1000)).backward()
    assert a.grad.dtype == w.grad.dtype == torch.float16
    for got, want in ((a.grad, ref[0].grad), (w.grad, ref[1].grad)):
        assert torch.isfinite(got).all()
        assert ((got.double() / 65536 - want).norm() / want.norm()).item() < 2e-3   # float16 rounding, 2^-11


def test_chunked_head_gradient_does_not_overflow_float16():
    """The head weight's gradient sums up to a chunk of rows before the 1 / n_valid: a target that 15% of 8192 rows
    share, with a feature of 60 in their hidden states, sums past float16's 65504 (the mean gradient is ~9). It was
    inf, in the forward pass, so no GradScaler could save it; the plain loss stays finite."""
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(8192, 16, generator=g), torch.randint(0, 50, (8192,), generator=g)
    shared = torch.rand(8192, generator=g) < 0.15
    t[shared], x[shared, 0] = 3, 60.0
    w = 0.02 * torch.randn(50, 16, generator=g)
    ref = [v.double().requires_grad_() for v in (x, w)]
    F.cross_entropy(ref[0] @ ref[1].T, t).backward()
    a, b = x.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        chunked_cross_entropy(a, b, t, 8192).backward()
    assert ((b.grad.double() - ref[1].grad).norm() / ref[1].grad.norm()).item() < 2e-3


def model_loss_and_grads(model, idx, targets, chunk, autocast=False):
    """The model's loss and parameter gradients. For a float64 model the plain path's loss (taken in float32) is
    recomputed from its logits in float64, so float64 can be compared at float64 precision."""
    model.zero_grad(set_to_none=True)
    model.loss_chunk = chunk
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits, loss = model(idx, targets)
    if logits is not None and logits.dtype == torch.float64:
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
    loss.backward()
    return logits, loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_model_chunked_loss_gives_the_plain_loss_and_gradients(dtype, tol):
    torch.manual_seed(2)
    model = GPT(GPTConfig(n_layer=2, n_embd=32, vocab_size=500, block_size=16)).to(dtype)
    idx, targets = torch.randint(0, 500, (3, 15)), torch.randint(0, 500, (3, 15))
    targets[1, 4:9] = -1
    logits, loss, grads = model_loss_and_grads(model, idx, targets, 0)
    none, closs, cgrads = model_loss_and_grads(model, idx, targets, 8)   # 45 rows in chunks of 8
    assert logits.shape == (3, 15, 500) and none is None            # chunked: the logits are never formed
    torch.testing.assert_close(closs, loss, atol=tol, rtol=tol)
    for name, g in grads.items():
        torch.testing.assert_close(cgrads[name], g, atol=tol, rtol=tol, msg=name)
    model.loss_chunk = 8
    assert model(idx)[0].shape == (3, 15, 500)                       # no targets: the logits, as always
    model.eval()
    with torch.no_grad():
        assert abs(model(idx, targets)[1].item() - loss.item()) < 10 * tol


def test_model_chunked_loss_under_bf16_autocast():
    torch.manual_seed(3)
    model = GPT(GPTConfig(n_layer=2, n_embd=64, vocab_size=1000, block_size=32))
    idx, targets = torch.randint(0, 1000, (4, 32)), torch.randint(0, 1000, (4, 32))
    targets[0, :10] = -1
    _, loss, grads = model_loss_and_grads(model, idx, targets, 0, autocast=True)
    _, closs, cgrads = model_loss_and_grads(model, idx, targets, 50, autocast=True)   # 128 rows: 50, 50, 28
    _, loss32, grads32 = model_loss_and_grads(model, idx, targets, 0)
    assert closs.dtype == torch.float32 and abs(closs.item() - loss.item()) < 1e-4
    assert abs(loss.item() - loss32.item()) < 2e-2                   # bf16 is close to float32 at all
    for name, g in grads.items():
        assert cgrads[name].dtype == torch.float32, name
        scale = grads32[name].abs().max().item()
        # chunked vs plain bf16: equal but for the head weight, whose chunks are summed in fp32 (~0.5% of an entry)
        assert (cgrads[name] - g).abs().max().item() < 0.015 * scale, name
        assert torch.nn.functional.cosine_similarity(cgrads[name].flatten(), g.flatten(), dim=0) > 0.999, name


COMPILED_BAD_TARGET = """
import torch
from model import GPT, GPTConfig
model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=50, block_size=8))
model.set_loss("chunked", 4)
step = torch.compile(model)
idx = torch.randint(0, 50, (2, 8))
print("good", step(idx, idx)[1].item(), flush=True)
idx2 = idx.clone()
idx2[0, 3] = -100
print("bad", step(idx, idx2)[1].item(), flush=True)
"""


def test_a_compiled_model_still_refuses_bad_targets():
    """Compiled, the target check is a device-side assert in the generated code (it was skipped while tracing, so a
    compiled chunked or fused loss counted -100 as a target): the process stops with the message, no loss printed.
    (A failed device assert ends the process, on a CPU as on a GPU: hence a subprocess.)"""
    import subprocess
    import sys
    from pathlib import Path
    out = subprocess.run([sys.executable, "-c", COMPILED_BAD_TARGET], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode != 0 and out.stdout.startswith("good ") and "bad" not in out.stdout, out
    assert "loss targets must be -1 (ignored) or token ids in [0, vocab_size)" in out.stderr


def test_losses_agree_on_the_edge_cases_of_targets_and_offsets():
    """Every target ignored: NaN loss (as F.cross_entropy) and zero gradients; a target outside [0, V) other than
    -1: an error, never a silent miscount; logits sharing a large offset: the chunked gradients keep float32's
    precision (a softmax taken as exp(z - lse) carried lse's rounding into every probability)."""
    torch.manual_seed(0)
    x, weight = torch.randn(64, 32), torch.randn(300, 32)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=50, block_size=8))
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        model.set_loss("chunked", 0)
    for bad in (-100, 300):
        targets = torch.randint(0, 300, (64,))
        targets[5] = bad
        with pytest.raises(RuntimeError, match="targets must be -1"):
            chunked_cross_entropy(x, weight, targets, 16)
    ignored = torch.full((64,), -1)
    a, w = x.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = chunked_cross_entropy(a, w, ignored, 16)
    loss.backward()
    assert loss.isnan() and a.grad.abs().max() == 0 and w.grad.abs().max() == 0
    x[:, 0] = weight[:, 0] = 100.0              # every logit shifted by 10,000
    targets = torch.randint(0, 300, (64,))
    (_, ref_gx, ref_gw), = plain_and_chunked(x.double(), weight.double(), targets, 1000)[:1]
    (_, gx, gw), = plain_and_chunked(x, weight, targets, 16)[1:]
    for got, want in ((gx, ref_gx), (gw, ref_gw)):
        assert ((got.double() - want).norm() / want.norm()).item() < 1e-3   # exp(z - lse): 4e-2


def test_load_checkpoint_and_generate_refuse_clearly(tmp_path):
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=50, block_size=8)
    model = GPT(cfg)
    torch.save({"model": model.state_dict(), "model_config": {**asdict(cfg), "dropout": 0.1}, "step": 1},
               tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="do not make this project's GPT"):
        load_checkpoint(tmp_path)
    torch.save({"model": model.state_dict(), "model_config": asdict(GPTConfig(**{**asdict(cfg), "vocab_size": 60})),
                "step": 1}, tmp_path / "ckpt.pt")    # weights of another vocabulary size: the message names the tensor
    with pytest.raises(ValueError, match=r"do not make this project's GPT \(RuntimeError: Error\(s\) in loading "
                                         r"state_dict for GPT: size mismatch for wte.weight: copying a param with "
                                         r"shape torch.Size\(\[50, 16\]\)"):
        load_checkpoint(tmp_path)
    idx = torch.zeros(1, 1, dtype=torch.long)
    sample = lambda **kw: model.generate(idx, 6, generator=torch.Generator().manual_seed(0), **kw)
    assert sample(top_k=0).shape == (1, 7) and torch.equal(sample(top_k=0), sample(top_k=None))   # 0: no cut
    assert torch.equal(sample(top_k=1), model.generate(idx, 6, temperature=0))        # one kept: the greedy choice
    assert not torch.equal(sample(top_k=1), sample(top_k=0))


def test_first_sentence_keeps_one_line_errors_whole():
    from model import first_sentence
    torch_style = RuntimeError("reading zip archive: no central directory. This is an internal error.\nMore")
    assert first_sentence(torch_style) == "reading zip archive: no central directory"
    assert first_sentence(ValueError("x" * 300)) == "x" * 200 + "..." and first_sentence(KeyError()) == ""


def test_generate_refuses_what_it_cannot_sample():
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=20, block_size=8))
    for idx, kw in [(torch.zeros(1, 0, dtype=torch.long), {}), (torch.zeros(3, dtype=torch.long), {}),
                    (torch.zeros(1, 2, dtype=torch.long), {"temperature": -1.0}),
                    (torch.zeros(1, 2, dtype=torch.long), {"temperature": float("nan")}),
                    (torch.zeros(1, 2, dtype=torch.long), {"top_k": -1}),
                    (torch.zeros(1, 2, dtype=torch.long), {"max_new_tokens": -3})]:
        with pytest.raises(ValueError, match="generate needs a"):
            model.generate(idx, **{"max_new_tokens": 2, **kw})
    assert model.generate(torch.zeros(1, 2, dtype=torch.long), 3, temperature=0).shape == (1, 5)


def test_auto_dtype_is_bf16_where_the_gpu_has_it_else_fp16_and_fp32_on_cpu(monkeypatch):
    import model
    assert model.auto_dtype("cpu") == "float32" and model.auto_dtype("mps") == "float32"
    for has_bf16, want in ((True, "bfloat16"), (False, "float16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: has_bf16)
        assert model.auto_dtype("cuda:1") == want
