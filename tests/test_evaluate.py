"""evaluate.py and tasks.py: the task filter, the scoring arithmetic against direct computations, few-shot sampling,
the loaders of the original file formats, the embedded tasks, the tables, and a whole run on a tiny checkpoint."""
import contextlib
import csv
import json
import math
import random
import re
import shutil
import sys
import types
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import torch
from torch.nn import functional as F

import dataset
import evaluate
import tasks
from evaluate import encode_pair, evaluate_task, fewshot_context, mean_stderr, sample_demos, score_requests
from report import write_tables
from tasks import keep_example, load_task
from model import GPT, GPTConfig
from filtering import unit_hash
from spans import DEFAULT_VOCAB, load_vocab

ROOT = Path(__file__).resolve().parent.parent
SPECIAL = {"<|endoftext|>": 256, "<s>": 257, "</s>": 258}

# -----------------------------------------------------------------------------
# keep_example: the paper's rule, case by case


@pytest.mark.parametrize("text, vocab, kept", [
    ("the cat sat", {"the", "cat", "sat"}, True),
    ("the cat sat", {"the", "cat"}, False),                     # every remaining word must be in the vocabulary
    ("Zebra ran", {"ran"}, False),                              # the first word is checked even when capitalised
    ("Zebra ran", {"zebra", "ran"}, True),                      # ... after lowercasing
    ("the Zebra ran", {"the", "ran"}, True),                    # a later word with an uppercase letter is skipped
    ("the iPhone ran", {"the", "ran"}, True),                   # "uppercase" = differs from its lowercase form
    ("the USA ran", {"the", "ran"}, True),
    (" Zebra ran", {"ran"}, True),                              # the first word is the empty string before a space
    ("the cat. It ran!", {"the", "cat", "ran"}, True),          # . ! deleted; "It" skipped
    ("(the) “cat” — sat; 12 @#$ _-_", {"the", "cat", "sat"}, True),   # listed characters deleted, empties dropped
    ("the cat's toy", {"the", "cats", "toy"}, True),            # ' is deleted inside a word: cat's -> cats
    ("the cat's toy", {"the", "cat", "toy"}, False),
    ("do n't 's 're 'll 'd t", {"do"}, True),                   # PTB pieces -> nt s re ll d t: the fragments
    ("don't", {"don", "t"}, False),                             # don't -> dont, which is not a fragment
    ("cat’s", {"cats"}, True),                                  # the typographic apostrophe too
    ("the 2nd cat", {"the", "cat"}, False),                     # digits go, "nd" stays and is checked
    ("the 42 cats", {"the", "cats"}, True),
    ("the  cat", {"the", "cat"}, True),                         # double space: an empty string, dropped
    ("the cat\nsat", {"the", "cat", "sat"}, False),             # split on spaces only: "cat\nsat" is one word
    ("the cat/dog", {"the", "cat", "dog"}, False),              # / is not in the list: "cat/dog" is one word
    ("the [cat]", {"the", "cat"}, False),                       # nor are brackets
    ("the ca!t", {"the", "cat"}, True),                         # deleted anywhere in the word, not only at the ends
    ("", set(), True),
])
def test_keep_example_rule(text, vocab, kept):
    assert keep_example(text, frozenset(vocab)) is kept

# -----------------------------------------------------------------------------
# Scoring arithmetic on a tiny model, against a direct computation


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()   # tiny matmuls on a shared machine: extra threads only wait for each other
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)   # large init_std: peaked predictions, so the comparisons below are not between near-ties
    model = GPT(GPTConfig(block_size=16, vocab_size=259, n_layer=2, n_head=2, n_embd=16, init_std=0.4)).eval()
    enc = tiktoken.Encoding("bytes", pat_str=r"""'s|'t| ?\w+| ?\d+| ?[^\s\w\d]+|\s+(?!\S)|\s+""",
                            mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens=SPECIAL)
    return model, enc


def direct(model, ids, n_cont, scale=1.0):
    """Log-probability of the last n_cont tokens of ids given the rest, and whether each is the argmax, from one
    forward pass on this sequence alone."""
    old, model.config.rope_scale = model.config.rope_scale, scale
    try:
        with torch.no_grad():
            logits = model(torch.tensor([ids[:-1]]))[0][0].double()
    finally:
        model.config.rope_scale = old
    lp = F.log_softmax(logits, dim=-1)
    pos = range(len(ids) - 1 - n_cont, len(ids) - 1)
    return sum(lp[p, ids[p + 1]].item() for p in pos), all(logits[p].argmax().item() == ids[p + 1] for p in pos)


def test_score_requests_batched_equals_one_by_one_and_direct(tiny):
    model, _ = tiny
    rng = random.Random(0)
    requests = []
    for _ in range(12):
        ctx = [rng.randrange(256) for _ in range(rng.randint(1, 12))]
        cont = [rng.randrange(256) for _ in range(rng.randint(1, 4))]
        requests.append((ctx, cont, 1))
    long_ctx = [rng.randrange(256) for _ in range(25)]
    requests.append((long_ctx, [7, 8, 9], 2))     # 27 input tokens: read whole at rope scale 2 (32 positions)
    requests.append((long_ctx, [7, 8, 9], 1))     # the same at scale 1: left-truncated to the last 16 inputs
    batched = score_requests(model, requests, batch_tokens=10_000)
    single = score_requests(model, requests, batch_tokens=1)
    for (ctx, cont, scale), b, s in zip(requests, batched, single):
        ids = ctx + cont
        want = direct(model, ids, len(cont), scale) if scale > 1 else direct(model, ids[-17:], len(cont))
        assert b[0] == pytest.approx(want[0], abs=1e-4) and s[0] == pytest.approx(want[0], abs=1e-4)
        assert b[1] == s[1] == want[1]
    assert batched[-1][0] != pytest.approx(batched[-2][0], abs=1e-3)   # truncation and interpolation do differ
    assert model.config.rope_scale == 1.0                                # the model is left as it was


def test_greedy_flag_marks_the_models_own_continuation(tiny):
    model, _ = tiny
    ctx = [256, 72, 101, 108]
    greedy = model.generate(torch.tensor([ctx]), 3, temperature=0)[0, len(ctx):].tolist()
    other = [(t + 1) % 256 for t in greedy]
    hit, miss = score_requests(model, [(ctx, greedy, 1), (ctx, other, 1)])
    assert hit[1] is True and miss[1] is False and hit[0] > miss[0]


def test_encode_pair_moves_trailing_whitespace_and_adds_prefix(tiny):
    _, enc = tiny
    assert encode_pair(enc, "Answer: ", "yes", [256]) == encode_pair(enc, "Answer:", " yes", [256])
    ctx, cont = encode_pair(enc, "Answer:", " yes", [256, 257])
    assert ctx == [256, 257] + list(b"Answer:") and cont == list(b" yes")
    ctx, cont = encode_pair(enc, "Answer:\n", " yes")               # any trailing whitespace, as the harness
    assert ctx == list(b"Answer:") and cont == list(b"\n yes")


def task_of(kind, examples, name="t"):
    exs = [dict(context=c, choices=ch, gold=g, text=f"{c} {' '.join(ch)}") for c, ch, g in examples]
    chance = 0.0 if kind == "cloze" else float(np.mean([1 / len(e["choices"]) for e in exs]))
    return dict(name=name, family="test", kind=kind, chance=chance, majority=None, eval=exs, demos=exs, filtered=False)


ARGS = types.SimpleNamespace(seed=1234, long="rope", batch_tokens=4096)


def test_multiple_choice_acc_and_acc_norm(tiny):
    model, enc = tiny
    rng = random.Random(1)
    words = ["a", "yes", "no", "the cat", "a much longer answer", "b", "maybe so"]
    examples = [(f"Question {i}: is it?\nAnswer:", rng.sample(words, 3), rng.randrange(3)) for i in range(16)]
    r = evaluate_task(model, enc, [256], False, task_of("choice", examples), 0, ARGS, "cpu", None)
    acc, norm, scales = [], [], []
    for ctx, choices, gold in examples:
        ids = [[256] + list((ctx + " " + ch).encode()) for ch in choices]   # context, then " " + choice
        scale = math.ceil(max(len(i) - 1 for i in ids) / 16)               # one scale for the whole example
        scales.append(scale)
        ll = [direct(model, i, len(ch) + 1, scale)[0] for i, ch in zip(ids, choices)]
        acc.append(float(np.argmax(ll) == gold))
        norm.append(float(np.argmax(np.array(ll) / [len(c) for c in choices]) == gold))
    assert r["n"] == 16 and r["acc"] == pytest.approx(np.mean(acc)) and r["acc_norm"] == pytest.approx(np.mean(norm))
    assert r["acc_stderr"] == pytest.approx(np.std(acc, ddof=1) / 4)
    assert r["chance"] == pytest.approx(1 / 3) and r["shots"] == 0
    assert r["rope_scale"] == max(scales) and min(scales) >= 2            # every prompt is longer than 16 tokens


