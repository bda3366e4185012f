"""
evaluate.py: zero- and few-shot evaluation of trained models on vocabulary-simplified tasks (the paper's section 6).

    python evaluate.py                                   # every run in out/ on the embedded tasks: minutes on a CPU
    python evaluate.py --ckpt out/h64-L2-simplified out/h64-L2-unrestricted --tasks templates,cloze --shots 0
    python evaluate.py --tasks paper --task_dir DIR --vocab AOChildes_word_frequency.csv --shots 0,5 --limit 0
    python evaluate.py --tasks paper --vocab ...         # the same tasks from the Hugging Face hub (needs `datasets`)

Scoring is EleutherAI's lm-evaluation-harness's: every answer choice is a continuation (" " + choice) of the task's
prompt; acc takes the choice with the largest summed log-probability, acc_norm divides that by the choice's length
in characters; minimal pairs (BLiMP) compare the log-probabilities of the two whole sentences; the cloze task counts
a hit when every token of the answer is the model's greedy pick. k-shot prompts put k solved examples of the task's
train split (other examples of the evaluated split when a task has none; never the example itself) before the
question, separated by blank lines. A prompt longer than the 128 tokens a model trained on is read with RoPE
position interpolation (scale = ceil(length / 128), reported per task) or, with --long truncate, left-truncated.
Every prompt starts with <|endoftext|> (the token every training document follows), plus <s> for models trained on
the span format "<s> span </s>" (--sos). Before scoring, every task goes through the paper's vocabulary filter,
keep_example(), on its evaluated and its demonstration split; the counts kept are printed and saved.

Writes results/<run_name>.json per model, and from every results/*.json: results/table.md and table.csv (rows =
models, columns = tasks, with chance level, average and example counts) and results/generations.md.
"""
import argparse
import csv
import gzip
import io
import json
import math
import random
import re
import time
import xml.etree.ElementTree as ET
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from model import load_checkpoint, read_checkpoint
from simplify import DEFAULT_VOCAB, load_meta, load_tokenizer, load_vocab, write_atomic

ROOT = Path(__file__).resolve().parent
TASKS_DIR = ROOT / "data" / "tasks"

# -----------------------------------------------------------------------------
# The simplified-task filter (PAPER.md section 6, as the authors' notebook wrote it)

STRIP = re.compile(r"[0-9!:&“”—\-_,@#$?;’.'()\"]")    # characters deleted from every word (ASCII digits only)
FRAGMENTS = frozenset({"nt", "s", "re", "t", "d", "ll"})  # what is left of split contractions: n't 's 're 't 'd 'll


def keep_example(text, vocab):
    """True if the example survives the paper's filter. text = the example's fields joined by single spaces in the
    authors' order. Split on single spaces; skip every word that differs from its lowercase form unless it is the
    very first word of text; lowercase, delete the STRIP characters; skip empty strings and FRAGMENTS; every
    remaining word must be in vocab. (Names and sentence-initial words are thus never checked: the authors' rule.)"""
    for n, word in enumerate(text.split(" ")):
        if n > 0 and word != word.lower():
            continue
        word = STRIP.sub("", word.lower())
        if word and word not in FRAGMENTS and word not in vocab:
            return False
    return True

# -----------------------------------------------------------------------------
# The paper's tasks: prompts in the harness's default formats. Each maps a row with the hub's field names to
# (context, choices, index of the right choice, the content fields in the authors' order for the filter).


def _copa(r):
    connector = {"cause": "because", "effect": "therefore"}[r["question"]]
    lower = lambda c: c[0].lower() + c[1:]  # noqa: E731  (the choice continues the premise's sentence)
    return (r["premise"].strip()[:-1] + f" {connector}", [lower(r["choice1"]), lower(r["choice2"])], r["label"],
            [r["premise"], r["choice1"], r["choice2"]])


