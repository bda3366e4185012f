"""
tasks.py: the evaluation tasks evaluate.py scores, and the paper's vocabulary filter over them (section 6).

    from tasks import keep_example, load_task, expand_tasks
    keep_example("the dog ran home", vocab)        # True if every checked word is in vocab (the authors' rule)
    expand_tasks("templates,rte")                  # -> task names: groups expand, names pass through
    task = load_task("rte", args, vocab)           # -> examples (context, choices, gold), filtered, with counts

The paper's suite (22 BLiMP paradigms, COPA, SST-2, QQP, MRPC, RTE, MNLI-matched, PIQA, ARC-Easy) comes from the
original files under --task_dir (their formats: GLUE TSV, SuperGLUE/MultiNLI JSONL, COPA XML, PIQA's two files, ARC
JSONL; read_local) or from the Hugging Face hub (read_hub, needs `datasets`), turned into prompts in the
lm-evaluation-harness's default formats (PROMPTS). The embedded offline tasks are data/tasks/*.json(.gz), written by
data/build_tasks.py (read_embedded).
"""
import collections
import csv
import gzip
import hashlib
import json
import numbers
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

TASKS_DIR = Path(__file__).resolve().parent / "data" / "tasks"

# -----------------------------------------------------------------------------
# The simplified-task filter (the paper's, as the authors' notebook wrote it)

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


def _copa(r):   # the harness's COPA as of v0.3 (lowercased choice after one space; later versions differ)
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
# (BLiMP's one split is called "train" on the hub: it is what is scored, never trained on)
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


def local_files(family, config, split):
    """What read_local looks for under task_dir/family/ for a split, in words (for the error when it is missing)."""
    if family == "blimp":
        return f"{config}.jsonl"
    if family == "copa":
        return ("copa-test.xml" if split == "test" else "copa-dev.xml (or SuperGLUE's "
                f"{ {'train': 'train', 'validation': 'val'}.get(split, split) }.jsonl)")
    if family == "piqa":
        name = {"validation": "valid"}.get(split, split)
        return f"{name}.jsonl and {name}-labels.lst"
    if family == "arc_easy":
        return f"ARC-Easy-{ {'validation': 'Dev'}.get(split, split.capitalize()) }.jsonl"
    return " or ".join(FILES.get(split, ["?"]))


def read_local(task_dir, family, config, split):
    """Rows with the hub's field names from the original files under task_dir (the layout: blimp/<paradigm>.jsonl,
    copa/copa-dev.xml, sst2/dev.tsv, ...; see README). None when the split's file is not there."""
    d = Path(task_dir) / family
    if family == "blimp":
        path = d / local_files(family, config, split)
        return read_jsonl(path) if path.exists() else None
    if family == "copa":   # SuperGLUE's splits of the original XML: train = dev ids 1-400, validation = 401-500
        path = d / ("copa-test.xml" if split == "test" else "copa-dev.xml")
        if not path.exists():   # or SuperGLUE's own JSONL files (train.jsonl, val.jsonl), already in hub fields
            jsonl = d / {"train": "train.jsonl", "validation": "val.jsonl"}.get(split, "test.jsonl")
            return read_jsonl(jsonl) if jsonl.exists() else None
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
        path = d / local_files(family, config, split)
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
    need = set(COLUMNS[family].values())
    have = {new for old, new in COLUMNS[family].items() if raw and old in raw[0]}
    if raw and have != need:   # a wrong header would otherwise drop every row as unlabeled, silently
        raise ValueError(f"{path}: no column for {', '.join(sorted(need - have))} in its first row; expected the "
                         f"original columns ({', '.join(COLUMNS[family])})")
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
                         "pip install datasets==5.2.0, or pass --task_dir DIR") from None
    try:
        return [dict(r) for r in datasets.load_dataset(dataset, config, split=split)]
    except Exception as e:   # offline, a renamed dataset, a missing split: one line that says what to do
        raise SystemExit(f"could not load {dataset} {config or ''} {split} from the Hugging Face hub "
                         f"({type(e).__name__}: {str(e)[:200]}); pass --task_dir with local copies") from None


class EmptyChoice(ValueError):
    """An answer that is empty or only spaces: nothing (or a space) to score, so it would win for free, or divide
    acc_norm by a length of 0. Our own task files must not have one; a dataset of the hub's is read without it."""


def check_example(example):
    """example (context, choices, gold, fields) -> itself; ValueError unless its parts have their types: a string
    context, a non-empty list of string choices (EmptyChoice if one is blank), gold the index of one of them (-1 would
    silently score the last one, and a string of choices its letters), the filter's fields a list of strings."""
    context, choices, gold, fields = example
    if not isinstance(context, str):
        raise ValueError(f"its context must be a string, not {str(context)[:60]!r}")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise ValueError(f"its choices must be a non-empty list of strings, not {str(choices)[:60]!r}")
    if any(not c.strip() for c in choices):
        raise EmptyChoice(f"its choices {str(choices)[:60]} include an empty one (nothing to score)")
    if not isinstance(gold, numbers.Integral) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise ValueError(f"its answer {gold!r} is not the index of one of its {len(choices)} choices")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ValueError("its fields (what the vocabulary filter reads) must be a list of strings")
    return example


