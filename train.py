"""
train.py: pre-train one model on one dataset directory, as the paper did (section 5).

    python train.py                                   # CPU demo: h64-L2 on data/simplified, a few minutes
    # a paper run on one GPU, bf16 (its data: `python simplify.py --paper --source ... --out_dir data/paper`)
    python train.py --data_dir data/paper/simplified --model h256-L4 --batch_size 512 --lr 9.9e-4 --warmup_steps 1000
    python train.py ... --compile --compile_mode reduce-overhead   # faster on a GPU (README: training speed)
    torchrun --standalone --nproc_per_node=8 train.py --model h1024-L8 --batch_size 512 ...   # one node, 8 GPUs
    python train.py --run_name NAME --resume          # continue an interrupted run (same flags as before, but
                                                      # no --stop_at_step, or a later one)

The optimisation is the paper's: AdamW (0.9, 0.95, eps 1e-4, weight decay 0.1 on every parameter), linear warmup
then a quarter-cycle cosine down to half the peak LR, one pass over the data in 128-token blocks. Every flag is a
field of TrainConfig below (`python train.py --help`). A run writes out/<run_name>/:
    config.json   the full config, dataset (dir, tokenizer sha256), model, environment, unigram baseline
    log.jsonl     one JSON object per line: {"event": "start" | "step" | "resume" | "stopped" | "end", ...};
                  a step line: step, tokens, train_loss, val_loss (eval steps), lr, grad_norm, tokens_per_s, mfu,
                  elapsed_s
    ckpt.pt       model (unwrapped), optimizer, scaler, step, data position, RNG states, configs
model.load_checkpoint(run_dir) gives the trained model back (evaluate.py uses it).
"""
import argparse
import inspect
import json
import math
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import fp8   # --fp8: float8 matmuls (H100/H200)
from model import (ATTENTION_KINDS, GPT, LOSS_KINDS, auto_dtype, autocast_for, check_device_name, config_from_name,
                   first_sentence, mfu, peak_flops, pick_device, read_checkpoint)
from files import (HelpFormat, hms, make_dir, read_log, try_lock, whole_number,   # --help; seconds -> h:mm:ss; the
                   write_atomic)   # log's events; a lock: one writer; 1e6 -> 1000000; temp file + rename
from dataset import (TokenBlocks, block_ids, document_start, load_meta, load_tokenizer,   # what simplify.py wrote
                     unigram_baseline)
from results import ADDED_SETTINGS   # settings added later, at the value older runs trained with (fp8: off)
from step import (adamw, check_graph_flags, check_graph_supported, graphed, keep_grads,   # one optimizer step, its
                  load_optimizer_state, lr_at, make_step, set_lr)   # LR, the step as one CUDA graph

# -----------------------------------------------------------------------------
# Hyperparameters: every field is a command-line flag (its comment is the --help text)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