PROMPTS = {
    "blimp": lambda r: ("", [r["sentence_good"], r["sentence_bad"]], 0, [r["sentence_good"], r["sentence_bad"]]),
    "copa": _copa,
    "sst2": lambda r: (f"{r['sentence']}\nQuestion: Is this sentence positive or negative?\nAnswer:",
                       ["negative", "positive"], r["label"], [r["sentence"]]),
    "qqp": lambda r: (f"Question 1: {r['question1']}\nQuestion 2: {r['question2']}\nQuestion: Do both questions ask "
                      "the same thing?\nAnswer:", ["no", "yes"], r["label"], [r["question1"], r["question2"]]),
    "mrpc": lambda r: (f"Sentence 1: {r['sentence1']}\nSentence 2: {r['sentence2']}\nQuestion: Do both sentences "
                       "mean the same thing?\nAnswer:", ["no", "yes"], r["label"], [r["sentence1"], r["sentence2"]]),
    "rte": lambda r: (f"{r['sentence1']}\nQuestion: {r['sentence2']} True or False?\nAnswer:", ["True", "False"],
                      r["label"], [r["sentence1"], r["sentence2"]]),
    "mnli": lambda r: (f"{r['premise']}\nQuestion: {r['hypothesis'].strip().removesuffix('.')}. True, False or "
                       "Neither?\nAnswer:", ["True", "Neither", "False"], r["label"], [r["premise"], r["hypothesis"]]),
    "piqa": lambda r: (f"Question: {r['goal']}\nAnswer:", [r["sol1"], r["sol2"]], r["label"],
                       [r["goal"], r["sol1"], r["sol2"]]),
    "arc_easy": lambda r: (f"Question: {r['question']}\nAnswer:", list(r["choices"]["text"]),
                           list(r["choices"]["label"]).index(r["answerKey"]), [r["question"], *r["choices"]["text"]]),
}
BLIMP_22 = ["anaphor_gender_agreement", "anaphor_number_agreement", "ellipsis_n_bar_1", "ellipsis_n_bar_2",
            "irregular_past_participle_adjectives", "irregular_past_participle_verbs",
            "existential_there_quantifiers_1", "existential_there_quantifiers_2", "superlative_quantifiers_1",
            "superlative_quantifiers_2", "existential_there_object_raising", "existential_there_subject_raising",
            "expletive_it_object_raising", "tough_vs_raising_1", "distractor_agreement_relative_clause",
            "irregular_plural_subject_verb_agreement_1", "irregular_plural_subject_verb_agreement_2",
            "regular_plural_subject_verb_agreement_1", "regular_plural_subject_verb_agreement_2", "adjunct_island",
            "complex_NP_island", "principle_A_reconstruction"]
# task: (family, hub dataset, hub config, evaluated split, split of the few-shot demonstrations), as the authors used
PAPER_TASKS = {f"blimp_{p}": ("blimp", "nyu-mll/blimp", p, "train", None) for p in BLIMP_22}
PAPER_TASKS.update({
    "copa": ("copa", "aps/super_glue", "copa", "validation", "train"),
    "sst2": ("sst2", "nyu-mll/glue", "sst2", "validation", "train"),
    "qqp": ("qqp", "nyu-mll/glue", "qqp", "validation", "train"),
    "mrpc": ("mrpc", "nyu-mll/glue", "mrpc", "validation", "train"),
    "rte": ("rte", "nyu-mll/glue", "rte", "validation", "train"),
    "mnli": ("mnli", "nyu-mll/glue", "mnli", "validation_matched", "train"),
    "piqa": ("piqa", "baber/piqa", None, "validation", "train"),
    "arc_easy": ("arc_easy", "allenai/ai2_arc", "ARC-Easy", "test", "train")})

# -----------------------------------------------------------------------------
# Reading task files: the originals (GLUE TSV, SuperGLUE/MultiNLI JSONL, COPA XML, PIQA, ARC), the hub, data/tasks/

