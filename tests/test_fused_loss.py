"""The fused head + cross-entropy (fused_loss.py) against the plain loss: the same loss and gradients.

Without a GPU the Triton kernels run in Triton's CPU interpreter (conftest.py sets TRITON_INTERPRET=1), which
multiplies float32 (and float64, which the kernels turn into float32) but not bf16; tests/test_gpu.py checks bf16 on
a GPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

import fused_loss  # noqa: E402
from fused_loss import fused_cross_entropy  # noqa: E402
from model import GPT, GPTConfig, choose_loss  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def loss_and_grads(fn, x, weight, targets):
    a, w = x.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(a, w, targets)
    (2.5 * loss).backward()                     # a non-unit upstream gradient must be passed through
    return loss.detach(), a.grad, w.grad


# N rows not a multiple of any tile; C a power of two, or not (padded to CP in the kernels); V not a multiple of the
# interpreter's 32-column tile (the rows kernel's last tile is masked), or one (no partial tile)
@pytest.mark.parametrize("N,C,V", [(45, 32, 300), (100, 48, 515), (16, 64, 33), (37, 16, 96)])
def test_fused_equals_plain_in_float32(N, C, V):
    g = torch.Generator().manual_seed(N + C + V)
    x = torch.randn(N, C, generator=g).to(DEVICE)
    weight = (0.3 * torch.randn(V, C, generator=g)).to(DEVICE)
    targets = torch.randint(0, V, (N,), generator=g).to(DEVICE)
    targets[::4] = -1                           # ignored rows
    ref = loss_and_grads(lambda a, w, t: F.cross_entropy(a.double() @ w.double().T, t, ignore_index=-1),
                         x, weight, targets)
    out = loss_and_grads(fused_cross_entropy, x, weight, targets)
    assert out[0].dtype == torch.float32 and out[1].dtype == x.dtype and out[2].dtype == weight.dtype
    for name, got, want in zip(("loss", "grad_x", "grad_w"), out, ref):
        torch.testing.assert_close(got.double(), want.double(), atol=1e-5, rtol=1e-5, msg=name)
    assert out[1][::4].abs().max() == 0         # ignored rows get no gradient
    with torch.no_grad():                       # evaluation: the forward kernel alone
        assert abs(fused_cross_entropy(x, weight, targets).item() - ref[0].item()) < 1e-5


def test_fused_loss_of_float64_inputs_works_in_float32(monkeypatch):
    """float64 inputs are multiplied in float32 (Triton cannot compile the kernels' float32 loops with float64 dots
    on a GPU); the gradients come back in float64, equal to the float64 loss's to float32 rounding."""
    import fused_loss
    launched, launch = [], fused_loss._launch
    monkeypatch.setattr(fused_loss, "_launch", lambda name, n, x, w, *a, **k: launched.append((x.dtype, w.dtype))
                        or launch(name, n, x, w, *a, **k))
    g = torch.Generator().manual_seed(7)
    x, weight = torch.randn(40, 32, generator=g, dtype=torch.float64), torch.randn(70, 32, generator=g,
                                                                                  dtype=torch.float64)
    targets = torch.randint(0, 70, (40,), generator=g)
    ref = loss_and_grads(lambda a, w, t: F.cross_entropy(a @ w.T, t), x, weight, targets)
    out = loss_and_grads(fused_cross_entropy, x.to(DEVICE), weight.to(DEVICE), targets.to(DEVICE))
    assert out[1].dtype == out[2].dtype == torch.float64 and launched == [(torch.float32, torch.float32)] * 2
    for name, got, want in zip(("loss", "grad_x", "grad_w"), out, ref):
        torch.testing.assert_close(got.double().cpu(), want, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("frozen", ["x", "weight"])
def test_fused_gradient_of_one_input_alone(frozen):
    """Only the gradients asked for are computed (the rows kernel skips its gradient work for a frozen x, backward
    skips the vocab kernel for a frozen weight), and they are the plain loss's."""
    g = torch.Generator().manual_seed(7)
    x, weight = torch.randn(40, 32, generator=g).to(DEVICE), torch.randn(70, 32, generator=g).to(DEVICE)
    targets = torch.randint(0, 70, (40,), generator=g).to(DEVICE)
    grads = []
    for fn in (lambda a, w: F.cross_entropy(a @ w.T, targets), lambda a, w: fused_cross_entropy(a, w, targets)):
        a, w = x.clone().requires_grad_(frozen != "x"), weight.clone().requires_grad_(frozen != "weight")
        fn(a, w).backward()
        assert (a.grad is None) == (frozen == "x") and (w.grad is None) == (frozen == "weight")
        grads.append(w.grad if frozen == "x" else a.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-5)


def test_fused_loss_in_float16_under_a_grad_scaler():
    """float16 inputs and an upstream gradient of 65536 (a GradScaler's first scale, infinite in float16): the
    kernels' float32 gradients are scaled before the cast, so they are finite and right to float16 rounding."""
    g = torch.Generator().manual_seed(4)
    x, weight = torch.randn(3000, 32, generator=g).half(), (0.3 * torch.randn(200, 32, generator=g)).half()
    targets = torch.randint(0, 200, (3000,), generator=g)
    ref = [t.double().requires_grad_() for t in (x, weight)]
    F.cross_entropy(ref[0] @ ref[1].T, targets).backward()
    a, w = x.to(DEVICE).requires_grad_(), weight.to(DEVICE).requires_grad_()
    (65536.0 * fused_cross_entropy(a, w, targets.to(DEVICE))).backward()
    assert a.grad.dtype == w.grad.dtype == torch.float16
    for got, want in ((a.grad, ref[0].grad), (w.grad, ref[1].grad)):
        assert torch.isfinite(got).all()
        assert ((got.double().cpu() / 65536 - want).norm() / want.norm()).item() < 2e-3


def test_model_with_fused_loss_trains_like_the_plain_one():
    torch.manual_seed(2)
    model = GPT(GPTConfig(n_layer=2, n_embd=32, vocab_size=500, block_size=16)).to(DEVICE)
    idx, targets = torch.randint(0, 500, (3, 15), device=DEVICE), torch.randint(0, 500, (3, 15), device=DEVICE)
    targets[1, 4:9] = -1
    results = []
    for kind in ("plain", "fused"):
        assert model.set_loss(kind) == kind and model.fused_loss == (kind == "fused")
        model.zero_grad(set_to_none=True)
        logits, loss = model(idx, targets)
        loss.backward()
        results.append((logits, loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (logits, loss, grads), (none, floss, fgrads) = results
    assert logits.shape == (3, 15, 500) and none is None            # fused: the logits are never formed
    assert abs(floss - loss) < 1e-5
    for name, grad in grads.items():
        torch.testing.assert_close(fgrads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert model(idx)[0].shape == (3, 15, 500)                       # no targets: the logits, as always


def test_loss_choice_and_refusals(monkeypatch):
    assert [choose_loss("auto", h, "cuda") for h in (32, 256, 512, 1024)] == ["fused", "fused", "chunked", "chunked"]
    assert choose_loss("auto", 32, "cpu") == "plain" and choose_loss("fused", 1024, "cpu") == "fused"
    with pytest.raises(ValueError, match="loss 'fast' is not one of auto, plain, chunked, fused"):
        choose_loss("fast", 32, "cuda")
    x, w, t = torch.randn(4, 2048), torch.randn(10, 2048), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="hidden sizes up to 1024, got 2048: use the chunked loss"):
        fused_cross_entropy(x, w, t)
    with pytest.raises(ValueError, match="hidden sizes up to 1024, got 2048"):
        GPT(GPTConfig(n_layer=1, n_embd=2048, vocab_size=10)).set_loss("fused")
    big = torch.empty(2 ** 21, 1024, device="meta")       # 2^31 elements: past the kernels' 32-bit offsets
    with pytest.raises(ValueError, match=r"32-bit offsets: x \(2097152, 1024\) .* use a smaller --micro_batch_size"):
        fused_cross_entropy(big, w[:, :1024], torch.zeros(2 ** 21, dtype=torch.long, device="meta"))
    for a, b, c in ((x[:, :32], w[:, :32], t[:2]), (x[:, :32], w[:, :16], t), (x[None, :, :32], w[:, :32], t)):
        with pytest.raises(ValueError, match=r"takes x \(N, C\), weight \(V, C\) and targets \(N,\), got"):
            fused_cross_entropy(a, b, c)                 # the kernels would read past the shorter tensor
    monkeypatch.setattr(fused_loss, "INTERPRET", False)
    with pytest.raises(ValueError, match="runs Triton kernels on a CUDA device, got cpu"):
        fused_cross_entropy(x[:, :32], w[:, :32], t)


def test_a_gpu_too_small_for_every_tile_gets_a_clear_error(monkeypatch):
    """When no candidate tile fits a GPU's shared memory, Triton's autotuner ends in OutOfResources; the message says
    what to use instead."""
    class TooSmall:   # stands in for the autotuned kernel: kernel[grid](*args) raises as Triton's does
        def __getitem__(self, grid):
            def run(*args, **kwargs):
                raise fused_loss.OutOfResources(196608, 101376, "shared memory")
            return run
    monkeypatch.setattr(fused_loss, "INTERPRET", False)
    monkeypatch.setitem(fused_loss._TUNED, ("rows", 1024), TooSmall())
    with pytest.raises(RuntimeError, match="the fused loss: no tile of its rows kernel fits this GPU at hidden size "
                                           "1024 .*Required: 196608, Hardware limit: 101376.*; use the chunked loss"):
        fused_loss._launch("rows", 10, CP=1024)


def test_train_refuses_a_fused_loss_it_cannot_run(tiny_data, tmp_path, monkeypatch):
    from test_train import run
    monkeypatch.setattr(fused_loss, "INTERPRET", False)   # a CPU without the interpreter, as a user's would be
    with pytest.raises(SystemExit, match="--loss fused: the fused loss runs Triton kernels on a CUDA device, got cpu: "
                                         "use the chunked loss"):
        run(tiny_data, tmp_path, loss="fused")
    assert not list(tmp_path.iterdir())                    # refused before anything was written


def test_compiled_model_calls_the_fused_loss_through_a_graph_break():
    """torch.compile traces the model and leaves the kernels to run as they are (by default fused_cross_entropy is
    torch.compiler.disable'd): the same loss and head gradient as the plain, uncompiled model."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_embd=32, vocab_size=300, block_size=16)).to(DEVICE)
    idx, targets = torch.randint(0, 300, (2, 16), device=DEVICE), torch.randint(0, 300, (2, 16), device=DEVICE)
    assert model.set_loss("fused") == "fused"
    _, loss = torch.compile(model)(idx, targets)
    loss.backward()
    grad = model.lm_head.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    model.set_loss("plain")
    _, plain = model(idx, targets)
    plain.backward()
    assert abs(loss.item() - plain.item()) < 1e-5
    torch.testing.assert_close(grad, model.lm_head.weight.grad, atol=1e-6, rtol=1e-4)


# Traces a compiled model (fullgraph=True: a graph break is an error) with the kernels its setup asks for and prints
# the Triton kernel calls the graph holds, forward and backward bodies of the autograd.Functions included. Without a
# GPU the kernels cannot run (nor can dynamo see interpreter kernels as kernels), so dynamo is told Triton has a
# device, and the graph is recorded, not run: the compiled function returns zeros of its outputs' shapes.
TRACE_SCRIPT = """
import json, sys, torch, torch.utils._triton
torch.utils._triton.has_triton = lambda: True
import attention, fused_loss
from model import GPT, GPTConfig
fused_loss.check_supported = attention.check_supported = lambda *a: None
graphs = []
def record(gm, example_inputs):
    graphs.append(gm)
    vals = [o.meta["example_value"] for o in gm.graph.output_node().args[0]]
    return lambda *args: tuple(torch.zeros(v.shape, dtype=v.dtype) for v in vals)
model = GPT(GPTConfig(n_layer=2, n_embd=32, vocab_size=300, block_size=16))
exec(sys.argv[1])
idx = torch.randint(0, 300, (2, 16))
try:
    torch.compile(model, backend=record, fullgraph=True)(idx, idx)
except torch._dynamo.exc.Unsupported as e:
    print(json.dumps("graph break: " + str(e).splitlines()[0]))
else:
    from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table
    kernels = [kernel_side_table.get_kernel(n.kwargs["kernel_idx"]) for g in graphs for m in g.modules()
               for n in m.graph.nodes if "triton_kernel_wrapper" in str(n.target)]
    print(json.dumps(sorted(k.fn.__name__ for k in kernels)))
"""


def traced_kernels(setup, **env):
    """TRACE_SCRIPT in a fresh process (with these environment variables), `setup` run on its two-layer model: the
    names of the Triton kernels in its compiled graphs, sorted, or "graph break: " and why."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env
    out = subprocess.run([sys.executable, "-c", TRACE_SCRIPT, setup], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parent.parent, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("trace", ["1", ""])
def test_fused_loss_traces_into_the_compiled_graph_only_with_fused_loss_trace(trace):
    """FUSED_LOSS_TRACE=1: the whole model traces into one graph, the loss's two kernels included (the rows kernel
    in its forward, the vocab kernel in its backward), which CUDA graphs can replay whole. Default: a graph break."""
    result = traced_kernels('model.set_loss("fused")', FUSED_LOSS_TRACE=trace)
    if trace:
        assert result == ["_rows_kernel", "_vocab_kernel"]
    else:
        assert result == "graph break: Skip calling `torch.compiler.disable()`d function"


@pytest.mark.skipif(not (Path(fused_loss.triton.__file__).parent / "backends/nvidia/bin/cuobjdump").exists(),
                    reason="needs Triton's bundled CUDA tools (its Linux x86-64 wheels have them)")
@pytest.mark.parametrize("cp", [32, 64, 128, 256, 1024])
def test_every_candidate_tile_fits_an_h100(cp):
    """Compiled offline for sm_90 (tests/h100_resources.py): every tile the autotuner may try fits the H100's 227 KiB
    of shared memory per block (one that does not would fail to launch, and be dropped silently at run time); the
    first, the one with the fewest loop instructions per logit (within 1%), spills no registers inside its loop up to
    C = 256; at C <= 64 each kernel also has tiles that fit 16 warps or more per SM, and twice as many as its first
    tile (with Triton 3.7.1 the first tiles fit 8; with 3.6.0 the first kernel's fits 16 at C = 32)."""
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "h100_resources.py"), str(cp)],
                         capture_output=True, text=True, check=True).stdout
    for name, rows in json.loads(out).items():
        tiles = fused_loss.TILES[min(k for k in fused_loss.TILES if k >= cp)][name]
        assert len(rows) == len(fused_loss._configs(name, cp)) == len(tiles) * (2 if name == "vocab" else 1)   # splits
        assert all(r["shared"] <= 227 * 1024 for r in rows), (name, rows)
        if cp <= 64:
            assert max(r["warps_per_sm"] for r in rows) >= max(16, 2 * rows[0]["warps_per_sm"]), (name, rows)
        if cp <= 256:   # at 1024 every fast tile spills: the autotuner's timing alone decides there
            assert rows[0]["loop_local"] == 0, (name, rows)
            fewest = min(r["per_logit"] for r in rows if not r["loop_local"])   # (3.6.0: 6.05 against 6.02 at C = 32)
            assert rows[0]["per_logit"] <= 1.01 * fewest, (name, rows)


def test_fused_loss_edge_cases_of_targets():
    """Every target ignored: NaN loss, zero gradients (the weight's was NaN: 0 x 1/0); a target that is neither -1
    nor a token id: an error (the kernels would ignore it but count it, or read a row past the weight)."""
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(20, 16, generator=g).to(DEVICE), torch.randn(50, 16, generator=g).to(DEVICE)
    loss, gx, gw = loss_and_grads(fused_cross_entropy, x, weight, torch.full((20,), -1, device=DEVICE))
    assert loss.isnan() and gx.abs().max() == 0 and gw.abs().max() == 0
    if DEVICE == "cuda":     # there the check is a device-side assert, which would end this process's CUDA context
        return
    for bad in (-100, 50):
        targets = torch.randint(0, 50, (20,), generator=g)
        targets[3] = bad
        with pytest.raises(RuntimeError, match="targets must be -1"):
            fused_cross_entropy(x, weight, targets)
