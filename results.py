"""
results.py: evaluate.py's results files, results/<run>.json: what one is called, the fingerprints that say whether
its entries can be reused (the checkpoint as it is now, the settings every entry shares, the version of the scoring
rules), and a file read back checked before the tables, the fits or a reuse trust it.

    result_name("out/h64-L2-simplified-1M")          -> "h64-L2-simplified-1M" (results/h64-L2-simplified-1M.json;
                                                        a path that is no run directory: "out-h64-L2-simplified-1M")
    old, problem = previous_results(path, args)      what evaluate.py may keep of an earlier file, or why it cannot
    read_results("results")                          every run's results, checked, simplified then unrestricted
"""
import hashlib
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent   # the project's folder

# -----------------------------------------------------------------------------
# Reuse: a results entry is kept while its checkpoint, its settings and the scoring rules are what they were

# The version of the rules an entry was scored by (prompts, demonstrations, encoding, scoring): older entries are
# redone. Bump it with any change to what evaluate_task sends the model or how it counts. 2: ties split; 3: a k-shot
# context's trailing newlines move to the continuation (the harness's rule; tasks whose context is empty end theirs so);
# 4: no second space after <s> before demonstrations of an empty context; 5: after an empty context, no space before
# the choice for models trained on raw text (evaluate.answer_text)
SCORING = 5


def reusable(entry, args):
    """Whether a results entry was scored by today's rules at this --dtype (one without a dtype may be a GPU's bf16)."""
    return entry.get("scoring") == SCORING and entry.get("dtype") == args.dtype


# train.py settings added after runs were made, each with the value every earlier run trained with: a run at that value
# is the same as one from before the setting (train.py resumes it, scaling.py reuses it, and its checkpoint_id is what
# it was, so evaluate.py keeps its scores instead of redoing every results file when a flag is added)
ADDED_SETTINGS = {"fp8": False, "attention": "sdpa", "step_graph": False, "fp8_weight_grad": False}


def checkpoint_id(info):
    """A checkpoint as it is now: its settings and how far it trained (retraining or resuming changes it)."""
    train = info.get("train_config")
    if isinstance(train, dict):   # an added setting at its old value: hashed as if absent
        train = {k: v for k, v in train.items() if k not in ADDED_SETTINGS or v != ADDED_SETTINGS[k]}
    key = [info.get("model_config"), train, info.get("step"), info.get("tokens"), info.get("val_loss")]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_checkpoint_id(path):
    """checkpoint_id of a run directory's (or ckpt.pt's) checkpoint as it is now; None if missing or unreadable."""
    from model import read_checkpoint   # (torch: imported here, so reading results needs none)
    try:
        return checkpoint_id(read_checkpoint(path, "cpu", mmap=True))   # its settings and counters only
    except (OSError, ValueError, MemoryError):
        return None


# Scored with these, every entry of a results file is comparable (vocab_sha: the filter's words, whatever the file)
SHARED_SETTINGS = ("long", "seed", "sos", "filter", "vocab_sha")


def shared_settings(args, hub=False):
    """The SHARED_SETTINGS a model is scored with: a pretrained model's prompts never get <s> nor are stretched."""
    return {k: getattr(args, k) for k in SHARED_SETTINGS} | ({"long": "truncate", "sos": "no"} if hub else {})


def generation_settings(args):
    return {"prompts": args.prompts, "temperature": args.temperature, "max_new_tokens": args.max_new_tokens,
            "seed": args.seed, "seeds": "seed + prompt index"}   # (files without "seeds" are generated again)


def recorded_path(path):
    """A path as a results file records it: relative to the project's folder when inside it (so a committed file reads
    the same in every clone, wherever it is), else absolute."""
    for where in (Path(os.path.abspath(path)), Path(path).resolve()):   # as named (out/ may link elsewhere), real
        if where.is_relative_to(ROOT):
            return str(where.relative_to(ROOT))
    return os.path.abspath(path)


def result_name(path, hub=False):
    """What a checkpoint's results file is called: results/<run>.json for a run directory or its ckpt.pt,
    results/<run>-<stem>.json for another checkpoint file in it (a snapshot); hf-<name>.json for --hf_model's."""
    if hub:
        return hub_result_name(path)
    path = Path(path).resolve()   # (`--ckpt .` is the run directory it names)
    if path.is_dir() or path.name == "ckpt.pt":
        return path.name if path.is_dir() else path.parent.name
    return f"{path.parent.name}-{path.stem}"


