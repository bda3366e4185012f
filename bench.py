"""
bench.py: how fast a training step of the paper's models runs, the plain path against faster ones, side by side.

    python bench.py                                               # CPU: h32-L2, h64-L2, fp32, 32 x 128 tokens,
                                                                  # plain against chunked
    python bench.py --models h32-L2,h256-L4,h1024-L8             # a GPU: bf16, compile, fused AdamW, 512 x 128
    python bench.py --models h256-L4 --paths plain,chunked,fused,fused+cg,plain@128 --json out/bench.json
    python bench.py --models h32-L2 --paths plain,auto+cg --profile 15      # and where each path's time goes
    python bench.py --models h1024-L8 --paths plain,chunked,chunked+ma      # inductor's max-autotune
    python bench.py --models h1024-L8 --paths plain,auto+cg,auto+cg+f8      # float8 matmuls
    python bench.py --models h32-L2 --paths plain,auto+cg,auto+cg+ta        # attention.py's kernels
    python bench.py --models h32-L2 --paths plain,auto+cg,auto+sg,auto+sg+ta  # each step one CUDA graph
    python bench.py --models h32-L2,h128-L4,h256-L4,h512-L4,h1024-L8 --sweep     # + the paper's 36 runs, estimated

Every path is the step train.py takes (its batch fetched from a token file, forward, backward, gradient clipping,
AdamW) on the same synthetic random tokens (no dataset needed), from the same initial weights. A path is
LOSS[+cg|+sg][+ma][+f8|+f8w][+ta][@MICRO]:
    LOSS     plain    the full (B*T, V) logits, then the cross-entropy (train.py --loss plain)
             chunked  the head and loss --loss_chunk rows at a time, never the full logits (chunked_loss.py)
             fused    Triton kernels that never write the logits (fused_loss.py; a GPU)
             auto     what train.py --loss auto picks for the model and device
    +cg      torch.compile mode "reduce-overhead": CUDA graphs replay the compiled kernels without launch overhead
    +ma      torch.compile mode "max-autotune-no-cudagraphs" (with +cg: "max-autotune"): inductor times Triton
             matmul templates against cuBLAS and fuses element-wise work into them (minutes of compiling)
    +f8      the blocks' matmuls in float8 (train.py --fp8, fp8.py; an H100 or later): changes the numbers a little
    +f8w     +f8 with the weight gradients' matmuls in float8 too (train.py --fp8 --fp8_weight_grad)
    +ta      attention in attention.py's Triton kernels (train.py --attention triton; a GPU, heads up to h256's)
    +sg      the whole step (forward, backward, clipping, AdamW) captured once as one CUDA graph and replayed
             (train.py --step_graph; a GPU; not with +cg, whose graphs it would capture)
    @MICRO   sequences per forward pass (default: the whole batch), the rest accumulated
With FUSED_LOSS_TRACE=1 in the environment, compiled paths trace the fused loss's kernels into their graphs rather
than calling them through a graph break (fused_loss.py; opt-in: 1.09x at h32-L2 in one pair of H200 runs).
The first path is the baseline. Each model prints, per path: tokens/s, step time and the host's share of it (the time
until the steps were issued, an upper bound: well under the step time, the GPU sets the pace; near it, the host may,
or the host waited for the GPU with a full launch queue: --profile tells the GPU's busy time), MFU (on a GPU
against the bf16 matmul rate measured first, or --peak_flops), peak memory of the timed steps
(torch.cuda.max_memory_reserved on a GPU, CUDA graphs' memory pool included: the steady state, without the first
steps' compiling and autotuning buffers, which are released before; on a CPU the process's peak resident memory,
libraries and earlier paths' freed pages included, so only a rough comparison; "n/a" where Linux does not report it)
and the first step's loss (the paths must agree); then each path's ratios to the baseline. On a GPU the default
paths are plain (bf16 + torch.compile + fused AdamW) and auto+cg, what README.md recommends. First it times train.py's
data loading (part of the host's share of a step), which must stay under the step times for the GPU never to wait.
"""
import argparse
import gc
import os
import re
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch.autograd import DeviceType   # (a profile event's: CPU or CUDA)

import fp8
from model import (GPT, LOSS_KINDS, PAPER_GRID, PAPER_TRAIN_TOKENS, auto_dtype, autocast_for, choose_loss,
                   config_from_name, mfu, peak_flops, pick_device, triton_module)
