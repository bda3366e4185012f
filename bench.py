"""
bench.py: how fast a training step of the paper's models runs, the plain path against the fast path, side by side.

    python bench.py                                               # CPU: h32-L2, h64-L2, fp32, 32 x 128 tokens
    python bench.py --models h32-L2,h256-L4,h1024-L8             # a GPU: bf16, torch.compile, fused AdamW, 512 x 128
    python bench.py --models h1024-L8 --micro_batch_size 128 --fast_micro_batch_size 512 --json out/bench.json

Both paths are the step train.py takes (forward, backward, gradient clipping, AdamW) on the same synthetic random
tokens (no dataset needed), from the same initial weights:
    plain  the full (B*T, V) logits, then the cross-entropy (GPT.loss_chunk = 0, train.py's default)
    fast   the chunked loss (GPT.loss_chunk = --loss_chunk rows; train.py --loss_chunk), which never holds the full
           logits, and optionally larger micro-batches (--fast_micro_batch_size) in the memory that saves
Each model prints, per path: tokens/s, step time, MFU (against model.PEAK_FLOPS, or --peak_flops), peak memory
(torch.cuda.max_memory_allocated on a GPU; on a CPU the growth of the process's peak resident memory, "n/a" where
Linux does not report it) and the first step's loss (the two paths must agree); then the fast/plain ratios.
"""
import argparse
import gc
import json
import os
import time
from contextlib import nullcontext

import torch

from model import GPT, config_from_name, mfu, peak_flops

# -----------------------------------------------------------------------------
# Measuring


