"""
scaling.py: sweeps of train.py over the paper's model grid, and the scaling laws of section 7 fitted to their logs.

    python scaling.py                   # default CPU grid: train (or reuse) 12 small runs, fit, draw (~8 min, 2 cores)
    python scaling.py --dry-run         # print the commands, their compute and estimated time; run nothing
    python scaling.py --fit_only        # fit the grid's runs already in out/ (missing ones are reported)
    python scaling.py --grid paper --data_root data/paper --gpus all --train_args=--compile   # 44 runs, 1 GPU each
    python scaling.py --grid paper --data_root data/paper --nproc_per_node 8     # or each run on 8 GPUs, torchrun
    python scaling.py --models h32-L2,h64-L2 --corpora simplified --tokens 2e6 --series 0.25,0.5 \
        --results_dir out/mine        # a grid of one's own: its fits and figures not over the shipped results/

The sweep launches train.py once per (model, corpus, token budget) into out/<model>-<corpus>-<budget>/, skips runs
whose log ends with an "end" event, resumes interrupted ones (--resume) and keeps --parallel of them going side by
side. The fits read each run's config.json and log.jsonl (and evaluate.py's results/*.json for the emergence plot):
    Kaplan et al. 2020     L(X) = (X_c / X)^alpha,  X in {N, N_nonemb, D, C}       fit_power_law(x, y)
    Hoffmann et al. 2022   L(N, D) = E + A / N^alpha + B / D^beta                  fit_chinchilla(N, D, loss)
(the fitting math is fits.py) and write results/fits.json, results/fits.md (constants, 95% bootstrap intervals,
R^2) and results/figures/*.png (drawn by report.py).
N counts every parameter (N_nonemb leaves out the input embedding and the untied head, as Kaplan et al. did), D is
tokens seen, C = 6 N D (--exact_flops: model.flops_per_token() x D, attention included).
"""
import argparse
import math
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model import GPT, PAPER_GRID, PAPER_TRAIN_TOKENS, GPTConfig, config_from_name, pick_device
from fits import fit_corpus   # the scaling-law math (fits.py), and which points each law is fitted to
from report import plot_curves, plot_emergence, plot_law, table   # figures, fits.md
from results import ADDED_SETTINGS, read_results, run_checkpoint_id   # evaluate.py's results files, checked
from files import (HelpFormat, hms, make_dir, read_json, read_log, whole_number,   # hms: seconds -> h:mm:ss; read_json:
                   write_atomic, write_json)                                       # {} if missing
from bench import measured_speeds, schedule_seconds, seconds_for, speed_key   # how long the sweep will take
from launch import launch, logged_tokens        # train.py processes side by side, with progress; a run's tokens
from train import RESUME_MUST_MATCH, TrainConfig       # the settings that shape a run; train.py's defaults
from train import check_config as check_train_config   # train.py's checks of its flags' values
from train import parse_args as train_config    # train.py's own reading of its command line

HERE = Path(__file__).resolve().parent
BLOCK = TrainConfig.block_size   # the context length of every run: train.py's default, the paper's 128

# -----------------------------------------------------------------------------
# The grid: which runs, with which settings

GRIDS = {
    # Embedded default: four of the smallest models on both default corpora at 1M tokens each (a third of an epoch),
    # plus h64-L2 at 250k and 500k tokens for L(D): about 8 min on 2 idle cores (more when shared). One single-threaded
    # run per core (parallel 0: as many runs as cores; 1 with a GPU): two-threaded runs slowed down several-fold
    # here when other work shared the cores, single-threaded ones did not. At 1M tokens the models are short of steps,
    # not data: 16 sequences per step (488 steps) reach a loss ~0.35 nats lower than 32 (244 steps) in the same time.
    "cpu": dict(models="h32-L2,h64-L2,h64-L4,h128-L2", tokens=1_000_000, series_model="h64-L2", series="0.25,0.5",
                batch_size=16, warmup_steps=30, eval_interval=50, parallel=0, threads=1),
    # The paper: 18 models x 2 corpora for one epoch (2.13B tokens), batch 512 x 128, warmup 1000; the budget series
    # of h256-L4 (1/16 .. 1/2 epoch) is ours, for L(D).
    "paper": dict(models=",".join(PAPER_GRID), tokens=0, series_model="h256-L4", series="0.0625,0.125,0.25,0.5",
                  batch_size=512, warmup_steps=1000, eval_interval=500, parallel=1, threads=0),
}