from files import HelpFormat, make_dir, read_json, read_log, write_json
from dataset import TokenBlocks, block_ids
from results import ADDED_SETTINGS   # train.py settings added later, at the value older runs had
from step import GRAPH_WARMUP, adamw, check_graph_supported, graphed, keep_grads, make_step   # train.py's step
from train import COMPILE_MODES

# -----------------------------------------------------------------------------
# Measuring


def cpu_peak_rss_reset():
    """Reset the process's peak resident memory (Linux: VmHWM); True where that worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _proc_status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def measure_matmul_peak(device, n=8192, reps=20):
    """The bf16 FLOP/s of a large square matmul on random data: the rate MFU is measured against on a GPU (the
    datasheet's is higher: an H100 SXM does about 790 of its 989 TFLOP/s here)."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):   # from idle clocks up to speed
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    return 2 * n ** 3 * reps / (start.elapsed_time(end) / 1e3)


def random_tokens(args):
    """train.py's TokenBlocks over a token file of random ids, 64 batches of them: each path's steps fetch their
    batches as train.py does (block order, gather, copy to the device). The file is read into memory (as a small
    file sits in the page cache) so that its temporary directory can go."""
    dtype = np.uint16 if args.vocab_size < 2 ** 16 else np.uint32
    tokens = np.random.default_rng(args.seed).integers(0, args.vocab_size, 64 * args.batch_size * args.block_size + 1)
    with tempfile.TemporaryDirectory() as d:
        tokens.astype(dtype).tofile(Path(d) / "train.bin")
        data = TokenBlocks(Path(d) / "train.bin", dtype, args.block_size, args.vocab_size)
        data.tokens = np.array(data.tokens)
    return data


def fetch(data, i, args, device):
    """Batch i of a run's stream, (batch_size, block_size + 1) token ids on device, as train.py fetches it."""
    return data.batch(block_ids(i * args.batch_size, args.batch_size, data.n, args.seed), device)


def time_data_loading(data, args, device, reps=20):
    """Seconds train.py's host side takes to fetch one batch. The GPU runs ahead while the host fetches, so this must
    stay well under a step."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fetch(data, 0, args, device)
    sync()
    t0 = time.perf_counter()
    for i in range(1, reps + 1):
        fetch(data, i, args, device)
    sync()
    return (time.perf_counter() - t0) / reps


# What each kernel (GPU) or operation (CPU) of a step is, by name (cuBLAS, CUTLASS, inductor's Triton kernels and
# templates, flash attention, the fused loss, fused AdamW, ...); the first match wins, the rest is "other"
# (the chunked loss: its gathers and scatters count as loss, its matmuls as matmul, its exps and divisions as
# element-wise)
KINDS = [("loss", r"_rows_kernel|_vocab_kernel|cross_entropy|softmax|nll|logsumexp|CrossEntropy|gather|scatter_add"),
         ("attention", r"flash|fmha|attention|sdpa"),
         ("matmul", r"gemm|cutlass|xmma|nvjet|triton_tem|aten::(mm|addmm|bmm|_scaled_mm)$"),
         ("optimizer", r"adam|multi_tensor|foreach"),
         ("embedding", r"embedding|index_select|indexing|sort|scatter|segment|grad_weight"),
         ("element-wise", r"triton_|elementwise|vectorized|reduce|copy|fill|cat|aten::(mul|add|sub|div|pow|mean|"
                          r"rsqrt|silu|neg|exp|where|sum|to|_to_copy|clone|pad|sigmoid)")]


def time_by_kind(events, device_type):
    """{kind: milliseconds} of a profile's events (KINDS), each moment counted once: on a GPU its kernels' time (the
    CPU operation that launched a kernel is given that kernel's time too: counting both counted it twice, as torch's
    own table knows), on a CPU each operation's own time, not its callees'."""
    kinds = {}
    for e in events:
        if device_type != "cuda":
            us = e.self_cpu_time_total
        else:
            us = e.self_device_time_total if e.device_type == DeviceType.CUDA and not getattr(
                e, "is_user_annotation", False) else 0
        if us > 0:
            kind = next((k for k, pattern in KINDS if re.search(pattern, e.key, re.IGNORECASE)), "other")
            kinds[kind] = kinds.get(kind, 0.0) + us / 1e3
    return kinds


def profile_step(model_name, path_name, run_step, device_type, rows):
    """Profile run_step(), print its `rows` most expensive operations (GPU kernels on a GPU) and its time by kind
    (KINDS: matmul, element-wise, loss, attention, optimizer, ...); returns {kind: milliseconds}."""
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device_type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        run_step()
    events = prof.key_averages()
    key = "self_device_time_total" if device_type == "cuda" else "self_cpu_time_total"   # (not inclusive times:
    print(f"profile of one step, {model_name} {path_name}:")                              # wrappers would top it)
    print(events.table(sort_by=key, row_limit=rows, max_name_column_width=60))
    kinds = time_by_kind(events, device_type)
    total = sum(kinds.values())
    print(f"{model_name} {path_name} by kind: " + ", ".join(
        f"{k} {ms:.2f} ms ({ms / total:.0%})" for k, ms in sorted(kinds.items(), key=lambda kv: -kv[1])))
    return kinds


FUSED_LOSS_TRACE = os.environ.get("FUSED_LOSS_TRACE") == "1"   # fused_loss.py: how torch.compile calls the kernels
PATH_MODES = {(False, False): "default", (True, False): "reduce-overhead",   # (+cg, +ma) -> torch.compile mode
              (False, True): "max-autotune-no-cudagraphs", (True, True): "max-autotune"}
assert set(PATH_MODES.values()) == set(COMPILE_MODES)   # train.py's --compile_mode takes what bench.py times


def parse_path(spec, batch_size):
    """'fused+cg@128' -> {"name", "loss": "fused", "cuda_graphs": True, "compile_mode": "reduce-overhead",
    "fp8": False, "fp8_weight_grad": False, "attention": "sdpa", "step_graph": False, "micro": 128}; SystemExit if
    malformed."""
    m = re.fullmatch(r"(\w+)((?:\+cg|\+sg|\+ma|\+f8w?|\+ta)*)(?:@(\d+))?", spec)
    parts = [p.rstrip("w") for p in m[2].split("+")] if m else []   # (+f8 and +f8w: one or the other)
    if not m or m[1] not in LOSS_KINDS or len(set(parts)) != len(parts):
        raise SystemExit(f"--paths: {spec!r} is not LOSS[+cg|+sg][+ma][+f8|+f8w][+ta][@MICRO] with LOSS one of "
                         f"{', '.join(LOSS_KINDS)}")
    mode = PATH_MODES["+cg" in m[2], "+ma" in m[2]]
    micro = int(m[3] or batch_size)
    if micro < 1 or batch_size % micro:
        raise SystemExit(f"--paths: micro-batch {micro} of {spec!r} must divide --batch_size {batch_size}")
    return {"name": spec, "loss": m[1], "cuda_graphs": "+cg" in m[2], "compile_mode": mode, "fp8": "+f8" in m[2],
            "fp8_weight_grad": "+f8w" in m[2], "attention": "triton" if "+ta" in m[2] else "sdpa",
            "step_graph": "+sg" in m[2], "micro": micro}


def time_path(model_name, args, device, dtype, path, data):
    """Build the model, run args.warmup then args.steps optimizer steps of args.batch_size sequences of data the way
    `path` says, each fetching its batch (every path the same batches); returns the figures of the timed steps."""
    device_type = device.split(":")[0]
    compiled = args.compile or path["compile_mode"] != "default"
    if compiled:   # each path compiles afresh: no shapes marked dynamic by the previous model's graphs (and the
        torch._dynamo.reset()   # previous path's CUDA-graph memory freed before the peak is reset)
    gc.collect()
    if device_type == "cuda":
        torch.cuda.empty_cache()
    torch.manual_seed(args.seed)
    model = GPT(config_from_name(model_name, vocab_size=args.vocab_size, block_size=args.block_size)).to(device)
    loss_kind = model.set_loss(path["loss"], args.loss_chunk)
    model.set_attention(path["attention"])
    # as train.py --fp8: before the optimizer and the compile
    fp8_linears = len(fp8.use_fp8(model, path["fp8_weight_grad"])) if path["fp8"] else 0
    graph = path["step_graph"]
    optimizer = adamw(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-4, weight_decay=0.1, device=device,
                      graph=graph)   # train.py's
    step_model = torch.compile(model, mode=path["compile_mode"]) if compiled else model
    autocast = autocast_for(device, dtype)
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == "float16")   # as train.py: fp16 needs loss scaling
    micro = path["micro"]
    accum = args.batch_size // micro
    grads_kept = keep_grads(model, path["compile_mode"] if compiled else None, accum)   # as train.py

    step = make_step(step_model, optimizer, scaler, autocast, accum, 1.0, grads_kept)
    if graph:
        step = graphed(step, device, lambda line: print(f"bench: {model_name} {path['name']}: {line}"))
    warmup = max(args.warmup, GRAPH_WARMUP + 1) if graph else args.warmup   # +sg: captured before the timing

    sync = torch.cuda.synchronize if device_type == "cuda" else (lambda: None)
    try:
        first_loss = step(fetch(data, 0, args, device))[0].item()
        for i in range(1, warmup):               # warm: compiled, autotuned, allocator and caches filled
            step(fetch(data, i, args, device))
        sync()
        if device_type == "cuda":   # the timed steps' peak: Triton's autotuning allocates a 256 MB buffer in step 1
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        hwm_reset = device_type == "cpu" and cpu_peak_rss_reset()
        batch = fetch(data, warmup, args, device)   # (each timed step then fetches the next: one fetch a step)
        t0, steps, host = time.perf_counter(), 0, 0.0
        while steps == 0 or time.perf_counter() - t0 < args.min_seconds:   # rounds of --steps, no sync inside
            r0 = time.perf_counter()
            for _ in range(args.steps):
                step(batch)
                steps += 1
                batch = fetch(data, warmup + steps, args, device)   # (as train.py: while the GPU runs this step)
            host += time.perf_counter() - r0   # until the round was issued: the host's share, or more where the
            sync()                             # host had to wait for the GPU (a full launch queue)
        step_s = (time.perf_counter() - t0) / steps
        profile = None
        if args.profile:                               # one more step, kernel by kernel: where the time goes
            profile = profile_step(model_name, path["name"], lambda: (step(fetch(data, 0, args, device)), sync()),
                                   device_type, args.profile)
    except Exception as e:   # the path is left out (the model and optimizer are freed on return, gc.collect() next)
        if any(isinstance(x, torch.cuda.OutOfMemoryError) or "out of memory" in str(x)   # (also wrapped by a compile)
               for x in (e, e.__cause__, e.__context__) if x is not None):
            return {"oom": True, "path": path["name"], "error": "out of memory"}
        # a compile failure, no tile of the fused loss fits this GPU, a bug...: its cause printed whole (torch's first
        traceback.print_exc()   # line can be just "backend='inductor' raised:"), and main exits with an error
        error = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
        print(f"bench: {model_name} {path['name']} cannot run here: {error}")
        return {"oom": False, "path": path["name"], "error": error}
    tokens_per_s = args.batch_size * args.block_size / step_s
    if device_type == "cuda":   # reserved, not allocated: CUDA graphs replay into a memory pool they keep reserved,
        peak_mem = torch.cuda.max_memory_reserved(device)   # with no allocation the allocated count would see
    else:
        hwm = _proc_status_kb("VmHWM") if hwm_reset else None
        peak_mem = hwm * 1024 if hwm is not None else None
    return {"oom": False, "path": path["name"], "loss": loss_kind, "cuda_graphs": path["cuda_graphs"],
            "step_graph": graph, "fp8_linears": fp8_linears, "fp8_weight_grad": path["fp8_weight_grad"],
            "attention": path["attention"],
            "compile_mode": path["compile_mode"] if compiled else None,
            "micro_batch_size": micro, "loss_chunk": model.loss_chunk, "timed_steps": steps, "step_s": step_s,
            "host_s": host / steps,
            "tokens_per_s": tokens_per_s, "mfu": mfu(model.flops_per_token(), tokens_per_s, args.peak_flops),
            "peak_mem_bytes": peak_mem, "first_loss": first_loss, "params": model.num_params(),
            "profile_ms_by_kind": profile}


def ran(r):
    """Whether a time_path result has figures (not out of memory, no error)."""
    return not r["oom"] and not r.get("error")

# -----------------------------------------------------------------------------
# How long a scaling.py sweep takes, from its finished runs' speeds or a FLOP rate (scaling.py --dry-run)


def speed_key(train, device, world_size):
    """What one train.py process's speed depends on: its model, batch, compile, fp8 (and fp8_weight_grad), attention,
    step_graph and --threads flags, the kind of device (cpu, cuda) and the process count. A speed measured with other
    settings (batch 512 on a GPU vs 16 on a CPU) predicts nothing. device: as config.json's env records it ("cuda:0"),
    or train.py's --device for a planned run."""
    kind = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
    train = {**ADDED_SETTINGS, **train}   # a run from before a setting: trained at its old value
    return (train["model"], train["batch_size"], bool(train.get("compile")), train["fp8"], train["fp8_weight_grad"],
            train["attention"], train["step_graph"], train.get("threads", 0), kind.split(":")[0], world_size)


def measured_speeds(out_dir):
    """Tokens/s one train.py process reached per speed_key (evals included; seconds_for adds the start-up): the
    median of the finished runs in out_dir. On a CPU, small models are bound by per-step overheads more than by FLOPs
    (h32-L2 and h128-L2 both ran ~8k tokens/s here), so a model's own past speed predicts its time better than a FLOP
    rate. A speed is taken as measured: runs that shared a GPU (--runs_per_gpu) or cores were as slow as that sharing
    made them."""
    speeds = {}
    for log in Path(out_dir).glob("*/log.jsonl"):
        try:     # an unreadable run directory is reported by run_state; here it only has no speed
            config, end = read_json(log.parent / "config.json"), [e for e in read_log(log) if e.get("event") == "end"]
            if end and end[-1].get("elapsed_s"):
                key = speed_key(config["train"], config["env"]["device"], config["env"]["world_size"])
                speeds.setdefault(key, []).append(end[-1]["tokens"] / end[-1]["elapsed_s"])
        except (ValueError, KeyError, TypeError):
            continue
    return {k: float(np.median(v)) for k, v in speeds.items()}


def seconds_for(run, speeds, args):
    """Predicted wall time of one run: D over the measured speed of its model with its settings (speed_key), else a
    guess from its FLOPs (evals of 200 val blocks included, forward only: a third of a training token) at 3.5e10 FLOP/s
    per CPU thread (the default grid on a quiet 2-core machine: 3.3e10 averaged over its 12 runs, 8 min on 2 slots)
    or 30% of a known GPU's peak, shared by the runs on that GPU (--runs_per_gpu, or --parallel without --gpus), plus
    ~3 s of start-up."""
    if run["speed_key"] in speeds:
        return run["D"] / speeds[run["speed_key"]] + 3
    if torch.cuda.is_available():
        per_gpu = args.runs_per_gpu if args.gpus else args.parallel
        rate = 0.3 * (peak_flops(torch.cuda.get_device_name()) or 1e14) * args.nproc_per_node / per_gpu
    else:
        cores = os.cpu_count() or 1           # runs with more threads than their share of the cores share them
        rate = 3.5e10 * min(args.threads or max(1, cores // args.parallel), max(cores / args.parallel, 1))
    evals = run["steps"] // args.eval_interval + 2
    return (run["C_exact"] + evals * 200 * run["train"]["block_size"] * run["flops_per_token"] / 3) / rate + 3


def schedule_seconds(seconds, parallel):
    """Wall time of jobs of these durations on `parallel` slots, each job taken in order by the first free slot."""
    slots = [0.0] * parallel
    for t in seconds:
        slots[slots.index(min(slots))] += t
    return max(slots, default=0.0)

# -----------------------------------------------------------------------------
# The paper's sweep, estimated from the measured models


def sweep_features(model_name, vocab_size, block_size):
    """What a step's time per token grows with: training FLOPs per token (the matmuls), layers x width (the
    element-wise traffic around them), 1 (a fixed cost per token: the loss over V, launches)."""
    with torch.device("meta"):                         # shapes only: no memory, no initialisation cost
        model = GPT(config_from_name(model_name, vocab_size=vocab_size, block_size=block_size))
    return [model.flops_per_token(), model.config.n_layer * model.config.n_embd, 1.0]


def fit(X, y):
    """Least squares y ~ X @ coef, the columns (1e9 FLOPs and 1) solved on a common scale."""
    norm = np.abs(X).max(0)
    return np.linalg.lstsq(X / norm, y, rcond=None)[0] / norm


def sweep_estimate(results, paths, vocab_size, block_size, tokens=PAPER_TRAIN_TOKENS):
    """GPU-hours of the paper's 36 runs (PAPER_GRID's 18 models x 2 corpora, `tokens` each) on each path, from the
    measured tokens/s: a measured model at its speed, the others from a least-squares fit over the measured ones of
    seconds per token = a x FLOPs per token + b x layers x width + c. A path measured on fewer than 4 models is left
    out (3 constants go through 3 points exactly: no check of the fit); "fastest" takes each model's fastest path.
    A grid model that could not run on a path (out of memory) cannot train there: that path gets no total (it is left
    out, with a note) and "fastest" takes the model from the other paths.
    -> {path or "fastest": {"hours", "measured", "fit_max_error", "loo_max_error" (each measured model predicted
    from the others), "seconds_per_token": {model: s}}}"""
    features = {m: np.array(sweep_features(m, vocab_size, block_size)) for m in PAPER_GRID}
    out, runnable = {}, {}        # runnable: every estimated path, each without the grid models it has no memory for
    for i, path in enumerate(paths):
        measured = {r["model"]: 1 / r["paths"][i]["tokens_per_s"] for r in results if ran(r["paths"][i])}
        if len(measured) < 4:
            continue
        X = np.array([features[m] if m in features else sweep_features(m, vocab_size, block_size) for m in measured])
        y = np.array(list(measured.values()))
        coef = fit(X, y)
        # each measured model predicted from the others: how far the fit carries to the models not measured
        loo = [abs(X[k] @ fit(np.delete(X, k, 0), np.delete(y, k)) / y[k] - 1) for k in range(len(y))]
        per_token = {m: measured.get(m, float(f @ coef)) for m, f in features.items()}
        if min(per_token.values()) <= 0:
            print(f"bench: sweep estimate for {path['name']} skipped: the fit predicts a time <= 0 for a grid model "
                  "(measure a wider range of sizes)")
            continue
        failed = [r["model"] for r in results if not ran(r["paths"][i]) and r["model"] in features]
        runnable[path["name"]] = {m: t for m, t in per_token.items() if m not in failed}
        if failed:
            print(f"bench: no sweep total for {path['name']}: {', '.join(failed)} could not run on it (out of memory: "
                  "try a smaller micro-batch, PATH@MICRO; or the error above); \"fastest\" takes them from the other "
                  "paths")
            continue
        out[path["name"]] = {"measured": sorted(measured), "fit_max_error": float(np.abs(X @ coef / y - 1).max()),
                             "loo_max_error": float(max(loo)), "seconds_per_token": per_token}
    nowhere = [m for m in PAPER_GRID if not any(m in t for t in runnable.values())]
    if len(runnable) > 1 and nowhere:
        print(f"bench: no \"fastest\" sweep total: {', '.join(nowhere)} could not run on any path")
    elif len(runnable) > 1:
        out["fastest"] = {"seconds_per_token": {m: min(t[m] for t in runnable.values() if m in t) for m in PAPER_GRID}}
    for e in out.values():
        e["hours"] = 2 * tokens * sum(e["seconds_per_token"].values()) / 3600
    return out

# -----------------------------------------------------------------------------
# The command line


def fmt_row(model_name, r):
    path = r["path"]
    if not ran(r):
        return f"{model_name:<10} {path:<14} {r.get('error') or 'out of memory'}"
    mem = "n/a" if r["peak_mem_bytes"] is None else f"{r['peak_mem_bytes'] / 2**30:.2f} GiB"
    util = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
    return (f"{model_name:<10} {path:<14} micro {r['micro_batch_size']:<4} | tokens/s {r['tokens_per_s'] / 1e3:9.1f}k"
            f" | step {r['step_s'] * 1e3:8.1f} ms (host {r['host_s'] * 1e3:7.2f} ms) | MFU {util:>6} | peak mem "
            f"{mem:>10} | first loss {r['first_loss']:.4f}")


def parse_args(argv=None):
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormat)
    p.add_argument("--models", default="h32-L2,h256-L4,h1024-L8" if gpu else "h32-L2,h64-L2",
                   help="comma-separated h<hidden>-L<layers> names (default: small ones on CPU)")
    p.add_argument("--vocab_size", type=int, default=15000, help="V of the synthetic tokens (the paper: 15,000)")
    p.add_argument("--block_size", type=int, default=128, help="context length (the paper: 128)")
    p.add_argument("--batch_size", type=int, default=512 if gpu else 32, help="sequences per step (the paper: 512)")
    p.add_argument("--paths", default="plain,auto+cg" if gpu else "plain,chunked",
                   help="comma-separated LOSS[+cg|+sg][+ma][+f8|+f8w][+ta][@MICRO] (see above); the first is the "
                   "baseline")
    p.add_argument("--loss_chunk", type=int, default=8192, help="rows per chunk of the chunked loss")
    p.add_argument("--steps", type=int, default=5, help="timed steps per path, repeated for --min_seconds")
    p.add_argument("--min_seconds", type=float, default=2.0 if gpu else 0.0, help="time each path at least this long")
    p.add_argument("--warmup", type=int, default=3 if gpu else 1, help="untimed steps first (compilation included)")
    p.add_argument("--profile", type=int, default=0, help="> 0: also print each path's N costliest operations and "
                   "its time by kind (matmul, element-wise, loss, ...)")
    p.add_argument("--device", default="cuda" if gpu else "cpu", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="auto: as train.py (a GPU: bfloat16 where supported, else float16; CPU: float32)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=gpu, help="torch.compile (GPU: on)")
    p.add_argument("--peak_flops", type=float, default=0.0,
                   help="one device's peak FLOP/s for MFU (0: measured with a bf16 matmul on a GPU, none on CPU)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--sweep", action="store_true", help="also estimate the paper's 36 runs from the models measured "
                   "(4 or more, e.g. h32-L2,h128-L4,h256-L4,h512-L4,h1024-L8)")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        raise SystemExit("--models: name at least one model, e.g. h32-L2")
    for m in args.models:
        try:
            config_from_name(m)
        except ValueError as e:
            raise SystemExit(f"--models: {e}") from None
    for name in ("vocab_size", "block_size", "batch_size", "steps", "loss_chunk"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    args.paths = [parse_path(spec.strip(), args.batch_size) for spec in args.paths.split(",") if spec.strip()]
    if len(args.paths) < 1:
        raise SystemExit("--paths: name at least one path")
    if args.sweep and len(args.models) < 4:
        raise SystemExit(f"--sweep fits a 3-constant model of step time, checked on the models measured: measure at "
                         f"least 4 --models (got {len(args.models)}), e.g. h32-L2,h128-L4,h256-L4,h1024-L8")
    if args.warmup < 1:
        raise SystemExit("--warmup must be >= 1: the first step (allocation, compilation) is never timed")
    for name in ("profile", "min_seconds", "peak_flops", "threads"):
        if not getattr(args, name) >= 0:
            raise SystemExit(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.json and os.path.isdir(args.json):   # found now, not when the figures are written after the timing
        raise SystemExit(f"--json {args.json} is a folder: name a file, e.g. {os.path.join(args.json, 'bench.json')}")
    args.device = pick_device(args.device)
    if args.device == "cuda":   # main's torch.cuda.set_device needs an index ("cuda" alone raises): the current one
        args.device = "cuda:0"
    device_type = args.device.split(":")[0]
    args.dtype = args.dtype if args.dtype != "auto" else auto_dtype(args.device)
    for path in args.paths:   # a path that cannot run here is refused now, not after the others have been timed
        try:
            if path["fp8"]:
                fp8.check_supported(args.device, args.dtype)
        except ValueError as e:
            raise SystemExit(f"--paths {path['name']}: {e}") from None
        try:
            if path["step_graph"]:
                check_graph_supported(args.device, args.dtype, 1, path["compile_mode"])
        except ValueError as e:   # (its message reads after the flag's name)
            raise SystemExit(f"--paths {path['name']}: +sg (train.py --step_graph) {e}") from None
    for m in args.models:     # (the fused loss and attention.py: at each model's width)
        config = config_from_name(m)
        width = config.n_embd
        for path in args.paths:
            try:
                if choose_loss(path["loss"], width, device_type) == "fused":
                    triton_module("fused_loss").check_supported(device_type, width)
                if path["attention"] == "triton":
                    triton_module("attention").check_supported(device_type, args.block_size, config.head_dim)
            except ValueError as e:
                raise SystemExit(f"--paths {path['name']} at {m}: {e}") from None
    if args.json:
        make_dir(Path(args.json).parent, "--json path")
    return args


def save_json(args, device_name, dtype, data_s, results, sweep=None):
    write_json(args.json, {"device": device_name, "dtype": dtype, "compile": args.compile,
                           "vocab_size": args.vocab_size, "batch_size": args.batch_size, "block_size": args.block_size,
                           "torch": torch.__version__, "fused_loss_trace": FUSED_LOSS_TRACE,
                           "data_loading_s_per_batch": data_s, "results": results,
                           "sweep_estimate": sweep})


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device.startswith("cuda"):   # events, synchronize() and CUDA graphs act on the current device: make it this one
        torch.cuda.set_device(device)
    dtype = args.dtype   # (parse_args resolved "auto")
    name = (torch.cuda.get_device_name(device) if device.startswith("cuda")
            else f"CPU, {torch.get_num_threads()} threads")
    if not args.peak_flops and device.startswith("cuda"):
        args.peak_flops = measure_matmul_peak(device)
        print(f"bench: measured bf16 matmul peak {args.peak_flops / 1e12:.0f} TFLOP/s (datasheet: "
              f"{(peak_flops(name) or float('nan')) / 1e12:.0f}); MFU below is against the measured peak")
    print(f"bench: {name}, {dtype}, compile {args.compile}, V={args.vocab_size}, {args.batch_size} x {args.block_size}"
          f" tokens per step, {args.warmup} warm-up steps per path (+sg: at least {GRAPH_WARMUP + 1}), then rounds of "
          f"{args.steps} timed steps for at least {args.min_seconds:g} s; chunked loss: "
          f"{args.loss_chunk} rows; compiled paths call the fused loss "
          + ("traced into their graphs (FUSED_LOSS_TRACE=1)" if FUSED_LOSS_TRACE else "through a graph break"))
    data = random_tokens(args)
    data_s = time_data_loading(data, args, device)
    print(f"bench: train.py's data loading takes {data_s * 1e3:.2f} ms per batch on the host (block order, "
          f"gather, copy to {device})" + (", hidden behind any step longer than that" if device.startswith("cuda")
                                          else ", part of every step here (no device runs ahead of the host)"))
    results = []
    for model_name in args.models:
        rows = []
        for path in args.paths:
            rows.append(time_path(model_name, args, device, dtype, path, data))
            print(fmt_row(model_name, rows[-1]), flush=True)
        base, ratios = rows[0], {}
        for r in rows[1:]:
            if not (ran(base) and ran(r)):
                continue
            ratio = {"tokens_per_s": r["tokens_per_s"] / base["tokens_per_s"]}
            if base["peak_mem_bytes"] is not None and r["peak_mem_bytes"] is not None:
                ratio["peak_mem"] = r["peak_mem_bytes"] / base["peak_mem_bytes"]
            ratios[r["path"]] = ratio
            print(f"{model_name:<10} {r['path']}/{base['path']}: tokens/s x{ratio['tokens_per_s']:.2f}, peak mem "
                  + (f"x{ratio['peak_mem']:.2f}" if "peak_mem" in ratio else "n/a")
                  + f", first loss difference {abs(r['first_loss'] - base['first_loss']):.2e}", flush=True)
        results.append({"model": model_name, "paths": rows, "over_baseline": ratios})
        if args.json:
            save_json(args, name, dtype, data_s, results)   # after each model: a run cut short keeps what it measured
    if args.sweep:
        sweep = sweep_estimate(results, args.paths, args.vocab_size, args.block_size)
        print(f"bench: the paper's 36 runs (18 models x 2 corpora x {PAPER_TRAIN_TOKENS:,} tokens) on this device, "
              "measured models at their speed, the others from seconds per token = a x FLOPs + b x layers x width + c"
              + ("" if sweep else ": none (it needs 4 or more models measured on a path, and a fit that predicts "
                                  "times > 0)"))
        for path, e in sweep.items():
            how = (f"fit within {e['fit_max_error']:.1%} on {', '.join(e['measured'])}, each of them predicted from "
                   f"the others within {e['loo_max_error']:.0%}" if "measured" in e else
                   "each model on its fastest path")
            print(f"  {path:<14} {e['hours']:8.2f} device-hours ({how})")
        if args.json:
            save_json(args, name, dtype, data_s, results, sweep)
    failed = [f"{r['model']} {p['path']}" for r in results for p in r["paths"] if not ran(p) and not p["oom"]]
    if failed:   # (after every figure is printed and saved)
        raise SystemExit(f"bench: {len(failed)} path(s) failed ({', '.join(failed)}): their tracebacks are above")
    return results


if __name__ == "__main__":
    main()