def cpu_peak_rss_reset():
    """Reset the process's peak resident memory (Linux: VmHWM) and return the current resident bytes, or None."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_kb("VmRSS") * 1024
    except (OSError, TypeError):
        return None


def _proc_status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def time_path(model_name, args, device, dtype, loss_chunk, micro, batches):
    """Build the model, run args.warmup then args.steps optimizer steps of args.batch_size sequences in micro-batches
    of `micro`; returns the figures of the timed steps."""
    device_type = device.split(":")[0]
    gc.collect()
    if device_type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss_start = cpu_peak_rss_reset() if device_type == "cpu" else None
    torch.manual_seed(args.seed)
    model = GPT(config_from_name(model_name, vocab_size=args.vocab_size, block_size=args.block_size)).to(device)
    model.loss_chunk = loss_chunk
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-4, weight_decay=0.1,
                                  fused=device_type == "cuda")
    if args.compile:
        torch._dynamo.reset()   # each path compiles afresh: no shapes marked dynamic by the previous model's graphs
    step_model = torch.compile(model) if args.compile else model
    autocast = nullcontext() if dtype == "float32" else torch.autocast(device_type, dtype=getattr(torch, dtype))
    accum = args.batch_size // micro

    def step(batch):                                   # batch (B, T + 1) token ids -> the step's mean loss
        loss_sum = torch.zeros((), device=device)
        for i in range(accum):
            chunk = batch[i * micro:(i + 1) * micro]
            with autocast:
                _, loss = step_model(chunk[:, :-1], chunk[:, 1:])
            (loss / accum).backward()
            loss_sum += loss.detach() / accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_sum

    sync = torch.cuda.synchronize if device_type == "cuda" else (lambda: None)
    first_loss = None
    try:
        for i in range(args.warmup + args.steps):
            if i == args.warmup:                       # warm: compiled, allocator and caches filled
                sync()
                t0 = time.perf_counter()
            loss = step(batches[i % len(batches)])
            first_loss = loss.item() if first_loss is None else first_loss
        sync()
    except torch.cuda.OutOfMemoryError:
        del model, optimizer, step_model
        return {"oom": True}
    step_s = (time.perf_counter() - t0) / args.steps
    tokens_per_s = args.batch_size * args.block_size / step_s
    if device_type == "cuda":
        peak_mem = torch.cuda.max_memory_allocated(device)
    else:
        hwm = _proc_status_kb("VmHWM") if rss_start is not None else None
        peak_mem = hwm * 1024 - rss_start if hwm is not None else None
    peak = args.peak_flops or (peak_flops(torch.cuda.get_device_name(device)) if device_type == "cuda" else None)
    return {"oom": False, "micro_batch_size": micro, "loss_chunk": loss_chunk, "step_s": step_s,
            "tokens_per_s": tokens_per_s, "mfu": mfu(model.flops_per_token(), tokens_per_s, peak),
            "peak_mem_bytes": peak_mem, "first_loss": first_loss, "params": model.num_params()}

# -----------------------------------------------------------------------------
# The command line


def fmt_row(model_name, path, r):
    if r["oom"]:
        return f"{model_name:<10} {path:<6} out of memory"
    mem = "n/a" if r["peak_mem_bytes"] is None else f"{r['peak_mem_bytes'] / 2**30:.2f} GiB"
    util = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
    return (f"{model_name:<10} {path:<6} micro {r['micro_batch_size']:<4} | tokens/s {r['tokens_per_s'] / 1e3:9.1f}k"
            f" | step {r['step_s'] * 1e3:8.1f} ms | MFU {util:>6} | peak mem {mem:>10} | first loss "
            f"{r['first_loss']:.4f}")


def parse_args(argv=None):
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="h32-L2,h256-L4,h1024-L8" if gpu else "h32-L2,h64-L2",
                   help="comma-separated h<hidden>-L<layers> names (default: small ones on CPU)")
    p.add_argument("--vocab_size", type=int, default=15000, help="V of the synthetic tokens (the paper: 15,000)")
    p.add_argument("--block_size", type=int, default=128, help="context length (the paper: 128)")
    p.add_argument("--batch_size", type=int, default=512 if gpu else 32, help="sequences per step (the paper: 512)")
    p.add_argument("--micro_batch_size", type=int, default=0, help="plain path's sequences per forward (0: batch)")
    p.add_argument("--fast_micro_batch_size", type=int, default=0, help="fast path's sequences per forward (0: batch)")
    p.add_argument("--loss_chunk", type=int, default=8192, help="fast path's rows per loss chunk")
    p.add_argument("--steps", type=int, default=5, help="timed steps per path")
    p.add_argument("--warmup", type=int, default=3 if gpu else 1, help="untimed steps first (compilation included)")
    p.add_argument("--device", default="cuda" if gpu else "cpu")
    p.add_argument("--dtype", default="auto", help="auto (bfloat16 on a GPU, float32 on CPU) | bfloat16 | float32")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=gpu, help="torch.compile (GPU: on)")
    p.add_argument("--peak_flops", type=float, default=0.0, help="one device's peak FLOP/s for MFU (0: look it up)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models:
        try:
            config_from_name(m)
        except ValueError as e:
            raise SystemExit(f"--models: {e}") from None
    for name in ("vocab_size", "block_size", "batch_size", "steps", "loss_chunk"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("micro_batch_size", "fast_micro_batch_size"):
        setattr(args, name, getattr(args, name) or args.batch_size)
        if args.batch_size % getattr(args, name):
            raise SystemExit(f"--{name} {getattr(args, name)} must divide --batch_size {args.batch_size}")
    if args.warmup < 1:
        raise SystemExit("--warmup must be >= 1: the first step (allocation, compilation) is never timed")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    dtype = args.dtype if args.dtype != "auto" else "bfloat16" if device.startswith("cuda") else "float32"
    name = (torch.cuda.get_device_name(device) if device.startswith("cuda")
            else f"CPU, {torch.get_num_threads()} threads")
    print(f"bench: {name}, {dtype}, compile {args.compile}, V={args.vocab_size}, {args.batch_size} x {args.block_size}"
          f" tokens per step, {args.warmup} warm-up + {args.steps} timed steps per path; fast path: loss chunks of "
          f"{args.loss_chunk} rows")
    g = torch.Generator().manual_seed(args.seed)
    batches = torch.randint(0, args.vocab_size, (3, args.batch_size, args.block_size + 1), generator=g).to(device)
    results = []
    for model_name in args.models:
        plain = time_path(model_name, args, device, dtype, 0, args.micro_batch_size, batches)
        print(fmt_row(model_name, "plain", plain), flush=True)
        fast = time_path(model_name, args, device, dtype, args.loss_chunk, args.fast_micro_batch_size, batches)
        print(fmt_row(model_name, "fast", fast), flush=True)
        ratio = {}
        if not plain["oom"] and not fast["oom"]:
            ratio = {"tokens_per_s": fast["tokens_per_s"] / plain["tokens_per_s"]}
            if plain["peak_mem_bytes"] and fast["peak_mem_bytes"]:
                ratio["peak_mem"] = fast["peak_mem_bytes"] / plain["peak_mem_bytes"]
            print(f"{model_name:<10} fast/plain: tokens/s x{ratio['tokens_per_s']:.2f}, peak mem "
                  + (f"x{ratio['peak_mem']:.2f}" if "peak_mem" in ratio else "n/a")
                  + f", first loss difference {abs(fast['first_loss'] - plain['first_loss']):.2e}", flush=True)
        results.append({"model": model_name, "plain": plain, "fast": fast, "fast_over_plain": ratio})
    if args.json:
        out = {"device": name, "dtype": dtype, "compile": args.compile, "vocab_size": args.vocab_size,
               "batch_size": args.batch_size, "block_size": args.block_size, "results": results}
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.json)
    return results


if __name__ == "__main__":
    main()