def lr_for(model):
    """Peak LR per model. Only the smallest model's 2.8e-3 is known (the paper gives it); the rest is our rule, not
    the paper's: scale it by 1/sqrt(width), as wider layers take smaller Adam steps. h32 2.8e-3, h64 2.0e-3,
    h128 1.4e-3, h256 9.9e-4, h512 7.0e-4, h1024 4.9e-4 (the authors' default 8e-4 falls between h256 and h512)."""
    return 2.8e-3 * math.sqrt(32 / config_from_name(model).n_embd)


def counts(model, vocab_size):
    """Parameters with and without the two vocabulary matrices, and model.py's training FLOPs per token, from a
    model built on the meta device (no memory, so h1024-L8 costs nothing)."""
    with torch.device("meta"):
        m = GPT(config_from_name(model, vocab_size=vocab_size, block_size=BLOCK))
    return {"N": m.num_params(), "N_nonemb": m.num_params(non_embedding=True), "flops_per_token": m.flops_per_token()}


def short(tokens):
    """1_000_000 -> '1M', 250_000 -> '250k', 0 (one epoch) -> '1ep': the budget part of a run name."""
    if not tokens:
        return "1ep"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3), ("", 1)):
        if float(f"{tokens:.3g}") >= div:   # 999,999 rounds to 1M, not '1e+03k'
            return f"{tokens / div:.3g}{unit}"