LABELS = {"entailment": 0, "not_entailment": 1, "neutral": 1, "contradiction": 2}
# GLUE TSVs and the SuperGLUE-RTE / MultiNLI JSONL variants: file names per split, then column -> hub field name
FILES = {"train": ["train.tsv", "train.jsonl", "multinli_1.0_train.jsonl"], "validation": ["dev.tsv", "val.jsonl"],
         "validation_matched": ["dev_matched.tsv", "multinli_1.0_dev_matched.jsonl"]}
COLUMNS = {"sst2": {"sentence": "sentence", "label": "label"},
           "qqp": {"question1": "question1", "question2": "question2", "is_duplicate": "label"},
           "mrpc": {"#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"},
           "rte": {"sentence1": "sentence1", "sentence2": "sentence2", "premise": "sentence1",
                   "hypothesis": "sentence2", "label": "label"},
           "mnli": {"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"}}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_local(task_dir, family, config, split):
    """Rows with the hub's field names from the original files under task_dir (the layout: blimp/<paradigm>.jsonl,
    copa/copa-dev.xml, sst2/dev.tsv, ...; see README). None when the split's file is not there."""
    d = Path(task_dir) / family
    if family == "blimp":
        return read_jsonl(d / f"{config}.jsonl") if (d / f"{config}.jsonl").exists() else None
    if family == "copa":   # SuperGLUE's splits of the original XML: train = dev ids 1-400, validation = 401-500
        path = d / ("copa-test.xml" if split == "test" else "copa-dev.xml")
        if not path.exists():
            return None
        rows = [{"premise": it.find("p").text, "choice1": it.find("a1").text, "choice2": it.find("a2").text,
                 "question": it.get("asks-for"), "label": int(it.get("most-plausible-alternative")) - 1,
                 "id": int(it.get("id"))} for it in ET.parse(path).getroot()]
        return [r for r in rows if split == "test" or (r["id"] <= 400) == (split == "train")]
    if family == "piqa":   # questions and labels come in two aligned files
        name = {"validation": "valid"}.get(split, split)
        if not (d / f"{name}.jsonl").exists() or not (d / f"{name}-labels.lst").exists():
            return None
        labels = (d / f"{name}-labels.lst").read_text().split()
        return [dict(r, label=int(lab)) for r, lab in zip(read_jsonl(d / f"{name}.jsonl"), labels, strict=True)]
    if family == "arc_easy":
        path = d / f"ARC-Easy-{ {'validation': 'Dev'}.get(split, split.capitalize()) }.jsonl"
        return [{"question": r["question"]["stem"], "answerKey": r["answerKey"],
                 "choices": {"text": [c["text"] for c in r["question"]["choices"]],
                             "label": [c["label"] for c in r["question"]["choices"]]}}
                for r in read_jsonl(path)] if path.exists() else None
    path = next((d / f for f in FILES.get(split, []) if (d / f).exists()), None)
    if path is None:
        return None
    if path.suffix == ".tsv":   # GLUE TSVs: unbalanced quotes inside fields (so QUOTE_NONE), MRPC's start with a BOM
        with open(path, encoding="utf-8-sig", newline="") as f:
            raw = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    else:
        raw = read_jsonl(path)
    rows = []
    for r in raw:
        row = {new: r[old] for old, new in COLUMNS[family].items() if old in r}
        label = str(row.get("label")).strip()
        if label.isdigit() or label in LABELS:   # unlabeled rows ('-' in MultiNLI) are left out
            rows.append(dict(row, label=int(label) if label.isdigit() else LABELS[label]))
    return rows


def read_hub(dataset, config, split):
    try:
        import datasets
    except ImportError:
        raise SystemExit("the paper's tasks come from the Hugging Face hub unless --task_dir names local files: "
                         "pip install datasets, or pass --task_dir DIR") from None
    try:
        return [dict(r) for r in datasets.load_dataset(dataset, config, split=split)]
    except Exception as e:   # offline, a renamed dataset, a missing split: one line that says what to do
        raise SystemExit(f"could not load {dataset} {config or ''} {split} from the Hugging Face hub "
                         f"({type(e).__name__}: {str(e)[:200]}); pass --task_dir with local copies") from None


