"""What only a CUDA GPU can check: the fast paths in bf16, flash attention at the smallest width, attention.py's
kernels, a whole step captured in a CUDA graph against the eager step, and train.py with torch.compile, the fused
loss, attention.py and CUDA graphs (inductor's, and --step_graph's). Skipped without a GPU; run
them on one with `python -m pytest -q tests/test_gpu.py` (a few minutes, most of it compiling; tests/gpu_check.sh runs
them)."""
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from fused_loss import fused_cross_entropy  # noqa: E402
from chunked_loss import chunked_cross_entropy  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from test_train import records, run  # noqa: E402


def rel_err(got, want):
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


@pytest.mark.parametrize("C", [32, 256, 1024])   # fused_loss.TILES' sets for 64, 256, 1024
def test_fused_and_chunked_losses_in_bf16_are_as_close_to_float64_as_the_plain_one(C):
    """At the paper's vocabulary, bf16 matmuls: each fast path's loss and gradients are no further from a float64
    reference than the plain bf16 path's (which rounds the logits to bf16 on top)."""
    g = torch.Generator(device="cuda").manual_seed(C)
    N, V = 4096 + 13, 15000
    x = torch.randn(N, C, device="cuda", generator=g)
    weight = torch.randn(V, C, device="cuda", generator=g) * C ** -0.5
    targets = torch.randint(0, V, (N,), device="cuda", generator=g)
    targets[::5] = -1
    fns = {"float64": lambda a, w: F.cross_entropy(a.double() @ w.double().T, targets, ignore_index=-1),
           "plain": lambda a, w: F.cross_entropy((a @ w.T).float(), targets, ignore_index=-1),
           "chunked": lambda a, w: chunked_cross_entropy(a, w, targets, 1000),
           "fused": lambda a, w: fused_cross_entropy(a, w, targets)}
    out = {}
    for name, fn in fns.items():
        a, w = x.clone().requires_grad_(), weight.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=name != "float64"):
            loss = fn(a, w)
        (3.0 * loss).backward()
        out[name] = (loss.detach(), a.grad, w.grad)
    ref = out["float64"]
    for name in ("chunked", "fused"):
        for i, what in enumerate(("loss", "grad_x", "grad_w")):
            err, plain_err = rel_err(out[name][i], ref[i]), rel_err(out["plain"][i], ref[i])
            assert err < 2 * plain_err + 1e-3, (name, what, err, plain_err)   # bf16 rounds at 2^-8 = 4e-3
    assert out["fused"][1][::5].abs().max() == 0                 # ignored rows get no gradient


def test_flash_attention_runs_at_head_dim_4():
    """h32 has head_dim 4; the zero padding to 8 lets the flash kernel take it (and gives the math kernel's output)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_embd=32, vocab_size=300, block_size=128)).cuda()
    idx = torch.randint(0, 300, (8, 128), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash = model(idx)[0].float()
        with sdpa_kernel(SDPBackend.MATH):
            math_ = model(idx)[0].float()
    assert rel_err(flash, math_) < 1e-2


@pytest.mark.parametrize("hd", [4, 16, 32])   # h32's, h128's and h256's heads
def test_triton_attention_in_bf16_is_as_close_to_float64_as_flash_attention(hd):
    """attention.py's kernels at the paper's context in bf16: output and gradients no further from a float64
    reference than PyTorch's flash attention (which gets the heads padded to 8, as model.py does)."""
    from attention import causal_attention
    g = torch.Generator(device="cuda").manual_seed(hd)
    q, k, v, dy = (torch.randn(64, 8, 128, hd, device="cuda", generator=g) for _ in range(4))
    pad = -hd % 8
    fns = {"float64": lambda a, b, c: F.scaled_dot_product_attention(a.double(), b.double(), c.double(),
                                                                     is_causal=True),
           "flash": lambda a, b, c: F.scaled_dot_product_attention(*(F.pad(t, (0, pad)) for t in (a, b, c)),
                                                                   is_causal=True, scale=hd ** -0.5)[..., :hd],
           "triton": causal_attention}
    out = {}
    for name, fn in fns.items():
        leaves = [t.clone().to(torch.float64 if name == "float64" else torch.bfloat16).requires_grad_()
                  for t in (q, k, v)]
        y = fn(*leaves)
        y.backward(dy.to(y.dtype))
        out[name] = [y.detach()] + [t.grad for t in leaves]
    for i, what in enumerate(("y", "dq", "dk", "dv")):
        err, flash_err = rel_err(out["triton"][i], out["float64"][i]), rel_err(out["flash"][i], out["float64"][i])
        assert err < 1.5 * flash_err + 1e-3, (what, err, flash_err)


