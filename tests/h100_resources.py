"""Compile fused_loss.py's kernels for an H100 (sm_90) without a GPU and print, per candidate tile of the autotuner,
the shared memory and the local-memory stack (register spills) each needs, as JSON:

    python tests/h100_resources.py 256        # CP, the hidden size rounded up to a power of two

Uses Triton's compiler and the CUDA tools its Linux wheels bundle (ptxas, cuobjdump); TRITON_INTERPRET must be unset.
tests/test_fused_loss.py runs it; it is also how the tiles in fused_loss._configs were chosen."""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fused_loss  # noqa: E402

CUOBJDUMP = Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"


def resources(kernel, config, cp):
    """(shared memory bytes, stack bytes per thread) of `kernel` compiled for sm_90 with this config at width cp."""
    sig = {a: ("*bf16" if a in ("x_ptr", "w_ptr") else "*i64" if a == "t_ptr" else "*fp32") if a.endswith("_ptr")
           else "i32" if a in ("N", "V", "C") else "constexpr" for a in kernel.arg_names}
    constants = {k: v for k, v in dict(config.kwargs, CP=cp, PRECISION="tf32", WITH_GRAD=True).items()
                 if k in kernel.arg_names}
    compiled = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constants),
                              target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": config.num_warps, "num_stages": config.num_stages})
    with tempfile.TemporaryDirectory() as d:
        cubin = Path(d) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run([str(CUOBJDUMP), "-res-usage", str(cubin)], capture_output=True, text=True,
                               check=True).stdout
    return compiled.metadata.shared, int(usage.split("STACK:")[1].split()[0])


if __name__ == "__main__":
    cp = int(sys.argv[1])
    out = {}
    for name, kernel in fused_loss._KERNELS.items():
        out[name] = []
        for config in fused_loss._configs(cp, name == "vocab"):
            shared, stack = resources(kernel, config, cp)
            out[name].append({**config.kwargs, "warps": config.num_warps, "stages": config.num_stages,
                              "shared": shared, "stack": stack})
    print(json.dumps(out, indent=1))