def test_minimal_pairs_compare_whole_sentences(tiny, monkeypatch):
    model, enc = tiny
    pairs = [("The cat sleeps.", "The cat sleep."), ("Dogs run.", "Dogs runs."), ("She ate it.", "She eaten it."),
             ("It is.", "It are.")]
    r = evaluate_task(model, enc, [256, 257], True, task_of("pairs", [("", list(p), 0) for p in pairs]), 0, ARGS,
                      "cpu", None)
    def ll(sentence, scale):   # the whole sentence is the continuation of <|endoftext|><s>
        return direct(model, [256, 257] + list(f" {sentence}".encode()), len(sentence) + 1, scale)[0]
    scales = [math.ceil((max(len(g), len(b)) + 2) / 16) for g, b in pairs]
    want = [np.sign(ll(g, s) - ll(b, s)) / 2 + 0.5 for (g, b), s in zip(pairs, scales)]   # a tie: 0.5
    assert r["acc"] == pytest.approx(np.mean(want)) and r["acc_norm"] is None and r["chance"] == 0.5
    # a model trained on raw text: the sentence starts a document, right after <|endoftext|>, with no space (raw
    # documents start so; the harness's space would show only these models a first word unlike their training's)
    seen = recorded_prompts(monkeypatch)
    evaluate_task(model, enc, [256], False, task_of("pairs", [("", list(pairs[0]), 0)]), 0, ARGS, "cpu", None)
    evaluate_task(model, enc, [256, 257], True, task_of("pairs", [("", list(pairs[0]), 0)]), 0, ARGS, "cpu", None)
    assert seen == [([256], list(s.encode())) for s in pairs[0]] + [([256, 257], list(f" {s}".encode()))
                                                                   for s in pairs[0]]
    assert evaluate_task(model, enc, [256], False, task_of("pairs", [("", list(pairs[0]), 0)]), 3, ARGS, "cpu",
                         None) is None     # minimal pairs are zero-shot only


def test_ties_score_one_over_the_number_tied(tiny):
    """A model that predicts the same distribution everywhere gives equal-length choices equal log-probabilities:
    it scores chance (1/2 on pairs, 1/3 on three choices), not the 100% argmax's first-choice rule gave, the gold
    sentence of a minimal pair being choice 0."""
    model = GPT(GPTConfig(block_size=16, vocab_size=259, n_layer=1, n_head=2, n_embd=16)).eval()
    torch.nn.init.zeros_(model.lm_head.weight)                       # uniform next-token distribution
    _, enc = tiny
    pairs = task_of("pairs", [("", ["The cat sleeps.", "The cat sleepz."], 0), ("", ["Dogs run.", "Dogs ran."], 0)])
    assert evaluate_task(model, enc, [256], False, pairs, 0, ARGS, "cpu", None)["acc"] == 0.5
    three = task_of("choice", [("Is it?", ["yes", "now", "not"], 0), ("Is it?", ["yes", "now", "not"], 2)])
    r = evaluate_task(model, enc, [256], False, three, 0, ARGS, "cpu", None)
    assert r["acc"] == pytest.approx(1 / 3) and r["acc_norm"] == pytest.approx(1 / 3)
    scores = np.array([-1.0, -2.0, -1.0])
    assert evaluate.tie_credit(scores, 0) == 0.5 and evaluate.tie_credit(scores, 1) == 0
    # Two choices written alike tie exactly, whatever the batching: scored once (in batches of other padded lengths
    # their sums differed in the last bits, and the tie went to one of them: 0.475 or 0.512 where 0.5 is right)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=259, n_layer=2, n_head=2, n_embd=16, init_std=0.4)).eval()
    rng = random.Random(0)
    sentences = ["".join(rng.choice("abcdefgh ") for _ in range(rng.randint(3, 30))) for _ in range(40)]
    same = task_of("pairs", [("", [t, t], 0) for t in sentences])
    for batch_tokens in (4096, 37, 13):
        args = types.SimpleNamespace(**{**vars(ARGS), "batch_tokens": batch_tokens})
        assert evaluate_task(model, enc, [256], False, same, 0, args, "cpu", None)["acc"] == 0.5, batch_tokens
    assert evaluate.tie_credit(np.array([-3.0, -2.0]), 1) == 1


def test_each_prompt_samples_its_own_random_draws(tiny):
    """One seed for every prompt gave them all the same draws: similar prompts came out with the same text."""
    model, enc = tiny
    args = types.SimpleNamespace(seed=3, max_new_tokens=8, temperature=1.0)
    first, second = evaluate.generate(model, enc, [256], False, {256}, ["The", "The"], args, "cpu")
    assert first["text"] != second["text"]
    assert evaluate.generate(model, enc, [256], False, {256}, ["The"], args, "cpu")[0] == first   # reproducible


def test_truncate_mode_keeps_scale_one(tiny):
    model, enc = tiny
    task = task_of("choice", [("x" * 40, ["yes", "no"], 0)])
    args = types.SimpleNamespace(seed=1, long="truncate", batch_tokens=4096)
    r = evaluate_task(model, enc, [256], False, task, 0, args, "cpu", None)
    ll = [direct(model, ([256] + list(("x" * 40 + " " + c).encode()))[-17:], len(c) + 1)[0] for c in ["yes", "no"]]
    assert r["rope_scale"] == 1 and r["acc"] == float(np.argmax(ll) == 0)


def test_mean_stderr():
    assert mean_stderr([1, 0, 1, 1]) == pytest.approx(math.sqrt((3 * 0.25 ** 2 + 0.75 ** 2) / 3) / 2)
    assert mean_stderr([1.0]) is None

# -----------------------------------------------------------------------------
# Few-shot demonstrations


def test_demonstrations_never_leak_the_example():
    pool = [dict(context=f"q{i}", choices=["a", "b"], gold=i % 2, text=f"q{i} a b") for i in range(8)]
    example = dict(pool[3])
    pool += [dict(pool[3]), dict(pool[3])]             # the example itself, twice more, in the pool
    for seed in range(300):
        demos = sample_demos(pool, 4, random.Random(seed), example)
        assert len(demos) == 4 and all(d["text"] != example["text"] for d in demos)
        assert len({d["text"] for d in demos}) == 4    # distinct examples
    assert sample_demos(pool, 4, random.Random(5), example) == sample_demos(pool, 4, random.Random(5), example)
    assert len(sample_demos(pool, 20, random.Random(0), example)) == 7     # all there is, still without it


def test_fewshot_context_joins_as_the_harness():
    d1 = dict(context="Q: one\nA:", choices=["x", "y"], gold=1)
    d2 = dict(context="Q: two\nA:", choices=["x", "y"], gold=0)
    ex = dict(context="Q: three\nA:")
    assert fewshot_context(ex, [d1, d2]) == "Q: one\nA: y\n\nQ: two\nA: x\n\nQ: three\nA:"


def test_kshot_prompt_uses_demonstrations_and_interpolation(tiny):
    model, enc = tiny
    examples = [(f"q{i}?", ["yes", "no"], int(i in (1, 4))) for i in range(6)]   # unbalanced: 1/2 is no answer
    task = task_of("choice", examples)
    seen, score = [], evaluate.score_requests
    with pytest.MonkeyPatch.context() as mp:      # the real scoring, its requests recorded
        mp.setattr(evaluate, "score_requests", lambda m, requests, *a: seen.extend(requests) or score(m, requests, *a))
        r = evaluate_task(model, enc, [256], False, task, 2, ARGS, "cpu", None)
    assert r["shots"] == 2 and r["n"] == 6 and len(seen) == 12
    for ctx, cont, scale in seen:   # 2 demonstrations, then the question; read whole, positions squeezed to 16
        text = bytes(ctx[1:]).decode()
        assert text.count("\n\n") == 2 and re.fullmatch(r"(q\d\? (yes|no)\n\n){2}q\d\?", text), text
        assert scale == math.ceil((len(ctx) + len(cont) - 1) / 16) >= 2
    assert r["rope_scale"] == max(s for *_, s in seen)
    logp = [direct(model, ctx + cont, len(cont), scale)[0] for ctx, cont, scale in seen]   # (yes, no) per example
    picks = [int(logp[2 * i + 1] > logp[2 * i]) for i in range(6)]
    assert r["acc"] == pytest.approx(np.mean([p == gold for p, (*_, gold) in zip(picks, examples)]))


def recorded_prompts(monkeypatch):
    """evaluate.score_requests replaced by a recorder: (context ids, continuation ids) of every request, scored 0."""
    seen = []
    monkeypatch.setattr(evaluate, "score_requests",
                        lambda model, requests, *a, **k: seen.extend(r[:2] for r in requests) or [(0.0, False)] *
                        len(requests))
    return seen


