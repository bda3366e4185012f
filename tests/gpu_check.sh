#!/usr/bin/env bash
# Everything only a CUDA GPU can check or time, in one go, within a time budget (an earlier version, without steps 2
# and 4's train.py tests and the fused loss's and fp8's own tests, ran in 340 s on an H200; this one: ~530 s expected):
#   1. the speed benchmark behind README.md's table: plain (bf16 + torch.compile + fused AdamW) against what
#      --loss auto picks with CUDA graphs, side by side, from h32-L2 to h1024-L8, and the paper's 36 runs estimated
#      from them (--sweep: its fit needs 4 sizes or more; bench.json is written after each model, so a step cut
#      short keeps what it measured, and bench.sweep_estimate can redo the estimate from it anywhere)
#   2. float8 matmuls (train.py --fp8, fp8.py) at h1024-L8 and h512-L4, side by side with auto+cg (step 1 has plain),
#      and where their steps spend the time (--profile)
#   3. the GPU tests (tests/test_gpu.py: the fast paths in bf16, train.py compiled, with the fused loss and CUDA
#      graphs, with and without micro-batches; tests/test_fused_loss.py on the GPU's tiles; tests/test_fp8.py)
#   4. the fused loss traced into the compiled graph (FUSED_LOSS_TRACE=1): train.py's compiled GPU tests with it,
#      then its tokens/s at h32-L2, to set against step 1's auto+cg (through a graph break, same machine; at h256-L4
#      it was as fast)
# Usage: bash tests/gpu_check.sh [OUT_DIR] [SECONDS]   (defaults: out/gpu_check, 560: the whole script's budget)
# Steps run in order of importance, each under its own time limit, cut to what the budget has left; a step that
# would get less than its minimum is skipped (and says so). At most 8 files land in OUT_DIR: each step's log, and
# bench.json, fp8.json, trace.json. Exits 1 if a step that ran failed. (Two h32-L2 processes sharing an H200 made
# 22.39M tokens/s together, no more than one alone: that step is gone.)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu_check}
budget=${2:-560}
py=${PYTHON:-python3}            # the GPU image's python3 is the one with torch
export PYTHONUNBUFFERED=1        # a step killed at its limit still shows what it printed
mkdir -p "$out"
failed=0
step() {   # step NAME MIN_SECONDS MAX_SECONDS COMMAND...: run within what is left of the budget, log in OUT/NAME.log
    local name=$1 min=$2 limit=$3; shift 3
    local left=$((budget - SECONDS - 15))   # 15 s kept for a killed step's cleanup and the summary line
    if [ "$left" -lt "$min" ]; then
        echo "== $name: skipped, ${left} s of the budget left (needs ${min})"; return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    [ $rc = 0 ] || failed=1
    local cut=""; [ $rc = 124 ] || [ $rc = 137 ] && cut=" (stopped at its ${limit} s limit)"
    echo "== $name: rc $rc in $((SECONDS - t0)) s$cut"
    tail -n 30 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__)"
timeout_flag=$($py -c "import pytest_timeout" 2>/dev/null && echo "--timeout=")   # a hanging test's traceback

# the three sizes of issue 7's targets first (bench.json is saved after each model), then h128-L4 and h512-L4 for the
# sweep's fit (h512: where auto turns from the fused loss to the chunked one)
step bench 120 240 $py bench.py --models h32-L2,h256-L4,h1024-L8,h128-L4,h512-L4 --paths plain,auto+cg --sweep \
    --json "$out/bench.json"
step fp8 90 150 $py bench.py --models h1024-L8,h512-L4 --paths auto+cg,auto+cg+f8 --profile 12 --json "$out/fp8.json"
step test_gpu 90 240 $py -m pytest -v --durations=5 -p no:cacheprovider ${timeout_flag:+${timeout_flag}150} \
    tests/test_gpu.py tests/test_fused_loss.py tests/test_fp8.py -k "not fits_an_h100 and not traces_into"
step train_traced 60 120 env FUSED_LOSS_TRACE=1 $py -m pytest -v -p no:cacheprovider \
    ${timeout_flag:+${timeout_flag}100} tests/test_gpu.py -k "train_on_gpu and not extra0"   # (extra0: not compiled)
step trace 40 80 env FUSED_LOSS_TRACE=1 $py bench.py --models h32-L2 --paths plain,auto+cg --json "$out/trace.json"
echo "== gpu_check: $SECONDS s of the ${budget} s budget$([ $failed = 1 ] && echo ", a step failed")"
exit $failed
