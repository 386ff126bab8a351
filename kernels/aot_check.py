"""Compile the fused kernel ahead of time for a CUDA architecture, no GPU needed: Triton's full
lowering (TTIR -> TTGIR -> LLVM -> PTX) and ptxas, which catch what the CPU interpreter cannot
(constexpr rules, layouts, register pressure). Prints registers and spills per launch plan.

    python -m kernels.aot_check [--arch 90] [--shape B,D,N,k,dtype ...]

Default shapes: kernels.bench's GPU grid, planned for a 132-SM device (an H100 or H200).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels import triton_topk as tk
from kernels.bench import DTYPES, GPU_GRID

H100_SMS = 132
TL_DTYPES = {"fp32": tl.float32, "fp16": tl.float16, "bf16": tl.bfloat16}
MAIN_SIGNATURE = {"bias_ptr": "*fp32", "w_ptr": "*fp32", "val_ptr": "*fp32", "idx_ptr": "*i64", "part_ptr": "*i64",
                  "flag_ptr": "*i32", **{name: "i32" for name in ("B", "N", "D", "stride_q", "stride_k", "chunk_len", "n_chunks", "k_out")}}


def ptxas_usage(ptx: str, arch: int) -> str:
    """ptxas -v's register and spill line for the compiled PTX."""
    from triton.backends.nvidia.compiler import get_ptxas  # noqa: PLC0415 - the ptxas triton itself runs

    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        out = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}a" if arch >= 90 else f"--gpu-name=sm_{arch}",
                              f.name, "-o", "/dev/null"], capture_output=True, text=True, check=True).stderr
    regs = re.search(r"Used (\d+) registers", out)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
    return f"{regs.group(1) if regs else '?'} registers, spills {spills.group(1) + '/' + spills.group(2) if spills else '?'} B"


def compile_plan(b: int, d: int, n: int, k: int, dtype: str, arch: int) -> str:
    kpad = tk._pow2(k)
    plan = tk.plan_launch(b, d, n, kpad, DTYPES[dtype].itemsize, 4 * H100_SMS)  # as target_programs on 132 SMs
    constexprs = dict(HAS_BIAS=True, HAS_WEIGHT=True, FINAL=plan.chunks == 1, USE_DOT=plan.use_dot, DOT_DTYPE=TL_DTYPES[dtype],
                      IEEE_FP32=dtype == "fp32", BLOCK_B=plan.block_b, BLOCK_N=plan.block_n, BLOCK_D=plan.block_d, KPAD=kpad,
                      LOG_B=tk._log2(plan.block_b), LOG_BN=tk._log2(plan.block_n), LOG_K=tk._log2(kpad))
    signature = {"q_ptr": f"*{dtype}", "k_ptr": f"*{dtype}", **MAIN_SIGNATURE}
    compiled = triton.compile(ASTSource(tk._score_topk_kernel, signature, constexprs), target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": plan.num_warps, "num_stages": plan.num_stages})
    return f"{plan.launches} launch(es), {plan.chunks} chunks of {plan.chunk_len}, tiles {plan.block_b}x{plan.block_n}x{plan.block_d}: " \
           f"{ptxas_usage(compiled.asm['ptx'], arch)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernels.aot_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--shape", action="append", default=None, help="B,D,N,k,dtype (repeatable)")
    args = ap.parse_args(argv)
    try:
        shapes = [(*map(int, s.split(",")[:4]), s.split(",")[4]) for s in args.shape] if args.shape else GPU_GRID
    except (ValueError, IndexError):
        print("error: --shape wants B,D,N,k,dtype, e.g. 1,384,1000000,10,fp16", file=sys.stderr)
        return 2
    for b, d, n, k, dtype in shapes:
        started = time.perf_counter()
        print(f"B={b} D={d} N={n:,} k={k} {dtype}: {compile_plan(b, d, n, k, dtype, args.arch)} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
