"""
evaluate.py: zero- and few-shot evaluation of trained models on vocabulary-simplified tasks (the paper's section 6).

    python evaluate.py                                   # every run in out/ on the embedded tasks: minutes on a CPU
    python evaluate.py --ckpt out/h64-L2-simplified-1M out/h64-L2-unrestricted-1M --tasks templates,cloze --shots 0
    python evaluate.py --tasks paper --task_dir DIR --vocab AOChildes_word_frequency.csv --shots 0,5 --limit 0
    python evaluate.py --tasks paper --vocab ...         # the same tasks from the Hugging Face hub (needs `datasets`)
    python evaluate.py --hf_model EleutherAI/pythia-160m,facebook/opt-125m --tasks paper ...   # the paper's baselines

Scoring is EleutherAI's lm-evaluation-harness's: every answer choice is a continuation (" " + choice) of the task's
prompt (after an empty context, as the model's training documents start: answer_text); acc takes the choice with the
largest summed log-probability, acc_norm divides that by the choice's length in characters (a tie among the best k
scores 1/k: the harness's argmax would give it to the first choice); minimal pairs (BLiMP) compare the log-probabilities
of the two whole sentences; the cloze task counts a hit when every token of the answer is the model's greedy pick.
k-shot prompts put k solved examples of the task's train split (other examples of the evaluated split when a task has
none; never the example itself) before the question, separated by blank lines (demonstrations drawn per example, seeded
by --seed and its index). A prompt longer than the 128 tokens a model trained on is read with RoPE position
interpolation, as the paper did (scale = ceil(length / 128), of each prompt's own length: our reading; reported per
task: every position of a 129-token prompt is halved), or, with --long truncate, left-truncated as the harness does.
Every prompt starts with <|endoftext|> (it ends every training document, so it precedes all but the first; the harness
puts it only before an empty context: our choice), plus <s> for models trained on the span format "<s> span</s>"
(--sos). Before scoring, every task goes through the paper's vocabulary filter, tasks.keep_example(), on its evaluated
and its demonstration split; the counts kept are printed and saved (tasks.py reads the tasks). --hf_model scores
pretrained models (Pythia, OPT: pretrained.py) the same way.

Writes results/<run_name>.json per model, then (report.write_tables) from every results/*.json: results/table.md and
table.csv (rows = models, columns = tasks, with the baselines (chance, majority, unigram), averages and example
counts) and results/generations.md.
"""
import argparse
import hashlib
import math
import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import pretrained   # Pythia, OPT and other transformers models (--hf_model), scored as our runs
from model import autocast_for, load_checkpoint, pick_device
from files import HelpFormat, file_sha256, make_dir, write_json
from report import write_tables   # results/table.md, table.csv, generations.md
from results import (ROOT, SCORING, checkpoint_id, generation_settings, hub_checkpoint_id, hub_dir,   # a results file's
                     hub_key, previous_results, recorded_path, result_name, reusable,   # name, what of it may be kept,
                     shared_settings)                                                   # the paths it records
from dataset import document_start, load_meta, load_tokenizer, unigram_logp
from spans import DEFAULT_VOCAB, load_vocab
from tasks import expand_tasks, load_task   # the tasks, their loaders and the paper's filter

# -----------------------------------------------------------------------------
# Few-shot prompts


def sample_demos(pool, k, rng, example):
    """k distinct examples drawn from pool with rng, never one with the same content as `example` (so the evaluated
    example, or a duplicate of it, never shows its own answer)."""
    chosen, seen = [], set()
    while len(chosen) < k and len(seen) < len(pool):
        i = rng.randrange(len(pool))
        if i not in seen:
            seen.add(i)
            if pool[i]["text"] != example["text"]:
                chosen.append(pool[i])
    return chosen


def fewshot_context(example, demos):
    """As the harness joins them: each demonstration is its context + ' ' + its answer, then a blank line."""
    return "".join(f"{d['context']} {d['choices'][d['gold']]}\n\n" for d in demos) + example["context"]

# -----------------------------------------------------------------------------
# Scoring: summed log-probabilities of continuations, in padded batches


def answer_text(context, choice, sos):
    """What is scored for one choice: " " + choice, as the harness scores it, except after an empty context (a minimal
    pair's sentence): that starts a document, and is written as the model's training documents start, after "<s> " in
    the span format (sos), with no space after <|endoftext|> in raw text (with the harness's space, only models trained
    on raw text, ours and pretrained ones, would read their first word in a form their training never showed them)."""
    return (" " if context or sos else "") + choice


