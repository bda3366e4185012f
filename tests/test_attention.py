"""attention.py's Triton kernels against PyTorch's attention: the same outputs and gradients.

Without a GPU the kernels run in Triton's CPU interpreter (conftest.py sets TRITON_INTERPRET=1), which multiplies
float32 but not bf16; tests/test_gpu.py checks bf16 on a GPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

import attention  # noqa: E402
from attention import causal_attention  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from test_fused_loss import traced_kernels  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def out_and_grads(fn, q, k, v, dy):
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    y = fn(*leaves)
    y.backward(dy)
    return [y.detach()] + [t.grad for t in leaves]


def reference(q, k, v):
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True).to(q.dtype)


# head widths 4 (h32's) to 32 (h256's), padded to 16 in registers or not; T a power of two, or not (the last query
# block part-masked), one token, or one query block (T <= 64)
@pytest.mark.parametrize("B,NH,T,HD", [(2, 3, 37, 4), (1, 2, 128, 16), (2, 2, 16, 8), (1, 1, 100, 32), (3, 2, 1, 4),
                                       (1, 8, 64, 12)])
def test_attention_equals_sdpa_in_float32(B, NH, T, HD):
    g = torch.Generator().manual_seed(T * HD)
    q, k, v, dy = (torch.randn(B, NH, T, HD, generator=g).to(DEVICE) for _ in range(4))
    got, want = out_and_grads(causal_attention, q, k, v, dy), out_and_grads(reference, q, k, v, dy)
    for name, a, b in zip(("y", "dq", "dk", "dv"), got, want):
        assert a.shape == b.shape and a.dtype == torch.float32, name
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5, msg=name)
    assert got[0].transpose(1, 2).is_contiguous()   # y: a (B, NH, T, HD) view of (B, T, NH, HD), as model.py reads it


def test_attention_takes_any_strides_and_float64():
    """q, k, v as model.py hands them over (transposed views of the projections' output), or float64 (multiplied in
    float32, returned in float64)."""
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 20, 3 * 4 * 8, generator=g, dtype=torch.float64).to(DEVICE)   # (B, T, 3C), 4 heads of 8
    q, k, v = (t.view(2, 20, 4, 8).transpose(1, 2) for t in qkv.split(32, dim=2))
    dy = torch.randn(2, 4, 20, 8, generator=g, dtype=torch.float64).to(DEVICE)
    got, want = out_and_grads(causal_attention, q, k, v, dy), out_and_grads(reference, q, k, v, dy)
    for name, a, b in zip(("y", "dq", "dk", "dv"), got, want):
        assert a.dtype == torch.float64, name
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5, msg=name)


def test_model_with_triton_attention_gives_the_sdpa_loss_and_gradients():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_embd=32, vocab_size=97, block_size=64)).to(DEVICE)
    idx = torch.randint(0, 97, (3, 50), device=DEVICE)
    results = []
    for kind in ("sdpa", "triton"):
        model.set_attention(kind)
        model.zero_grad()
        loss = model(idx, idx)[1]
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    assert abs(results[0][0] - results[1][0]) < 1e-5
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert all(block.attn.triton for block in model.blocks)


def test_what_the_kernels_cannot_take_is_refused_in_one_line(monkeypatch):
    def model(n_embd=32, block_size=16, device=DEVICE):
        return GPT(GPTConfig(n_layer=1, n_embd=n_embd, vocab_size=50, block_size=block_size)).to(device)
    with pytest.raises(ValueError, match="attention 'flash' is not one of sdpa, triton"):
        model().set_attention("flash")
    with pytest.raises(ValueError, match="heads of up to 32, got 16 and 64: use sdpa"):
        model(n_embd=512).set_attention("triton")
    with pytest.raises(ValueError, match="up to 128 tokens .* got 256 and 4: use sdpa"):
        model(block_size=256).set_attention("triton")
    x = torch.zeros(1, 2, 8, 4, device=DEVICE)
    with pytest.raises(ValueError, match="one shape"):
        causal_attention(x, x, x[..., :2])
    monkeypatch.setattr(attention, "INTERPRET", False)    # a CPU without the interpreter
    on_cpu = model(device="cpu")
    with pytest.raises(ValueError, match="on a CUDA device, got cpu: use sdpa"):
        on_cpu.set_attention("triton")
    assert not on_cpu.blocks[0].attn.triton               # a refusal changes nothing


@pytest.mark.parametrize("loss", ["plain", "fused"])
def test_attention_traces_into_the_compiled_graph(loss):
    """No graph break around the kernels (one per layer would split a step into pieces, each outside CUDA graphs):
    the whole model traces into one graph, each layer's forward and backward kernel included, with the fused loss's
    too under FUSED_LOSS_TRACE=1: a whole step in one graph."""
    kernels = traced_kernels(f'model.set_loss("{loss}"); model.set_attention("triton")', FUSED_LOSS_TRACE="1")
    assert kernels == (["_attention_bwd_kernel"] * 2 + ["_attention_fwd_kernel"] * 2
                       + (["_rows_kernel", "_vocab_kernel"] if loss == "fused" else []))


@pytest.mark.skipif(not (Path(attention.triton.__file__).parent / "backends/nvidia/bin/cuobjdump").exists(),
                    reason="needs Triton's bundled CUDA tools (its Linux x86-64 wheels have them)")
def test_every_head_width_fits_an_h100_without_spilling():
    """Compiled offline for sm_90 (tests/h100_resources.py attention) at T = 128: each kernel fits the H100's 227 KiB
    of shared memory and keeps its loop in registers, at every head width it takes."""
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "h100_resources.py"), "attention"],
                         capture_output=True, text=True, check=True).stdout
    for name, rows in json.loads(out).items():
        assert [r["hd"] for r in rows] == [4, 8, 16, 32], name
        assert all(r["shared"] <= 227 * 1024 and r["loop_local"] == 0 for r in rows), (name, rows)
