"""
launch.py: scaling.py's launcher: train.py processes side by side, one per slot (a GPU or a share of the cores), with
progress lines (runs ended, share of the predicted time done, tokens/s, FLOP/s, an ETA calibrated by the time taken).

    codes = launch([(run, cmd, predicted_seconds), ...], slots=[0, 1])   # -> {run name: exit code}
    logged_tokens(run_dir, checkpointed=True)                         # where a resumed run starts from
"""
import os
import shlex
import subprocess
import time

from files import hms, read_log   # seconds -> h:mm:ss; the events of a log.jsonl


def logged_tokens(run_dir, checkpointed=False):
    """Tokens of a run's last logged step, or (checkpointed) of its last eval: where its checkpoint is and a resume
    starts from (train.py cuts the log back to it), not the steps logged after it."""
    steps = [e for e in read_log(run_dir / "log.jsonl") if e.get("event") == "step"
             and (not checkpointed or e.get("val_loss") is not None)]
    return steps[-1]["tokens"] if steps else 0


def last_line(path, start=0):
    """The last line a run printed from byte `start` of its output file on (this attempt's: a relaunch appends), as
    train.py's one-line errors and a traceback's last line say what went wrong."""
    with open(path, "rb") as f:
        f.seek(max(f.seek(0, os.SEEK_END) - 4096, start))
        lines = [x.strip() for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    return lines[-1][:300] if lines else "it printed nothing"


def launch(jobs, slots, progress_s=30.0, recheck=None):
    """jobs: [(run, cmd, predicted seconds)], longest first. slots: one entry per process to keep going, the GPU it
    sees (CUDA_VISIBLE_DEVICES) or None. Each process writes <run dir>/train.out; progress lines give the share of the
    predicted time done and an ETA that calibrates the prediction by the time taken so far. recheck(run), if given, is
    asked as a run's turn comes (hours after the plan, perhaps): its command now, or why it is no longer to run (a
    string; the run is skipped, exit code 0). Returns {run name: exit code}. Ctrl-C stops the children it started;
    their last checkpoints stay, and the next call resumes them."""
    pending, running, codes, free = list(jobs), {}, {}, list(slots)
    todo = {}   # per run: the tokens it had logged before (a resumed run), the tokens and predicted seconds left
    for r, cmd, t in jobs:
        before = 0 if "--overwrite" in cmd else logged_tokens(r["dir"], checkpointed=True)   # --overwrite: new log
        todo[r["name"]] = {"run": r, "before": before, "tokens_left": max(r["D"] - before, 1),
                           "seconds_left": t * (1 - before / r["D"])}
    total = sum(j["seconds_left"] for j in todo.values())
    t0 = last = time.time()
    try:
        while pending or running:
            while pending and free:
                (run, cmd, _), gpu = pending.pop(0), free.pop(0)
                cmd = recheck(run) if recheck else cmd
                if isinstance(cmd, str):   # (not started: no tokens to count, no time to predict)
                    print(f"skip {run['name']}: {cmd}", flush=True)
                    codes[run["name"]], todo[run["name"]]["before"] = 0, run["D"]
                    total -= todo[run["name"]]["seconds_left"]
                    free.append(gpu)
                    continue
                run["dir"].mkdir(parents=True, exist_ok=True)
                out = open(run["dir"] / "train.out", "a")
                env = dict(os.environ, **({} if gpu is None else {"CUDA_VISIBLE_DEVICES": str(gpu)}))
                print(f"start {run['name']}" + ("" if gpu is None else f" on GPU {gpu}") + f": {shlex.join(cmd)}",
                      flush=True)
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
                running[run["name"]] = (proc, out, run, gpu, out.tell(), cmd)
            time.sleep(0.2)
            for name, (proc, out, run, gpu, start, cmd) in list(running.items()):
                if proc.poll() is not None:
                    out.close()
                    del running[name]
                    free.append(gpu)
                    codes[name] = proc.returncode
                    # (torchrun ends what it prints with its own summary: the run's line is above it)
                    out_file = run["dir"] / "train.out"
                    why = (f", see {out_file}" if "torch.distributed.run" in cmd else
                           f": {last_line(out_file, start)} ({out_file})")
                    print(f"{name}: " + ("finished" if proc.returncode == 0 else
                                         f"FAILED (exit {proc.returncode}){why}"), flush=True)
            if time.time() - last >= progress_s or not (pending or running):
                last, dt = time.time(), time.time() - t0
                # a failed run counts the tokens it logged, not its whole budget
                tokens = {k: (j["run"]["D"] if codes.get(k) == 0 else logged_tokens(j["run"]["dir"])) - j["before"]
                          for k, j in todo.items() if k in codes or k in running}
                frac = (sum(todo[k]["seconds_left"] * v / todo[k]["tokens_left"] for k, v in tokens.items()) / total
                        if total > 0 else 1.0)   # (nothing predicted left to do: every run skipped, say)
                flops = sum(todo[k]["run"]["flops_per_token"] * v for k, v in tokens.items())
                failed = sum(1 for v in codes.values() if v)
                print(f"progress: {len(codes)}/{len(jobs)} runs ended" + (f" ({failed} failed)" if failed else "")
                      + f", {len(running)} running | {frac:.0%} done | "
                      f"{sum(tokens.values()) / dt:,.0f} tokens/s, {flops / dt / 1e9:.1f} GFLOP/s | {hms(dt)} elapsed"
                      + (f", ETA {hms(dt * (1 - frac) / frac)}" if frac > 0 else ""), flush=True)
    except KeyboardInterrupt:
        for proc, out, *_ in running.values():
            proc.terminate()
            proc.wait()
            out.close()
        raise SystemExit("interrupted: run the same command again to resume the unfinished runs")
    return codes
