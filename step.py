"""
step.py: one optimizer step of train.py (bench.py times the same one), its learning rate, and the step under CUDA
graphs.

    optimizer = adamw(model.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-4, weight_decay=0.1, device="cuda",
                      graph=True)
    step = make_step(model, optimizer, scaler, autocast, accum=1, grad_clip=1.0)
    step = graphed(step, "cuda")         # the same steps; after 3 of them, each one CUDA graph replayed
    for i in range(total_steps):
        set_lr(optimizer, lr_at(i, total_steps, peak_lr=3e-3, warmup_steps=30))
        loss, grad_norm = step(batch)    # batch (B, T + 1) token ids: x = batch[:, :-1], y = batch[:, 1:]

A step is forward and backward over accum micro-batches (gradients summed), the gradient norm clipped, the AdamW
update, the gradients zeroed. Nothing in it waits for the GPU: the host prepares the next step while the GPU runs
this one, and train.py reads the loss every --log_interval steps only.
"""
import math
import time
from contextlib import nullcontext

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

# -----------------------------------------------------------------------------
# The learning-rate schedule


def lr_at(step, total_steps, peak_lr, warmup_steps, final_frac=0.5):
    """LR of update `step` (0-based): linear warmup to the peak, then a quarter-cycle cosine from the peak down to
    final_frac * peak (for final_frac 0.5 the cosine part is Hugging Face's get_cosine_schedule_with_warmup with
    num_cycles=0.25; their warmup starts at 0, ours at peak / warmup_steps). The log's lr at step N is the LR update
    N - 1 was taken with."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak_lr * (final_frac + (1 - final_frac) * math.cos(math.pi / 2 * progress))


def set_lr(optimizer, lr):
    """The LR of every parameter group, for the next step."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):   # --step_graph: the graph's AdamW reads the LR from the device
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr

# -----------------------------------------------------------------------------
# One optimizer step


def adamw(params, *, lr, betas, eps, weight_decay, device, graph=False):
    """train.py's optimizer: AdamW, fused into a few kernels on a GPU. graph: for a step captured in a CUDA graph
    (graphed), capturable (its step counts on the device) and its LR a device tensor, which set_lr fills: a graph
    replays the numbers it was captured with, so a Python float would stay the LR of the capture's step."""
    return torch.optim.AdamW(params, lr=torch.tensor(lr, device=device) if graph else lr, betas=betas, eps=eps,
                             weight_decay=weight_decay, fused=torch.device(device).type == "cuda", capturable=graph)


def load_optimizer_state(optimizer, state):
    """optimizer.load_state_dict(state) keeping this run's AdamW kernel (fused on a GPU), its capturable flag and
    the form of its LR (a device tensor under --step_graph): the saved groups carry the saving run's, and a run may
    resume on another device or with --step_graph switched. Set before loading, which places the step counts by
    them; the LR's value is set before every step anyway."""
    for group in state["param_groups"]:
        group.update({k: optimizer.param_groups[0][k] for k in ("fused", "capturable", "lr")})
    optimizer.load_state_dict(state)


def make_step(model, optimizer, scaler, autocast, accum, grad_clip, grads_kept=False):
    """-> step(batch): one optimizer step on this process' batch (accum * micro, T + 1) of token ids (dataset.py's
    TokenBlocks.batch), in accum micro-batches of micro sequences. Returns the step's mean loss and the gradient norm
    before clipping, 0-d tensors left on the device: nothing in a step waits for the GPU, so the host prepares the
    next step while the GPU computes this one. grads_kept: see keep_grads."""
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def step(batch):
        micro = len(batch) // accum
        step_loss = torch.zeros((), device=batch.device)
        for i in range(accum):
            chunk = batch[i * micro:(i + 1) * micro]                               # (micro, T + 1)
            # DDP averages the gradients across processes during backward: only after the last micro-batch
            with model.no_sync() if isinstance(model, DDP) and i < accum - 1 else nullcontext():
                with autocast:
                    _, loss = model(chunk[:, :-1], chunk[:, 1:])       # the mean over micro x T tokens
                # / accum: the summed gradients are those of the mean over this process' sequences (and DDP's
                # average over processes makes it the global batch's mean)
                scaler.scale(loss / accum).backward()
            step_loss += loss.detach() / accum
        scaler.unscale_(optimizer)                                                 # a no-op unless fp16
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip or math.inf)  # the norm before clipping
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=not grads_kept)
        return step_loss, grad_norm
    return step