def encode_pair(enc, context, continuation, prefix=()):
    """Token ids of a (context, continuation) pair, split as the harness splits it: trailing whitespace of the context
    moves to the continuation, the whole string is encoded, and the continuation is what follows the context's
    tokens. prefix (start-of-document tokens) goes before the context."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole, ctx = enc.encode_ordinary(context + continuation), enc.encode_ordinary(context)
    return list(prefix) + ctx, whole[len(ctx):]


@torch.no_grad()
def score_requests(model, requests, batch_tokens=8192, device="cpu", autocast=None, label=""):
    """requests: list of (context_ids, continuation_ids, rope_scale) -> list of (sum of the continuation's
    log-probabilities, whether every continuation token is the model's greedy choice).
    The model reads at most block_size * rope_scale tokens: longer requests lose their oldest tokens (left
    truncation). Requests are sorted by scale and length, so batches of similar lengths are padded on the right
    (which a causal model never looks at) to at most batch_tokens tokens each, and results are put back in order."""
    block, old_scale = model.config.block_size, model.config.rope_scale
    # Identical requests (two choices written alike) are scored once: in two batches of other padded lengths their
    # sums would differ in the last bits, and a tie (tie_credit) would go to whichever came out higher
    unique = list(dict.fromkeys((tuple(c), tuple(k), s) for c, k, s in requests))
    if len(unique) < len(requests):
        scored = dict(zip(unique, score_requests(model, [(list(c), list(k), s) for c, k, s in unique], batch_tokens,
                                                 device, autocast, label)))
        return [scored[tuple(c), tuple(k), s] for c, k, s in requests]
    order = sorted(range(len(requests)), key=lambda i: (requests[i][2], -len(requests[i][0]) - len(requests[i][1])))
    out, done, t0 = [None] * len(requests), 0, time.time()
    last = t0
    try:
        while done < len(order):
            scale = requests[order[done]][2]
            max_len = int(block * scale)
            T = max(1, min(len(requests[order[done]][0]) + len(requests[order[done]][1]) - 1, max_len))  # longest first
            batch = [j for j in order[done:done + max(1, batch_tokens // T)] if requests[j][2] == scale]
            inputs = [(requests[j][0] + requests[j][1])[-(max_len + 1):][:-1] for j in batch]
            x = torch.zeros(len(batch), T, dtype=torch.long)
            rows, pos, tgt = [], [], []
            for r, (j, seq) in enumerate(zip(batch, inputs)):
                x[r, :len(seq)] = torch.tensor(seq)
                cont = requests[j][1][-len(seq):]       # (only a continuation longer than the window is cut)
                n = len(cont)                           # logits at position t predict token t + 1
                rows += [r] * n
                pos += range(len(seq) - n, len(seq))
                tgt += cont
            model.config.rope_scale = scale             # read at forward time: positions are divided by it
            with autocast or nullcontext():
                logits, _ = model(x.to(device))         # (B, T, V)
            rows_t, tgt_t = torch.tensor(rows, device=logits.device), torch.tensor(tgt, device=logits.device)
            sel = logits[rows_t, torch.tensor(pos, device=logits.device)].float()   # (N, V): continuation positions
            token_lp = F.log_softmax(sel, dim=-1).gather(1, tgt_t[:, None])[:, 0]
            sums = torch.zeros(len(batch), dtype=torch.float64, device=sel.device).index_add_(0, rows_t,
                                                                                              token_lp.double())
            misses = torch.zeros(len(batch), device=sel.device).index_add_(0, rows_t, (sel.argmax(-1) != tgt_t).float())
            for r, j in enumerate(batch):
                out[j] = (sums[r].item(), misses[r].item() == 0)
            done += len(batch)
            if label and (time.time() - last > 5 or (done == len(order) and last > t0)):   # long tasks only
                rate = done / max(time.time() - t0, 1e-9)
                print(f"    {label}: {done:,}/{len(order):,} requests, {rate:,.0f}/s, "
                      f"ETA {(len(order) - done) / rate:.0f}s", flush=True)
                last = time.time()
    finally:
        model.config.rope_scale = old_scale
    return out


def tie_credit(scores, gold):
    """1 if the gold choice scores highest; 1/k if it ties with k - 1 others (a random pick among the best: the
    harness's argmax gives ties to the first choice, which in a minimal pair is always the right one, so a model
    that scores everything alike would look perfect); else 0."""
    best = scores == scores.max()
    return float(best[gold]) / float(best.sum())


def mean_stderr(values):
    """The harness's standard error of a mean: sample standard deviation / sqrt(n)."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None


class NaNScores(ValueError):
    """A checkpoint that scores NaN: main skips it (and says so) and goes on with the others."""


def evaluate_task(model, enc, prefix, sos, task, shots, args, device, autocast):
    """One task at one number of shots -> a results entry (the `results` list of results/<run>.json), or None when
    it does not apply."""
    if not applies(task, shots):   # minimal pairs and cloze are zero-shot tasks; an empty one has nothing to score
        return None
    requests, choice_slots, scales, fewest = [], [], [], shots   # choice_slots: (first request, choices) per example
    for i, ex in enumerate(task["eval"]):
        rng = random.Random(f"{args.seed}:{task['name']}:{i}")
        demos = sample_demos(task["demos"], shots, rng, ex)
        fewest = min(fewest, len(demos))
        context = fewshot_context(ex, demos)   # (no demonstrations: the example's own context)
        if sos and context and not context[0].isspace():   # (demonstrations of an empty context start with one)
            context = " " + context          # the simplified corpus has a space after every <s>: "<s> span</s>"
        pairs = [encode_pair(enc, context, answer_text(context, choice, sos), prefix) for choice in ex["choices"]]
        longest = max(len(c) + len(x) - 1 for c, x in pairs)       # tokens the model reads for this example
        stretch = args.long == "rope" and getattr(model, "interpolates", True)   # (pretrained.py's: never)
        scale = max(1, math.ceil(longest / model.config.block_size)) if stretch else 1
        scales.append(scale)                 # one scale per example, so all its choices are read alike
        choice_slots.append((len(requests), len(pairs)))
        requests += [(c, x, scale) for c, x in pairs]
    if fewest < shots:   # a filter that keeps few examples leaves few to show
        print(f"  note: {task['name']}: only {len(task['demos'])} filtered examples to draw demonstrations from: "
              f"some prompts have {fewest} instead of {shots} (the entry records fewest_demos)")
    scored = score_requests(model, requests, args.batch_tokens, device, autocast, f"{task['name']} {shots}-shot")
    acc, acc_norm = [], []
    for ex, (start, n) in zip(task["eval"], choice_slots):
        ll = np.array([scored[start + c][0] for c in range(n)])
        if np.isnan(ll).any():   # np.argmax would pick choice 0, often the gold one: a NaN model would look perfect
            raise NaNScores(f"{task['name']}: the model gives NaN log-probabilities (a diverged checkpoint, or "
                            "float16 overflow: try --dtype float32)")
        if task["kind"] == "cloze":
            acc.append(float(scored[start][1]))
            continue
        acc.append(tie_credit(ll, ex["gold"]))
        if task["kind"] == "choice":   # by the choice's length in characters (the leading space not counted)
            acc_norm.append(tie_credit(ll / np.array([len(c) for c in ex["choices"]]), ex["gold"]))
    with_norm = bool(acc_norm)
    return {"task": task["name"], "family": task["family"], "shots": shots, "n": len(acc), "chance": task["chance"],
            "majority": task["majority"],
            "acc": float(np.mean(acc)) if acc else None, "acc_stderr": mean_stderr(acc) if acc else None,
            "acc_norm": float(np.mean(acc_norm)) if with_norm else None,
            "acc_norm_stderr": mean_stderr(acc_norm) if with_norm else None,
            "rope_scale": max(scales, default=1), "filtered": task["filtered"], "fewest_demos": fewest}

# -----------------------------------------------------------------------------
# One model: load it with its own tokenizer, score every task, sample a few continuations


def load_run(path, device, data_dir=None):
    """A run directory (or ckpt.pt) -> (model, checkpoint info, tokenizer, dataset meta, dataset directory), checked
    to belong together."""
    try:
        model, info = load_checkpoint(path, device)
    except (FileNotFoundError, ValueError, MemoryError) as e:
        raise SystemExit(str(e))
    data_dir = data_dir or info.get("data_dir")
    if not data_dir:
        raise SystemExit(f"{path}: the checkpoint names no data_dir; pass --data_dir with its dataset")
    if not Path(data_dir).is_dir() and (ROOT / data_dir).is_dir():
        data_dir = str(ROOT / data_dir)    # a relative data_dir written by a run started in the repository root
    if not Path(data_dir).is_dir():
        raise SystemExit(f"{path}: its dataset {data_dir} is not there (moved or deleted?): pass --data_dir with it")
    meta, enc = load_meta(data_dir), load_tokenizer(data_dir)
    if info.get("tokenizer_sha256") != meta["tokenizer"]["sha256"] or model.config.vocab_size != meta["vocab_size"]:
        raise SystemExit(f"{path} does not match the tokenizer of {data_dir}: trained with tokenizer sha256 "
                         f"{str(info.get('tokenizer_sha256'))[:12]} and vocab {model.config.vocab_size}, the dataset "
                         f"has {meta['tokenizer']['sha256'][:12]} and {meta['vocab_size']}. Pass --data_dir with the "
                         "dataset the run trained on (rebuilding a dataset changes its tokenizer)")
    return model, info, enc, meta, data_dir


def unigram_accuracy(task, enc, prefix, sos, logp):
    """Minimal pairs only: the accuracy of a model that ignores context and word order, scoring each sentence by the
    summed unigram log-probabilities of its tokens (ties as tie_credit). Pairs whose sentences differ in word
    frequency are won by it: a language model must beat it, not only chance (BLiMP reports n-gram baselines too)."""
    if task["kind"] != "pairs" or not task["eval"] or logp is None:   # (None: a pretrained model's unknown text)
        return None
    def logp_of(ex, choice):
        return math.fsum(logp[encode_pair(enc, ex["context"], answer_text(ex["context"], choice, sos), prefix)[1]])
    return float(np.mean([tie_credit(np.array([logp_of(ex, c) for c in ex["choices"]]), ex["gold"])
                          for ex in task["eval"]]))


def generate(model, enc, prefix, sos, stop, prompts, args, device):
    """A sampled continuation per prompt (seed + its index: one seed for all gave every prompt the same random
    draws, and similar prompts the same text), cut at the first token of `stop` (</s>, <|endoftext|>)."""
    out = []
    for i, p in enumerate(prompts):
        ids = list(prefix) + enc.encode_ordinary((" " if sos else "") + p)
        g = torch.Generator(device=device).manual_seed(args.seed + i)
        y = model.generate(torch.tensor([ids], device=device), args.max_new_tokens, temperature=args.temperature,
                           top_k=40, generator=g)[0, len(ids):].tolist()
        cut = next((i for i, t in enumerate(y) if t in stop), len(y))
        out.append({"prompt": p, "text": enc.decode(y[:cut])})
    return out


def applies(task, shots):
    """Whether a task is scored at this number of shots: minimal pairs and cloze are zero-shot tasks (BLiMP's
    harness config says num_fewshot: 0), and a task the filter left empty has nothing to score."""
    return bool(task["eval"]) and (shots == 0 or task["kind"] == "choice")


def evaluate_model(path, tasks, shots_list, args, device, autocast, old=None, hub=False):
    """Score a run (or with hub=True a pretrained model: pretrained.py) on every task that applies at each number of
    shots -> its results dict (results/<run>.json). old: that file's earlier contents for this very checkpoint and
    settings (previous_results): entries for the same examples are kept rather than scored again (unless --force),
    and entries for other tasks stay in the file."""
    name = result_name(path, hub)
    if hub:   # its own document start, no unigram baseline (we do not have its training text), never <s>
        model, enc, hf = pretrained.load_pretrained(path, device)
        corpus, info, logp, sos, prefix, stop = "pretrained", {}, None, False, [hf["start"]], hf["stop"]
        start = enc.tok.convert_ids_to_tokens(prefix[0])
        if args.sos == "yes":
            print(f"  note: --sos yes applies to our runs only: {name}'s prompts start with {start} alone")
    else:
        model, info, enc, meta, data_dir = load_run(path, device, args.data_dir)
        logp = unigram_logp(data_dir, meta) if any(t["kind"] == "pairs" for t in tasks) else None
        specials = meta["tokenizer"]["special_tokens"]
        # Every prompt starts with <|endoftext|>: the token each training document follows in train.bin (and what
        # the harness puts before an empty context). Models trained on the span format ("<s> span</s>") get <s> too.
        prefix = document_start(meta, None if args.sos == "auto" else args.sos == "yes")
        sos = len(prefix) == 2
        corpus, stop = meta["name"], set(specials.values())
        start = "<|endoftext|><s>" if sos else "<|endoftext|>"
    n_params, tokens = model.num_params(), int(info.get("tokens") or 0)
    what = path if hub else f"{corpus} corpus, {tokens:,} tokens seen"
    print(f"{name}: {what}, {n_params:,} parameters, prompts start with {start}")
    results, t0 = [], time.time()
    reuse = {(e["task"], e["shots"], e.get("data_sha")): e for e in (old or {}).get("results", [])
             if not args.force and reusable(e, args)}
    if not hub and args.filter and meta.get("vocab_sha256") not in (None, file_sha256(args.vocab)):
        what = "its corpus was simplified" if meta.get("filter") else "its simplified twin was made"
        print(f"  note: {what} with the word list {meta.get('vocab_file')}, the tasks are filtered with --vocab "
              f"{args.vocab}: pass that file to filter them by the words the simplified model saw")
    for task in tasks:
        held = task.get("heldout")
        if held and hub:
            print(f"  warning: {task['name']} passages come from the embedded corpus (public texts): a pretrained "
                  "model may have read them")
        elif held and (Path(str(meta.get("source"))).parts[-2:] != ("data", "corpus")
                       or meta.get("val_fraction", 0) < held["val_fraction"]):
            print(f"  warning: {task['name']} passages come from the embedded corpus' validation split at "
                  f"val_fraction {held['val_fraction']}; this model's dataset ({meta.get('source')}, val_fraction "
                  f"{meta.get('val_fraction')}) may have trained on some of them")
        for shots in [s for s in shots_list if applies(task, s)]:
            t = time.time()
            r = reuse.get((task["name"], shots, task["data_sha"]))
            kept = r is not None
            if kept:   # (the majority baseline as tasks.py computes it now)
                r = {**r, "majority": task["majority"]}
            else:
                r = {**evaluate_task(model, enc, prefix, sos, task, shots, args, device, autocast),
                     "data_sha": task["data_sha"], "scoring": SCORING, "dtype": args.dtype}
            r["unigram"] = unigram_accuracy(task, enc, prefix, sos, logp)
            results.append(r)
            norm = f", acc_norm {r['acc_norm']:.3f}" if r["acc_norm"] is not None else ""
            most = "".join(f", {k} {r[k]:.2f}" for k in ("majority", "unigram") if r[k] is not None)
            print(f"  {task['name']:<50} {shots}-shot  n={r['n']:<5} acc {r['acc']:.3f} ± {r['acc_stderr'] or 0:.3f}"
                  f"{norm} (chance {r['chance']:.2f}{most}, rope x{r['rope_scale']}) "
                  + ("kept from before" if kept else f"{time.time() - t:.1f}s"), flush=True)
    asked = {(e["task"], e["shots"]) for e in results}
    results += [e for e in (old or {}).get("results", []) if (e["task"], e["shots"]) not in asked]   # other tasks
    gen = generation_settings(args)
    same_gen = old and old.get("eval", {}).get("generation") == gen
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    where = ({"hf_model": hub_key(path), "checkpoint_id": hub_checkpoint_id(path), "model": path}
             if hub else
             {"run_dir": recorded_path(run_dir), "checkpoint_id": checkpoint_id(info),
              "model": (info.get("train_config") or {}).get("model")})
    return {**where, "run_name": name, "corpus": corpus, "n_params": n_params,
            "n_params_non_embedding": model.num_params(non_embedding=True), "tokens_seen": None if hub else tokens,
            "train_flops_6nd": None if hub else 6.0 * n_params * tokens, "val_loss": info.get("val_loss"),
            "results": results, "generations": old["generations"] if same_gen else
            generate(model, enc, prefix, sos, stop, args.prompts, args, device),
            "filter_counts": {**(old or {}).get("filter_counts", {}), **{t["name"]: t["counts"] for t in tasks}},
            "eval": {"shots": shots_list, "limit": args.limit, "vocab": recorded_path(args.vocab),
                     **shared_settings(args, hub), "prefix_sos": sos, "generation": gen,
                     "seconds": round(time.time() - t0, 1)}}

# -----------------------------------------------------------------------------
# Command line


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormat)
    p.add_argument("--ckpt", nargs="+", default=None, help="run directories (or ckpt.pt files); default: every run "
                   "in out/ with a ckpt.pt")
    p.add_argument("--hf_model", default="", help="comma-separated pretrained models to score as well (or instead "
                   "of out/'s runs), hub ids or local directories: the paper's baselines, e.g. "
                   "EleutherAI/pythia-160m,facebook/opt-125m (pretrained.py; results/hf-<name>.json)")
    p.add_argument("--tasks", default="embedded", help="comma-separated task names or groups: templates, cloze, "
                   "bigbench, embedded (those three), blimp (the paper's 22 paradigms), paper (all the paper's tasks)")
    p.add_argument("--task_dir", default=None, help="local files of the paper's tasks in their original formats "
                   "(DIR/blimp/<paradigm>.jsonl, DIR/copa/copa-dev.xml, DIR/sst2/dev.tsv ...); default: the hub")
    p.add_argument("--vocab", default=DEFAULT_VOCAB, help="vocabulary of the task filter (the paper: the AO-CHILDES "
                   "CSV); default: the embedded proxy data/vocab/spoken_10k.txt")
    p.add_argument("--filter", action=argparse.BooleanOptionalAction, default=True, help="keep only examples that "
                   "pass keep_example (the paper's simplified tasks)")
    p.add_argument("--shots", default="0,3", help="comma-separated numbers of demonstrations (0 = zero-shot)")
    p.add_argument("--limit", type=int, default=300, help="examples per task at most, a fixed random subset (0: all)")
    p.add_argument("--long", choices=["rope", "truncate"], default="rope", help="prompts longer than the trained "
                   "context: RoPE position interpolation (scale = ceil(length / block_size)) or left truncation")
    p.add_argument("--sos", choices=["auto", "yes", "no"], default="auto", help="start prompts with <s> (auto: for "
                   "models trained on the span format '<s> span</s>', i.e. the simplified corpus)")
    p.add_argument("--seed", type=int, default=1234, help="demonstrations, --limit subsets, generations")
    p.add_argument("--data_dir", default=None, help="the dataset of the checkpoints, if not where they were trained")
    p.add_argument("--results_dir", default="results")
    p.add_argument("--prompts", default="Once upon a time|The little dog|Mom said that|I think the best",
                   help="|-separated prompts for the generated samples")
    p.add_argument("--max_new_tokens", type=int, default=32, help="tokens sampled per prompt")
    p.add_argument("--temperature", type=float, default=0.8, help="of the samples (0: the most likely token)")
    p.add_argument("--batch_tokens", type=int, default=0, help="padded tokens per forward pass (0: 65536 on a GPU, "
                   "8192 on a CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="precision of the forward passes (default float32: under bf16 autocast close choices swap "
                   "order and scores move; README)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--force", action="store_true", help="re-score the tasks asked for even where results/<run>.json "
                   "is up to date (its other tasks stay), or replace a results file that holds other settings")
    args = p.parse_args(argv)
    try:
        args.shots = sorted({int(s) for s in args.shots.split(",") if s.strip()})
    except ValueError:
        p.error(f"--shots {args.shots!r}: expected comma-separated integers, e.g. 0,3")
    if any(s < 0 for s in args.shots) or args.limit < 0:
        p.error("--shots and --limit must be >= 0")
    if not args.temperature >= 0 or args.max_new_tokens < 0:
        p.error("--temperature and --max_new_tokens must be >= 0 (temperature 0: the most likely token)")
    if args.threads < 0:
        p.error("--threads must be >= 0 (0: torch's default)")
    args.prompts = [s for s in args.prompts.split("|") if s.strip()]
    args.hf_model = list(dict.fromkeys(s.strip() for s in args.hf_model.split(",") if s.strip()))
    args.vocab_sha = None   # main sets it once the vocabulary is read
    return args


def main(argv=None):
    args = get_args(argv)
    try:
        evaluate_all(args)
    except KeyboardInterrupt:
        raise SystemExit(f"interrupted: a model's {args.results_dir}/NAME.json is written once all its tasks are "
                         "scored: run the same command again to score the rest (without --force, the models done are "
                         "reused)") from None


def evaluate_all(args):
    """Score every model on every task (evaluate_model), write its results file, then the tables."""
    device = pick_device(args.device)   # before anything is loaded (a download, perhaps)
    if args.threads:
        torch.set_num_threads(args.threads)
    autocast = autocast_for(device, args.dtype)
    args.batch_tokens = args.batch_tokens or (65536 if device.startswith("cuda") else 8192)
    ckpts = args.ckpt or ([] if args.hf_model else sorted(str(p.parent) for p in Path("out").glob("*/ckpt.pt")))
    if not ckpts and not args.hf_model:
        raise SystemExit("no checkpoints in out/: train one with `python train.py`, or pass --ckpt RUN_DIR")
    for c in ckpts:   # before any task is loaded (that may mean a download)
        if not (Path(c) / "ckpt.pt").is_file() and not Path(c).is_file():
            raise SystemExit(f"--ckpt {c}: no such run directory or checkpoint (train one with `python train.py`)"
                             if not Path(c).is_dir() else f"--ckpt {c}: the run has no ckpt.pt yet (it writes one "
                             "every --eval_interval steps): train it further, or pass a checkpoint file")
    for m in args.hf_model:
        hub_dir(m)   # a path that is not a directory: said now, not after the other models are scored
    models = [(c, False) for c in ckpts] + [(m, True) for m in args.hf_model]
    names = [result_name(path, hub) for path, hub in models]
    if clash := next((n for n in names if names.count(n) > 1), None):
        raise SystemExit(f"two of the models would write {args.results_dir}/{clash}.json: evaluate them in two "
                         "commands with another --results_dir")
    vocab = load_vocab(args.vocab)
    args.vocab_sha = hashlib.sha256("\n".join(sorted(vocab)).encode()).hexdigest()[:16] if args.filter else None
    t0 = time.time()
    tasks = [load_task(n, args, vocab) for n in expand_tasks(args.tasks)]
    for t in tasks:
        counts = ", ".join(f"{s} {k:,}/{n:,}" for s, (k, n) in t["counts"].items())
        print(f"task {t['name']}: {counts} kept by the vocabulary filter{'' if args.filter else ' (off)'}; "
              f"evaluating {len(t['eval']):,}")
    make_dir(args.results_dir, "--results_dir")
    for t in tasks:
        if not t["eval"]:
            empty = not any(n for _, n in t["counts"].values())
            why = "its files hold no examples" if empty else "the filter kept none of its examples"
            print(f"note: {t['name']}: {why}: it is not scored")
        elif not any(applies(t, s) for s in args.shots):
            print(f"note: {t['name']} is scored zero-shot only (minimal pairs and cloze); --shots has no 0")
    if not any(applies(t, s) for t in tasks for s in args.shots):
        raise SystemExit("nothing to score: every task is empty after the filter or zero-shot only with these --shots")
    previous = [previous_results(path, args, hub) for path, hub in models]   # said before any model is scored
    if (problems := [problem for _, problem in previous if problem]) and not args.force:
        more = f" (and {len(problems) - 1} more such files)" if len(problems) > 1 else ""
        raise SystemExit(f"{problems[0]}{more}: pass --results_dir DIR to keep both, or --force to replace them")
    failed = []
    for (path, hub), name, (old, problem) in zip(models, names, previous):
        if problem:
            print(f"note: {problem}: replaced (--force)")
        have = {(e["task"], e["shots"], e.get("data_sha"), e.get("majority")) for e in (old or {}).get("results", [])
                if reusable(e, args) and "unigram" in e}   # (other baselines: the file is rewritten, scores kept)
        if old and not args.force and old["eval"].get("generation") == generation_settings(args) and all(
                (t["name"], s, t["data_sha"], t["majority"]) in have for t in tasks for s in args.shots
                if applies(t, s)):
            print(f"{name}: {args.results_dir}/{name}.json is up to date with this checkpoint, these tasks and "
                  "settings, reusing it (--force redoes these tasks)")
            continue
        try:
            res = evaluate_model(path, tasks, args.shots, args, device, autocast, old, hub)
        except NaNScores as e:   # one diverged checkpoint does not stop a sweep's evaluation; its file is left as is
            failed.append(f"{name} ({e})")
            print(f"{name}: skipped: {e}")
            continue
        write_json(Path(args.results_dir) / f"{name}.json", res)
        for g in res["generations"]:
            print(f"  > {g['prompt']!r} + {g['text']!r}")   # the prompt, then what the model wrote
    print("\n".join(write_tables(args.results_dir)))
    n = len(ckpts) + len(args.hf_model) - len(failed)
    print(f"done in {time.time() - t0:.0f}s: {n} models; results in {args.results_dir}/")
    if failed:
        raise SystemExit(f"{len(failed)} checkpoints not scored: " + "; ".join(failed))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # `kill` stops it as Ctrl-C does: one line
    main()