def test_each_example_draws_its_own_demonstrations(tiny, monkeypatch):
    model, enc = tiny
    examples = [(f"Q: {i}\nA:", ["yes", "no"], i % 2) for i in range(12)]
    seen = recorded_prompts(monkeypatch)
    def demos_of(seed):   # per example: the demonstrations of its prompt, as text (before its own question)
        seen.clear()
        evaluate_task(model, enc, [256], False, task_of("choice", examples), 2,
                      types.SimpleNamespace(seed=seed, long="rope", batch_tokens=4096), "cpu", None)
        prompts = [bytes(ctx[1:]).decode() for ctx, _ in seen[::2]]          # one per example: its first choice
        assert all(p.endswith(f"\n\nQ: {i}\nA:") for i, p in enumerate(prompts))
        return [p.rsplit("\n\n", 1)[0] for p in prompts]
    first = demos_of(1234)
    assert all(d.count("\n\n") == 1 for d in first)                       # 2 demonstrations each
    assert len(set(first)) >= 10          # seeded per example: not one draw for the whole task (at most 3 would differ)
    assert demos_of(1234) == first and demos_of(7) != first                 # fixed by --seed, and changed by it


def test_after_sos_every_prompt_starts_with_one_space(tiny, monkeypatch):
    """The simplified corpus reads "<s> The ...": a context gets the space, demonstrations of an empty context
    (" answer\\n\\n") already start with one, an empty 0-shot context leaves it to the continuation."""
    model, enc = tiny
    seen = recorded_prompts(monkeypatch)
    for examples, shots, want in (([("Q: a\nA:", ["yes"], 0)] * 2, 0, b" Q: a\nA:"),
                                  ([("", ["The cat sat."], 0), ("", ["A dog ran."], 0)], 1, b" A dog ran."), ([("", ["b"], 0)], 0, b"")):
        seen.clear()
        evaluate_task(model, enc, [256, 257], True, task_of("choice", examples), shots, ARGS, "cpu", None)
        assert bytes(seen[0][0][2:]) == want

# -----------------------------------------------------------------------------
# Loaders of the original formats (tiny synthetic files)


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)


def test_local_loaders_read_the_original_formats(tmp_path):
    items = "".join(f'<item id="{i}" asks-for="{"cause" if i % 2 else "effect"}" most-plausible-alternative="2">'
                    f"<p>The man fell {i}.</p><a1>He jumped.</a1><a2>He slipped.</a2></item>" for i in (1, 400, 401))
    write(tmp_path / "copa/copa-dev.xml", f'<?xml version="1.0"?>\n<copa-corpus version="1.0">{items}</copa-corpus>')
    write(tmp_path / "sst2/dev.tsv", 'sentence\tlabel\nit \'s a "great film \t1\n')
    write(tmp_path / "qqp/dev.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tWhy?\tHow?\t0\n")
    write(tmp_path / "mrpc/dev.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA \"cat.\tA cat.\n",
          encoding="utf-8-sig")
    write(tmp_path / "rte/val.jsonl", '{"premise": "P.", "hypothesis": "H.", "label": "not_entailment", "idx": 0}\n')
    write(tmp_path / "mnli/dev_matched.tsv", "index\tsentence1\tsentence2\tgold_label\n0\tP.\tH\tneutral\n"
                                            "1\tP.\tH.\t-\n")
    write(tmp_path / "piqa/valid.jsonl", '{"goal": "Open a jar", "sol1": "twist", "sol2": "lick"}\n')
    write(tmp_path / "piqa/valid-labels.lst", "0\n")
    write(tmp_path / "arc_easy/ARC-Easy-Test.jsonl", json.dumps({"id": "x", "answerKey": "2", "question": {
        "stem": "Why?", "choices": [{"text": "a", "label": "1"}, {"text": "b", "label": "2"}]}}) + "\n")
    write(tmp_path / "blimp/adjunct_island.jsonl", json.dumps({"sentence_good": "Who ran?", "sentence_bad": "Who?"}))
    args = types.SimpleNamespace(task_dir=str(tmp_path), filter=False, limit=0, seed=0)
    got = {n: load_task(n, args, frozenset()) for n in
           ["copa", "sst2", "qqp", "mrpc", "rte", "mnli", "piqa", "arc_easy", "blimp_adjunct_island"]}
    copa = got["copa"]
    assert copa["counts"] == {"validation": [1, 1], "train": [2, 2]}        # SuperGLUE split: ids <= 400 train
    assert copa["eval"][0] == dict(context="The man fell 401 because", choices=["he jumped.", "he slipped."], gold=1,
                                   text="The man fell 401. He jumped. He slipped.")
    assert got["sst2"]["eval"][0]["context"] == 'it \'s a "great film \nQuestion: Is this sentence positive or ' \
                                                'negative?\nAnswer:' and got["sst2"]["eval"][0]["gold"] == 1
    assert got["qqp"]["eval"][0]["context"] == "Question 1: Why?\nQuestion 2: How?\nQuestion: Do both questions " \
                                               "ask the same thing?\nAnswer:"
    assert got["mrpc"]["eval"][0]["text"] == 'A "cat. A cat.' and got["mrpc"]["eval"][0]["choices"] == ["no", "yes"]
    assert got["rte"]["eval"][0] == dict(context="P.\nQuestion: H. True or False?\nAnswer:", choices=["True", "False"],
                                         gold=1, text="P. H.")
    assert got["mnli"]["counts"]["validation_matched"] == [1, 1]          # the unlabeled '-' row is left out
    assert got["mnli"]["eval"][0]["context"] == "P.\nQuestion: H. True, False or Neither?\nAnswer:"
    assert got["mnli"]["eval"][0]["gold"] == 1 and got["mnli"]["eval"][0]["choices"] == ["True", "Neither", "False"]
    assert got["piqa"]["eval"][0] == dict(context="Question: Open a jar\nAnswer:", choices=["twist", "lick"], gold=0,
                                          text="Open a jar twist lick")
    assert got["arc_easy"]["eval"][0]["gold"] == 1 and got["arc_easy"]["eval"][0]["text"] == "Why? a b"
    blimp = got["blimp_adjunct_island"]
    assert blimp["kind"] == "pairs" and blimp["eval"][0]["choices"] == ["Who ran?", "Who?"]
    assert got["piqa"]["demos"] == got["piqa"]["eval"]                     # no train file: demos from validation
    missing = types.SimpleNamespace(task_dir=str(tmp_path / "nothing"), filter=False, limit=0, seed=0)
    for name, expected in [("rte", "dev.tsv or val.jsonl"), ("copa", "copa-dev.xml (or SuperGLUE's val.jsonl)"),
                           ("piqa", "valid.jsonl and valid-labels.lst"), ("arc_easy", "ARC-Easy-Test.jsonl"),
                           ("blimp_adjunct_island", "adjunct_island.jsonl")]:   # the error names the file to add
        with pytest.raises(SystemExit, match=re.escape(f"{name}: {missing.task_dir}/") + ".*" +
                           re.escape(f"/{expected} not found (the ")):
            load_task(name, missing, frozenset())
    # COPA as SuperGLUE distributes it (JSONL in the hub's fields) reads like the original XML
    write(tmp_path / "sg/copa/val.jsonl", json.dumps({"premise": "The sun rose.", "choice1": "It got light.",
                                                      "choice2": "It got dark.", "question": "effect", "label": 0}))
    copa = load_task("copa", types.SimpleNamespace(task_dir=str(tmp_path / "sg"), filter=False, limit=0, seed=0),
                     frozenset())
    assert copa["eval"][0]["gold"] == 0 and copa["eval"][0]["choices"][0].startswith("it got light")