def read_embedded(name):
    """A file of data/tasks/ (written by data/build_tasks.py) -> (its header, its test examples)."""
    path = next((p for p in (TASKS_DIR / f"{name}.json", TASKS_DIR / f"{name}.json.gz") if p.exists()), None)
    if path is None:
        paper = ", ".join(t for t in PAPER_TASKS if not t.startswith("blimp_"))
        raise SystemExit(f"task file {TASKS_DIR / name}.json not found: rebuild the embedded tasks with `python "
                         f"data/build_tasks.py`, or check --tasks (embedded: {', '.join(embedded_names())}; the "
                         f"paper's: {paper}, blimp_<paradigm>)")
    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
        task = json.load(f)
    convert = {"pairs": lambda e: ("", [e["good"], e["bad"]], 0, [e["good"], e["bad"]]),
               # passages keep their line breaks; the filter splits on spaces only, so it reads them as spaces
               "cloze": lambda e: (e["context"], [e["target"]], 0, [" ".join(e["context"].split()), e["target"]]),
               "choice": lambda e: (e["context"], e["choices"], e["gold"], e["fields"])}[task["kind"]]
    return task, [convert(e) for e in task["splits"]["test"]]


def embedded_names():
    return sorted(p.name.split(".")[0] for p in TASKS_DIR.glob("*.json*"))


def expand_tasks(spec):
    """'templates,cloze,rte' -> task names. Groups: templates, bigbench (embedded files), blimp, paper, embedded."""
    groups = {"templates": [n for n in embedded_names() if n.startswith("templates_")],
              "bigbench": [n for n in embedded_names() if n.startswith("bigbench_")],
              "blimp": [f"blimp_{p}" for p in BLIMP_22], "paper": list(PAPER_TASKS)}
    groups["embedded"] = groups["templates"] + ["cloze"] + groups["bigbench"]
    names = [n for part in spec.split(",") if part.strip() for n in groups.get(part.strip(), [part.strip()])]
    return list(dict.fromkeys(names))


def load_task(name, args, vocab):
    """-> dict(name, family, kind, chance, eval=[examples], demos=[examples], counts={split: [kept, total]}, ...).
    An example is dict(context, choices, gold, text); text joins its content fields for the filter. eval is at most
    --limit examples (a fixed random subset, in file order); demos is the whole filtered demonstration split."""
    header = {}
    if name in PAPER_TASKS:
        family, dataset, config, split, demo_split = PAPER_TASKS[name]
        read = (lambda s: read_local(args.task_dir, family, config, s)) if args.task_dir else \
            (lambda s: read_hub(dataset, config, s))
        rows = read(split)
        if rows is None:
            raise SystemExit(f"{name}: no {split} file under {args.task_dir}/{family}/ in the original format "
                             f"(e.g. {family}/{FILES.get(split, ['...'])[0]}; the layout is in evaluate.read_local)")
        splits = {split: [PROMPTS[family](r) for r in rows]}
        demo_rows = read(demo_split) if demo_split else None
        if demo_rows is not None:
            splits[demo_split] = [PROMPTS[family](r) for r in demo_rows]
        elif demo_split:
            print(f"note: {name}: no {demo_split} split found; few-shot demonstrations come from the {split} split")
        kind = "pairs" if family == "blimp" else "choice"
    else:
        header, examples = read_embedded(name)
        family, kind, split, demo_split, splits = header["family"], header["kind"], "test", None, {"test": examples}
    counts, kept = {}, {}
    for s, examples in splits.items():
        examples = [dict(context=c, choices=ch, gold=g, text=" ".join(fields)) for c, ch, g, fields in examples]
        kept[s] = [e for e in examples if keep_example(e["text"], vocab)] if args.filter else examples
        counts[s] = [len(kept[s]), len(examples)]
    pool = ev = kept[split]
    if args.limit and len(pool) > args.limit:
        ev = [pool[i] for i in sorted(random.Random(f"{args.seed}:{name}").sample(range(len(pool)), args.limit))]
    chance = 0.0 if kind == "cloze" else float(np.mean([1 / len(e["choices"]) for e in ev])) if ev else None
    return dict(name=name, family=family, kind=kind, chance=chance, eval=ev, demos=kept.get(demo_split, pool),
                counts=counts, filtered=bool(args.filter), heldout=header.get("heldout"))

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