def previous_results(path, args, hub=False):
    """-> (old, problem). old: results/<name>.json if it was written for this checkpoint as it is now and with these
    settings (its entries may be reused, and those of other tasks are kept), else None. problem: why the file, which
    holds results worth keeping, cannot be kept (another run's, or other --seed/--long/--sos), else None; a file for
    an earlier state of this checkpoint (trained further since) is simply replaced. Each entry also carries the
    fingerprint of the examples it scored (tasks.load_task's data_sha: task files, vocabulary filter, --limit)."""
    file = Path(args.results_dir) / f"{result_name(path, hub)}.json"
    if hub:   # a hub id, or a local directory as its files are (hub_checkpoint_id)
        ckpt_id = hub_checkpoint_id(path)
        same_model = lambda old: old.get("hf_model") == hub_key(path)   # noqa: E731
    else:
        run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
        if (ckpt_id := run_checkpoint_id(path)) is None:   # a damaged checkpoint: load_run says so
            return None, None
        # run_dir as recorded_path writes it (files from before it: run_dir_abs, the absolute path)
        same_model = lambda old: run_dir.resolve() in {(ROOT / str(old[k])).resolve()   # noqa: E731
                                                       for k in ("run_dir", "run_dir_abs") if old.get(k)}
    try:
        old = json.loads(file.read_text())
    except FileNotFoundError:                            # no results yet
        return None, None
    except (OSError, ValueError) as e:                   # not UTF-8, not JSON
        problem = f"unreadable: {e}"
    else:
        problem = results_problem(old) or (None if isinstance(old.get("eval"), dict) else "it has no eval settings")
    if problem:   # hand-edited, or not ours: never replaced without a word
        return None, f"{file} is not a results file as evaluate.py writes them ({problem})"
    if old.get("checkpoint_id") != ckpt_id:   # (the same id: this checkpoint, from whatever directory)
        if not same_model(old):
            return None, f"{file} holds another model's results ({old.get('run_dir') or old.get('hf_model')})"
        print(f"note: {file} was scored on an earlier state of this checkpoint: all of it is redone")
        return None, None
    was, now = old.get("eval", {}), shared_settings(args, hub)   # (a setting not recorded yet: taken as the same)
    differ = {k: (was[k], now[k]) for k in now if k in was and was[k] != now[k]}
    if differ:
        return None, (f"{file} was scored with other settings (there vs now: {differ}); its "
                      f"{len(old.get('results', []))} entries would be lost")
    return old, None


# -----------------------------------------------------------------------------
# Pretrained models (evaluate.py --hf_model, pretrained.py): known by their hub id or directory


def hub_result_name(name):
    """results/<this>.json of a hub model or a local directory: hf-pythia-160m for EleutherAI/pythia-160m."""
    return "hf-" + name.rstrip("/").split("/")[-1]


def hub_dir(name):
    """The directory a --hf_model names, or None for a hub id; SystemExit if it looks like a path but is none."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if name.startswith((".", "/", "~")):
        raise SystemExit(f"--hf_model {name}: no such directory (a model saved with save_pretrained, or a hub id)")
    return None


def hub_key(name):
    """Which model a --hf_model names: a local directory by its absolute path, a hub id by itself."""
    return str(hub_dir(name) or name)


def hub_checkpoint_id(name):
    """What evaluate.py's results reuse compares: a hub id (a published model's final weights do not change), or a
    local directory's path with its files' sizes and dates (saved again: scored again)."""
    path = hub_dir(name)
    files = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.iterdir()) if f.is_file()] \
        if path else []
    return hashlib.sha256(json.dumps(["hf", hub_key(name), files]).encode()).hexdigest()[:16]


# -----------------------------------------------------------------------------
# A results file read back


def results_problem(d):
    """Why d, a results/<run>.json as parsed, is not one evaluate.py wrote (hand-edited, say), or None: what the tables,
    the emergence analysis and evaluate.py's reuse read."""
    if not isinstance(d, dict):
        return "not a JSON object"
    number, optional = (int, float), (int, float, type(None))   # (a pretrained model's compute is not known)
    for key, kind, what in (("run_name", str, "a string"), ("corpus", str, "a string"), ("model", str, "a string"),
                            ("n_params", number, "a number"), ("train_flops_6nd", optional, "a number or null"),
                            ("results", list, "a list"), ("generations", list, "a list")):
        if key not in d or not isinstance(d[key], kind):
            return f"its {key} is missing or not {what}"
    for i, e in enumerate(d["results"]):
        if not (isinstance(e, dict) and isinstance(e.get("task"), str) and isinstance(e.get("family"), str)
                and isinstance(e.get("shots"), int) and all(isinstance(e.get(k), number) for k in ("n", "acc", "chance"))
                and all(isinstance(e.get(k), optional) for k in ("acc_norm", "majority", "unigram", "acc_stderr",
                                                                 "acc_norm_stderr"))):
            return f"its results entry {i} lacks a task, a family, a whole number of shots, or numbers for its scores"
        if not all(e.get(k) is None or 0 <= e[k] <= 1 for k in ("acc", "chance", "acc_norm", "majority", "unigram")):
            return f"its results entry {i} has a score outside [0, 1] (or NaN)"
    if not all(isinstance(g, dict) and isinstance(g.get("prompt"), str) and isinstance(g.get("text"), str)
               for g in d["generations"]):
        return "its generations are not all {prompt, text} pairs"
    return None


def read_results(results_dir):
    """evaluate.py's results/<run>.json files (other JSON there, like fits.json, is not a run's results), simplified
    then unrestricted, by size; a file that looks like one but is damaged is left out, and said."""
    runs = []
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            d = json.loads(p.read_bytes())
        except (OSError, ValueError) as e:   # (a file cut short, say: never dropped silently)
            print(f"note: {p} left out: not readable JSON ({str(e)[:100]}) (evaluate.py rewrites it with --force)")
            continue
        if isinstance(d, dict) and "run_name" in d:   # (fits.json, a bench.py JSON: not a run's results)
            if problem := results_problem(d):
                print(f"note: {p} left out: {problem} (evaluate.py rewrites it with --force)")
            else:
                runs.append(d)
    rank = {"simplified": 0, "unrestricted": 1}
    return sorted(runs, key=lambda r: (rank.get(r["corpus"], 2), r["n_params"], r.get("tokens_seen") or 0,
                                       r["run_name"]))