def test_damaged_task_files_are_one_line_errors(tmp_path, monkeypatch, capsys):
    write(tmp_path / "rte/val.jsonl", '{"premise": "P.", "hypothesis": "H.", "lab')           # cut mid-line
    write(tmp_path / "piqa/valid.jsonl", '{"goal": "g", "sol1": "a", "sol2": "b"}\n' * 2)
    write(tmp_path / "piqa/valid-labels.lst", "0\n")                                         # a label short
    write(tmp_path / "copa/copa-dev.xml", '<?xml version="1.0"?>\n<copa-corpus version="1.0"><item id="1"')
    write(tmp_path / "arc_easy/ARC-Easy-Test.jsonl", json.dumps({"answerKey": "Z", "question": {
        "stem": "Why?", "choices": [{"text": "a", "label": "A"}]}}) + "\n")
    write(tmp_path / "mrpc/dev.tsv", "Qual\t#1 String\t#2 String\n1\tA cat.\tA cat.\n")   # a wrong header
    args = types.SimpleNamespace(task_dir=str(tmp_path), filter=False, limit=0, seed=0)
    for name, error in [("rte", r"rte/dev.tsv or val.jsonl \(JSONDecodeError"), ("piqa", r"\(ValueError: zip"),
                        ("copa", r"\(ParseError"), ("arc_easy", r"\(ValueError: 'Z' is not in list"),
                        ("mrpc", r"no column for label in its first row")]:
        with pytest.raises(SystemExit, match=rf"^{name}: could not read its (validation|test) split from .*{error}"):
            load_task(name, args, frozenset())
    (tmp_path / "emb").mkdir()
    (tmp_path / "emb" / "broken.json").write_text('{"kind": "choice", "splits": {"test": [{"context"')
    monkeypatch.setattr(tasks, "TASKS_DIR", tmp_path / "emb")
    with pytest.raises(SystemExit, match="broken.json is damaged .*in the file.*data/build_tasks.py"):
        load_task("broken", args, frozenset())
    good, test = {"context": "a", "choices": ["b", "c"], "gold": 0, "fields": ["a"]}, "of splits.test"
    for task, where in (({"kind": "choice", "family": "f", "splits": {"test": [good, {"context": "a"}]}},
                         f"KeyError 'choices' in example 1 {test}"),
                        ({"kind": "quiz", "splits": {"test": []}}, "ValueError kind 'quiz' is not one of pairs, cloze, "
                                                                   "choice in its header"),
                        ({"kind": "pairs", "family": "f", "split": {}}, "KeyError 'splits' in its header"),
                        ({"kind": "pairs", "splits": {"test": []}}, "KeyError 'family' in its header"),
                        ({"kind": "pairs", "family": 5, "splits": {"test": []}},
                         "ValueError family 5 is not a string in its header"),
                        # wrong types that were scored without a word, or failed later with a traceback
                        ({"kind": "choice", "family": "f", "splits": {"test": [good, {**good, "gold": -1}]}},
                         f"ValueError its answer -1 is not the index of one of its 2 choices in example 1 {test}"),
                        ({"kind": "choice", "family": "f", "splits": {"test": [{**good, "gold": "0"}]}},
                         f"ValueError its answer '0' is not the index of one of its 2 choices in example 0 {test}"),
                        ({"kind": "choice", "family": "f", "splits": {"test": [{**good, "gold": True}]}},   # best[True]
                         f"ValueError its answer True is not the index of one of its 2 choices in example 0 {test}"),
                        ({"kind": "choice", "family": "f", "splits": {"test": [{**good, "fields": "a b"}]}},
                         "ValueError its fields \\(what the vocabulary filter reads\\) must be a list of strings in "
                         f"example 0 {test}"),   # (joined, a string would give the filter single letters)
                        ({"kind": "choice", "family": "f", "splits": {"test": [{**good, "choices": "bc"}]}},
                         f"ValueError its choices must be a non-empty list of strings, not 'bc' in example 0 {test}"),
                        ({"kind": "choice", "family": "f", "splits": {"test": [{**good, "choices": []}]}},
                         f"ValueError its choices must be a non-empty list of strings, not .* in example 0 {test}"),
                        ({"kind": "choice", "family": "f", "splits": {"test": [{**good, "context": 5}]}},
                         f"ValueError its context must be a string, not '5' in example 0 {test}"),
                        ({"kind": "pairs", "family": "f", "splits": {"test": [{"good": "a b", "bad": 3}]}},
                         f"ValueError its choices must be a non-empty list of strings, not .* in example 0 {test}"),
                        # a blank answer scores nothing (or a space): it won for free, or divided acc_norm by 0
                        ({"kind": "choice", "family": "f", "splits": {"test": [{**good, "choices": ["b", " "]}]}},
                         f"EmptyChoice its choices \\['b', ' '\\] include an empty one \\(nothing to score\\) in "
                         f"example 0 {test}"),
                        ({"kind": "cloze", "family": "f", "splits": {"test": [{"context": "a", "target": ""}]}},
                         f"EmptyChoice its choices \\[''\\] include an empty one .* in example 0 {test}")):
        (tmp_path / "emb" / "broken.json").write_text(json.dumps(task))
        with pytest.raises(SystemExit, match=f"broken.json is damaged \\({where}\\): a file of your own needs"):
            load_task("broken", args, frozenset())
    write(tmp_path / "sst2/dev.tsv", "sentence\tlabel\nbad\t0\ngood\t2\n")            # a label out of range
    write(tmp_path / "piqa/valid-labels.lst", "0\n-1\n")                                # -1: the last choice
    for name in ("sst2", "piqa"):
        with pytest.raises(SystemExit, match=rf"^{name}: could not read .*example 2: its answer (2|-1) is not the index of one of its 2 choices"):
            load_task(name, args, frozenset())
    # a published dataset's blank answer (our own files may not have one): that example left out, and said
    write(tmp_path / "piqa/valid.jsonl", '{"goal": "g", "sol1": "a", "sol2": ""}\n'
                                         '{"goal": "h", "sol1": "a", "sol2": "b"}\n')
    write(tmp_path / "piqa/valid-labels.lst", "0\n1\n")
    task = load_task("piqa", args, frozenset())
    assert [e["context"] for e in task["eval"]] == ["Question: h\nAnswer:"] and task["counts"]["validation"] == [1, 1]
    assert "note: piqa: 1 examples of its validation split have an empty answer: left out" in capsys.readouterr().out


def test_majority_baseline_is_the_commonest_right_answer(tmp_path):
    write(tmp_path / "sst2/dev.tsv", "sentence\tlabel\nbad\t0\nworse\t0\ngood\t1\n")
    write(tmp_path / "blimp/adjunct_island.jsonl", json.dumps({"sentence_good": "a", "sentence_bad": "b"}))
    args = types.SimpleNamespace(task_dir=str(tmp_path), filter=False, limit=0, seed=0)
    sst2 = load_task("sst2", args, frozenset())
    assert (sst2["chance"], sst2["majority"]) == (0.5, pytest.approx(2 / 3))    # always "negative" beats chance
    assert load_task("blimp_adjunct_island", args, frozenset())["majority"] is None   # pairs have no label to guess
    write(tmp_path / "piqa/valid.jsonl", '{"goal": "g", "sol1": "a", "sol2": "b"}\n{"goal": "h", "sol1": "c", '
                                         '"sol2": "d"}\n')
    write(tmp_path / "piqa/valid-labels.lst", "0\n0\n")   # always the first answer, but the answers differ
    assert load_task("piqa", args, frozenset())["majority"] is None
    write(tmp_path / "piqa/valid.jsonl", '{"goal": "g", "sol1": "a", "sol2": "b"}\n')
    write(tmp_path / "piqa/valid-labels.lst", "0\n")     # one example says nothing of shared answers: no 100%
    assert load_task("piqa", args, frozenset())["majority"] is None
    cloze = load_task("cloze", args, frozenset())   # the embedded one: always writing its commonest last word
    targets = [e["target"] for e in json.loads((Path(tasks.__file__).parent / "data/tasks/cloze.json").read_text())[
        "splits"]["test"]]
    assert cloze["chance"] == 0 and cloze["majority"] == max(map(targets.count, targets)) / len(targets) == 5 / 261


def test_filter_and_limit_are_applied_per_split(tmp_path):
    rows = [{"sentence_good": f"the cat {w}.", "sentence_bad": f"the cat {w}s."} for w in ["ran", "sat", "xyz"] * 4]
    write(tmp_path / "blimp/adjunct_island.jsonl", "\n".join(map(json.dumps, rows)))
    args = types.SimpleNamespace(task_dir=str(tmp_path), filter=True, limit=5, seed=0)
    t = load_task("blimp_adjunct_island", args, frozenset({"the", "cat", "ran", "rans", "sat", "sats"}))
    assert t["counts"] == {"train": [8, 12]} and len(t["eval"]) == 5
    assert all("xyz" not in e["text"] for e in t["eval"])


@pytest.mark.parametrize("name, header, rows, words", [
    ("sst2", "sentence\tlabel", ["a dull film\t0", "a great film\t1"], ["negative", "positive"]),
    ("qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", ["1\t2\t3\tWhy?\tHow?\t0",
                                                                   "2\t4\t5\tWhy?\tWhy so?\t1"], ["no", "yes"]),
    ("mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", ["0\t1\t2\tA cat.\tA dog.", "1\t3\t4\tA cat.\tA cat."],
     ["no", "yes"]),
    ("rte", "index\tsentence1\tsentence2\tlabel", ["0\tP.\tH.\tentailment", "1\tP.\tH.\tnot_entailment"],
     ["True", "False"]),
    ("mnli", "index\tsentence1\tsentence2\tgold_label", ["0\tP.\tH.\tentailment", "1\tP.\tH.\tneutral",
                                                         "2\tP.\tH.\tcontradiction"], ["True", "Neither", "False"]),
])
def test_the_right_answer_is_the_labels_word(tmp_path, name, header, rows, words):
    # rows in label order: each one's right answer is the word the harness uses for its label (swapped words would
    # turn every score of the task into its complement)
    split = "dev_matched.tsv" if name == "mnli" else "dev.tsv"
    write(tmp_path / name / split, "\n".join([header, *rows]) + "\n")
    t = load_task(name, types.SimpleNamespace(task_dir=str(tmp_path), filter=False, limit=0, seed=0), frozenset())
    assert [e["choices"] for e in t["eval"]] == [words] * len(rows)
    assert [e["choices"][e["gold"]] for e in t["eval"]] == words