def encode_pair(enc, context, continuation, prefix=()):
    """Token ids of a (context, continuation) pair, split as the harness splits it: trailing spaces of the context
    move to the continuation, the whole string is encoded, and the continuation is what follows the context's
    tokens. prefix (start-of-document tokens) goes before the context."""
    n = len(context) - len(context.rstrip(" "))
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


def mean_stderr(values):
    """The harness's standard error of a mean: sample standard deviation / sqrt(n)."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None


def evaluate_task(model, enc, prefix, sos, task, shots, args, device, autocast):
    """One task at one number of shots -> a results entry (INTERFACES.md), or None when it does not apply."""
    if shots and task["kind"] != "choice":
        return None      # minimal pairs and cloze are zero-shot tasks (BLiMP's harness config says num_fewshot: 0)
    requests, spans, scales = [], [], []
    for i, ex in enumerate(task["eval"]):
        rng = random.Random(f"{args.seed}:{task['name']}:{i}")
        context = fewshot_context(ex, sample_demos(task["demos"], shots, rng, ex)) if shots else ex["context"]
        if sos and context:
            context = " " + context          # the simplified corpus has a space after every <s>: "<s> span </s>"
        pairs = [encode_pair(enc, context, " " + choice, prefix) for choice in ex["choices"]]
        longest = max(len(c) + len(x) - 1 for c, x in pairs)       # tokens the model reads for this example
        scale = max(1, math.ceil(longest / model.config.block_size)) if args.long == "rope" else 1
        scales.append(scale)                 # one scale per example, so all its choices are read alike
        spans.append((len(requests), len(pairs)))
        requests += [(c, x, scale) for c, x in pairs]
    scored = score_requests(model, requests, args.batch_tokens, device, autocast, f"{task['name']} {shots}-shot")
    acc, acc_norm = [], []
    for ex, (start, n) in zip(task["eval"], spans):
        ll = np.array([scored[start + c][0] for c in range(n)])
        if task["kind"] == "cloze":
            acc.append(float(scored[start][1]))
            continue
        acc.append(float(np.argmax(ll) == ex["gold"]))        # ties go to the first choice, as np.argmax does
        acc_norm.append(float(np.argmax(ll / np.array([len(c) for c in ex["choices"]])) == ex["gold"]))
    with_norm = task["kind"] == "choice" and bool(acc)
    return {"task": task["name"], "family": task["family"], "shots": shots, "n": len(acc), "chance": task["chance"],
            "acc": float(np.mean(acc)) if acc else None, "acc_stderr": mean_stderr(acc) if acc else None,
            "acc_norm": float(np.mean(acc_norm)) if with_norm else None,
            "acc_norm_stderr": mean_stderr(acc_norm) if with_norm else None,
            "rope_scale": max(scales, default=1), "filtered": task["filtered"]}

# -----------------------------------------------------------------------------
# One model: load it with its own tokenizer, score every task, sample a few continuations


def load_run(path, device, data_dir=None):
    """A run directory (or ckpt.pt) -> (model, checkpoint info, tokenizer, dataset meta), checked to belong together."""
    try:
        model, info = load_checkpoint(path, device)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e))
    data_dir = data_dir or info.get("data_dir")
    if not data_dir:
        raise SystemExit(f"{path}: the checkpoint names no data_dir; pass --data_dir with its dataset")
    if not Path(data_dir).is_dir() and (ROOT / data_dir).is_dir():
        data_dir = str(ROOT / data_dir)    # a relative data_dir written by a run started in the repository root
    meta, enc = load_meta(data_dir), load_tokenizer(data_dir)
    if info.get("tokenizer_sha256") != meta["tokenizer"]["sha256"] or model.config.vocab_size != meta["vocab_size"]:
        raise SystemExit(f"{path} does not match the tokenizer of {data_dir}: trained with tokenizer sha256 "
                         f"{str(info.get('tokenizer_sha256'))[:12]} and vocab {model.config.vocab_size}, the dataset "
                         f"has {meta['tokenizer']['sha256'][:12]} and {meta['vocab_size']}. Pass --data_dir with the "
                         "dataset the run trained on (rebuilding a dataset changes its tokenizer)")
    return model, info, enc, meta


def generate(model, enc, prefix, sos, stop, prompts, args, device):
    """A sampled continuation per prompt (fixed seed), cut at the first token of `stop` (</s>, <|endoftext|>)."""
    out = []
    for p in prompts:
        ids = list(prefix) + enc.encode_ordinary((" " if sos else "") + p)
        g = torch.Generator(device=device).manual_seed(args.seed)
        y = model.generate(torch.tensor([ids], device=device), args.max_new_tokens, temperature=args.temperature,
                           top_k=40, generator=g)[0, len(ids):].tolist()
        cut = next((i for i, t in enumerate(y) if t in stop), len(y))
        out.append({"prompt": p, "text": enc.decode(y[:cut])})
    return out


def evaluate_model(path, tasks, shots_list, args, device, autocast):
    model, info, enc, meta = load_run(path, device, args.data_dir)
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    specials = meta["tokenizer"]["special_tokens"]
    # Every prompt starts with <|endoftext|>: the token each training document follows in train.bin (and what the
    # harness puts before an empty context). Models trained on the span format ("<s> span </s>") also get <s>.
    sos = args.sos == "yes" or (args.sos == "auto" and meta.get("filter") is not None)
    prefix = [meta["eot_token"]] + ([specials["<s>"]] if sos else [])
    n_params, tokens = model.num_params(), int(info.get("tokens") or 0)
    print(f"{run_dir.name}: {meta['name']} corpus, {n_params:,} parameters, {tokens:,} tokens seen, prompts start "
          f"with {'<|endoftext|><s>' if sos else '<|endoftext|>'}")
    results, t0 = [], time.time()
    for task in tasks:
        held = task.get("heldout")
        if held and (Path(str(meta.get("source"))).parts[-2:] != ("data", "corpus")
                     or meta.get("val_fraction", 0) < held["val_fraction"]):
            print(f"  warning: {task['name']} passages come from the embedded corpus' validation split at "
                  f"val_fraction {held['val_fraction']}; this model's dataset ({meta.get('source')}, val_fraction "
                  f"{meta.get('val_fraction')}) may have trained on some of them")
        for shots in shots_list:
            t = time.time()
            r = evaluate_task(model, enc, prefix, sos, task, shots, args, device, autocast)
            if r is None or not r["n"]:
                continue
            results.append(r)
            norm = f", acc_norm {r['acc_norm']:.3f}" if r["acc_norm"] is not None else ""
            print(f"  {task['name']:<50} {shots}-shot  n={r['n']:<5} acc {r['acc']:.3f} ± {r['acc_stderr'] or 0:.3f}"
                  f"{norm} (chance {r['chance']:.2f}, rope x{r['rope_scale']}) {time.time() - t:.1f}s", flush=True)
    return {"run_dir": str(run_dir), "run_name": run_dir.name, "corpus": meta["name"],
            "model": (info.get("train_config") or {}).get("model"), "n_params": n_params,
            "n_params_non_embedding": model.num_params(non_embedding=True), "tokens_seen": tokens,
            "train_flops_6nd": 6.0 * n_params * tokens, "val_loss": info.get("val_loss"), "results": results,
            "generations": generate(model, enc, prefix, sos, set(specials.values()), args.prompts, args, device),
            "filter_counts": {t["name"]: t["counts"] for t in tasks},
            "eval": {"shots": shots_list, "limit": args.limit, "vocab": args.vocab, "filter": args.filter,
                     "sos": args.sos, "prefix_sos": sos, "long": args.long, "seed": args.seed, "seconds": round(time.time() - t0, 1)}}

# -----------------------------------------------------------------------------
# Tables in the paper's layout (rows = models, columns = tasks) from every results/*.json


def read_results(results_dir):
    runs = []
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(r, dict) and "results" in r and "run_name" in r:   # skip other files (scaling.py's fits.json)
            runs.append(r)
    corpus_rank = {"simplified": 0, "unrestricted": 1}
    return sorted(runs, key=lambda r: (corpus_rank.get(r["corpus"], 2), r["n_params"], r["run_name"]))


def table_rows(runs, shots, cols):
    """Cells of one table: a row per model, then the chance row and the example-count row."""
    rows, first = [], {}
    for r in runs:
        got = {e["task"]: e for e in r["results"] if e["shots"] == shots}
        for c in cols:
            first[c] = first.get(c) or got.get(c)
        accs = [got[c]["acc"] for c in cols if c in got]
        avg = f"{100 * np.mean(accs):.1f}" if accs and len(accs) == len(cols) else "-"   # only over a complete row
        rows.append([r["run_name"], r["model"] or "-", r["corpus"], f"{r['n_params'] / 1e6:.2f}M",
                     *[f"{100 * got[c]['acc']:.1f}" if c in got else "-" for c in cols], avg])
    chance = [first[c]["chance"] if first.get(c) else None for c in cols]
    rows.append(["chance", "", "", "", *[f"{100 * x:.1f}" if x is not None else "-" for x in chance],
                 f"{100 * np.mean(chance):.1f}" if cols and None not in chance else "-"])
    rows.append(["n", "", "", "", *[str(first[c]["n"]) if first.get(c) else "-" for c in cols], ""])
    return rows


def write_text(path, text):
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline=""))


def write_tables(results_dir):
    """results/table.md (one table per number of shots), table.csv (all of them, a `shots` column) and
    generations.md, from every results JSON in results_dir. Returns the Markdown lines."""
    runs, out = read_results(results_dir), Path(results_dir)
    entries = [e for r in runs for e in r["results"]]
    all_cols = list(dict.fromkeys(e["task"] for e in entries))
    head = ["run", "model", "corpus", "params"]
    md = ["# Results", "", "Accuracy (%); rows = models, columns = tasks. `avg`: the mean over the columns; "
          "`chance`: the accuracy of guessing; `n`: examples per task, after the vocabulary filter.", ""]
    lines = [["shots", *head, *all_cols, "avg"]]
    for shots in sorted({e["shots"] for e in entries}):
        cols = [c for c in all_cols if any(e["task"] == c and e["shots"] == shots for e in entries)]
        rows = table_rows(runs, shots, cols)
        md += [f"## {shots}-shot", "", "| " + " | ".join([*head, *cols, "avg"]) + " |",
               "|" + "---|" * len(head) + "---:|" * (len(cols) + 1), *("| " + " | ".join(r) + " |" for r in rows), ""]
        lines += [[shots, *row] for row in table_rows(runs, shots, all_cols)]
    write_text(out / "table.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    write_text(out / "table.csv", buf.getvalue())
    cell = lambda s: s.replace("|", "\\|").replace("\n", " / ")  # noqa: E731
    gen = ["# Generations", "", "Sampled continuations of each prompt (seed and temperature: see each results JSON).",
           "", "| prompt | " + " | ".join(r["run_name"] for r in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for p in dict.fromkeys(g["prompt"] for r in runs for g in r.get("generations", [])):
        texts = [next((g["text"] for g in r.get("generations", []) if g["prompt"] == p), "") for r in runs]
        gen.append(f"| {cell(p)} | " + " | ".join(cell(t) for t in texts) + " |")
    write_text(out / "generations.md", "\n".join(gen) + "\n")
    return md

# -----------------------------------------------------------------------------
# Command line


def is_current(path, tasks, args):
    """A run's results file already holds these tasks and settings for the checkpoint as it is now."""
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        old = json.loads((Path(args.results_dir) / f"{run_dir.name}.json").read_text())
        ckpt = read_checkpoint(run_dir, "cpu")
    except (OSError, ValueError):
        return False
    settings = {"shots": args.shots, "limit": args.limit, "vocab": args.vocab, "filter": args.filter,
                "long": args.long, "seed": args.seed, "sos": args.sos}
    return (old.get("tokens_seen") == int(ckpt.get("tokens") or 0)
            and all(old.get("eval", {}).get(k) == v for k, v in settings.items())
            and {r["task"] for r in old.get("results", [])} >= {t["name"] for t in tasks})


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", nargs="+", default=None, help="run directories (or ckpt.pt files); default: every run "
                   "in out/ with a ckpt.pt")
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
                   "models trained on the span format '<s> span </s>', i.e. the simplified corpus)")
    p.add_argument("--seed", type=int, default=1234, help="demonstrations, --limit subsets, generations")
    p.add_argument("--data_dir", default=None, help="the dataset of the checkpoints, if not where they were trained")
    p.add_argument("--results_dir", default="results")
    p.add_argument("--prompts", default="Once upon a time|The little dog|Mom said that|I think the best",
                   help="|-separated prompts for the generated samples")
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--batch_tokens", type=int, default=0, help="padded tokens per forward pass (0: 65536 on a GPU, "
                   "8192 on a CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--force", action="store_true", help="re-evaluate even where results/<run>.json is up to date")
    args = p.parse_args(argv)
    try:
        args.shots = sorted({int(s) for s in args.shots.split(",") if s.strip()})
    except ValueError:
        p.error(f"--shots {args.shots!r}: expected comma-separated integers, e.g. 0,3")
    if any(s < 0 for s in args.shots) or args.limit < 0:
        p.error("--shots and --limit must be >= 0")
    args.prompts = [s for s in args.prompts.split("|") if s.strip()]
    return args