def test_each_replay_of_a_graphed_step_is_the_step_eager_code_takes():
    """step.graphed: after the warm-up steps and the capture, each replay takes the step the eager code does with
    that step's batch (copied into the graph's own), its LR (set_lr fills the device tensor the captured AdamW reads)
    and AdamW's state, two micro-batches a step: the same losses, gradient norms and weights, float32 to rounding."""
    from contextlib import nullcontext
    from step import GRAPH_WARMUP, adamw, graphed, make_step, set_lr
    start = torch.randint(0, 100, (GRAPH_WARMUP + 5, 4, 1), generator=torch.Generator().manual_seed(0))
    batches = ((start + torch.arange(17)) % 100).cuda()   # counting sequences: something to learn in 8 steps
    out, said = [], []
    for graph in (False, True):
        torch.manual_seed(0)
        model = GPT(GPTConfig(n_layer=1, n_embd=32, vocab_size=100, block_size=16)).cuda()
        opt = adamw(model.parameters(), lr=0.0, betas=(0.9, 0.95), eps=1e-4, weight_decay=0.1, device="cuda",
                    graph=graph)
        step = make_step(model, opt, torch.amp.GradScaler("cuda", enabled=False), nullcontext(), 2, 0.5)
        step = graphed(step, "cuda", said.append) if graph else step
        logged = []
        for i, batch in enumerate(batches):
            set_lr(opt, 3e-3 * (i + 1))          # a new LR every step, as the schedule's warm-up
            logged += [t.item() for t in step(batch)]
        out.append((torch.tensor(logged), torch.cat([p.detach().flatten() for p in model.parameters()])))
    (eager_logged, eager_w), (graph_logged, graph_w) = out
    assert torch.allclose(graph_logged, eager_logged, rtol=1e-5), (graph_logged, eager_logged)
    assert torch.allclose(graph_w, eager_w, rtol=1e-5, atol=1e-6)
    assert eager_logged[-2] < eager_logged[0] - 0.5        # it trained (4.6 -> 3.4 on CPU): not two no-ops
    assert len(said) == 1 and "one CUDA graph" in said[0], said   # the capture, told once


CG = dict(loss="auto", compile=True, compile_mode="reduce-overhead")   # inductor's CUDA graphs
SG = dict(loss="auto", compile=True, step_graph=True)                  # the whole step one CUDA graph (step.graphed)


@pytest.mark.parametrize("extra", [dict(loss="fused"), CG, dict(CG, micro_batch_size=2), dict(CG, attention="triton"),
                                   dict(loss="plain", step_graph=True),
                                   dict(SG, micro_batch_size=2, attention="triton")],
                         ids=["fused", "cg", "cg_accum", "cg_ta", "sg_eager", "sg_accum_ta"])