def test_demonstrations_come_from_the_train_split(tmp_path):
    write(tmp_path / "sst2/train.tsv", "sentence\tlabel\nfun\t1\ndull\t0\nnice\t1\n")
    write(tmp_path / "sst2/dev.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    t = load_task("sst2", types.SimpleNamespace(task_dir=str(tmp_path), filter=False, limit=0, seed=0), frozenset())
    assert [e["text"] for e in t["eval"]] == ["good", "bad"]
    assert [(e["text"], e["gold"]) for e in t["demos"]] == [("fun", 1), ("dull", 0), ("nice", 1)]   # not validation
    assert t["counts"] == {"validation": [2, 2], "train": [3, 3]}


def test_majority_baseline_is_that_of_the_limited_subset(tmp_path):
    # 4 negative, 3 positive: 4/7 over the file, which no subset of 4 can have (k/4): the baseline is of the examples
    # scored, as chance is
    write(tmp_path / "sst2/dev.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{int(i >= 4)}\n" for i in range(7)))
    whole = load_task("sst2", types.SimpleNamespace(task_dir=str(tmp_path), filter=False, limit=0, seed=0), frozenset())
    assert whole["majority"] == pytest.approx(4 / 7)
    for seed in range(3):
        t = load_task("sst2", types.SimpleNamespace(task_dir=str(tmp_path), filter=False, limit=4, seed=seed),
                      frozenset())
        golds = [e["gold"] for e in t["eval"]]
        assert len(golds) == 4 and t["majority"] == max(golds.count(0), golds.count(1)) / 4

# -----------------------------------------------------------------------------
# The embedded tasks


def test_template_suites_are_in_vocabulary_and_reproducible():
    sys.path.insert(0, str(ROOT / "data"))
    import build_tasks
    vocab = load_vocab(DEFAULT_VOCAB)
    suites = sorted((ROOT / "data" / "tasks").glob("templates_*.json"))
    assert len(suites) >= 15
    rebuilt = build_tasks.build_templates(vocab, 0)
    for path in suites:
        task = json.loads(path.read_text())
        pairs = task["splits"]["test"]
        assert task["kind"] == "pairs" and len(pairs) >= 300 and task["mirrors"].startswith("BLiMP")
        assert len({(p["good"], p["bad"]) for p in pairs}) == len(pairs)
        for p in pairs:
            assert p["good"] != p["bad"] and keep_example(f"{p['good']} {p['bad']}", vocab)
            words = build_tasks.words_of(p["good"]) + build_tasks.words_of(p["bad"])
            assert all(w in vocab for w in words), (path.name, p)
        assert rebuilt[path.stem]["splits"]["test"] == pairs, f"{path.name} differs from data/build_tasks.py's output"


def test_cloze_is_held_out_and_bigbench_keeps_its_canary():
    cloze = json.loads((ROOT / "data/tasks/cloze.json").read_text())
    held = cloze["heldout"]
    items = cloze["splits"]["test"]
    assert len(items) >= 200
    assert all(unit_hash(e["doc"], "val") < held["val_fraction"] for e in items)   # simplify.py's val split
    assert all(e["target"].isalpha() and len(e["context"].split()) >= 10 for e in items)
    # and not read in training either: no training document holds an item's last words and its answer (4 did, in
    # documents that repeat a Bible verse or a fortune of a held-out one)
    from sources import DEFAULT_SOURCE, iter_documents
    train = "\n".join(" ".join(text.split()) for doc, text in iter_documents(DEFAULT_SOURCE)
                      if unit_hash(doc, "val") >= held["val_fraction"])
    assert held["left_out_as_seen_in_training"] == 4 and held["seen_words"] == 12
    assert not [e for e in items if " ".join((e["context"].split() + [e["target"]])[-13:]) in train]
    for path in sorted((ROOT / "data/tasks").glob("bigbench_*.json.gz")):
        header, examples = tasks.read_embedded(path.name.split(".")[0])
        assert "canary GUID" in header["canary"] and header["license"].startswith("Apache-2.0")
        assert examples and all(0 <= g < len(ch) for _, ch, g, _ in examples)


def test_missing_task_file_is_a_clear_error():
    with pytest.raises(SystemExit, match=r"no task .no_such_task.: neither one of the paper.s .*data/build_tasks.py. "
                                         r"rebuilds those"):
        tasks.read_embedded("no_such_task")

# -----------------------------------------------------------------------------
# Tables and a whole run


def fake_run(name, corpus, n_params, accs, shots=0):
    return {"run_dir": f"out/{name}", "run_name": name, "corpus": corpus, "model": name.split("-")[0],
            "n_params": n_params, "train_flops_6nd": 6 * n_params * 1e6, "results": [{"task": t, "family": "x", "shots": shots, "n": 10 * (i + 1),
                                               "chance": 0.5, "acc": a} for i, (t, a) in enumerate(accs.items())],
            "generations": [{"prompt": "Hi", "text": f" from {name}"}]}


def test_table_layout(tmp_path):
    runs = [fake_run("h128-L2-u", "unrestricted", 4e6, {"taskA": 0.6, "taskB": 0.7}),
            fake_run("h64-L2-s", "simplified", 2e6, {"taskA": 0.5, "taskB": 0.9}),
            fake_run("h128-L2-s", "simplified", 4e6, {"taskA": 0.55})]
    runs[1]["results"][0]["majority"] = 0.6
    for r in runs:
        (tmp_path / f"{r['run_name']}.json").write_text(json.dumps(r))
    (tmp_path / "fits.json").write_text('{"other": 1}')                  # not a results file: ignored
    write_tables(tmp_path)
    md = (tmp_path / "table.md").read_text().splitlines()
    i = md.index("## 0-shot")
    assert md[i + 2] == "| run | model | corpus | params | taskA | taskB | avg |"
    assert md[i + 4] == "| h64-L2-s | h64 | simplified | 2.00M | 50.0 | 90.0 | 70.0 |"   # simplified first, by size
    assert md[i + 5] == "| h128-L2-s | h128 | simplified | 4.00M | 55.0 | - | - |"      # no average of a partial row
    assert md[i + 6] == "| h128-L2-u | h128 | unrestricted | 4.00M | 60.0 | 70.0 | 65.0 |"
    assert md[i + 7] == "| chance |  |  |  | 50.0 | 50.0 | 50.0 |" and md[i + 10] == "| n |  |  |  | 10 | 20 |  |"
    assert md[i + 8] == "| majority |  |  |  | 60.0 | - | - |"       # taskB's entry (an older file) has none
    assert md[i + 9] == "| unigram |  |  |  | - | - | - |"            # (minimal pairs only)
    runs[0]["results"][0]["majority"] = 0.55                           # another run's examples, another baseline:
    (tmp_path / f"{runs[0]['run_name']}.json").write_text(json.dumps(runs[0]))   # the range, as for n
    write_tables(tmp_path)
    assert (tmp_path / "table.md").read_text().splitlines()[i + 8] == "| majority |  |  |  | 55.0-60.0 | - | - |"
    del runs[0]["results"][0]["majority"]
    rows = list(csv.reader(open(tmp_path / "table.csv")))
    assert rows[0] == ["shots", "run", "model", "corpus", "params", "taskA", "taskB", "avg"]
    assert rows[1] == ["0", "h64-L2-s", "h64", "simplified", "2.00M", "50.0", "90.0", "70.0"] and len(rows) == 8
    # a 3-shot table with only taskA: the CSV leaves taskB blank and averages what applies; runs scored on
    # different numbers of examples show the range of n
    runs[0]["results"].append({"task": "taskA", "family": "x", "shots": 3, "n": 10, "chance": 0.5, "acc": 0.8})
    runs[1]["results"].append({"task": "taskA", "family": "x", "shots": 3, "n": 7, "chance": 0.5, "acc": 0.6})
    for r in runs:
        (tmp_path / f"{r['run_name']}.json").write_text(json.dumps(r))
    write_tables(tmp_path)
    rows = list(csv.reader(open(tmp_path / "table.csv")))
    assert ["3", "h64-L2-s", "h64", "simplified", "2.00M", "60.0", "", "60.0"] in rows
    assert ["3", "n", "", "", "", "7-10", "", ""] in rows and ["3", "chance", "", "", "", "50.0", "", "50.0"] in rows
    gen = (tmp_path / "generations.md").read_text()
    assert "| prompt | h64-L2-s | h128-L2-s | h128-L2-u |" in gen and "| Hi |  from h64-L2-s |" in gen