@dataclass
class TrainConfig:
    # data and the run directory
    data_dir: str = "data/simplified"  # dataset directory written by simplify.py
    out_dir: str = "out"  # runs go to <out_dir>/<run_name>/
    run_name: str = ""  # default: <model>-<dataset directory name>
    resume: bool = False  # continue <out_dir>/<run_name> from its ckpt.pt (pass the run's original flags)
    overwrite: bool = False  # start afresh even if <out_dir>/<run_name> already holds a run
    # model
    model: str = "h64-L2"  # h<hidden>-L<layers>; the paper's grid: h32..h1024 x L2, L4, L8
    block_size: int = 128  # context length in tokens (the paper: 128)
    rope_base: float = 10000.0  # RoPE base (the paper: 10,000)
    # optimisation
    batch_size: int = 32  # global batch in sequences per optimizer step, whatever the process count (paper: 512)
    micro_batch_size: int = 0  # sequences per forward pass in each process (0: batch_size / processes)
    lr: float = 3e-3  # peak learning rate (the paper: 2.8e-3 for its smallest model; scaling.py sets one per width)
    warmup_steps: int = 30  # linear warmup steps (paper: 1000)
    final_lr_frac: float = 0.5  # the quarter-cycle cosine heads to this fraction of the peak LR (after the last step)
    beta1: float = 0.9  # AdamW (paper: 0.9, 0.95, eps 1e-4)
    beta2: float = 0.95  # AdamW
    eps: float = 1e-4  # AdamW
    weight_decay: float = 0.1  # applied to every parameter, as the authors did
    grad_clip: float = 1.0  # clip the global gradient norm to this (0: off); the norm is logged either way
    epochs: float = 1.0  # passes over train.bin (the paper: one)
    max_tokens: int = 0  # token budget, replaces --epochs when > 0 (data-size scaling); 2.1e9 style accepted
    seed: int = 1337  # model init and data order
    # evaluation, logging, checkpoints
    eval_interval: int = 100  # val loss and a checkpoint every N steps (and at the end)
    eval_blocks: int = 200  # val loss over at most this many val.bin blocks (a fixed, evenly spread subset)
    log_interval: int = 10  # a log line every N steps
    stop_at_step: int = 0  # stop after this step with a checkpoint, schedule unchanged (continue with --resume)
    sample_tokens: int = 48  # at the end print a sample of this many tokens (0: none)
    # system
    device: str = "auto"  # auto (cuda if available, else cpu) | cpu | cuda | mps
    dtype: str = "auto"  # auto (bfloat16 if supported, else float16, float32 on CPU) | bfloat16 | float16 | float32
    compile: bool = False  # torch.compile the model (GPUs: faster after a minute of compiling)
    compile_mode: str = "default"  # default | reduce-overhead (CUDA graphs) | max-autotune[-no-cudagraphs] (--compile)
    step_graph: bool = False  # replay each whole step (forward, backward, clipping, AdamW) as one CUDA graph
    loss: str = "auto"  # plain | chunked | fused (Triton, GPU) | auto (plain on CPU; GPU: fused to h256, chunked)
    loss_chunk: int = 8192  # rows per chunk of the chunked loss
    attention: str = "sdpa"  # sdpa (PyTorch's flash kernels) | triton (attention.py, GPU, heads up to h256's)
    fp8: bool = False  # the blocks' matmuls in float8 while training (fp8.py: H100/H200; changes the numbers a little)
    fp8_weight_grad: bool = False  # with --fp8, the weight gradients' matmuls in float8 too (else in bf16)
    threads: int = 0  # CPU threads per process (0: torch's default)
    peak_flops: float = 0.0  # peak FLOP/s of one device for MFU (0: look its name up in model.PEAK_FLOPS)


# Settings that shape the trajectory: a resumed run must use the values its checkpoint was written with.
# (eval_blocks too: the val losses of one log are measured on the same blocks)
RESUME_MUST_MATCH = ("model", "block_size", "rope_base", "batch_size", "lr", "warmup_steps", "final_lr_frac",
                     "beta1", "beta2", "eps", "weight_decay", "grad_clip", "epochs", "max_tokens", "seed",
                     "eval_blocks", "fp8", "fp8_weight_grad")


def parse_args(argv=None):
    # allow_abbrev=False: --batch is not --batch_size (scaling.py refuses some flags in --train_args by their names)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormat, allow_abbrev=False)
    comments = dict(re.findall(r"^\s+(\w+): \w+ = .*?# (.*)$", inspect.getsource(TrainConfig), re.M))
    for f in fields(TrainConfig):
        kind = {"type": whole_number if f.type is int else f.type}
        if f.type is bool:
            kind = {"action": argparse.BooleanOptionalAction}
        parser.add_argument(f"--{f.name}", default=f.default, help=comments[f.name], **kind)
    return TrainConfig(**vars(parser.parse_args(argv)))