def plan(args):
    """The grid's runs: every model on every corpus at --tokens, and --series_model at the --series fractions of it."""
    runs, step_tokens = [], args.batch_size * BLOCK
    for corpus in args.corpora.split(","):
        data_dir = Path(args.data_root) / corpus
        meta = read_json(data_dir / "meta.json")
        train_tokens, V = ((meta["train_tokens"], meta["vocab_size"]) if meta else
                           (PAPER_TRAIN_TOKENS, GPTConfig.vocab_size))
        epoch = (train_tokens - 1) // BLOCK * BLOCK                       # train.py's one pass: whole blocks
        series = [int(float(f) * (args.tokens or epoch)) for f in args.series.split(",") if f]
        if series and min(series) < step_tokens:   # (0 tokens would even mean train.py's "one epoch")
            raise SystemExit(f"--series {args.series}: a fraction gives {min(series):,} tokens, less than one step "
                             f"of {step_tokens}: use larger fractions or a smaller --batch_size")
        jobs = [(m, args.tokens) for m in args.models.split(",")] + [(args.series_model, b) for b in series]
        unique = {}   # in order; a budget of 0 is one epoch, so a series fraction of 1 is that same run
        for model, budget in jobs:
            unique.setdefault((model, budget or epoch), (model, budget))
        for model, budget in unique.values():
            steps = int((budget or epoch) // step_tokens)                  # as train.py counts them
            if steps < 1:
                raise SystemExit(f"{model} on {corpus}: a budget of {budget} tokens is less than one step of "
                                 f"{step_tokens}: raise --tokens or lower --batch_size")
            c, D = counts(model, V), steps * step_tokens
            name = f"{model}-{corpus}-{short(budget)}"
            runs.append(dict(name=name, dir=Path(args.out_dir) / name, model=model, corpus=corpus, data_dir=data_dir,
                             have_data=bool(meta), max_tokens=budget, D=D, steps=steps, epoch=epoch,
                             lr=args.lr or float(f"{lr_for(model):.3g}"), batch_size=args.batch_size,
                             warmup_steps=args.warmup_steps, C=6 * c["N"] * D, C_exact=c["flops_per_token"] * D, **c))
            # the dataset by content, as config.json records it: a moved checkout or --data_root is the same data
            runs[-1]["dataset"] = {} if not meta else {"name": meta.get("name"), "train_tokens": train_tokens,
                                                       "tokenizer_sha256": meta.get("tokenizer", {}).get("sha256")}
            cmd = command(runs[-1], args, "todo")
            try:       # what train.py will run with: --train_args (seed, weight_decay, ...) included
                cfg = train_config(cmd[cmd.index(str(HERE / "train.py")) + 1:])
                check_train_config(cfg)   # its values, once here rather than in every run launched
                runs[-1]["train"] = vars(cfg)
            except SystemExit as e:   # (argparse has printed its line and exits with 2; check_config says its own)
                why = e.code if isinstance(e.code, str) else "see the line above and `python train.py --help`"
                raise SystemExit(f"--train_args {args.train_args!r}: train.py refuses them ({why})") from None
    names = [r["name"] for r in runs]
    if len(set(names)) < len(names):
        raise SystemExit(f"two runs share a name in {names}: give budgets that differ at 3 significant digits")
    return runs

# -----------------------------------------------------------------------------
# Run directories: what is there, and what to do about it


# What each state means and what the sweep does about it.
STATES = {"todo": "not started", "done": "finished (log has an end event): reused",
          "resume": "interrupted after a checkpoint (a sweep continues it with --resume)",
          "restart": "interrupted before its first checkpoint (a sweep starts it again with --overwrite)",
          "diverged": "stopped on a non-finite loss: not relaunched (a sweep with a lower --lr or a longer "
                      "--warmup_steps trains it again, --models and --corpora picking it out; --fit_all fits it)",
          "conflict": "holds a run with other settings: not touched (pass the flags it was trained with, --fit_all "
                      "to fit it as it is, or move it away)",
          "unreadable": "its config.json is not train.py's: not touched (move it away)"}
LAUNCHED = ("todo", "resume", "restart")   # the states a sweep trains (the others it reports)


def run_state(run_dir, run=None):
    """-> (state, detail) of a run directory, state one of STATES. With the planned run, a run made with other
    settings (train.py would refuse to resume it, and its numbers are not the plan's) is a 'conflict'."""
    run_dir = Path(run_dir)
    ckpt = (run_dir / "ckpt.pt").exists()
    if not ckpt and not (run_dir / "log.jsonl").exists():
        return "todo", ""
    config, events = read_json(run_dir / "config.json"), read_log(run_dir / "log.jsonl")
    diverged = bool(events) and events[-1].get("event") == "stopped"
    if not isinstance(config, dict) or not all(isinstance(config.get(k, {}), dict) for k in ("train", "dataset")):
        return "unreadable", "config.json is not a JSON object with 'train' and 'dataset' objects"
    if run is not None and config:
        # train.py's own list of the settings that shape a run, the evals the fits read, and the dataset by content.
        # A setting an older config.json lacks is not compared (one of results.ADDED_SETTINGS: at the value it had);
        # device, compile, threads and the like change the speed, not the numbers, so --fit_only need not repeat them.
        keys = (*RESUME_MUST_MATCH, "eval_interval", "dtype")
        have = {**ADDED_SETTINGS, **config.get("train", {}),
                **{f"dataset {k}": v for k, v in config.get("dataset", {}).items()}}
        want = {**{k: run["train"][k] for k in keys}, **{f"dataset {k}": v for k, v in run["dataset"].items()}}
        diff = {k: (have[k], v) for k, v in want.items() if k in have and v is not None and have[k] != v}
        if diff and diverged and set(diff) <= {"lr", "warmup_steps"}:   # what STATES["diverged"] tells one to do
            return "restart", f"diverged with {diff} (there vs planned): trained again from scratch"
        if diff:
            return "conflict", f"settings differ (there vs planned): {diff}"
    if any(e.get("event") == "end" for e in events):
        return "done", ""
    if diverged:
        return "diverged", f"at step {events[-1].get('step')} (train loss {events[-1].get('train_loss')})"
    return ("resume" if ckpt else "restart"), ""


def command(run, args, state):
    """The train.py command line of a planned run (through torchrun with --nproc_per_node > 1)."""
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc_per_node}"]
           if args.nproc_per_node > 1 else [sys.executable])
    cmd += [str(HERE / "train.py"), "--model", run["model"], "--data_dir", str(run["data_dir"]), "--out_dir",
            str(args.out_dir), "--run_name", run["name"], "--max_tokens", str(run["max_tokens"]), "--lr",
            repr(run["lr"]), "--batch_size", str(run["batch_size"]), "--warmup_steps", str(run["warmup_steps"]),
            "--eval_interval", str(args.eval_interval), "--sample_tokens", "0"]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    return cmd + {"resume": ["--resume"], "restart": ["--overwrite"]}.get(state, []) + shlex.split(args.train_args)