def test_train_on_gpu_matches_the_plain_run_and_resumes(tiny_data, tmp_path, monkeypatch, extra):
    """bf16 on the GPU: the fast settings (auto: the fused loss at h32) train the model the plain eager run does (to
    bf16 rounding), and a run stopped and resumed ends where the uninterrupted one does. With CUDA graphs and 4
    micro-batches a step, the gradients must survive the replays (step.keep_grads). attention.py's kernels traced into
    the CUDA graphs too. --step_graph: eager or compiled, with micro-batches, the fused loss's graph break and
    attention.py's kernels inside the graph, evaluations and checkpoints between replays; captured after 3 steps in
    each process and replayed for every later step (counted), each step's loss and gradient norm those of the same
    run without the graph."""
    from step import GRAPH_WARMUP
    replays, replay = [], torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda self: (replays.append(1), replay(self))[1])
    common = dict(device="cuda", max_tokens=16 * 256, eval_interval=8, batch_size=8, threads=0)
    run(tiny_data, tmp_path, run_name="plain", loss="plain", **common)
    run(tiny_data, tmp_path, run_name="fast", **common, **extra)
    fast_replays = len(replays)
    run(tiny_data, tmp_path, run_name="resumed", stop_at_step=8, **common, **extra)
    run(tiny_data, tmp_path, run_name="resumed", resume=True, **common, **extra)
    plain, fast, resumed = (records(tmp_path / n) for n in ("plain", "fast", "resumed"))
    assert plain[-1]["val_loss"] < plain[0]["val_loss"] - 0.5          # it trained
    assert fast[-1]["val_loss"] == pytest.approx(plain[-1]["val_loss"], rel=2e-2)
    assert resumed[-1]["step"] == fast[-1]["step"] == 16
    assert resumed[-1]["val_loss"] == pytest.approx(fast[-1]["val_loss"], rel=1e-3)
    if extra.get("step_graph"):   # (a frozen LR or a stale batch moves the loss by about 1% here: too little above)
        assert (fast_replays, len(replays) - fast_replays) == (16 - GRAPH_WARMUP, 16 - 2 * GRAPH_WARMUP)
        run(tiny_data, tmp_path, run_name="eager", **common, **dict(extra, step_graph=False))
        eager = records(tmp_path / "eager")
        assert [r["step"] for r in eager] == [r["step"] for r in fast]
        for key in ("train_loss", "grad_norm"):
            assert [r[key] for r in fast[1:]] == pytest.approx([r[key] for r in eager[1:]], rel=2e-3), key


TRACED_SCRIPT = """
import json, torch
from model import GPT, GPTConfig
torch.manual_seed(0)
model = GPT(GPTConfig(n_layer=2, n_embd=64, vocab_size=15000, block_size=128)).cuda()
idx, targets = torch.randint(0, 15000, (2, 16, 128), device="cuda")
out = {}
for name, kind, mode, attention in (("plain", "plain", None, "sdpa"), ("traced", "fused", "default", "sdpa"),
                                    ("traced+cg", "fused", "reduce-overhead", "sdpa"),
                                    ("traced+cg+ta", "fused", "reduce-overhead", "triton")):
    model.set_loss(kind)
    model.set_attention(attention)
    torch._dynamo.reset()
    step = torch.compile(model, mode=mode, fullgraph=True) if mode else model
    for _ in range(3):   # CUDA graphs record on a later call than the first
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = step(idx, targets)
        loss.backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters()])
    out[name] = (loss.item(), grads)
ref = out["plain"][1]
print(json.dumps({k: [loss, ((g - ref).norm() / ref.norm()).item()] for k, (loss, g) in out.items()}))
"""


def test_fused_loss_traced_into_the_compiled_graph_trains_as_the_plain_loss():
    """FUSED_LOSS_TRACE=1: the model compiles whole (fullgraph=True), with and without CUDA graphs, and with
    attention.py's kernels too, and gives the plain eager loss and gradients to bf16 rounding."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    out = subprocess.run([sys.executable, "-c", TRACED_SCRIPT], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).parent.parent, env=dict(os.environ, FUSED_LOSS_TRACE="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("traced", "traced+cg", "traced+cg+ta"):
        assert result[name][0] == pytest.approx(result["plain"][0], rel=1e-2), result
        assert result[name][1] < 3e-2, result