# -----------------------------------------------------------------------------
# CUDA graphs: a graph replays recorded kernels with one launch, on the memory it was recorded with


GRAPH_WARMUP = 3   # steps run as they are before the capture: compiling, autotuning and AdamW's first-step state
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")   # torch.compile modes that replay CUDA graphs of their own


def check_graph_flags(dtype, compile_mode):
    """ValueError, saying what to do instead, for settings graphed() never captures, whatever the machine: a compile
    mode with CUDA graphs of its own, float16. The message reads after the flag's name (train.py's --step_graph,
    bench.py's +sg)."""
    if compile_mode in CUDA_GRAPH_MODES:
        raise ValueError(f"captures the whole step in a CUDA graph itself: use --compile_mode default or "
                         f"max-autotune-no-cudagraphs, not {compile_mode} (whose CUDA graphs cannot be captured)")
    if dtype == "float16":
        raise ValueError("is checked in bfloat16 and float32, not with float16's loss scaling: use --dtype bfloat16 "
                         "(or float32)")


def check_graph_supported(device, dtype, world, compile_mode):
    """check_graph_flags, and a CUDA device and one process: ValueError unless graphed() can capture the step."""
    check_graph_flags(dtype, compile_mode)
    if torch.device(device).type != "cuda":
        raise ValueError(f"needs a CUDA GPU, got {device}")
    if world > 1:
        raise ValueError("runs in one process (DDP's all-reduces are not captured): not under torchrun")


def graphed(step, device, say=print):
    """step(batch) -> a function taking the same steps: the first GRAPH_WARMUP as they are (on a side stream, as
    PyTorch's CUDA graph notes ask), then one CUDA graph of the whole step, captured once and replayed: a single
    launch instead of one from Python per kernel, which the small models' 2-3 ms steps otherwise wait on (compile
    mode reduce-overhead graphs only the compiled model, its forward and backward apart; the optimizer, clipping and
    the fused loss's graph break are still launched one by one). The graph reads its batch from a tensor of its own
    (each call copies the batch in) and its AdamW the LR from a device tensor (set_lr); it returns the same two
    output tensors every replay, overwritten by the next. say(line) is told when the capture is done."""
    side, graph, static = torch.cuda.Stream(device), None, {}
    calls = 0

    def run(batch):
        nonlocal graph, calls
        calls += 1
        if calls <= GRAPH_WARMUP:
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                out = step(batch)
            torch.cuda.current_stream(device).wait_stream(side)
            return out
        if graph is None:   # capturing records the kernels without running them: the replay below runs the step
            static["batch"], graph, t0 = batch.clone(), torch.cuda.CUDAGraph(), time.perf_counter()
            try:
                with torch.cuda.graph(graph, stream=side):
                    static["out"] = step(static["batch"])
            except RuntimeError as e:   # an operation that waits for the GPU, say. Ending the broken capture raises
                graph = None            # again ("a previous error during capture"): the first error is its context
                cause = e.__context__ if isinstance(e.__context__, RuntimeError) else e
                raise RuntimeError(f"--step_graph: this step cannot be captured in a CUDA graph ("
                                   f"{str(cause).splitlines()[0][:200]}): train without --step_graph") from cause
            say(f"captured the whole step as one CUDA graph in {time.perf_counter() - t0:.2f} s, after "
                f"{GRAPH_WARMUP} steps run as they are: each step from here is one replay")
        else:
            static["batch"].copy_(batch)
        graph.replay()
        return static["out"]
    return run


def keep_grads(model, compile_mode, accum):
    """CUDA graphs (compile modes reduce-overhead and max-autotune) reuse their outputs' memory at the next replay:
    with several micro-batches a step, the gradients the first backward handed over would be overwritten by the next
    forward (torch stops: "accessing tensor output of CUDAGraphs that has been overwritten"). Gradients allocated
    once, outside the graphs, are added into instead. -> True when it allocated them (zero_grad must then zero them,
    not free them: set_to_none=False)."""
    if compile_mode not in CUDA_GRAPH_MODES or accum == 1:
        return False
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    return True