def read_embedded(name):
    """A file of data/tasks/ (written by data/build_tasks.py) -> (its header, its test examples)."""
    path = next((p for p in (TASKS_DIR / f"{name}.json", TASKS_DIR / f"{name}.json.gz") if p.exists()), None)
    if path is None:
        paper = ", ".join(t for t in PAPER_TASKS if not t.startswith("blimp_"))
        raise SystemExit(f"no task {name!r}: neither one of the paper's ({paper}, blimp_<paradigm>) nor a file "
                         f"{TASKS_DIR / name}.json (embedded: {', '.join(embedded_names())}; `python "
                         f"data/build_tasks.py` rebuilds those). A new hub task needs an entry in tasks.PAPER_TASKS "
                         "as well as its PROMPTS function")
    convert = {"pairs": lambda e: ("", [e["good"], e["bad"]], 0, [e["good"], e["bad"]]),
               # passages keep their line breaks; the filter splits on spaces only, so it reads them as spaces
               "cloze": lambda e: (e["context"], [e["target"]], 0, [" ".join(e["context"].split()), e["target"]]),
               "choice": lambda e: (e["context"], e["choices"], e["gold"], e["fields"])}
    where = "the file"
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
            task = json.load(f)
        where = "its header"
        if task["kind"] not in convert:
            raise ValueError(f"kind {task['kind']!r} is not one of {', '.join(convert)}")
        if not isinstance(task["family"], str):
            raise ValueError(f"family {task['family']!r} is not a string")
        examples = []
        for i, e in enumerate(task["splits"]["test"]):
            where = f"example {i} of splits.test"
            examples.append(check_example(convert[task["kind"]](e)))
        return task, examples
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:     # gzip's BadGzipFile is an OSError
        raise SystemExit(f"task file {path} is damaged ({type(e).__name__} {str(e)[:200]} in {where}): a file of your "
                         "own needs the format README.md gives (a new task); a shipped one is rebuilt by `python "
                         "data/build_tasks.py`") from None


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

        def read(s):   # a split's rows as prompts; None if its file is not there; a damaged file: one line
            try:
                rows = read_local(args.task_dir, family, config, s) if args.task_dir else read_hub(dataset, config, s)
                if rows is None:
                    return None
                examples, blank = [], 0
                for i, example in enumerate(PROMPTS[family](r) for r in rows):
                    try:
                        examples.append(check_example(example))
                    except EmptyChoice:   # the dataset as published: the example left out, and said
                        blank += 1
                    except ValueError as e:
                        raise ValueError(f"example {i + 1}: {e}") from None
                if blank:
                    print(f"note: {name}: {blank} examples of its {s} split have an empty answer: left out (nothing "
                          "to score)")
                return examples
            except (ValueError, KeyError, TypeError, AttributeError, ET.ParseError) as e:   # JSONDecodeError too
                where = f"{args.task_dir}/{family}/{local_files(family, config, s)}" if args.task_dir else dataset
                raise SystemExit(f"{name}: could not read its {s} split from {where} ({type(e).__name__}: "
                                 f"{str(e)[:200]}); the files must be the originals, unchanged (README: evaluate.py)")
        examples = read(split)
        if examples is None:
            raise SystemExit(f"{name}: {args.task_dir}/{family}/{local_files(family, config, split)} not found (the "
                             f"{split} split the task is scored on, in the original format; README: evaluate.py); "
                             "--tasks with a list of the others scores them without it")
        splits = {split: examples}
        demos = read(demo_split) if demo_split else None
        if demos is not None:
            splits[demo_split] = demos
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
    # Where every example offers the same answers (SST-2's negative/positive, RTE's True/False), what always giving
    # the commonest right one scores: filtered sets are unbalanced (SST-2 keeps 73 negative, 40 positive), so a model
    # that always says the same can beat 1 / choices. Answers that differ per example (COPA, PIQA) are scored each on
    # its own, so their order is no bias a model could have: no majority baseline there.
    same_answers = kind == "choice" and len(ev) > 1 and all(e["choices"] == ev[0]["choices"] for e in ev)
    majority = max(collections.Counter(e["gold"] for e in ev).values()) / len(ev) if same_answers else None
    if kind == "cloze" and len(ev) > 1:   # one that always writes the commonest answer ("you": 5 of the 261 embedded)
        majority = max(collections.Counter(e["choices"][e["gold"]] for e in ev).values()) / len(ev)
    demos = kept.get(demo_split, pool)
    # What was evaluated, as a fingerprint: results are reused only for the same examples (files, filter, --limit)
    data_sha = hashlib.sha256(json.dumps([ev, demos if kind == "choice" else []]).encode()).hexdigest()[:16]
    return dict(name=name, family=family, kind=kind, chance=chance, majority=majority, eval=ev, demos=demos,
                counts=counts, filtered=bool(args.filter), heldout=header.get("heldout"), data_sha=data_sha)