def check_config(cfg):
    """SystemExit with one line for a flag out of its range (before anything is written or deleted)."""
    for name in ("batch_size", "eval_interval", "log_interval", "block_size", "eval_blocks", "loss_chunk"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("micro_batch_size", "warmup_steps", "grad_clip", "weight_decay", "stop_at_step", "max_tokens"):
        if getattr(cfg, name) < 0:
            raise SystemExit(f"--{name} must be >= 0, got {getattr(cfg, name)}")
    for name, ok, rule in (("lr", cfg.lr > 0, "> 0"), ("epochs", cfg.epochs > 0, "> 0"),
                           ("rope_base", cfg.rope_base > 1, "> 1 (the paper: 10,000)"), ("eps", cfg.eps > 0, "> 0"),
                           ("beta1", 0 <= cfg.beta1 < 1, "in [0, 1)"), ("beta2", 0 <= cfg.beta2 < 1, "in [0, 1)"),
                           ("final_lr_frac", 0 <= cfg.final_lr_frac <= 1, "in [0, 1]"),   # < 0: gradient ascent
                           ("threads", 0 <= cfg.threads <= 4 * (os.cpu_count() or 1), f">= 0 and at most 4 x the "
                            f"{os.cpu_count()} cores"), ("peak_flops", cfg.peak_flops >= 0, ">= 0"),
                           ("seed", 0 <= cfg.seed < 2 ** 63, "in [0, 2^63)")):   # (torch's and numpy's seeds)
        if not ok:
            raise SystemExit(f"--{name} must be {rule}, got {getattr(cfg, name)}")
    for f in fields(TrainConfig):   # inf and NaN pass the comparisons above, or fail them with the wrong advice
        if f.type is float and not math.isfinite(getattr(cfg, f.name)):
            raise SystemExit(f"--{f.name} must be a finite number, got {getattr(cfg, f.name)}")
    if cfg.run_name and (Path(cfg.run_name).name != cfg.run_name.rstrip("/") or cfg.run_name in (".", "..")):
        raise SystemExit(f"--run_name {cfg.run_name!r}: a plain folder name, no / or .. (--out_dir says where)")
    for name, allowed in (("dtype", ("auto", "bfloat16", "float16", "float32")), ("loss", LOSS_KINDS),
                          ("attention", ATTENTION_KINDS), ("compile_mode", COMPILE_MODES)):
        if getattr(cfg, name) not in allowed:
            raise SystemExit(f"--{name} {getattr(cfg, name)!r}: use one of {', '.join(allowed)}")
    check_device_name(cfg.device)   # (whether this machine has that device: pick_device, once it is known)
    if cfg.resume and cfg.overwrite:
        raise SystemExit("--resume continues the run, --overwrite deletes it: pass one of them")
    if cfg.compile_mode != "default" and not cfg.compile:
        raise SystemExit(f"--compile_mode {cfg.compile_mode} needs --compile")
    if cfg.fp8_weight_grad and not cfg.fp8:
        raise SystemExit("--fp8_weight_grad goes with --fp8 (the weight gradients of float8 matmuls): add --fp8")
    if cfg.step_graph:   # (the device and the process count: once they are known, in _train)
        try:
            check_graph_flags(cfg.dtype, cfg.compile_mode)
        except ValueError as e:
            raise SystemExit(f"--step_graph {e}") from None
    try:
        config_from_name(cfg.model)
    except ValueError as e:
        raise SystemExit(f"--model: {e}") from None

# -----------------------------------------------------------------------------
# Checkpoints


def check_resumable(ckpt, cfg, model_config, meta, n_train_blocks, dtype):
    """Refuse a checkpoint from another model, tokenizer, dataset or optimisation setting, saying which."""
    def differ(old, new, keys):
        return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}
    problems = [f"{what} differ (checkpoint vs now: {d})" for what, d in (
        ("model settings", differ(ckpt["model_config"], asdict(model_config), asdict(model_config))),
        ("training settings", differ({**ADDED_SETTINGS, **ckpt.get("train_config", {})}, asdict(cfg),
                                     RESUME_MUST_MATCH)),
        ("tokenizers", differ(ckpt, {"tokenizer_sha256": meta["tokenizer"]["sha256"]}, ["tokenizer_sha256"])),
        ("train.bin sizes", differ(ckpt, {"n_train_blocks": n_train_blocks}, ["n_train_blocks"])),
        ("precisions", differ(ckpt, {"dtype": dtype}, ["dtype"] if "dtype" in ckpt else []))) if d]
    if problems:
        raise SystemExit(f"cannot resume from {cfg.out_dir}/{cfg.run_name}/ckpt.pt: {'; '.join(problems)}. "
                         "Pass the run's original flags and dataset, or start a new --run_name")


def rng_states():
    """torch's generators (CPU and CUDA) and Python's. Nothing random is drawn while training (no dropout, and the
    data order is a function of (seed, epoch), recomputed on resume): they are kept for forks that add randomness
    (dropout, sampled data), which exact resume would otherwise lose."""
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(s):
    random.setstate(tuple(s["python"]))
    torch.set_rng_state(s["torch"].cpu())
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in s["cuda"]])

# -----------------------------------------------------------------------------
# Environment and logging


HELD_LOCKS = []   # the run directory's lock (files.try_lock) while train() runs: released on return