def make_checkpoint(run_dir, data_dir, tokenizer_sha256):
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=16, vocab_size=259, n_layer=1, n_head=2, n_embd=16)
    run_dir.mkdir(parents=True)
    torch.save({"model": GPT(cfg).state_dict(), "model_config": asdict(cfg), "step": 3, "tokens": 1536,
                "val_loss": 5.5, "data_dir": str(data_dir), "tokenizer_sha256": tokenizer_sha256,
                "train_config": {"model": "h16-L1"}}, run_dir / "ckpt.pt")
    return run_dir


def test_whole_run_writes_results_as_the_interface_says(tiny_data, tmp_path):
    sha = json.loads((tiny_data / "meta.json").read_text())["tokenizer"]["sha256"]
    run = make_checkpoint(tmp_path / "out" / "tiny-run", tiny_data, sha)
    results = tmp_path / "results"
    evaluate.main(["--ckpt", str(run), "--tasks", "templates_anaphor_gender_agreement,cloze,bigbench_cause_and_effect",
                   "--limit", "8", "--shots", "0,2", "--results_dir", str(results), "--max_new_tokens", "4"])
    res = json.loads((results / "tiny-run.json").read_text())
    assert {"run_dir", "run_name", "corpus", "model", "n_params", "n_params_non_embedding", "tokens_seen",
            "train_flops_6nd", "val_loss", "results", "generations"} <= res.keys()
    assert res["run_name"] == "tiny-run" and res["corpus"] == "tiny" and res["model"] == "h16-L1"
    assert res["tokens_seen"] == 1536 and res["train_flops_6nd"] == 6.0 * res["n_params"] * 1536
    keys = {"task", "family", "shots", "n", "chance", "majority", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr",
            "rope_scale", "filtered", "data_sha", "scoring", "fewest_demos", "dtype", "unigram"}
    assert all(set(e) == keys and e["dtype"] == "float32" for e in res["results"])   # float32 unless asked
    got = {(e["task"], e["shots"]): e for e in res["results"]}
    assert set(got) == {("templates_anaphor_gender_agreement", 0), ("cloze", 0), ("bigbench_cause_and_effect", 0),
                        ("bigbench_cause_and_effect", 2)}      # pairs and cloze are zero-shot only
    assert got[("cloze", 0)]["family"] == "cloze" and got[("cloze", 0)]["n"] == 8
    assert 0 <= got[("templates_anaphor_gender_agreement", 0)]["unigram"] <= 1 and got[("cloze", 0)]["unigram"] is None
    assert got[("bigbench_cause_and_effect", 2)]["acc_norm"] is not None and got[("cloze", 0)]["acc_norm"] is None
    assert len(res["generations"]) == 4 and (results / "table.md").exists() and (results / "table.csv").exists()


def test_unigram_baseline_prefers_sentences_of_common_tokens(tiny, tiny_data, monkeypatch):
    """The context-free baseline of minimal pairs: a sentence of the corpus' commonest tokens beats one of rare ones,
    whatever their order; written alike, they tie (1/2)."""
    meta = json.loads((tiny_data / "meta.json").read_text())
    logp = dataset.unigram_logp(tiny_data, meta)
    counts = np.bincount(np.fromfile(tiny_data / "train.bin", np.uint16), minlength=259)
    assert logp[ord("e")] == pytest.approx(np.log((counts[ord("e")] + 1) / (counts.sum() + 259)))
    _, enc = tiny
    common, rare = "the dog sees the ball.", "QZX JQV"
    pairs = task_of("pairs", [("", [common, rare], 0), ("", [rare, common], 0), ("", [common, common], 0)])
    assert evaluate.unigram_accuracy(pairs, enc, [256], False, logp) == pytest.approx((1 + 0 + 0.5) / 3)
    shuffled = task_of("pairs", [("", ["the dog sees a big red ball.", "a big red ball sees the dog."], 0)])
    assert evaluate.unigram_accuracy(shuffled, enc, [256], False, logp) == 0.5   # the same tokens reordered: a tie
    assert evaluate.unigram_accuracy(task_of("choice", [("Q?", ["a", "b"], 0)]), enc, [256], False, logp) is None
    scored = []   # the tokens it sums: each sentence as the model's documents start (evaluate.answer_text)
    monkeypatch.setattr(evaluate, "encode_pair", lambda e, c, x, p: scored.append(x) or ([], list(x.encode())))
    for sos in (False, True):
        evaluate.unigram_accuracy(shuffled, enc, [256], sos, logp)
    assert scored == ["the dog sees a big red ball.", "a big red ball sees the dog.",
                      " the dog sees a big red ball.", " a big red ball sees the dog."]


@pytest.mark.parametrize("filter_key, sos, starts", [
    ("absent", "auto", [256]),                 # a dataset without the span format: <|endoftext|> only
    (None, "auto", [256]),                     # simplify.py's control corpus (filter: null): the same
    ({"vocab": "v.txt"}, "auto", [256, 257, 32]),   # the simplified corpus: <|endoftext|><s>, then " " as in "<s> span"
    ("absent", "yes", [256, 257, 32]),         # --sos overrides what the dataset says
    ({"vocab": "v.txt"}, "no", [256]),
])
def test_prompts_start_as_the_models_training_documents(tiny_data, tmp_path, monkeypatch, capsys, filter_key, sos,
                                                       starts):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    meta = json.loads((data / "meta.json").read_text())
    if filter_key != "absent":
        meta["filter"] = filter_key
    (data / "meta.json").write_text(json.dumps(meta))
    run = make_checkpoint(tmp_path / "out" / "run", data, meta["tokenizer"]["sha256"])
    seen = recorded_prompts(monkeypatch)
    task = {**task_of("choice", [("Question: Is it?\nAnswer:", ["yes", "no"], 0)]), "data_sha": "x", "counts": {}}
    args = evaluate.get_args(["--sos", sos, "--max_new_tokens", "1", "--batch_tokens", "4096"])
    res = evaluate.evaluate_model(run, [task], [0], args, "cpu", None)
    assert seen == [(starts + list(b"Question: Is it?\nAnswer:"), list(b" " + c)) for c in (b"yes", b"no")]
    assert res["eval"]["prefix_sos"] is (257 in starts)
    assert "with the word list" not in capsys.readouterr().out                      # no vocabulary recorded
    (data / "meta.json").write_text(json.dumps(dict(meta, vocab_file="/elsewhere/ao.csv", vocab_sha256="0" * 64)))
    evaluate.evaluate_model(run, [task], [0], args, "cpu", None)
    what = "its corpus was simplified" if isinstance(filter_key, dict) else "its simplified twin was made"
    assert f"note: {what} with the word list /elsewhere/ao.csv, the tasks are filtered with --vocab " in \
        capsys.readouterr().out


