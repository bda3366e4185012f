#!/usr/bin/env bash
# Everything only a CUDA GPU can check or time, in one go (about 10 minutes on an H100, estimated: not yet run on one):
#   1. the speed benchmark behind README.md's table: plain (bf16 + torch.compile + fused AdamW) against what
#      --loss auto picks with CUDA graphs, side by side, from h32-L2 to h1024-L8, and the paper's 36 runs estimated
#      from them (--sweep: its fit needs more than three sizes)
#   2. the GPU tests (tests/test_gpu.py: fast paths in bf16, train.py compiled, with the fused loss and CUDA graphs)
#   3. the experiment not yet timed: the fused loss traced into the compiled graph (FUSED_LOSS_TRACE=1)
#   4. two small runs sharing the GPU at once (does the sweep gain from running several per GPU?)
# Usage: bash tests/gpu_check.sh [OUT_DIR]   (default out/gpu_check; every step's log and JSON land there)
# Each step has its own time limit, so one that hangs or runs long still leaves the others' figures; they run in
# order of importance, so a caller with less time can cut the tail.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu_check}
mkdir -p "$out"
step() {   # step NAME SECONDS COMMAND...: run, keep its output in OUT/NAME.log, say how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc $rc in $((SECONDS - t0)) s$([ $rc = 124 ] && echo " (stopped at its ${limit} s limit)")"
    tail -n 25 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__)" | tee -a "$out/gpu.txt"

step bench 360 python bench.py --models h32-L2,h128-L4,h256-L4,h512-L4,h1024-L8 --paths plain,auto+cg --sweep \
    --json "$out/bench.json"
step test_gpu 200 python -m pytest -q tests/test_gpu.py
step bench_trace 150 env FUSED_LOSS_TRACE=1 python bench.py --models h32-L2,h256-L4 --paths plain,fused+cg \
    --json "$out/bench_trace.json"
# Two processes at once, each timing its own h32-L2 steps: the sum of their tokens/s against one alone (step 1).
step two_at_once 120 bash -c "python bench.py --models h32-L2 --paths auto+cg --json '$out/pair_a.json' & \
    python bench.py --models h32-L2 --paths auto+cg --json '$out/pair_b.json'; wait"