def environment(device, world_size):
    def git(*args):   # the code that ran: its commit, and whether the checkout had uncommitted changes
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                  cwd=Path(__file__).parent).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None
    commit = git("rev-parse", "HEAD")
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or device)
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), "argv": sys.argv,
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cuda": torch.version.cuda, "device": device, "device_name": name, "world_size": world_size,
            "threads": torch.get_num_threads(), "git_commit": commit,
            "git_dirty": None if commit is None else bool(git("status", "--porcelain", "--untracked-files=no")),
            "fused_loss_trace": os.environ.get("FUSED_LOSS_TRACE") == "1"}   # how torch.compile calls fused_loss.py


@torch.no_grad()
def val_loss(model, data, ids, micro, device, autocast, rank, world):
    """Mean next-token loss over the val blocks `ids`, each process taking every world-th block."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)   # (sum of losses, token count)
    mine = ids[rank::world]
    for s in range(0, len(mine), micro):
        x, y = data.get(mine[s:s + micro], device)
        with autocast:
            _, loss = model(x, y)
        total += torch.stack([loss.double() * y.numel(), torch.tensor(y.numel(), device=device)])
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return (total[0] / total[1]).item()

# -----------------------------------------------------------------------------
# Training


def train(cfg):
    """Run (or resume) one training run; returns a summary dict. Under torchrun: one process per device, DDP."""
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    device = pick_device(cfg.device)
    if device == "cuda":   # one process per GPU: torchrun's LOCAL_RANK picks it (set_device needs an index)
        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    try:
        return _train(cfg, rank, world, device)
    except KeyboardInterrupt:   # Ctrl-C: one line on what is kept and how to go on, not a traceback
        if rank:                # (from rank 0 alone under torchrun)
            raise SystemExit(130) from None
        run_dir = Path(cfg.out_dir) / cfg.run_name
        if not cfg.run_name:   # before the run directory was chosen: nothing written yet
            raise SystemExit("interrupted before the run started") from None
        raise SystemExit(f"interrupted: {run_dir / 'ckpt.pt'} holds the last checkpoint (every --eval_interval "
                         "steps): run the same command with --resume to continue" if (run_dir / "ckpt.pt").exists()
                         else f"interrupted before {run_dir} had a checkpoint: run again with --overwrite") from None
    finally:
        while HELD_LOCKS:
            HELD_LOCKS.pop().close()
        if world > 1:
            dist.destroy_process_group()


def _train(cfg, rank, world, device):
    master = rank == 0
    say = print if master else (lambda *a, **k: None)
    device_type = device.split(":")[0]
    check_config(cfg)                           # one line per bad flag, before anything is written
    dtype = cfg.dtype if cfg.dtype != "auto" else auto_dtype(device)
    autocast = autocast_for(device, dtype)
    if cfg.step_graph:
        try:
            check_graph_supported(device, dtype, world, cfg.compile_mode)
        except ValueError as e:
            raise SystemExit(f"--step_graph {e}") from None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # --- data and batch geometry
    meta = load_meta(cfg.data_dir)              # checked against its token files (dataset.py)
    load_tokenizer(cfg.data_dir)                # and its tokenizer, which evaluate.py will need: checked up front
    V = int(meta["vocab_size"])
    train_data, val_data = (TokenBlocks(Path(cfg.data_dir) / f"{split}.bin", meta["dtype"], cfg.block_size, V)
                            for split in ("train", "val"))
    if cfg.batch_size % world:
        raise SystemExit(f"--batch_size {cfg.batch_size} is not divisible by the {world} processes")
    per_rank = cfg.batch_size // world
    micro = cfg.micro_batch_size or per_rank
    if per_rank % micro:
        raise SystemExit(f"--micro_batch_size {micro} must divide the {per_rank} sequences per process per step")
    accum = per_rank // micro                   # gradient accumulation keeps the global batch whatever `world` is
    tokens_per_step = cfg.batch_size * cfg.block_size
    wanted = cfg.max_tokens if cfg.max_tokens > 0 else cfg.epochs * train_data.n * cfg.block_size
    total_steps = int(wanted // tokens_per_step)
    if cfg.max_tokens > 0 and total_steps < 1:
        raise SystemExit(f"--max_tokens {cfg.max_tokens:,.0f} is less than one step of {cfg.batch_size} x "
                         f"{cfg.block_size} = {tokens_per_step:,} tokens: raise it or lower --batch_size")
    for data, fix in ((train_data, "more data"), (val_data, "a larger --val_fraction")):
        if data.n < 1:
            raise SystemExit(f"{data.path} holds {len(data.tokens):,} tokens, less than one block of "
                             f"{cfg.block_size} + 1: a smaller --block_size, or rebuild the dataset with {fix} "
                             "(simplify.py)")
    if total_steps < 1:
        raise SystemExit(f"{cfg.data_dir}: {train_data.n:,} train blocks of {cfg.block_size} tokens x --epochs "
                         f"{cfg.epochs} is less than one batch of {cfg.batch_size}: more data or a smaller "
                         "--batch_size")
    eval_ids = np.unique(np.linspace(0, val_data.n - 1, min(cfg.eval_blocks, val_data.n)).round().astype(np.int64))

    # --- the run directory
    cfg.run_name = cfg.run_name or f"{cfg.model}-{Path(cfg.data_dir).resolve().name}"
    run_dir = Path(cfg.out_dir) / cfg.run_name
    ckpt_path, log_path = run_dir / "ckpt.pt", run_dir / "log.jsonl"
    if cfg.resume and not ckpt_path.is_file():
        raise SystemExit(f"--resume: {ckpt_path} not found, nothing to resume")
    if not cfg.resume and (ckpt_path.exists() or log_path.exists()) and not cfg.overwrite:
        raise SystemExit(f"{run_dir} already holds a run: pass --resume to continue it, --overwrite to replace it, "
                         "or another --run_name" if ckpt_path.exists() else f"{run_dir} holds a run stopped before "
                         "its first checkpoint (nothing to resume): pass --overwrite to start it again, or another "
                         "--run_name")
    if world > 1:
        dist.barrier()                          # every process has checked before rank 0 writes anything

    # --- model, optimizer, and the state of a resumed run
    torch.manual_seed(cfg.seed)                 # the same initial weights in every process
    model_config = config_from_name(cfg.model, vocab_size=V, block_size=cfg.block_size, rope_base=cfg.rope_base)
    raw_model = GPT(model_config).to(device)
    try:
        loss_kind = raw_model.set_loss(cfg.loss, cfg.loss_chunk)   # the same numbers, differently fast (model.py)
    except ValueError as e:
        raise SystemExit(f"--loss {cfg.loss}: {e}") from None
    try:
        raw_model.set_attention(cfg.attention)                      # the same numbers too
    except ValueError as e:
        raise SystemExit(f"--attention {cfg.attention}: {e}") from None
    if cfg.fp8:   # before the optimizer and the compile (fp8.py)
        try:
            fp8.check_supported(device, dtype)
            fp8.use_fp8(raw_model, weight_grad=cfg.fp8_weight_grad)
        except ValueError as e:
            raise SystemExit(f"--fp8: {e}") from None
    optimizer = adamw(raw_model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                      weight_decay=cfg.weight_decay, device=device, graph=cfg.step_graph)
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == "float16")
    step, elapsed_before, last_val = 0, 0.0, None
    if cfg.resume:   # every process reads the checkpoint (multi-node runs need a shared out_dir)
        try:
            ckpt = read_checkpoint(ckpt_path, device)
        except ValueError as e:
            raise SystemExit(f"--resume: {e}: restore it from a copy, or start afresh (--overwrite deletes it, or "
                             "another --run_name)") from None
        except MemoryError as e:
            raise SystemExit(f"--resume: {e}") from None
        check_resumable(ckpt, cfg, model_config, meta, train_data.n, dtype)
        stripped = sorted({"optimizer", "scaler", "rng", "elapsed_s", "val_loss"} - ckpt.keys())
        try:   # a checkpoint stripped to its weights, or edited: it can be evaluated, not trained on
            if stripped:
                raise KeyError(f"no {', '.join(stripped)}")
            raw_model.load_state_dict(ckpt["model"])
            load_optimizer_state(optimizer, ckpt["optimizer"])
            if ckpt["scaler"]:                       # empty unless the run used fp16
                scaler.load_state_dict(ckpt["scaler"])
            set_rng_states(ckpt["rng"])
            step, elapsed_before, last_val = ckpt["step"], ckpt["elapsed_s"], ckpt["val_loss"]
        except torch.OutOfMemoryError:   # (a RuntimeError, but the checkpoint's fault it is not)
            raise
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise SystemExit(f"--resume: {ckpt_path} lacks the state to go on training ({type(e).__name__}: "
                             f"{first_sentence(e)}): evaluate.py can still score its weights; train afresh with "
                             "another --run_name (--overwrite would delete them)") from None
        del ckpt
    if cfg.stop_at_step and not step < cfg.stop_at_step <= total_steps:   # else it would never stop the run
        raise SystemExit(f"--stop_at_step {cfg.stop_at_step}: must come after step {step} (where the run is) and "
                         f"by its last step, {total_steps}")
    # Each run compiles afresh: dynamo keeps GPT.forward's graphs across torch.compile calls, each guarded by the call
    # that made it, and stops compiling past 8 (a process' 5th run, in a notebook say, would silently run eagerly)
    if cfg.compile:
        torch._dynamo.reset()
    eval_model = model = torch.compile(raw_model, mode=cfg.compile_mode) if cfg.compile else raw_model
    grads_kept = keep_grads(raw_model, cfg.compile_mode if cfg.compile else None, accum)
    if world > 1:
        # broadcast_buffers off: the model's only buffers are its RoPE tables, the same on every rank. DDP around the
        # compiled model still overlaps its all-reduces with the backward: dynamo sees DDP active and cuts the graph
        # at DDP's gradient buckets (its "DDP optimizer")
        model = DDP(model, device_ids=[torch.device(device).index] if device_type == "cuda" else None,
                    broadcast_buffers=False)
    train_step = make_step(model, optimizer, scaler, autocast, accum, cfg.grad_clip, grads_kept)
    if cfg.step_graph:
        train_step = graphed(train_step, device, say)
    flops_per_token = raw_model.flops_per_token()
    peak = cfg.peak_flops or (peak_flops(torch.cuda.get_device_name(device)) if device_type == "cuda" else None)

    # --- config.json and the log (rank 0 writes; the other processes only train)
    if master:
        say(f"{cfg.run_name}: {cfg.model} ({raw_model.num_params():,} parameters, V={V}) on {cfg.data_dir} "
            f"({train_data.n:,} train blocks): {total_steps:,} steps of {cfg.batch_size} x {cfg.block_size} tokens, "
            f"{world} x {device} {dtype}, {accum} micro-batches of {micro} per process, {loss_kind} loss"
            + (", float8 matmuls" if cfg.fp8 else "") + (" (weight gradients too)" if cfg.fp8_weight_grad else "")
            + (", Triton attention" if cfg.attention == "triton" else "")
            + (f", compiled ({cfg.compile_mode})" if cfg.compile else "")
            + (", each step one CUDA graph" if cfg.step_graph else ""))
        if wanted > train_data.n * cfg.block_size:
            say(f"note: {wanted:,.0f} tokens is more than one pass over train.bin: blocks will repeat")
        if cfg.warmup_steps > total_steps:   # (at equality the last update is taken at the peak)
            say(f"note: --warmup_steps {cfg.warmup_steps} > the run's {total_steps} steps: the LR never reaches "
                "its peak")
        baseline = unigram_baseline(train_data, val_data)   # also checks every token id against vocab_size
        say(f"unigram baseline: val cross-entropy {baseline['unigram_val_xent']:.4f} nats "
            f"(train entropy {baseline['unigram_train_entropy']:.4f})")
        make_dir(run_dir, "--out_dir")
        # one writer per run directory: a second train.py (a sweep relaunched while its runs still train, say)
        # would interleave its log with this one's
        try:   # (a read-only folder: one line, like a full disk below)
            lock = try_lock(run_dir / "train.lock")
        except OSError as e:
            raise SystemExit(f"{run_dir}: cannot write in it ({e.strerror}): make it writable, or another --out_dir")
        if lock is None:
            raise SystemExit(f"{run_dir} is being trained by another process right now: wait for it or stop it")
        HELD_LOCKS.append(lock)
        for tmp in run_dir.glob("*.tmp[0-9]*"):   # a write_atomic temp file of a process killed mid-save
            tmp.unlink()
        if not cfg.resume:   # --overwrite: every check has passed; never leave the old run's checkpoint to resume
            ckpt_path.unlink(missing_ok=True)
        env = environment(device, world)
        config = {"train": asdict(cfg), "model": asdict(model_config), "env": env, "baseline": baseline,
                  "dataset": {"dir": cfg.data_dir, "dir_abs": str(Path(cfg.data_dir).resolve()),
                              "name": meta.get("name"), "vocab_size": V, "eot_token": meta.get("eot_token"),
                              "tokenizer_sha256": meta["tokenizer"]["sha256"], "train_tokens": len(train_data.tokens),
                              "val_tokens": len(val_data.tokens)},
                  "derived": {"total_steps": total_steps, "tokens_per_step": tokens_per_step, "world_size": world,
                              "micro_batch_size": micro, "grad_accum_steps": accum, "dtype": dtype, "loss": loss_kind,
                              "params": raw_model.num_params(), "flops_per_token": flops_per_token,
                              "params_non_embedding": raw_model.num_params(non_embedding=True),
                              "peak_flops_per_device": peak, "train_blocks": train_data.n,
                              "eval_blocks": len(eval_ids)}}
        try:   # a full disk: one line (write_atomic leaves the file it was writing as it was)
            write_atomic(run_dir / "config.json", lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
            if cfg.resume:   # keep the log up to the checkpoint: the steps after it are about to be redone
                # (read_log leaves out a line torn by a kill; the end of a finished run is left out too: it ends again)
                kept = [e for e in read_log(log_path) if e.get("step", 0) <= step and e.get("event") != "end"]
                kept.append({"event": "resume", "step": step, "env": env})
                write_atomic(log_path, lambda p: Path(p).write_text("".join(json.dumps(e) + "\n" for e in kept)))
            else:
                log_path.write_text(json.dumps({"event": "start", "step": 0, **config}) + "\n")
        except OSError as e:   # (a new run that wrote its config.json is a run stopped before its first checkpoint)
            again = "again" if cfg.resume else "with --overwrite"
            raise SystemExit(f"{run_dir}: cannot write config.json or log.jsonl ({e.strerror}): free space or make it "
                             f"writable, then run the same command {again}") from None
        if cfg.resume:
            say(f"resumed from step {step} ({step * tokens_per_step:,} tokens seen)")

    def log(record):   # a non-finite number is written as a string ("nan"), so every line stays strict JSON
        if master:
            try:
                with open(log_path, "a") as f:
                    f.write(json.dumps({k: str(v) if isinstance(v, float) and not math.isfinite(v) else v
                                        for k, v in record.items()}) + "\n")
            except OSError as e:   # a full disk: the checkpoint holds the last eval, and a resume cuts the log back
                raise SystemExit(f"step {step}: cannot write to {log_path} ({e.strerror}): free space, then run the "
                                 "same command with " + ("--resume" if ckpt_path.exists() else "--overwrite")) from None

    def checkpoint(val):
        if master:
            state = {"format_version": 1, "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scaler": scaler.state_dict(), "step": step, "tokens": step * tokens_per_step,
                     "data_position": step * cfg.batch_size, "n_train_blocks": train_data.n, "rng": rng_states(),
                     "elapsed_s": elapsed_before + time.time() - t_start, "val_loss": val, "data_dir": cfg.data_dir,
                     "model_config": asdict(model_config), "train_config": asdict(cfg),
                     "tokenizer_sha256": meta["tokenizer"]["sha256"], "vocab_size": V, "dtype": dtype}
            try:
                write_atomic(ckpt_path, lambda p: torch.save(state, p))
            except (OSError, RuntimeError) as e:   # a full disk or quota (torch.save: "unexpected pos ...")
                fix = (f"{ckpt_path} still holds the last one: free space, then run the same command with --resume"
                       if ckpt_path.exists() else "free space, then run again with --overwrite")
                raise SystemExit(f"step {step}: cannot write the checkpoint ({str(e).splitlines()[0][:200]}; disk "
                                 f"full?): {fix}") from None
        if world > 1:
            dist.barrier()

    def evaluate():
        return val_loss(eval_model, val_data, eval_ids, micro, device, autocast, rank, world)

    def stop_if_not_finite(record):   # a NaN or inf loss: logged, and the run stops before it checkpoints anything
        if all(math.isfinite(record[k]) for k in ("train_loss", "val_loss") if record[k] is not None):
            return
        log({**record, "event": "stopped"})
        kept = f"the last good checkpoint is kept in {ckpt_path}" if ckpt_path.exists() else "no checkpoint yet"
        fix = ("Train again with a lower --lr or a longer --warmup_steps (--overwrite, or another --run_name to keep "
               "this one): --resume takes only the checkpoint's own settings, with which it would diverge again"
               if record["step"] else   # step 0: no update has run yet
               "The initial weights give it, before any update: check model.py's changes, or --dtype float32")
        raise SystemExit(f"step {record['step']}: train loss {record['train_loss']}, val loss {record['val_loss']}: "
                         f"not finite, stopping; {kept}. {fix}")

    # --- the loop
    t_start = t_last = time.time()
    step_last = step
    if step == 0:
        last_val = evaluate()
        record = {"event": "step", "step": 0, "tokens": 0, "train_loss": None, "val_loss": last_val, "lr": 0.0,
                  "grad_norm": None, "tokens_per_s": None, "mfu": None, "elapsed_s": 0.0}
        stop_if_not_finite(record)
        log(record)
        say(f"step {0:>6}/{total_steps} | val {last_val:.4f}")
        t_last = time.time()                    # the first rate and ETA are of training steps, not this evaluation
    while step < total_steps:
        set_lr(optimizer, lr := lr_at(step, total_steps, cfg.lr, cfg.warmup_steps, cfg.final_lr_frac))
        ids = block_ids(step * cfg.batch_size + rank * per_rank, per_rank, train_data.n, cfg.seed)  # my share
        step_loss, grad_norm = train_step(train_data.batch(ids, device))    # (per_rank, T + 1) tokens
        step += 1

        do_eval = step % cfg.eval_interval == 0 or step == total_steps or step == cfg.stop_at_step
        if step % cfg.log_interval and not do_eval:
            continue
        if world > 1:
            dist.all_reduce(step_loss)
        train_loss, now = step_loss.item() / world, time.time()
        tokens_per_s = (step - step_last) * tokens_per_step / max(now - t_last, 1e-9)
        eta = (total_steps - step) * tokens_per_step / tokens_per_s
        val = evaluate() if do_eval else None
        record = {"event": "step", "step": step, "tokens": step * tokens_per_step, "train_loss": train_loss,
                  "val_loss": val, "lr": lr, "grad_norm": grad_norm.item(), "tokens_per_s": tokens_per_s,
                  "mfu": mfu(flops_per_token, tokens_per_s, peak, world), "elapsed_s": elapsed_before + now - t_start}
        stop_if_not_finite(record)
        log(record)
        say(f"step {step:>6}/{total_steps} | loss {train_loss:.4f}" + (f" | val {val:.4f}" if do_eval else "")
            + f" | lr {lr:.2e} | {tokens_per_s / 1e3:.1f}k tok/s"
            + (f" | mfu {record['mfu']:.1%}" if record["mfu"] is not None else "")
            + f" | {hms(record['elapsed_s'])} elapsed, ETA {hms(eta)}")
        if do_eval:
            last_val = val
            checkpoint(val)
        t_last, step_last = time.time(), step
        if step == cfg.stop_at_step and step < total_steps:
            say(f"stopped at step {step} as asked (--stop_at_step); continue with the same command"
                + ("" if cfg.resume else " plus --resume") + ", without --stop_at_step (or with a later one)")
            break

    summary = {"run_dir": str(run_dir), "step": step, "total_steps": total_steps, "tokens": step * tokens_per_step,
               "val_loss": last_val, "elapsed_s": elapsed_before + time.time() - t_start}
    if master and step == total_steps:
        log({"event": "end", **summary, **baseline})
        gain = baseline["unigram_val_xent"] - last_val
        say(f"done in {hms(summary['elapsed_s'])}: val loss {last_val:.4f} nats, {abs(gain):.4f} "
            f"{'better' if gain > 0 else 'worse'} than the unigram baseline; the run is in {run_dir}")
        if cfg.sample_tokens > 0:
            print_sample(raw_model, cfg, meta, device)
    return summary


def print_sample(model, cfg, meta, device):
    """Decode a short sample with the dataset's tokenizer, from what starts a training document: <|endoftext|>, then
    <s> for the span format of the simplified corpus (the control never has <s>: as evaluate.py's prompts)."""
    start = document_start(meta)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    model.eval()   # the trained model as evaluate.py loads it (--fp8 multiplies in float8 in training mode only)
    out = model.generate(torch.tensor([start], device=device), cfg.sample_tokens, top_k=50, generator=g)
    print("sample:", load_tokenizer(cfg.data_dir).decode(out[0, 1:].tolist()))


def main(argv=None):
    train(parse_args(argv))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # `kill` says what is kept, as Ctrl-C does
    main()
