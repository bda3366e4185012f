import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import bench
from model import PAPER_GRID, triton_module


def test_benchmark_prints_every_path_and_its_ratio_to_the_first(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        results = bench.main(["--models", "h32-L2", "--steps", "2", "--batch_size", "4", "--vocab_size", "2000",
                              "--paths", "plain,chunked,auto@2,plain+f8w", "--loss_chunk", "100", "--threads", "1",
                              "--json", str(tmp_path / "b.json")])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    data_ms = re.search(r"train.py's data loading takes ([\d.]+) ms per batch on the host", out)
    assert data_ms and 0 < float(data_ms[1]) < 1000, out
    rows = {}
    for path, micro in (("plain", 4), ("chunked", 4), ("auto@2", 2), ("plain+f8w", 4)):
        m = re.search(rf"h32-L2 +{re.escape(path)} +micro {micro} +\| tokens/s +([\d.]+)k \| step +([\d.]+) ms "
                      rf"\(host +([\d.]+) ms\) \| MFU +n/a \| peak mem +(n/a|[\d.]+ GiB) \| first loss ([\d.]+)", out)
        assert m, (path, out)
        rows[path] = m
        tokens_per_s, step_ms = float(m[1]) * 1e3, float(m[2])
        assert tokens_per_s == pytest.approx(4 * 128 / (step_ms / 1e3), rel=0.01)   # tokens/s = B*T / step time
        assert float(m[3]) == pytest.approx(step_ms, abs=0.2)   # on a CPU the host does it all (nothing runs ahead)
    for path in ("chunked", "auto@2"):
        ratio = re.search(rf"h32-L2 +{re.escape(path)}/plain: tokens/s x([\d.]+), peak mem (x[\d.]+|n/a), first loss "
                          "difference", out)
        assert ratio, out
        assert float(ratio[1]) == pytest.approx(float(rows[path][1]) / float(rows["plain"][1]), rel=0.02)
    # the same weights and tokens: every path starts from the same loss, about ln V for a fresh model
    plain, chunked, auto, f8 = results[0]["paths"]
    assert all(p["host_s"] > 0 for p in results[0]["paths"])   # the host's share of each step (its size: above)
    assert chunked["first_loss"] == pytest.approx(plain["first_loss"], abs=1e-4)
    assert auto["first_loss"] == pytest.approx(plain["first_loss"], abs=1e-4)     # 2 micro-batches of 2
    assert plain["first_loss"] == pytest.approx(7.6, abs=0.3)        # ln 2000 = 7.60
    assert (f8["fp8_linears"], plain["fp8_linears"]) == (10, 0)      # h32-L2: 2 x (qkv, proj, gate, up, down)
    assert (f8["fp8_weight_grad"], plain["fp8_weight_grad"]) == (True, False)
    assert f8["first_loss"] == pytest.approx(plain["first_loss"], rel=1e-2)   # float8 rounds: the same model
    assert (chunked["loss"], chunked["loss_chunk"], plain["loss"], plain["loss_chunk"]) == ("chunked", 100, "plain", 0)
    assert auto["loss"] == "plain" and plain["timed_steps"] == 2      # auto is plain on a CPU
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["data_loading_s_per_batch"] == pytest.approx(float(data_ms[1]) / 1e3, abs=1e-5)
    assert saved["vocab_size"] == 2000 and saved["results"][0]["over_baseline"]["chunked"]["tokens_per_s"] > 0


def test_benchmark_profile_lists_the_costliest_operations_and_the_time_by_kind(capsys):
    threads = torch.get_num_threads()
    try:
        results = bench.main(["--models", "h32-L2", "--steps", "1", "--batch_size", "2", "--vocab_size", "500",
                              "--paths", "plain,chunked", "--threads", "1", "--profile", "5"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    kinds = results[0]["paths"][0]["profile_ms_by_kind"]
    assert {"matmul", "loss", "attention", "element-wise"} <= kinds.keys() and min(kinds.values()) > 0
    assert "loss" in results[0]["paths"][1]["profile_ms_by_kind"]    # the chunked loss's gathers and scatters
    line = re.search(r"h32-L2 plain by kind: (.*)", out)[1]
    shares = {k: int(p) for k, p in re.findall(r"([\w-]+) [\d.]+ ms \((\d+)%\)", line)}
    assert shares.keys() == kinds.keys() and abs(sum(shares.values()) - 100) <= len(shares)   # rounded percentages
    assert list(shares.values()) == sorted(shares.values(), reverse=True)                   # largest first
    table = out[out.index("profile of one step, h32-L2 plain:"):]
    lines = table.splitlines()
    seps = [i for i, line in enumerate(lines) if line.startswith("-----")]
    assert "Self CPU" in lines[seps[0] + 1] and seps[2] - seps[1] - 1 == 5      # a header, then 5 operations
    assert "aten::mm" in table                                                   # the matmuls are among them


def test_time_by_kind_counts_a_gpu_kernel_once():
    """In a GPU profile the CPU operation that launched a kernel carries the kernel's time as its own too: summed
    over every event, each such kernel counted twice (eager and compiled paths, not CUDA-graph replays, which have no
    launching operation), and a user annotation over a region counted its kernels again."""
    from torch.autograd import DeviceType
    ev = lambda key, dev, gpu_us, cpu_us=0, note=False: types.SimpleNamespace(   # noqa: E731
        key=key, device_type=dev, self_device_time_total=gpu_us, self_cpu_time_total=cpu_us, is_user_annotation=note)
    events = [ev("aten::mm", DeviceType.CPU, 100, cpu_us=30), ev("sm90_xmma_gemm_bf16bf16", DeviceType.CUDA, 100),
              ev("aten::add", DeviceType.CPU, 50, cpu_us=10), ev("triton_poi_fused_add_0", DeviceType.CUDA, 50),
              ev("## forward ##", DeviceType.CUDA, 150, note=True), ev("_rows_kernel", DeviceType.CUDA, 250)]
    assert bench.time_by_kind(events, "cuda") == {"matmul": 0.1, "element-wise": 0.05, "loss": 0.25}
    assert bench.time_by_kind(events, "cpu") == {"matmul": 0.03, "element-wise": 0.01}   # (the CPU's own times)


def test_sweep_estimate_recovers_a_known_speed_law():
    """Speeds that follow seconds per token = a F + b L h + c exactly on four measured models: the fit recovers the
    law, so every one of the 18 models (measured or not) and the 36-run total come out as the law says."""
    a, b, c = 2e-15, 3e-12, 4e-9
    law = {m: a * f + b * lh + c for m in PAPER_GRID for f, lh, _ in [bench.sweep_features(m, 15000, 128)]}
    measured = ["h32-L2", "h128-L4", "h512-L2", "h1024-L8"]
    results = [{"model": m, "paths": [{"oom": False, "tokens_per_s": 1 / law[m]},
                                      {"oom": False, "tokens_per_s": 0.5 / law[m]}]} for m in measured]
    results.append({"model": "h2048-L8", "paths": [{"oom": True}, {"oom": True}]})     # left out, not a zero
    out = bench.sweep_estimate(results, [{"name": "fast"}, {"name": "slow"}], 15000, 128, tokens=1e9)
    assert out["fast"]["measured"] == sorted(measured) and out["fast"]["fit_max_error"] < 1e-9
    assert out["fast"]["loo_max_error"] < 1e-9      # each measured model predicted from the other three: the law too
    for m in PAPER_GRID:
        assert out["fast"]["seconds_per_token"][m] == pytest.approx(law[m], rel=1e-9)
        assert out["slow"]["seconds_per_token"][m] == pytest.approx(2 * law[m], rel=1e-9)
    assert out["fast"]["hours"] == pytest.approx(2 * 1e9 * sum(law.values()) / 3600, rel=1e-9)   # 18 models x 2
    assert out["fastest"]["hours"] == pytest.approx(out["fast"]["hours"], rel=1e-12)
    assert bench.sweep_estimate(results[:3], [{"name": "fast"}, {"name": "slow"}], 15000, 128) == {}   # < 4 models:
    # 3 constants through 3 points always fit "within 0.0%", a check of nothing


def test_sweep_estimate_gives_no_time_to_a_model_out_of_memory_on_a_path(capsys):
    """h1024-L8 ran out of memory on the fast path: that path has no total (an extrapolated time for a run that
    cannot train there is no estimate), and "fastest" takes h1024-L8 from the slow path, the rest from the fast one."""
    a, b, c = 2e-15, 3e-12, 4e-9
    law = {m: a * f + b * lh + c for m in PAPER_GRID for f, lh, _ in [bench.sweep_features(m, 15000, 128)]}
    results = [{"model": m, "paths": [{"oom": False, "tokens_per_s": 1 / law[m]},
                                      {"oom": False, "tokens_per_s": 0.5 / law[m]}]}
               for m in ("h32-L2", "h128-L4", "h512-L2", "h512-L8")]
    results.append({"model": "h1024-L8", "paths": [{"oom": True},
                                                   {"oom": False, "tokens_per_s": 0.5 / law["h1024-L8"]}]})
    out = bench.sweep_estimate(results, [{"name": "fast"}, {"name": "slow"}], 15000, 128, tokens=1e9)
    assert "fast" not in out and "slow" in out
    assert "no sweep total for fast: h1024-L8 could not run on it (out of memory" in capsys.readouterr().out
    fastest = out["fastest"]["seconds_per_token"]
    assert fastest["h1024-L8"] == pytest.approx(2 * law["h1024-L8"], rel=1e-9)
    assert fastest["h32-L2"] == pytest.approx(law["h32-L2"], rel=1e-9)
    results[-1]["paths"][1] = {"oom": True}                              # out of memory everywhere: no "fastest"
    assert bench.sweep_estimate(results, [{"name": "fast"}, {"name": "slow"}], 15000, 128) == {}


def test_path_modifiers_pick_the_compile_mode():
    specs = ("plain", "fused+cg", "chunked+ma@4", "auto+cg+ma", "auto+ma+cg")
    modes = {spec: bench.parse_path(spec, 8) for spec in specs}
    assert {spec: p["compile_mode"] for spec, p in modes.items()} == {
        "plain": "default", "fused+cg": "reduce-overhead", "chunked+ma@4": "max-autotune-no-cudagraphs",
        "auto+cg+ma": "max-autotune", "auto+ma+cg": "max-autotune"}
    assert modes["chunked+ma@4"]["micro"] == 4 and not modes["chunked+ma@4"]["cuda_graphs"]
    assert modes["auto+cg+ma"]["cuda_graphs"] and modes["auto+cg+ma"]["loss"] == "auto"
    assert not any(p["fp8"] for p in modes.values())
    f8 = bench.parse_path("auto+cg+f8@2", 8)
    assert (f8["fp8"], f8["compile_mode"], f8["micro"], f8["loss"]) == (True, "reduce-overhead", 2, "auto")
    f8w = bench.parse_path("auto+f8w+cg", 8)                  # train.py --fp8 --fp8_weight_grad
    assert (f8w["fp8"], f8w["fp8_weight_grad"], f8["fp8_weight_grad"], f8w["compile_mode"]) == (
        True, True, False, "reduce-overhead")
    assert {p["attention"] for p in modes.values()} == {f8["attention"]} == {"sdpa"}
    ta = bench.parse_path("fused+ta+cg", 8)
    assert (ta["attention"], ta["compile_mode"], ta["fp8"]) == ("triton", "reduce-overhead", False)
    assert not any(p["step_graph"] for p in [*modes.values(), f8, ta])
    sg = bench.parse_path("auto+sg+ma+ta", 8)   # train.py --step_graph: compiled without inductor's CUDA graphs
    assert (sg["step_graph"], sg["cuda_graphs"], sg["compile_mode"], sg["attention"]) == (
        True, False, "max-autotune-no-cudagraphs", "triton")


def test_benchmark_refuses_bad_flags(monkeypatch):
    with pytest.raises(SystemExit, match="--models: model name 'gpt2'"):
        bench.parse_args(["--models", "gpt2"])
    with pytest.raises(SystemExit, match="micro-batch 3 of 'fused@3' must divide --batch_size 8"):
        bench.parse_args(["--batch_size", "8", "--paths", "plain,fused@3"])
    with pytest.raises(SystemExit, match="'fast' is not LOSS"):
        bench.parse_args(["--paths", "plain,fast"])
    for twice in ("fused+cg+cg", "plain+f8+f8w"):
        with pytest.raises(SystemExit, match=f"'{re.escape(twice)}' is not LOSS"):
            bench.parse_args(["--paths", f"plain,{twice}"])
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)   # (an Apple GPU, as far as bench.py asks)
    with pytest.raises(SystemExit, match="--paths plain[+]f8: float8 matmuls run on NVIDIA GPUs and CPUs "
                                         "here, not mps"):
        bench.parse_args(["--models", "h32-L2", "--paths", "plain,plain+f8", "--device", "mps"])
    monkeypatch.undo()
    with pytest.raises(SystemExit, match="--paths auto[+]cg[+]sg: [+]sg [(]train.py --step_graph[)] captures the "
                                         "whole step in a CUDA graph itself: .* not reduce-overhead"):
        bench.parse_args(["--paths", "plain,auto+cg+sg"])
    with pytest.raises(SystemExit, match="--paths plain[+]sg: [+]sg [(]train.py --step_graph[)] needs a CUDA GPU, "
                                         "got cpu"):
        bench.parse_args(["--models", "h32-L2", "--paths", "plain,plain+sg", "--device", "cpu"])


def test_paths_that_cannot_run_and_bad_flags_are_refused_before_timing(tmp_path, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setattr(triton_module("fused_loss"), "INTERPRET", False)     # a CPU without the interpreter
    with pytest.raises(SystemExit, match="--paths fused at h32-L2: the fused loss runs Triton kernels on a CUDA"):
        bench.parse_args(["--models", "h32-L2", "--paths", "plain,fused", "--device", "cpu"])
    monkeypatch.setattr(triton_module("attention"), "INTERPRET", False)
    with pytest.raises(SystemExit, match="--paths plain[+]ta at h32-L2: attention.py runs Triton kernels on a CUDA"):
        bench.parse_args(["--models", "h32-L2", "--paths", "plain,plain+ta", "--device", "cpu"])
    monkeypatch.setattr(triton_module("attention"), "INTERPRET", True)
    with pytest.raises(SystemExit, match="--paths plain[+]ta at h512-L4: .* heads of up to 32, got 128 and 64"):
        bench.parse_args(["--models", "h32-L2,h512-L4", "--paths", "plain,plain+ta", "--device", "cpu"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--dtype", "bf16"])
    for flags, error in ((["--models", ","], "--models: name at least one model"),
                         (["--threads", "-1"], "--threads must be >= 0"), (["--peak_flops", "-5"], "--peak_flops must"),
                         (["--profile", "-3"], "--profile must"), (["--min_seconds", "nan"], "--min_seconds must"),
                         (["--device", "foo"], "--device 'foo': use auto, cpu, cuda, cuda:N or mps"),
                         (["--sweep", "--models", "h32-L2,h64-L2,h64-L4"], "--sweep fits .* at least 4 --models \\(got 3\\)")):
        with pytest.raises(SystemExit, match=error):
            bench.parse_args(flags)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="--device cuda: this torch .* sees no CUDA GPU; use --device cpu"):
            bench.parse_args(["--device", "cuda", "--paths", "plain"])
    bench.parse_args(["--json", str(tmp_path / "new" / "dir" / "b.json")])
    assert (tmp_path / "new" / "dir").is_dir()                        # written after each model: made up front
    with pytest.raises(SystemExit, match=f"--json {tmp_path} is a folder: name a file, e.g. .*bench.json"):
        bench.parse_args(["--json", str(tmp_path)])                   # (said before the timing, not after it)


def test_on_a_gpu_the_device_set_has_an_index(monkeypatch):
    """torch.cuda.set_device("cuda") raises ValueError (it needs an index): bench.py stopped there on every GPU, before
    timing anything. Checked with torch's own index rule, on stand-ins for a GPU this machine lacks."""
    class SetDevice(Exception):
        pass

    def set_device(device):   # as torch.cuda.set_device begins, then stop: the rest needs a real GPU
        raise SetDevice(torch._utils._get_device_index(device))
    monkeypatch.setattr(bench, "pick_device", lambda device: "cuda" if device in ("auto", "cuda") else device)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    for flags, index in ((["--device", "cuda"], 0), (["--device", "auto"], 0), (["--device", "cuda:1"], 1)):
        args = ["--models", "h32-L2", "--paths", "plain", "--dtype", "bfloat16", *flags]
        assert bench.parse_args(args).device == f"cuda:{index}"
        with pytest.raises(SetDevice) as e:
            bench.main(args)
        assert e.value.args == (index,)


def test_a_path_that_fails_is_left_out_with_its_whole_cause(tmp_path, monkeypatch, capsys):
    """A compile failure is not "out of memory": the path's error is recorded and its traceback printed, the other
    paths are timed (with CUDA graphs and micro-batches, the gradients are kept across the step: step.keep_grads)."""
    def broken(model, **kw):   # torch.compile compiles at the first call, and fails there
        def call(*a, **k):
            raise RuntimeError("backend='inductor' raised:\nRuntimeError: no kernel for you")
        return call
    monkeypatch.setattr(bench.torch, "compile", broken)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit, match=r"1 path\(s\) failed \(h32-L2 plain\+cg\): their tracebacks are above"):
            bench.main(["--models", "h32-L2", "--steps", "1", "--batch_size", "4", "--vocab_size", "500",
                        "--paths", "plain,plain+cg", "--no-compile", "--threads", "1", "--json", str(tmp_path / "b.json")])
    finally:
        torch.set_num_threads(threads)
    results = json.loads((tmp_path / "b.json").read_text())["results"]     # every figure saved before the exit
    plain, failed = results[0]["paths"]
    assert bench.ran(plain) and not bench.ran(failed) and not failed["oom"]
    assert failed["error"] == "RuntimeError: backend='inductor' raised: RuntimeError: no kernel for you"
    captured = capsys.readouterr()
    assert "Traceback" in captured.err and "h32-L2     plain+cg       RuntimeError: backend=" in captured.out
    assert results[0]["over_baseline"] == {}
    def out_of_memory(model, **kw):   # an OOM wrapped by the compiler is still out of memory, not a failure
        def call(*a, **k):
            raise RuntimeError("backend='inductor' raised:\ntorch.OutOfMemoryError: CUDA out of memory. Tried to ...")
        return call
    monkeypatch.setattr(bench.torch, "compile", out_of_memory)
    try:
        results = bench.main(["--models", "h32-L2", "--steps", "1", "--batch_size", "4", "--vocab_size", "500",
                              "--paths", "plain,plain+cg", "--no-compile", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert results[0]["paths"][1] == {"oom": True, "path": "plain+cg", "error": "out of memory"}



@pytest.mark.skipif(shutil.which("timeout") is None, reason="tests/gpu_check.sh needs coreutils' timeout")
def test_gpu_check_runs_its_steps_in_order_within_its_budget_and_leaves_few_files(tmp_path):
    """tests/gpu_check.sh with stand-ins for python and nvidia-smi (each step's command logged; the profile step
    fails): the steps run in order of importance; one that the budget cannot give its minimum is skipped and says so
    (a 100 s budget leaves 85 s: the 90 s steps are skipped); a failed step makes it exit 1 after running the rest;
    every step's output lands in one steps.log, and few files in OUT (for a remote GPU machine to hand them all
    back)."""
    repo, out, calls = Path(__file__).resolve().parent.parent, tmp_path / "out", tmp_path / "calls"
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho a stand-in GPU\n")
    (tmp_path / "python").write_text(f"""#!/usr/bin/env bash
args="$*"; echo "${{FUSED_LOSS_TRACE:-0}} ${{args//$'\n'/ }}" >> {calls}   # a line per call
case "$*" in
  *"import json, os, sys, bench"*) exec {sys.executable} "$@" ;;   # the sweep step's own code
  *pytest_timeout*) ;;                                            # installed (as on the GPU machines)
  -c*) echo torch stand-in ;;
  *--profile\\ 25*) echo "profile: out of luck"; exit 1 ;;
  *) echo "ran: $*" ;;
esac
""")
    for f in ("nvidia-smi", "python"):
        (tmp_path / f).chmod(0o755)
    out.mkdir()
    (out / "small.log").write_text("an earlier run's")   # an earlier version's log: removed
    proc = subprocess.run(["bash", str(repo / "tests/gpu_check.sh"), str(out), "100"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=str(tmp_path / "python"),
                                   PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = [line for line in proc.stdout.splitlines() if line.startswith("== ")]
    assert [re.sub(r"in \d+ s", "in N s", re.sub(r"\d+ s of", "N s of", s)) for s in summary] == [
        "== small: skipped, N s of the budget left (needs 90)", "== test_sg: rc 0 in N s",
        "== large: skipped, N s of the budget left (needs 90)", "== sweep: rc 0 in N s", "== profile: rc 1 in N s",
        "== test_gpu: skipped, N s of the budget left (needs 90)", "== train_traced: rc 0 in N s",
        "== trace: rc 0 in N s", "== gpu_check: N s of the 100 s budget, a step failed"], proc.stdout
    steps = [line.split(" ", 1) for line in calls.read_text().splitlines()[2:]]   # after the version and timeout probes
    assert [(trace, cmd.split()[0] if cmd.startswith("-c") else " ".join(cmd.split()[:3])) for trace, cmd in steps] == [
        ("0", "-m pytest -v"), ("0", "-c"), ("0", "bench.py --models h32-L2"), ("1", "-m pytest -v"),
        ("1", "bench.py --models h32-L2")]
    assert "fewer than 4 sizes measured" in proc.stdout and "profile: out of luck" in proc.stdout
    log = (out / "steps.log").read_text()
    assert [line.split(":")[0] for line in log.splitlines() if line.startswith("== ")] == [
        "== test_sg", "== sweep", "== profile", "== train_traced", "== trace"]
    assert "ran: -m pytest -v -p no:cacheprovider --timeout=100 tests/test_gpu.py -k graphed or sg_" in log
    assert sorted(p.name for p in out.iterdir()) == ["steps.log", "sweep.json"]   # (the stand-in writes no JSON)