def main(argv=None):
    args = get_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    dtype = args.dtype if args.dtype != "auto" else "bfloat16" if device.startswith("cuda") else "float32"
    autocast = nullcontext() if dtype == "float32" else torch.autocast(device.split(":")[0], getattr(torch, dtype))
    args.batch_tokens = args.batch_tokens or (65536 if device.startswith("cuda") else 8192)
    ckpts = args.ckpt or sorted(str(p.parent) for p in Path("out").glob("*/ckpt.pt"))
    if not ckpts:
        raise SystemExit("no checkpoints in out/: train one with `python train.py`, or pass --ckpt RUN_DIR")
    for c in ckpts:   # before any task is loaded (that may mean a download)
        if not (Path(c) / "ckpt.pt").is_file() and not Path(c).is_file():
            raise SystemExit(f"--ckpt {c}: no such run directory or checkpoint (train one with `python train.py`)")
    vocab = load_vocab(args.vocab)
    t0 = time.time()
    tasks = [load_task(n, args, vocab) for n in expand_tasks(args.tasks)]
    for t in tasks:
        counts = ", ".join(f"{s} {k:,}/{n:,}" for s, (k, n) in t["counts"].items())
        print(f"task {t['name']}: {counts} kept by the vocabulary filter{'' if args.filter else ' (off)'}; "
              f"evaluating {len(t['eval']):,}")
    Path(args.results_dir).mkdir(parents=True, exist_ok=True)
    for path in ckpts:
        if not args.force and is_current(path, tasks, args):
            print(f"{Path(path).name}: results/{Path(path).name}.json is up to date with this checkpoint and these "
                  "settings, reusing it (--force redoes it)")
            continue
        res = evaluate_model(path, tasks, args.shots, args, device, autocast)
        write_text(Path(args.results_dir) / f"{res['run_name']}.json", json.dumps(res, indent=1) + "\n")
        for g in res["generations"]:
            print(f"  > {g['prompt']}{g['text']!r}")
    print("\n".join(write_tables(args.results_dir)))
    print(f"done in {time.time() - t0:.0f}s: {len(ckpts)} models; results in {args.results_dir}/")


if __name__ == "__main__":
    main()