# -----------------------------------------------------------------------------
# Reading runs: the numbers every fit is made of


def read_run(run_dir):
    """A run directory -> {name, state, model, corpus, N, N_nonemb, flops_per_token, budget, warmup_tokens, D (tokens
    seen), loss (final val loss), curve_tokens, curve_loss (every eval)}; ValueError says what is missing."""
    config = read_json(run_dir / "config.json")
    if not isinstance(config, dict) or not {"train", "derived", "dataset"} <= config.keys():
        raise ValueError(f"no readable config.json in {run_dir}")
    t, d = config["train"], config["derived"]
    if not isinstance(t, dict) or not isinstance(d, dict):
        raise ValueError("config.json's train and derived are not JSON objects")
    for key in ("params", "params_non_embedding", "flops_per_token", "tokens_per_step"):   # (a hand edit, say)
        if not isinstance(d.get(key), (int, float)) or isinstance(d.get(key), bool):
            raise ValueError(f"config.json's derived.{key} is not a number")
    evals = [e for e in read_log(run_dir / "log.jsonl") if e.get("event") == "step" and e.get("val_loss") is not None]
    try:
        tokens = np.array([e["tokens"] for e in evals], float)
        loss = np.array([float(e["val_loss"]) for e in evals])      # train.py writes a non-finite loss as "nan"
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"an eval of its log.jsonl has no number of tokens or val loss ({type(e).__name__}: {e})")
    return dict(name=run_dir.name, state=run_state(run_dir)[0], model=t["model"], corpus=config["dataset"]["name"],
                N=d["params"], N_nonemb=d["params_non_embedding"], flops_per_token=d["flops_per_token"],
                budget=f"{short(t['max_tokens'])} tokens" if t["max_tokens"] else f"{t['epochs']:g} epoch(s)",
                warmup_tokens=t["warmup_steps"] * d["tokens_per_step"], D=tokens[-1] if len(tokens) else 0,
                loss=loss[-1] if len(loss) else math.nan, curve_tokens=tokens, curve_loss=loss)


def collect(run_dirs):
    """-> (finished runs, problems): every other run is reported with the reason it is left out, never dropped
    silently (missing, unfinished, diverged, unreadable, a non-finite loss)."""
    runs, problems = [], []
    for run_dir in map(Path, run_dirs):
        try:
            if not (run_dir / "log.jsonl").exists():
                problems.append((run_dir.name, "missing: no log.jsonl (not run yet)"))
            elif (r := read_run(run_dir))["state"] != "done":
                problems.append((r["name"], f"{r['state']}: {STATES[r['state']]}"))
            elif not np.isfinite(r["curve_loss"]).all() or len(r["curve_loss"]) == 0:
                problems.append((r["name"], "diverged: a non-finite or missing val loss in its log"))
            else:
                runs.append(r)
        except (ValueError, KeyError, TypeError) as e:
            problems.append((run_dir.name, f"unreadable: {e}"))
    return runs, problems