def test_results_are_reused_merged_and_redone_only_when_stale(tiny_data, tmp_path, capsys, monkeypatch):
    sha = json.loads((tiny_data / "meta.json").read_text())["tokenizer"]["sha256"]
    run = make_checkpoint(tmp_path / "out" / "tiny-run", tiny_data, sha)
    results, path = tmp_path / "results", tmp_path / "results" / "tiny-run.json"
    pairs, choice = "templates_anaphor_gender_agreement", "bigbench_cause_and_effect"
    ev = lambda *a: evaluate.main(["--ckpt", str(run), "--results_dir", str(results), "--max_new_tokens", "2",  # noqa
                                   "--shots", "0", *a])
    ev("--tasks", pairs, "--limit", "6")
    first = path.read_text()
    ev("--tasks", pairs, "--limit", "6")                        # nothing changed: not scored again
    assert "up to date" in capsys.readouterr().out and path.read_text() == first
    old = json.loads(first)                                     # a file with another majority baseline: rewritten
    for e in old["results"]:                                    # with its scores kept
        e["majority"] = 0.9
    path.write_text(json.dumps(old))
    ev("--tasks", pairs, "--limit", "6")
    assert "kept from before" in capsys.readouterr().out
    assert json.loads(path.read_text())["results"] == json.loads(first)["results"]
    for e in old["results"]:                                    # scored by older rules (ties to choice 0): redone
        e["scoring"] = 1
    path.write_text(json.dumps(old))
    ev("--tasks", pairs, "--limit", "6")
    assert "kept from before" not in capsys.readouterr().out
    assert json.loads(path.read_text())["results"] == json.loads(first)["results"]
    old = json.loads(first)                                     # scored at another precision: redone at this one
    for e in old["results"]:
        e["dtype"] = "bfloat16"
    path.write_text(json.dumps(old))
    ev("--tasks", pairs, "--limit", "6")
    assert "kept from before" not in capsys.readouterr().out
    assert json.loads(path.read_text())["results"] == json.loads(first)["results"]
    for e in old["results"]:                                    # no dtype: an older file, maybe a GPU's bf16
        del e["dtype"]
    path.write_text(json.dumps(old))
    ev("--tasks", pairs, "--limit", "6")
    assert "kept from before" not in capsys.readouterr().out
    ev("--tasks", choice, "--limit", "6")                       # another task: added, the first one kept
    res = json.loads(path.read_text())
    assert {(e["task"], e["n"]) for e in res["results"]} == {(pairs, 6), (choice, 6)}
    assert res["generations"] == json.loads(first)["generations"]
    ev("--tasks", pairs, "--limit", "4")                        # other examples (--limit): that entry is redone
    assert {(e["task"], e["n"]) for e in json.loads(path.read_text())["results"]} == {(pairs, 4), (choice, 6)}
    with pytest.raises(SystemExit, match="nothing to score"):   # pairs are zero-shot only: said, nothing redone
        ev("--tasks", pairs, "--limit", "4", "--shots", "2")
    assert "zero-shot only" in capsys.readouterr().out
    kept = path.read_text()
    with pytest.raises(SystemExit, match=r"other settings .*'seed': \(1234, 7\).* 2 entries would be lost: pass "
                                         "--results_dir DIR to keep both, or --force"):
        ev("--tasks", pairs, "--limit", "4", "--seed", "7")
    assert path.read_text() == kept                             # refused: nothing lost
    shutil.copytree(run, tmp_path / "out" / "a-run")            # refused before a model is scored, not after hours
    with pytest.raises(SystemExit, match=r"tiny-run.json was scored with other settings"):
        evaluate.main(["--ckpt", str(tmp_path / "out" / "a-run"), str(run), "--results_dir", str(results), "--shots",
                       "0", "--tasks", pairs, "--limit", "4", "--seed", "7"])
    assert not (results / "a-run.json").exists() and path.read_text() == kept
    ev("--tasks", pairs, "--limit", "4", "--force")             # --force re-scores the task, keeps the other one
    assert "up to date" not in capsys.readouterr().out
    assert {(e["task"], e["n"]) for e in json.loads(path.read_text())["results"]} == {(pairs, 4), (choice, 6)}
    ev("--tasks", pairs, "--limit", "4", "--seed", "7", "--force")   # other settings, --force: replaced, said
    assert "replaced (--force)" in capsys.readouterr().out
    assert [e["task"] for e in json.loads(path.read_text())["results"]] == [pairs]
    kept = path.read_text()                                     # another vocabulary: incomparable entries, refused
    vocab = tmp_path / "vocab.txt"
    vocab.write_text(Path(evaluate.DEFAULT_VOCAB).read_text() + "zzyzx\n")
    with pytest.raises(SystemExit, match=r"other settings .*'vocab_sha'"):
        ev("--tasks", choice, "--limit", "4", "--seed", "7", "--vocab", str(vocab))
    assert path.read_text() == kept
    monkeypatch.chdir(tmp_path)                                 # the same checkpoint, named from elsewhere: reused
    evaluate.main(["--ckpt", "out/tiny-run", "--results_dir", str(results), "--max_new_tokens", "2", "--shots", "0",
                   "--tasks", pairs, "--limit", "4", "--seed", "7", "--force"])   # (run_dir "out/tiny-run")
    monkeypatch.chdir(run)
    evaluate.main(["--ckpt", ".", "--results_dir", str(results), "--max_new_tokens", "2", "--shots", "0",
                   "--tasks", pairs, "--limit", "4", "--seed", "7"])
    assert "up to date" in capsys.readouterr().out and sorted(p.name for p in results.glob("*.json")) == [
        "tiny-run.json"]
    shutil.copy(run / "ckpt.pt", run / "snap.pt")              # another checkpoint file of the run: its own results
    evaluate.main(["--ckpt", str(run / "snap.pt"), "--results_dir", str(results), "--max_new_tokens", "2",
                   "--shots", "0", "--tasks", pairs, "--limit", "4"])
    assert json.loads((results / "tiny-run-snap.json").read_text())["run_name"] == "tiny-run-snap"
    assert [e["task"] for e in json.loads(path.read_text())["results"]] == [pairs]   # tiny-run.json untouched
    ckpt = torch.load(run / "ckpt.pt", weights_only=False)      # the run trained on: every entry is stale
    ckpt["step"], ckpt["tokens"] = 6, 3072
    torch.save(ckpt, run / "ckpt.pt")
    ev("--tasks", pairs, "--limit", "4")
    res = json.loads(path.read_text())
    assert [e["task"] for e in res["results"]] == [pairs] and res["tokens_seen"] == 3072
    # a damaged or hand-edited file is never replaced without a word (--force replaces it), nor read into the tables
    good = path.read_text()
    for text, problem in (("{bad", "unreadable: Expecting property name"), ("\udcff", "unreadable: .*utf-8"),
                          (json.dumps({**res, "results": [{**res["results"][0], "acc": None}]}), "its results entry 0"),
                          (json.dumps({k: v for k, v in res.items() if k != "model"}), "its model is missing"),
                          (json.dumps({**res, "eval": 5}), "it has no eval settings"),
                          (json.dumps({**res, "corpus": None}), "its corpus is missing or not a string"),
                          (json.dumps({**res, "results": [{**res["results"][0], "shots": "0"}]}),
                           "its results entry 0 lacks a task, a family, a whole number of shots, or numbers for its "
                           "scores"),
                          (json.dumps({**res, "results": [{**res["results"][0], "acc": "high"}]}), "its results entry 0 lacks"),
                          # (each of these got past, into a traceback in the fits or a score of 700% in the tables)
                          (json.dumps({**res, "results": [{**res["results"][0], "family": 5}]}), "its results entry 0 lacks"),
                          (json.dumps({**res, "results": [{**res["results"][0], "acc_stderr": "x"}]}),
                           "its results entry 0 lacks"),
                          (json.dumps({**res, "results": [{**res["results"][0], "acc": 7}]}),
                           "its results entry 0 has a score outside"),
                          (json.dumps({**res, "results": [{**res["results"][0], "acc": math.nan}]}),
                           "its results entry 0 has a score outside"),
                          # a baseline out of range would be one no model can cross in the emergence analysis
                          *[(json.dumps({**res, "results": [{**res["results"][0], k: v}]}),
                             f"its results entry 0 {what}")
                            for k, v, what in (("chance", 1.5, "has a score outside"),
                                               ("majority", -0.1, "has a score"), ("unigram", 2.0, "has a score"),
                                               ("n", "4", "lacks"), ("chance", None, "lacks"))],
                          (json.dumps({k: v for k, v in res.items() if k != "generations"}), "its generations is missing"),
                          (json.dumps({**res, "generations": [{"prompt": "a"}]}), "its generations are not all")):
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        with pytest.raises(SystemExit, match=f"tiny-run.json is not a results file as evaluate.py writes them "
                                             f"\\({problem}.*--force to replace them"):
            ev("--tasks", pairs, "--limit", "4")
        assert path.read_bytes() == text.encode("utf-8", "surrogateescape")
        if not problem.startswith("it has no eval settings"):   # the tables' problems too
            seen = "not readable JSON" if problem.startswith("unreadable") else problem
            assert write_tables(results) and f"tiny-run.json left out: {seen}" in capsys.readouterr().out
    ev("--tasks", pairs, "--limit", "4", "--force")
    assert json.loads(path.read_text())["results"] == json.loads(good)["results"]


def test_results_record_paths_that_read_the_same_in_every_clone(tiny_data, tmp_path, capsys, monkeypatch):
    """A results file records the run directory and the vocabulary relative to the project's folder when inside it
    (committed files then name no machine's folders), else absolute; a file for another state of the same run, named
    so or as files before that recorded it (run_dir from where evaluate.py ran, run_dir_abs), is redone, and another
    run's file is refused."""
    import results as results_module
    assert results_module.recorded_path(results_module.ROOT / "out" / "x") == "out/x"
    assert results_module.recorded_path(tmp_path / "x" / ".." / "y") == str(tmp_path / "y")
    monkeypatch.setattr(results_module, "ROOT", tmp_path)        # the run and the vocabulary inside the project
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")     # a folder linked in: named as the project sees it
    assert results_module.recorded_path(tmp_path / "linked" / "run") == "linked/run"
    sha = json.loads((tiny_data / "meta.json").read_text())["tokenizer"]["sha256"]
    run, vocab = make_checkpoint(tmp_path / "out" / "tiny-run", tiny_data, sha), tmp_path / "vocab.txt"
    vocab.write_text(Path(evaluate.DEFAULT_VOCAB).read_text())
    path = tmp_path / "results" / "tiny-run.json"
    monkeypatch.chdir(run)                                       # named from inside the run: recorded all the same
    ev = lambda: evaluate.main(["--ckpt", ".", "--results_dir", str(path.parent), "--max_new_tokens", "2",  # noqa
                                "--shots", "0", "--tasks", "bigbench_cause_and_effect", "--limit", "2",
                                "--vocab", str(vocab)])
    ev()
    first = json.loads(path.read_text())
    assert (first["run_dir"], first["eval"]["vocab"], "run_dir_abs" in first) == ("out/tiny-run", "vocab.txt", False)
    for recorded in ({"run_dir": "out/tiny-run"}, {"run_dir": "elsewhere/tiny-run", "run_dir_abs": str(run)}):
        path.write_text(json.dumps({**first, **recorded, "checkpoint_id": "an earlier state"}))
        ev()
        assert "was scored on an earlier state of this checkpoint" in capsys.readouterr().out, recorded
        assert json.loads(path.read_text()) | {"eval": None} == first | {"eval": None}
    for other in ("out/other-run", 5):                          # another run's (or a hand-edited file): refused
        path.write_text(json.dumps({**first, "run_dir": other, "checkpoint_id": "another"}))
        with pytest.raises(SystemExit, match=rf"tiny-run.json holds another model's results \({other}\)"):
            ev()


