"""Compile fused_loss.py's kernels for an H100 (sm_90) without a GPU and print, per candidate tile of the autotuner,
the shared memory, registers and local memory (register spills) each needs, the warps an SM holds of it, and the
machine instructions of its main loop (one pass over a tile of logits: per thread, and of all threads per logit), as
JSON (or attention.py's, per head width):

    python tests/h100_resources.py 256        # CP, the hidden size rounded up to a power of two
    python tests/h100_resources.py attention  # attention.py's two kernels at T = 128, per head width they take

Uses Triton's compiler and the CUDA tools its Linux wheels bundle (ptxas, cuobjdump).
tests/test_fused_loss.py and tests/test_attention.py run it; it is how fused_loss.TILES and attention.tiles were
chosen."""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)   # compile for real: the interpreter (tests' conftest.py) compiles nothing
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import attention  # noqa: E402
import fused_loss  # noqa: E402

CUOBJDUMP = Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"


def compile_sm90(kernel, sig, constants, sizes, num_warps, num_stages):
    """`kernel` compiled for sm_90 -> {shared: bytes of shared memory, stack: bytes of local memory per thread
    (register spills, wherever they are), registers: per thread, warps_per_sm: warps_per_sm(), loop_instructions:
    machine instructions per thread in its main loop, loop_local: local-memory loads and stores among them (spills
    that cost every iteration)}. sig: each argument's Triton type; sizes: the integer arguments' values at the paper's
    step (those divisible by 16 are marked so, as Triton's launcher tells the compiler at run time, with every pointer
    16-byte aligned)."""
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(kernel.arg_names)
             if sig[a].startswith("*") or (sig[a] == "i32" and sizes[a] % 16 == 0)}
    compiled = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constants, attrs=attrs),
                              target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps,
                                                                         "num_stages": num_stages})
    with tempfile.TemporaryDirectory() as d:
        cubin = Path(d) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage, sass = (subprocess.run([str(CUOBJDUMP), flag, str(cubin)], capture_output=True, text=True,
                                      check=True).stdout for flag in ("-res-usage", "-sass"))
    shared, registers, loop = compiled.metadata.shared, int(usage.split("REG:")[1].split()[0]), main_loop(sass)
    return {"shared": shared, "stack": int(usage.split("STACK:")[1].split()[0]), "registers": registers,
            "warps_per_sm": warps_per_sm(registers, shared, num_warps), "loop_instructions": len(loop),
            "loop_local": sum(op.startswith(("LDL", "STL")) for op in loop)}


def warps_per_sm(registers, shared, warps):
    """Warps an H100 SM holds at once of a kernel taking `registers` per thread and `shared` bytes per program of
    `warps` warps: each of its 4 schedulers has 16,384 registers (allotted per warp in blocks of 256), the SM 228 KiB
    of shared memory (1 KiB more per program), at most 64 warps and 32 programs (as CUDA's occupancy calculator
    counts). The more, the more of the latency of one warp's exponentials, matmuls and loads the others can hide."""
    by_registers = 4 * (16384 // (-(-registers * 32 // 256) * 256))   # warps
    programs = min(by_registers // warps, 233472 // (shared + 1024), 64 // warps, 32)
    return programs * warps


def resources(kernel, config, cp):
    """fused_loss.py's `kernel` with this config at width cp, on the paper's step (N = 512 x 128 rows, V = 15,000)
    -> compile_sm90's figures and per_logit: loop instructions of all threads per logit of the tile."""
    sig = {a: ("*bf16" if a in ("x_ptr", "w_ptr") else "*i64" if a == "t_ptr" else "*fp32") if a.endswith("_ptr")
           else "i32" if a in ("N", "V", "C") else "constexpr" for a in kernel.arg_names}
    constants = {k: v for k, v in dict(config.kwargs, CP=cp, PRECISION="ieee", WITH_GRAD=True).items()
                 if k in kernel.arg_names}
    r = compile_sm90(kernel, sig, constants, {"N": 512 * 128, "V": 15000, "C": cp}, config.num_warps,
                     config.num_stages)
    tile = config.kwargs["BLOCK_N"] * config.kwargs["BLOCK_V"]
    return {**r, "per_logit": round(r["loop_instructions"] * 32 * config.num_warps / tile, 2)}


def attention_resources(kernel, T, hd):
    """attention.py's `kernel` for sequences of T tokens and heads of hd (8 heads, bf16, Triton's default 4 warps and
    3 stages) -> compile_sm90's figures (the loop: one block of queries) and per_score: loop instructions of all
    threads per score of a block."""
    sig = {a: "*fp32" if a == "lse_ptr" else "*bf16" if a.endswith("_ptr") else "i32" if a in ("T", "NH", "HD")
           else "fp32" if a.endswith("scale") else "constexpr" for a in kernel.arg_names}
    tp, dp, bm = attention.tiles(T, hd)
    r = compile_sm90(kernel, sig, {"TP": tp, "DP": dp, "BLOCK_M": bm, "PRECISION": "ieee"}, {"T": T, "NH": 8, "HD": hd},
                     num_warps=4, num_stages=3)
    return {"T": T, "hd": hd, **r, "per_score": round(r["loop_instructions"] * 32 * 4 / (bm * tp), 2)}


def main_loop(sass):
    """The opcodes of the longest loop of a SASS listing: from a backward branch's target to the branch."""
    lines = [(int(a, 16), text.split()) for a, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)]
    ops = [(a, words[1] if words[0].startswith("@") else words[0]) for a, words in lines]   # skip a predicate
    loops = [(int(m[1], 16), a) for a, words in lines
             if (m := re.search(r"BRA (0x[0-9a-f]+)", " ".join(words))) and int(m[1], 16) < a]
    start, end = max(loops, key=lambda se: se[1] - se[0], default=(0, -1))
    return [op for a, op in ops if start <= a <= end]


if __name__ == "__main__":
    if sys.argv[1] == "attention":   # the head widths it takes at the paper's context (h32 to h256)
        print(json.dumps({name: [attention_resources(kernel, attention.MAX_T, hd) for hd in (4, 8, 16, 32)]
                          for name, kernel in (("fwd", attention._attention_fwd_kernel),
                                               ("bwd", attention._attention_bwd_kernel))},
                         indent=1))
        sys.exit()
    cp = int(sys.argv[1])
    out = {}
    for name, kernel in fused_loss._KERNELS.items():
        out[name] = []
        for config in fused_loss._configs(name, cp):
            out[name].append({**config.kwargs, "warps": config.num_warps, "stages": config.num_stages,
                              **resources(kernel, config, cp)})
    print(json.dumps(out, indent=1))