# -----------------------------------------------------------------------------
# Main: plan, run (or reuse), fit, draw


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormat)
    p.add_argument("--grid", default="cpu", choices=GRIDS, help="preset grid; the flags below override its values")
    p.add_argument("--models", help="comma-separated h<hidden>-L<layers> names (cpu: h32-L2,h64-L2,h64-L4,h128-L2)")
    p.add_argument("--corpora", default="simplified,unrestricted", help="dataset directories under --data_root")
    p.add_argument("--data_root", default="data", help="where the corpora's dataset directories are")
    p.add_argument("--tokens", type=whole_number, help="token budget per run, 0 = one epoch (cpu: 1e6)")
    p.add_argument("--series_model", help="the model also trained at --series fractions of --tokens, for L(D)")
    p.add_argument("--series", help="comma-separated budget fractions in (0, 1] for the series ('' for none; cpu: "
                   "0.25,0.5)")
    p.add_argument("--lr", type=float, default=0, help="one peak LR for every model (default: lr_for's per-size rule)")
    p.add_argument("--batch_size", type=int, help="sequences per step (cpu: 16, paper: 512)")
    p.add_argument("--warmup_steps", type=int, help="cpu: 30, paper: 1000")
    p.add_argument("--eval_interval", type=int, help="steps between evals, the points of the curves (cpu: 50)")
    p.add_argument("--parallel", type=int, help="runs side by side (cpu: 0 = one per core, 1 with a GPU)")
    p.add_argument("--threads", type=int, help="CPU threads per run, 0 = torch's default (cpu: 1)")
    p.add_argument("--gpus", default="", help="one run per GPU at a time: 'all' or ids '0,1,2' (sets --parallel)")
    p.add_argument("--runs_per_gpu", type=int, help="with --gpus: runs sharing each GPU at a time (default 1)")
    p.add_argument("--nproc_per_node", type=int, default=1, help="> 1: launch each run with torchrun on this many GPUs")
    p.add_argument("--train_args", default="", help="extra train.py flags, e.g. '--device cuda --compile'")
    p.add_argument("--out_dir", default="out", help="run directories")
    p.add_argument("--results_dir", default="results", help="evaluate.py's results; fits and figures are written here")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--fit_only", action="store_true", help="launch nothing, fit the runs that are there")
    p.add_argument("--fit_all", action="store_true", help="fit every run in --out_dir, not only the grid's")
    p.add_argument("--exact_flops", action="store_true", help="C = model.flops_per_token() x D instead of 6ND")
    p.add_argument("--n_boot", type=int, default=1000, help="bootstrap resamples (L(N, D): at most 200)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = p.parse_args(argv)
    grid = {**GRIDS["cpu"], **GRIDS[args.grid]}          # a grid of one's own may set only what differs
    vars(args).update({k: v for k, v in grid.items() if getattr(args, k) is None})
    if args.parallel == 0:
        args.parallel = 1 if torch.cuda.is_available() else os.cpu_count() or 1
    if args.nproc_per_node > 1:
        args.parallel = 1                         # one multi-GPU run at a time
    spec, visible, k = args.gpus, torch.cuda.device_count(), args.runs_per_gpu
    k = 1 if k is None else k
    args.gpus = (list(range(visible)) if spec == "all" else
                 [int(g) for g in spec.split(",") if g.strip()] if re.fullmatch(r"[\d,\s]*", spec) else None)
    if args.gpus is None or k < 1 or (args.gpus and args.nproc_per_node > 1):
        raise SystemExit("--gpus takes 'all' or comma-separated ids, --runs_per_gpu >= 1, and they replace "
                         "--nproc_per_node (one GPU per run)")
    if spec and (not args.gpus or max(args.gpus) >= visible):     # else the runs would train on the CPU, silently
        raise SystemExit(f"--gpus {spec}: torch sees {visible} GPUs here (ids count from 0 within "
                         "CUDA_VISIBLE_DEVICES); leave --gpus out to train on CPU cores")
    if args.runs_per_gpu is not None and not args.gpus:
        raise SystemExit("--runs_per_gpu needs --gpus (on CPU cores, --parallel sets the runs side by side)")
    # A child's CUDA_VISIBLE_DEVICES names the system's devices; ours, if set, renumbers them (with 2,3 our GPU 0 is
    # the system's 2), so map each id through it. The GPUs are interleaved: k runs go to k GPUs before one doubles up.
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    args.gpus = [mask.split(",")[g].strip() if mask else str(g) for g in args.gpus]
    args.runs_per_gpu = k
    if args.gpus:
        args.parallel = len(args.gpus) * k
    args.slots = [g for _ in range(k) for g in args.gpus] or [None] * args.parallel
    try:
        for m in args.models.split(",") + [args.series_model]:
            config_from_name(m)                   # a clear error for a bad name, before anything runs
    except ValueError as e:
        raise SystemExit(f"--models / --series_model: {e}") from None
    try:
        fractions = [float(f) for f in args.series.split(",") if f]
    except ValueError:
        fractions = [math.nan]
    if not all(0 < f <= 1 for f in fractions):
        raise SystemExit(f"--series {args.series!r}: comma-separated fractions of --tokens in (0, 1], e.g. 0.25,0.5")
    if not args.lr >= 0 or args.lr == math.inf:
        raise SystemExit(f"--lr {args.lr}: a peak learning rate > 0 (0: the per-size rule)")
    if min(args.parallel, args.batch_size, args.eval_interval, args.nproc_per_node) < 1 or min(
            args.warmup_steps, args.threads, args.tokens, args.n_boot) < 0:
        raise SystemExit("--parallel, --batch_size, --eval_interval and --nproc_per_node must be >= 1, "
                         "--warmup_steps, --threads, --tokens and --n_boot >= 0")
    # train.py flags the sweep sets itself: through --train_args they would win (they come last) while the plan, the
    # run names and the reuse checks still assumed the sweep's values (two budgets of a series training the same D)
    ours = {"model": "--models", "max_tokens": "--tokens", "lr": "--lr", "batch_size": "--batch_size",
            "warmup_steps": "--warmup_steps", "eval_interval": "--eval_interval", "threads": "--threads",
            "data_dir": "--data_root and --corpora", "out_dir": "--out_dir", "run_name": None, "resume": None,
            "overwrite": None, "epochs": "--tokens", "block_size": None, "stop_at_step": None}
    try:
        train_args = shlex.split(args.train_args)
    except ValueError as e:   # an unclosed quote
        raise SystemExit(f"--train_args {args.train_args!r}: {e} (they are read as a shell would)") from None
    for flag in (a.split("=")[0][2:] for a in train_args if a.startswith("--")):
        if flag in ours:
            raise SystemExit(f"--train_args: --{flag} is the sweep's to set" + (
                f" (use scaling.py {ours[flag]})" if ours[flag] else " (each run's own; a sweep cannot change it)"))
    return args


def main(argv=None):
    args = parse_args(argv)
    runs, speeds = plan(args), measured_speeds(args.out_dir)
    for r in runs:
        r["state"], r["detail"] = run_state(r["dir"], r)
        r["speed_key"] = speed_key(r["train"], r["train"]["device"], args.nproc_per_node)
        r["seconds"] = seconds_for(r, speeds, args)
        # the share still to train: a resumed run continues from its log, as launch() counts it too
        r["left"] = 1 - min(logged_tokens(r["dir"], checkpointed=True) / r["D"], 1) if r["state"] == "resume" else 1
    todo = sorted((r for r in runs if r["state"] in LAUNCHED),
                  key=lambda r: -r["seconds"] * r["left"])
    measured = sorted({r["model"] for r in todo if r["speed_key"] in speeds})
    to_launch = "not launched (--fit_only)" if args.fit_only else "to launch"
    here = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    side = "" if args.fit_only else f" ({args.parallel} side by side)"
    print(f"grid {args.grid}: {len(runs)} runs, {len(todo)} {to_launch}{side}; N counts every parameter, C = 6ND "
          "(exact: model.flops_per_token() x D)")
    for r in runs:
        print(f"  {r['name']:<30} {r['state']:<10} N {r['N']:>11,} ({r['N_nonemb']:,} non-emb.)  D {r['D']:>13,}  "
              f"C {r['C']:.2e} (exact {r['C_exact']:.2e})  lr {r['lr']:.3g}  {r['detail']}")
    if not args.fit_only:
        print(f"compute {to_launch}: {sum(r['C'] * r['left'] for r in todo):.3e} FLOP 6ND, "
              f"{sum(r['C_exact'] * r['left'] for r in todo):.3e} exact; estimated "
              f"{hms(schedule_seconds([r['seconds'] * r['left'] for r in todo], args.parallel))} with {args.parallel} "
              f"at a time on this machine ({here}; " + (f"measured speeds of {', '.join(measured)} in {args.out_dir}, "
                                                    "else " if measured else "") + "a guess from FLOPs)")
    for r in todo:   # what train.py would note in each run's train.out, said before anything is launched
        evals = -(-r["steps"] // args.eval_interval)   # (and one at the last step)
        odd = [why for why, bad in (
            (f"--warmup_steps {r['warmup_steps']} > its {r['steps']} steps (the LR never peaks)",
             r["warmup_steps"] > r["steps"]),
            (f"{r['D']:,} tokens, more than one pass over its corpus' {r['epoch']:,} (blocks repeat)",
             r["D"] > r["epoch"]),
            (f"{evals} evals after step 0 at --eval_interval {args.eval_interval} (the curves and the L(C), "
             "L(N, D) fits take the evals after warmup)", evals < 2))
               if bad]
        if odd:
            print(f"note: {r['name']}: " + "; ".join(odd))
    for r in (r for r in runs if r["state"] in ("diverged", "conflict", "unreadable")):
        print(f"note: {r['name']} {STATES[r['state']]} {r['detail']}")
    missing = sorted({str(r["data_dir"]) for r in runs if not r["have_data"]})
    if missing:
        print(f"note: no meta.json in {', '.join(missing)}: assumed {PAPER_TRAIN_TOKENS:,} train tokens and V "
              f"{GPTConfig.vocab_size}; build the datasets with `python simplify.py` (see README)")
    if args.dry_run:
        for r in todo:
            print(shlex.join(command(r, args, r["state"])))
        return
    make_dir(args.results_dir, "--results_dir")   # now, not after hours of training
    failed = {}
    if not args.fit_only and todo:
        if missing:
            raise SystemExit(f"cannot train: {', '.join(missing)} not built (run `python simplify.py`, or pass "
                             "--data_root / --corpora)")
        pick_device(todo[0]["train"]["device"])   # a GPU this machine lacks: said once, not by every run launched
        make_dir(args.out_dir, "--out_dir")     # before any run starts
        def recheck(r):   # another sweep on --out_dir may have trained it since the plan: never --overwrite it
            state, detail = run_state(r["dir"], r)
            return (command(r, args, state) if state in LAUNCHED else
                    f"{state} since the plan (another process?): {STATES[state]} {detail}".rstrip())
        codes = launch([(r, command(r, args, r["state"]), r["seconds"]) for r in todo], args.slots, recheck=recheck)
        failed = {k: v for k, v in codes.items() if v}
        if failed:
            print(f"{len(failed)} runs failed (their train.out says why): {', '.join(failed)}; fitting the rest")

    # --- fits
    if args.fit_all:
        done, problems = collect(sorted(p.parent for p in Path(args.out_dir).glob("*/config.json")))
    else:      # the grid's runs; one made with other settings is not the plan's point
        done, problems = collect([r["dir"] for r in runs if r["state"] != "conflict"])
        problems += [(r["name"], f"conflict: {r['detail']}") for r in runs if r["state"] == "conflict"]
    problems = [(n, f"failed (exit {failed[n]}), see {Path(args.out_dir) / n / 'train.out'}"   # (a diverged run
                 if n in failed and not why.startswith("diverged") else why) for n, why in problems]  # exits 1 too)
    for name, why in problems:
        print(f"left out of the fits: {name}: {why}")
    if not done:
        raise SystemExit(f"no finished runs to fit in {args.out_dir}: " + (
            f"{len(failed)} failed, see {Path(args.out_dir) / next(iter(failed)) / 'train.out'}" if failed else
            "every one of the grid's runs here was made with other settings (pass the flags they were trained with, "
            "or --fit_all)" if runs and all(r["state"] == "conflict" for r in runs) else
            "run `python scaling.py` without --fit_only" if args.fit_only else "none of the grid's runs can be fitted "
            "(the notes above say why)"))
    fits = {}
    for corpus in sorted({r["corpus"] for r in done}):
        t0 = time.time()
        fits[corpus] = fit_corpus([r for r in done if r["corpus"] == corpus], args.exact_flops, args.n_boot, args.seed)
        print(f"{corpus}: fitted in {time.time() - t0:.1f} s")
        for law, f in fits[corpus].items():
            print(f"  {law:<12} " + (f"skipped: {f['skipped']}" if "skipped" in f else
                  ", ".join(f"{k} {f[k]:.4g}" for k in ("E", "A", "B", "alpha", "beta", "x_c", "r2") if k in f))
                  + (f"\n  warning: {f['warning']}" if "warning" in f else ""))

    # --- figures and tables
    out = make_dir(args.results_dir, "--results_dir")
    figs = make_dir(out / "figures", "--results_dir")
    plot_curves(done, figs / "loss_curves.png")
    for keys, name in ((["N", "N_nonemb"], "loss_vs_N"), (["D"], "loss_vs_D"), (["C"], "loss_vs_C")):
        plot_law(fits, done, keys, figs / f"{name}.png", args.exact_flops)
    results, fitted = read_results(args.results_dir), {r["name"]: int(r["D"]) for r in done}   # name -> tokens seen
    scored = []
    for d in results:   # the emergence plot shows the runs the fits show, scored as they ended
        name, file = d["run_name"], f"{args.results_dir}/{d['run_name']}.json"
        if d.get("hf_model"):   # a pretrained baseline (evaluate.py --hf_model): in the tables only
            continue
        if name not in fitted:
            why = f"evaluated ({file}) but not one of the fitted runs: left out of the emergence analysis too"
        elif d.get("tokens_seen") != fitted[name]:
            why = (f"{file} scored the run at {d.get('tokens_seen')} tokens, its log ends at {fitted[name]}: left out "
                   "of the emergence analysis (run evaluate.py again)")
        elif (now := run_checkpoint_id(Path(args.out_dir) / name)) and d.get("checkpoint_id") != now:   # (no ckpt.pt
            # left, deleted to save space say: the log's tokens, checked above, are all there is to go by)
            why = (f"{file} scored another checkpoint of that name (trained elsewhere or with other settings): left "
                   "out of the emergence analysis (run evaluate.py again)")
        else:
            scored.append(d)
            continue
        problems.append((name, why))
        print(f"note: {name}: {why}")
    results = scored
    (figs / "emergence.png").unlink(missing_ok=True)   # an earlier one, of other runs: drawn again below, or gone
    crossings = plot_emergence(results, figs / "emergence.png") if results else []
    if not results:
        print(f"none of the fitted runs has evaluate.py results in {args.results_dir}/ (for the tokens it trained): "
              "no emergence plot (run evaluate.py on the runs)")
    record = {"grid": args.grid, "exact_flops": args.exact_flops, "fits": fits, "emergence": crossings,
              "left_out": [{"run": n, "why": w} for n, w in problems],
              "runs": [{k: v for k, v in r.items() if not k.startswith("curve")} for r in done]}
    write_json(out / "fits.json", record)            # strict JSON: an overflowing constant is null
    text = table(fits, problems, crossings, args.exact_flops)
    write_atomic(out / "fits.md", lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {out / 'fits.md'}, {out / 'fits.json'} and {figs}/*.png")


if __name__ == "__main__":
    # `kill` (SIGTERM) stops the runs as Ctrl-C does: left running, a relaunch would start a second writer on them
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
