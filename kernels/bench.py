"""Benchmark score_topk: the fused Triton kernel against the torch reference, measured side by
side in one run, for a grid of (B, D, N, k, dtype), with the cost term (key_bias, query_weight).

    python -m kernels.bench [--grid gpu|cpu] [--repeats N] [--json PATH]

On CUDA, per shape: the fused time and the reference's (triton.testing.do_bench: CUDA events,
median), their ratio, kernel launches per call (torch.profiler), and the fused kernel's achieved
bandwidth (bytes it must move: keys, queries, bias, weights, partials, results) as a fraction
of the device's peak (PEAK_BYTES_PER_S by device name). Without CUDA it says so and times the
reference only, on the CPU; with TRITON_INTERPRET=1 it also times the interpreted kernel on a
tiny shape, labelled: a correctness tool, not a performance figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from kernels.reference import score_topk_reference, unit_rows

# HBM/GDDR peak by device name (vendor datasheets); the longest matching key wins.
PEAK_BYTES_PER_S = {
    "H200": 4.8e12,
    "H100 NVL": 3.9e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,  # SXM5 80GB HBM3
    "GH200": 4.0e12,
    "A100-SXM4-80GB": 2.039e12,
    "A100 80GB PCIe": 1.935e12,
    "A100": 1.555e12,  # 40GB
    "L40S": 0.864e12,
    "L4": 0.3e12,
    "A10G": 0.6e12,
    "RTX 4090": 1.008e12,
    "V100": 0.9e12,
    "T4": 0.32e12,
}

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
K_DEFAULT = 10
# (B, D, N, k, dtype). The first three rows are the issue's H200 targets.
GPU_GRID = [
    (1, 384, 1_000_000, K_DEFAULT, "fp16"),
    (256, 384, 100_000, K_DEFAULT, "fp16"),
    (32, 384, 1_000, K_DEFAULT, "fp16"),
    (1, 384, 1_000_000, K_DEFAULT, "fp32"),
    (256, 384, 100_000, K_DEFAULT, "fp32"),
    (32, 384, 1_000, K_DEFAULT, "fp32"),
    (8, 768, 200_003, 16, "bf16"),
    (64, 1024, 100_000, 64, "fp16"),
    (4, 385, 1_000_001, 1, "fp32"),
]
CPU_GRID = [
    (1, 384, 2_225, K_DEFAULT, "fp32"),  # carrot on RouterBench's train split: the gateway's case
    (1, 384, 100_000, K_DEFAULT, "fp32"),
    (32, 384, 1_000, K_DEFAULT, "fp32"),
    (256, 384, 10_000, K_DEFAULT, "fp32"),
]
INTERPRETER_SHAPE = (2, 64, 256, 8, "fp32")


@dataclass
class Row:
    b: int
    d: int
    n: int
    k: int
    dtype: str
    reference_ms: float
    fused_ms: float | None = None
    ratio: float | None = None  # reference time / fused time
    fused_launches: int | None = None
    reference_launches: int | None = None
    bandwidth_tb_s: float | None = None
    peak_fraction: float | None = None
    label: str = ""


def peak_bandwidth(name: str) -> float | None:
    hits = [key for key in PEAK_BYTES_PER_S if key.lower() in name.lower()]
    return PEAK_BYTES_PER_S[max(hits, key=len)] if hits else None


def inputs(b: int, d: int, n: int, dtype: str, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(0)
    dt = DTYPES[dtype]
    return {
        "queries": torch.randn(b, d, device=device, generator=g).to(dt),
        "keys": unit_rows(torch.randn(n, d, device=device, generator=g)).to(dt),
        "key_bias": torch.rand(n, device=device, generator=g),
        "query_weight": torch.rand(b, device=device, generator=g),
    }


def bytes_moved(b: int, d: int, n: int, k: int, dtype: str, chunks: int) -> int:
    """The least the fused kernel must read and write: every key once, the rest is small."""
    item = DTYPES[dtype].itemsize
    kpad = 1 << max(0, (k - 1).bit_length())
    partials = 2 * b * chunks * kpad * 8 if chunks > 1 else 0
    return n * d * item + b * d * item + n * 4 + b * 4 + b * min(k, n) * 12 + partials


def cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def count_launches(fn: Callable[[], object]) -> int | None:
    """CUDA kernels one call launches (copies and memsets not counted); None if the profiler fails."""
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    fn()
    torch.cuda.synchronize()
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
    except RuntimeError as exc:
        print(f"warning: torch.profiler could not count launches: {exc}", file=sys.stderr)
        return None
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and "memcpy" not in e.name.lower()
               and "memset" not in e.name.lower())


def bench_gpu(grid: list[tuple[int, int, int, int, str]], repeats: int) -> list[Row]:
    from triton.testing import do_bench  # noqa: PLC0415

    from kernels.triton_topk import plan_launch, score_topk_triton, target_programs  # noqa: PLC0415

    device = torch.device("cuda")
    peak = peak_bandwidth(torch.cuda.get_device_name(device))
    rows = []
    for b, d, n, k, dtype in tqdm(grid, desc="shapes"):
        x = inputs(b, d, n, dtype, "cuda")
        fused = lambda: score_topk_triton(**x, k=k, keys_normalized=True)  # noqa: E731
        ref = lambda: score_topk_reference(**x, k=k, keys_normalized=True)  # noqa: E731
        got, want = fused(), ref()
        if not torch.equal(got[1], want[1]):  # a benchmark of a wrong answer is worth nothing
            mismatch = (got[1] != want[1]).float().mean().item()
            print(f"warning: B={b} D={d} N={n} k={k} {dtype}: {mismatch:.2%} of indices differ from the reference", file=sys.stderr)
        fused_ms = do_bench(fused, warmup=5, rep=max(25, repeats))
        ref_ms = do_bench(ref, warmup=5, rep=max(25, repeats))
        chunks = plan_launch(b, d, n, 1 << max(0, (k - 1).bit_length()), DTYPES[dtype].itemsize, target_programs(device)).chunks
        bw = bytes_moved(b, d, n, k, dtype, chunks) / (fused_ms * 1e-3)
        rows.append(Row(b, d, n, k, dtype, ref_ms, fused_ms, ref_ms / fused_ms, count_launches(fused), count_launches(ref),
                        bw / 1e12, bw / peak if peak else None))
    return rows


def bench_cpu(grid: list[tuple[int, int, int, int, str]], repeats: int, interpret: bool) -> list[Row]:
    rows = []
    for b, d, n, k, dtype in tqdm(grid, desc="shapes"):
        x = inputs(b, d, n, dtype, "cpu")
        rows.append(Row(b, d, n, k, dtype, cpu_ms(lambda: score_topk_reference(**x, k=k, keys_normalized=True), repeats)))
    if interpret:
        from kernels.triton_topk import INTERPRETED, score_topk_triton  # noqa: PLC0415

        if INTERPRETED:
            b, d, n, k, dtype = INTERPRETER_SHAPE
            x = inputs(b, d, n, dtype, "cpu")
            rows.append(Row(b, d, n, k, dtype, cpu_ms(lambda: score_topk_reference(**x, k=k, keys_normalized=True), 3),
                            cpu_ms(lambda: score_topk_triton(**x, k=k, keys_normalized=True), 1),
                            label="Triton interpreter (TRITON_INTERPRET=1): not a performance figure"))
    return rows


def fmt(v: float | int | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[Row]) -> str:
    lines = ["| B | D | N | k | dtype | fused (ms) | reference (ms) | reference / fused | launches fused / ref | TB/s | of peak | note |",
             "|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---|"]
    for r in rows:
        launches = "-" if r.fused_launches is None else f"{r.fused_launches} / {r.reference_launches}"
        lines.append(f"| {r.b} | {r.d} | {r.n:,} | {r.k} | {r.dtype} | {fmt(r.fused_ms, '.4f')} | {r.reference_ms:.4f} | "
                     f"{fmt(r.ratio, '.2f')} | {launches} | {fmt(r.bandwidth_tb_s, '.2f')} | {fmt(r.peak_fraction, '.0%')} | {r.label} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os  # noqa: PLC0415

    ap = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", choices=("gpu", "cpu"), default=None, help="default: gpu on CUDA, cpu otherwise")
    ap.add_argument("--repeats", type=int, default=20, help="CPU: timed calls per shape; GPU: do_bench ms budget")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        print("error: --repeats must be >= 1", file=sys.stderr)
        return 2
    cuda = torch.cuda.is_available()
    grid = GPU_GRID if (args.grid or ("gpu" if cuda else "cpu")) == "gpu" else CPU_GRID
    if cuda:
        try:
            import triton  # noqa: F401, PLC0415
        except ImportError:
            print("error: CUDA is here but triton is not installed: pip install -e '.[triton]'", file=sys.stderr)
            return 2
        name = torch.cuda.get_device_name()
        peak = peak_bandwidth(name)
        print(f"device: {name}; peak {fmt(peak and peak / 1e12, '.2f')} TB/s" + ("" if peak else " (not in PEAK_BYTES_PER_S)"))
        rows = bench_gpu(grid, args.repeats)
    else:
        print("no CUDA device here: timing the torch reference only, on the CPU (the fused kernel needs a GPU)")
        rows = bench_cpu(grid, args.repeats, interpret=os.environ.get("TRITON_INTERPRET") == "1")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.1f}; "
          "cost term on (key_bias, query_weight)\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