def test_nan_scores_are_an_error_not_a_perfect_score(tiny, monkeypatch):
    model, enc = tiny
    task = {"name": "t", "kind": "choice", "eval": [dict(context="a", choices=["b", "c"], gold=0)], "demos": []}
    monkeypatch.setattr(evaluate, "score_requests", lambda *a, **k: [(float("nan"), False)] * 2)
    args = types.SimpleNamespace(seed=0, long="rope", batch_tokens=256)
    with pytest.raises(evaluate.NaNScores, match="NaN"):
        evaluate_task(model, enc, [256], False, task, 0, args, "cpu", contextlib.nullcontext())


def test_a_setting_added_later_keeps_the_checkpoint_id_of_runs_at_its_old_value():
    """A flag added to train.py (fp8, attention, step_graph, fp8_weight_grad) must not make every results file stale:
    at the value older runs trained with, the checkpoint is what it was; at another value, or with another setting or
    val loss, it is not."""
    from results import checkpoint_id
    info = {"model_config": {"n_embd": 64}, "train_config": {"lr": 1e-3}, "step": 10, "tokens": 1280, "val_loss": 4.2}
    old = checkpoint_id(info)
    assert checkpoint_id({**info, "train_config": {"lr": 1e-3, "fp8": False, "attention": "sdpa",
                                                   "step_graph": False, "fp8_weight_grad": False}}) == old
    for changed in ({"train_config": {"lr": 1e-3, "fp8": True}}, {"train_config": {"lr": 1e-3, "attention": "triton"}},
                    {"train_config": {"lr": 1e-3, "step_graph": True}}, {"train_config": {"lr": 2e-3}},
                    {"train_config": {"lr": 1e-3, "fp8_weight_grad": True}},
                    {"val_loss": 4.21}, {"step": 11}):
        assert checkpoint_id({**info, **changed}) != old, changed


def test_every_train_flag_added_since_the_first_results_files_is_an_added_setting():
    """checkpoint_id hashes train.py's whole config, so a flag added to TrainConfig would change the id of every
    earlier run (and evaluate.py rescore them all) unless results.ADDED_SETTINGS gives the value earlier runs had."""
    from dataclasses import fields

    from results import ADDED_SETTINGS
    from train import TrainConfig
    first = {"batch_size", "beta1", "beta2", "block_size", "compile", "compile_mode", "data_dir", "device", "dtype",
             "epochs", "eps", "eval_blocks", "eval_interval", "final_lr_frac", "grad_clip", "log_interval", "loss",
             "loss_chunk", "lr", "max_tokens", "micro_batch_size", "model", "out_dir", "overwrite", "peak_flops",
             "resume", "rope_base", "run_name", "sample_tokens", "seed", "stop_at_step", "threads", "warmup_steps",
             "weight_decay"}   # TrainConfig's fields when the committed results/ were made (before --fp8)
    assert {f.name for f in fields(TrainConfig)} - first == set(ADDED_SETTINGS)


def test_a_nan_checkpoint_is_skipped_and_the_others_scored(tiny_data, tmp_path):
    sha = json.loads((tiny_data / "meta.json").read_text())["tokenizer"]["sha256"]
    good, bad = (make_checkpoint(tmp_path / "out" / name, tiny_data, sha) for name in ("good", "bad"))
    ckpt = torch.load(bad / "ckpt.pt", weights_only=False)
    ckpt["model"]["lm_head.weight"].fill_(float("nan"))
    torch.save(ckpt, bad / "ckpt.pt")
    results = tmp_path / "results"
    with pytest.raises(SystemExit, match=r"^1 checkpoints not scored: bad \(templates_anaphor_gender_agreement: .*NaN"):
        evaluate.main(["--ckpt", str(bad), str(good), "--tasks", "templates_anaphor_gender_agreement", "--limit", "4",
                       "--shots", "0", "--results_dir", str(results), "--max_new_tokens", "2"])
    assert (results / "good.json").exists() and not (results / "bad.json").exists() and (results / "table.md").exists()


def test_ctrl_c_keeps_the_models_scored_and_says_so(tiny_data, tmp_path, monkeypatch):
    sha = json.loads((tiny_data / "meta.json").read_text())["tokenizer"]["sha256"]
    first, second = (make_checkpoint(tmp_path / "out" / name, tiny_data, sha) for name in ("first", "second"))
    original = evaluate.evaluate_model

    def interrupted(path, *a, **k):   # Ctrl-C (or `kill`) while the second model is scored
        if Path(path).name == "second":
            raise KeyboardInterrupt
        return original(path, *a, **k)
    monkeypatch.setattr(evaluate, "evaluate_model", interrupted)
    results, argv = tmp_path / "results", ["--ckpt", str(first), str(second), "--limit", "4", "--shots", "0",
                                           "--tasks", "templates_anaphor_gender_agreement", "--max_new_tokens", "2"]
    with pytest.raises(SystemExit, match=r"^interrupted: a model's .*results/NAME.json is written once all its tasks "
                                         "are scored: run the same command again"):
        evaluate.main(argv + ["--results_dir", str(results)])
    assert (results / "first.json").exists() and not (results / "second.json").exists()


def test_checkpoint_tokenizer_mismatch_is_a_clear_error(tiny_data, tmp_path):
    run = make_checkpoint(tmp_path / "out" / "bad", tiny_data, "0" * 64)
    with pytest.raises(SystemExit, match="does not match the tokenizer"):
        evaluate.load_run(run, "cpu")
    with pytest.raises(SystemExit, match="not found"):
        evaluate.load_run(tmp_path / "nothing", "cpu")
    moved = make_checkpoint(tmp_path / "out" / "moved", tmp_path / "gone", "0" * 64)   # its dataset is not there
    with pytest.raises(SystemExit, match=r"moved: its dataset .*gone is not there \(moved or deleted\?\): pass "
                                         "--data_dir with it"):
        evaluate.load_run(moved, "cpu")
    (tmp_path / "out" / "early").mkdir()                         # a run stopped before its first checkpoint
    with pytest.raises(SystemExit, match="early: the run has no ckpt.pt yet"):
        evaluate.main(["--ckpt", str(tmp_path / "out" / "early")])
    with pytest.raises(SystemExit, match="nowhere: no such run directory or checkpoint"):
        evaluate.main(["--ckpt", str(tmp_path / "out" / "nowhere")])
    # a device that is not there is said as such, before any checkpoint is read (it was "ckpt.pt is not a readable
    # checkpoint, perhaps truncated or corrupt": a good checkpoint blamed)
    with pytest.raises(SystemExit, match="^--device 'foo': use auto, cpu, cuda, cuda:N or mps$"):
        evaluate.main(["--ckpt", str(run), "--device", "foo"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="^--device cuda: this torch .* sees no CUDA GPU; use --device cpu$"):
            evaluate.main(["--ckpt", str(run), "--device", "cuda"])


@pytest.mark.parametrize("flags", [["--temperature", "nan"], ["--temperature", "-1"], ["--max_new_tokens", "-2"],
                                   ["--shots", "-1"], ["--threads", "-1"]])
def test_bad_sampling_and_scoring_flags_are_refused(flags, capsys):
    with pytest.raises(SystemExit):
        evaluate.get_args(flags)
    assert "must be >= 0" in capsys.readouterr().err


def test_an_empty_task_file_is_said_to_be_empty_not_filtered_away(tiny_data, tmp_path, capsys):
    run = make_checkpoint(tmp_path / "out" / "r", tiny_data, "0" * 64)
    write(tmp_path / "tasks" / "blimp" / "adjunct_island.jsonl", "")
    with pytest.raises(SystemExit, match="nothing to score"):
        evaluate.main(["--ckpt", str(run), "--tasks", "blimp_adjunct_island", "--task_dir", str(tmp_path / "tasks"),
                       "--results_dir", str(tmp_path / "results")])
    assert "note: blimp_adjunct_island: its files hold no examples: it is not scored" in capsys.readouterr().out
