#!/usr/bin/env bash
# Everything only a CUDA GPU can check or time, in one go, within a time budget (an earlier version, without the
# train.py, fp8 and attention tests, ran in 340 s on an H200):
#   1. small: the benchmark behind README.md's table at h32-L2, h256-L4 and h128-L4: plain (bf16 + torch.compile +
#      fused AdamW) against what --loss auto picks with inductor's CUDA graphs (+cg), with the whole step one CUDA
#      graph (+sg, train.py --step_graph), and that with attention.py's kernels (+ta), side by side (bench.py writes
#      its JSON after each model, so a step cut short keeps what it measured)
#   2. test_sg: --step_graph's GPU tests (a graphed step against the eager one; train.py with it, eager and compiled,
#      with micro-batches, the fused loss and attention.py, resumed)
#   3. large: the same at h1024-L8 and h512-L4, with float8 matmuls (+f8, fp8.py; +f8w: the weight gradients' too) in
#      place of attention.py's (which takes heads up to h256's), and where their steps spend the time (--profile)
#   4. sweep: the paper's 36 runs estimated from steps 1 and 3: each model's plain path and its fastest (5 sizes;
#      the fit needs 4)
#   5. profile: where h32-L2's step spends its GPU time on auto+sg+ta (expected to be its fastest path)
#   6. the other GPU tests (tests/test_gpu.py: the fast paths in bf16, train.py compiled, with the fused loss,
#      attention.py and CUDA graphs, with and without micro-batches; tests/test_fused_loss.py on the GPU's tiles;
#      tests/test_fp8.py; tests/test_attention.py)
#   7. the fused loss traced into the compiled graph (FUSED_LOSS_TRACE=1): train.py's compiled GPU tests with CUDA
#      graphs with it (inductor's, and --step_graph's with micro-batches and attention.py),
#      then h32-L2's tokens/s, to set against step 1's (through a graph break, same machine; at h256-L4 it was as fast;
#      inside one CUDA graph of the step, +sg, the break no longer costs launches, but inductor fuses less around it)
# Usage: bash tests/gpu_check.sh [OUT_DIR] [SECONDS]   (defaults: out/gpu_check, 575: the whole script's budget)
# Steps run in order of importance, each under its own time limit, cut to what the budget has left; a step that
# would get less than its minimum is skipped (and says so). Five files land in OUT_DIR (few, for a remote machine to
# hand them all back): steps.log, every step's output after its "== NAME" line (step.log holds the running step's),
# and small.json, large.json, sweep.json, trace.json. Exits 1 if a step that ran failed. (Two h32-L2 processes
# sharing an H200 made 22.39M tokens/s together, no more than one alone: that step is gone.)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu_check}
budget=${2:-575}
py=${PYTHON:-python3}            # the GPU image's python3 is the one with torch
export PYTHONUNBUFFERED=1        # a step killed at its limit still shows what it printed
mkdir -p "$out"
# an earlier run's figures must not pass for this one's
for f in small test_sg large sweep profile trace test_gpu train_traced step steps; do
    rm -f "$out/$f.json" "$out/$f.log"
done
failed=0
step() {   # step NAME MIN_SECONDS MAX_SECONDS COMMAND...: run within what is left of the budget, log in OUT/steps.log
    local name=$1 min=$2 limit=$3; shift 3
    local left=$((budget - SECONDS - 15))   # 15 s kept for a killed step's cleanup and the summary line
    if [ "$left" -lt "$min" ]; then
        echo "== $name: skipped, ${left} s of the budget left (needs ${min})"; return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" > "$out/step.log" 2>&1
    local rc=$?
    [ $rc = 0 ] || failed=1
    local cut=""; [ $rc = 124 ] || [ $rc = 137 ] && cut=" (stopped at its ${limit} s limit)"
    local head="== $name: rc $rc in $((SECONDS - t0)) s$cut"
    echo "$head"
    tail -n 30 "$out/step.log"
    { echo "$head: $*"; cat "$out/step.log"; } >> "$out/steps.log"
    rm "$out/step.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__)"
timeout_flag=$($py -c "import pytest_timeout" 2>/dev/null && echo "--timeout=")   # a hanging test's traceback

# the sizes of issue 7's targets first, h32-L2 the first of all; then whether --step_graph trains correctly
step small 90 240 $py bench.py --models h32-L2,h256-L4,h128-L4 --paths plain,auto+cg,auto+sg,auto+sg+ta \
    --json "$out/small.json"
step test_sg 30 120 $py -m pytest -v -p no:cacheprovider ${timeout_flag:+${timeout_flag}100} tests/test_gpu.py \
    -k "graphed or sg_"
step large 90 210 $py bench.py --models h1024-L8,h512-L4 --paths plain,auto+cg,auto+cg+f8,auto+cg+f8w --profile 10 \
    --json "$out/large.json"
step sweep 5 30 $py -c "import json, os, sys, bench
results = []   # each model's plain path and its fastest other one (the steps time different paths)
for r in (r for f in sys.argv[2:] if os.path.exists(f) for r in json.load(open(f))['results']):
    ran = {p['path']: p for p in r['paths'] if bench.ran(p)}
    if 'plain' in ran and len(ran) > 1:
        fastest = max((p for n, p in ran.items() if n != 'plain'), key=lambda p: p['tokens_per_s'])
        results.append({'model': r['model'], 'paths': [ran['plain'], dict(fastest, path='best')]})
        print(r['model'], 'fastest:', fastest['path'])
est = bench.sweep_estimate(results, [{'name': 'plain'}, {'name': 'best'}], 15000, 128)
json.dump(est, open(sys.argv[1], 'w'), indent=1)
print('GPU-hours of the 36 runs:', {k: round(e['hours'], 2) for k, e in est.items()} or 'fewer than 4 sizes measured')
" "$out/sweep.json" "$out/small.json" "$out/large.json"
step profile 30 60 $py bench.py --models h32-L2 --paths auto+sg+ta --profile 25 --min_seconds 0.5   # where its
# time goes now (the fused loss's kernels, attention.py's, the rest), against the 2.6 ms SPEED.md reports
step test_gpu 90 240 $py -m pytest -v --durations=5 -p no:cacheprovider ${timeout_flag:+${timeout_flag}150} \
    tests/test_gpu.py tests/test_fused_loss.py tests/test_fp8.py tests/test_attention.py \
    -k "not fits_an_h100 and not traces_into and not graphed and not sg_"
step train_traced 60 120 env FUSED_LOSS_TRACE=1 $py -m pytest -v -p no:cacheprovider \
    ${timeout_flag:+${timeout_flag}100} tests/test_gpu.py -k "train_on_gpu and (cg or sg_accum_ta)"   # (CUDA graphs:
# inductor's, and the whole step's compiled)
step trace 40 90 env FUSED_LOSS_TRACE=1 $py bench.py --models h32-L2 --paths plain,auto+cg,auto+sg+ta \
    --json "$out/trace.json"
echo "== gpu_check: $SECONDS s of the ${budget} s budget$([ $failed = 1 ] && echo ", a step failed")"
exit $failed
