"""Fused score_topk in Triton: normalize the queries, dot with the keys, subtract the cost term
and keep a running top-k per query across key tiles, never writing the B x N score matrix.

Design:
- One program owns a block of queries and a chunk of keys. It computes each query's inverse
  norm first (rows scaled by an exact power of two, so squares cannot overflow), then walks
  its chunk in tiles: score = (q . key) / |q| - query_weight[b] * key_bias[n], in float32.
- A (score, index) pair is packed into one int64 whose signed order is "score descending,
  then index ascending" (the float bits mapped to an order-preserving int, shifted over the
  complement of the index), so a bitonic top-k on the integers (_topk, tl.topk's network)
  selects values and indices together and breaks ties by the lower index exactly as the
  reference's stable sort.
  A tile is merged into the running top-k only when it beats the current k-th best of some
  query, so after the first tiles most are rejected by one comparison.
- Up to SINGLE_LAUNCH_MAX_N keys, or when the query blocks alone fill the device, the grid
  has one chunk and the kernel writes the final result: one launch. Otherwise each (query
  block, chunk) program writes its top-k (B x chunks x k int64 partials) and a small merge
  kernel reduces them: two launches.
- Every program writes whether it saw a NaN or inf score (from a NaN or inf in any input, or
  an overflow) into its own flag slot; the wrapper reads the flags back and raises.
- fp16 and bf16 go through tensor cores (products exact, float32 accumulation); float32 uses
  IEEE float32 dots (not tf32), so results match the reference to float32 rounding. With
  fewer than 5 queries a broadcast multiply-add replaces the dot (tl.dot needs 16 rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.runtime.jit import constexpr_function

from kernels.reference import ERROR_PREFIX, name_nonfinite, unit_rows, validate

MAX_K = 64  # the tested range (and the running top-k's register budget); larger k: the reference
SINGLE_LAUNCH_MAX_N = 4096  # at most this many keys: one chunk, one launch
MAX_CHUNKS = 1024
SENTINEL: tl.constexpr = tl.constexpr(-(2**63))  # packs below every real (score, index)


@triton.jit
def _pack(bits, idx):
    """(float32 bits, index) -> int64 ordered by value desc, then index asc."""
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (ordered.to(tl.int64) << 31) | (0x7FFFFFFF - idx).to(tl.int64)


@triton.jit
def _unpack(key):
    ordered = (key >> 31).to(tl.int32)
    bits = ordered ^ ((ordered >> 31) & 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True), (0x7FFFFFFF - (key & 0x7FFFFFFF)).to(tl.int64)


@constexpr_function
def _rank(log_r: int, log_n: int, log_k: int, stage: int) -> int:
    """Hypercube rank at bitonic stage `stage`: each stage past log_k folds one axis away."""
    return log_r + log_n - max(0, stage - log_k)


@constexpr_function
def _span(stage: int, log_k: int) -> int:
    """Compare-exchange steps in a stage: the merge width, capped at the kept 2**log_k."""
    return min(stage, log_k)


@constexpr_function
def _inner(stage: int, log_k: int, step: int) -> int:
    """The innermost-axis number a step exchanges across (high to low)."""
    return min(stage, log_k) - 1 - step


@constexpr_function
def _marker(rank: int, axis: int) -> list[int]:
    """Shape placing a length-2 arange on innermost axis `axis` of a rank-`rank` hypercube."""
    return [1] * (rank - axis - 1) + [2] + [1] * axis


@triton.jit
def _topk(x, LOG_R: tl.constexpr, LOG_N: tl.constexpr, LOG_K: tl.constexpr):
    """The 2**LOG_K largest of each row of x [2**LOG_R, 2**LOG_N] (distinct int64), sorted
    descending: tl.topk's bitonic network (sort blocks of 2**LOG_K, then fold halves with a
    max and re-merge), written out in one function. The partner of an element across a
    hypercube axis is the axis sum minus itself (wrapping int64 arithmetic is exact), where
    tl.topk uses an xor reduction: the same data movement on the GPU, but the interpreter runs
    a sum natively and a custom reduction element by element (~100x slower). Reductions are
    spelled tl.reduce(x, axis, tl.standard's combine) rather than tl.sum / tl.max: the same
    code on the GPU, and the interpreter skips re-patching the language for a nested call.
    Shapes and axes come from constexpr functions: Triton forbids rebinding constexprs."""
    if LOG_K == 0:
        out = tl.reduce(x, 1, tl.standard._elementwise_max, keep_dims=True)
    else:
        h = tl.reshape(x, [2] * (LOG_R + LOG_N))
        for stage in tl.static_range(1, LOG_N + 1):
            if stage > LOG_K:  # keep the larger half of each pair of sorted blocks
                h = tl.reduce(h, _rank(LOG_R, LOG_N, LOG_K, stage) - LOG_K, tl.standard._elementwise_max)
            for step in tl.static_range(_span(stage, LOG_K)):
                y = tl.reduce(h, _rank(LOG_R, LOG_N, LOG_K, stage) - 1 - _inner(stage, LOG_K, step),
                              tl.standard._sum_combine, keep_dims=True) - h
                right = tl.reshape(tl.arange(0, 2), _marker(_rank(LOG_R, LOG_N, LOG_K, stage), _inner(stage, LOG_K, step)))
                if stage == LOG_N:
                    flip = right * 0 + 1  # the final merge: descending everywhere
                else:  # alternate direction between neighbouring blocks
                    flip = tl.reshape(tl.arange(0, 2), _marker(_rank(LOG_R, LOG_N, LOG_K, stage), _span(stage, LOG_K)))
                h = tl.where((h > y) != ((flip ^ right) != 0), y, h)
        out = tl.reshape(h, [x.shape[0], 2**LOG_K])
    return out


@triton.jit
def _merge(run, cand, LOG_R: tl.constexpr, LOG_K: tl.constexpr, LOG_M: tl.constexpr):
    """Top 2**LOG_K of run [R, 2**LOG_K] and cand [R, 2**LOG_M] (LOG_M >= LOG_K), sorted."""
    if LOG_M > LOG_K:
        cand = _topk(cand, LOG_R, LOG_M, LOG_K)
    both = tl.reshape(tl.join(run, cand), [run.shape[0], 2 * run.shape[1]])
    return _topk(both, LOG_R, LOG_K + 1, LOG_K)


@triton.jit
def _store_final(run, rows, row_ok, val_ptr, idx_ptr, k_out, KPAD: tl.constexpr):
    vals, idx = _unpack(run)
    kcol = tl.arange(0, KPAD)
    off = rows.to(tl.int64)[:, None] * k_out + kcol[None, :]
    mask = row_ok[:, None] & (kcol < k_out)[None, :]
    tl.store(val_ptr + off, vals, mask=mask)
    tl.store(idx_ptr + off, idx, mask=mask)


@triton.jit
def _score_topk_kernel(
    q_ptr, k_ptr, bias_ptr, w_ptr, val_ptr, idx_ptr, part_ptr, flag_ptr,
    B, N, D, stride_q, stride_k, chunk_len, n_chunks, k_out,
    HAS_BIAS: tl.constexpr, HAS_WEIGHT: tl.constexpr, FINAL: tl.constexpr, USE_DOT: tl.constexpr,
    DOT_DTYPE: tl.constexpr, IEEE_FP32: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, KPAD: tl.constexpr,
    LOG_B: tl.constexpr, LOG_BN: tl.constexpr, LOG_K: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_c = tl.program_id(1)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    q_row = q_ptr + rows.to(tl.int64)[:, None] * stride_q

    # Each row's scale: 2^(127 - exponent of its peak |value|), clamped to a normal float,
    # made from the bits so it is exact; inf/NaN peaks give NaN, which reaches the scores.
    peak = tl.zeros([BLOCK_B], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        qt = tl.load(q_row + dd[None, :], mask=row_ok[:, None] & (dd < D)[None, :], other=0.0).to(tl.float32)
        peak = tl.maximum(peak, tl.max(tl.abs(qt), axis=1))
    expo = (peak.to(tl.int32, bitcast=True) >> 23) & 0xFF
    scale = (tl.maximum(254 - expo, 1) << 23).to(tl.float32, bitcast=True)
    scale = tl.where(expo == 255, peak * 0.0, scale)
    sumsq = tl.zeros([BLOCK_B], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        qt = tl.load(q_row + dd[None, :], mask=row_ok[:, None] & (dd < D)[None, :], other=0.0).to(tl.float32)
        qt = qt * scale[:, None]
        sumsq += tl.sum(qt * qt, axis=1)
    inv_norm = tl.div_rn(tl.full([BLOCK_B], 1.0, tl.float32), tl.maximum(tl.sqrt_rn(sumsq), 1e-12))
    if HAS_WEIGHT:
        weight = tl.load(w_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
    else:
        weight = tl.full([BLOCK_B], 1.0, tl.float32)

    run = tl.full([BLOCK_B, KPAD], SENTINEL, tl.int64)
    bad = tl.zeros([BLOCK_B], tl.int32)
    n_lo = pid_c * chunk_len
    n_hi = tl.minimum(n_lo + chunk_len, N)
    for n0 in range(n_lo, n_hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < n_hi
        k_row = k_ptr + cols.to(tl.int64)[:, None] * stride_k
        if USE_DOT:
            acc = tl.zeros([BLOCK_B, BLOCK_N], tl.float32)
        else:
            acc3 = tl.zeros([BLOCK_B, BLOCK_N, BLOCK_D], tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            d_ok = dd < D
            qt = tl.load(q_row + dd[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
            qt = qt * scale[:, None]
            kt = tl.load(k_row + dd[None, :], mask=col_ok[:, None] & d_ok[None, :], other=0.0)
            if USE_DOT:
                if IEEE_FP32:
                    acc = tl.dot(qt, tl.trans(kt.to(tl.float32)), acc, input_precision="ieee")
                else:
                    acc = tl.dot(qt.to(DOT_DTYPE), tl.trans(kt.to(DOT_DTYPE)), acc)
            else:
                acc3 += qt[:, None, :] * kt.to(tl.float32)[None, :, :]
        if not USE_DOT:
            acc = tl.reduce(acc3, 2, tl.standard._sum_combine)
        score = acc * inv_norm[:, None]
        if HAS_BIAS:
            bias = tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
            score = score - weight[:, None] * bias[None, :]
        score = tl.where(score == 0.0, 0.0, score)  # -0.0 ranks equal to +0.0, as in the reference
        bits = score.to(tl.int32, bitcast=True)
        valid = row_ok[:, None] & col_ok[None, :]
        nonfinite = valid & (((bits >> 23) & 0xFF) == 0xFF)
        bad = tl.maximum(bad, tl.reduce(nonfinite.to(tl.int32), 1, tl.standard._elementwise_max))
        key = tl.where(valid, _pack(bits, cols), SENTINEL)
        better = tl.reduce(key, 1, tl.standard._elementwise_max) > tl.reduce(run, 1, tl.standard._elementwise_min)
        if tl.reduce(better.to(tl.int32), 0, tl.standard._elementwise_max) > 0:
            run = _merge(run, key, LOG_B, LOG_K, LOG_BN)

    if FINAL:
        _store_final(run, rows, row_ok, val_ptr, idx_ptr, k_out, KPAD)
    else:
        kcol = tl.arange(0, KPAD)
        off = (rows.to(tl.int64)[:, None] * n_chunks + pid_c) * KPAD + kcol[None, :]
        tl.store(part_ptr + off, run, mask=row_ok[:, None])
    tl.store(flag_ptr + pid_b * n_chunks + pid_c, tl.max(bad, axis=0))


@triton.jit
def _merge_kernel(part_ptr, val_ptr, idx_ptr, B, n_chunks, k_out,
                  BLOCK_B: tl.constexpr, KPAD: tl.constexpr, GROUP: tl.constexpr,
                  LOG_K: tl.constexpr, LOG_G: tl.constexpr):
    """Reduce the partials [B, n_chunks, KPAD] to the final [B, k_out], GROUP chunks a step."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    j = tl.arange(0, GROUP * KPAD)
    total = n_chunks * KPAD
    base = part_ptr + rows.to(tl.int64)[:, None] * total
    run = tl.full([BLOCK_B, KPAD], SENTINEL, tl.int64)
    for c0 in range(0, total, GROUP * KPAD):
        cand = tl.load(base + c0 + j[None, :], mask=row_ok[:, None] & (c0 + j < total)[None, :], other=SENTINEL)
        run = _merge(run, cand, 0, LOG_K, LOG_G + LOG_K)
    _store_final(run, rows, row_ok, val_ptr, idx_ptr, k_out, KPAD)


# Decided when this module was imported: triton.jit reads TRITON_INTERPRET at decoration.
INTERPRETED = type(_score_topk_kernel).__name__ == "InterpretedFunction"


@dataclass(frozen=True)
class LaunchPlan:
    block_b: int
    block_n: int
    block_d: int
    use_dot: bool
    chunks: int
    chunk_len: int
    num_warps: int
    num_stages: int

    @property
    def launches(self) -> int:
        return 1 if self.chunks == 1 else 2


def _pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def _log2(x: int) -> int:
    return int(x).bit_length() - 1


def target_programs(device: torch.device) -> int:
    """Enough programs to fill the device a few times over (the interpreter: a handful)."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def plan_launch(b: int, d: int, n: int, kpad: int, itemsize: int, programs: int, chunks: int | None = None) -> LaunchPlan:
    """Tile sizes and the N split into chunks, aiming at `programs` programs in all (see
    target_programs). Heuristic, not autotuned: no GPU was at hand to tune on."""
    if b <= 4:  # broadcast path: [BLOCK_B, BLOCK_N, BLOCK_D] products live in registers
        block_b, block_n, use_dot = _pow2(b), max(64, kpad), False
        block_d = max(16, min(_pow2(d), 4096 // (block_b * block_n)))
        warps, stages = 8, 1
    else:
        block_b = 16 if b <= 16 else 32 if b <= 32 else 64
        block_n, use_dot = max(64, kpad), True
        block_d = max(16, min(_pow2(d), 64 if itemsize <= 2 else 32))
        warps, stages = 8, 3
    tiles = triton.cdiv(n, block_n)
    qblocks = triton.cdiv(b, block_b)
    if chunks is None:
        chunks = 1 if n <= SINGLE_LAUNCH_MAX_N else min(MAX_CHUNKS, max(1, triton.cdiv(programs, qblocks)))
    chunk_tiles = triton.cdiv(tiles, max(1, min(chunks, tiles)))
    return LaunchPlan(block_b, block_n, block_d, use_dot, triton.cdiv(tiles, chunk_tiles), chunk_tiles * block_n, warps, stages)


_DOT_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def _kernel_input(t: torch.Tensor) -> torch.Tensor:
    t = t if t.dtype in _DOT_DTYPES else t.float()
    return t if t.stride(-1) == 1 else t.contiguous()


def _check_device(queries: torch.Tensor, keys: torch.Tensor) -> None:
    if queries.device != keys.device:
        raise ValueError(f"{ERROR_PREFIX} queries on {queries.device}, keys on {keys.device}")
    if queries.device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"{ERROR_PREFIX} the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 to interpret it on the CPU)")


def score_topk_triton(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    key_bias: torch.Tensor | None = None,
    query_weight: torch.Tensor | None = None,
    keys_normalized: bool = False,
    chunks: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as kernels.reference.score_topk_reference; `chunks` forces the N split."""
    k = validate(queries, keys, k, key_bias, query_weight)
    if k > MAX_K:
        raise ValueError(f"{ERROR_PREFIX} the Triton kernel takes k <= {MAX_K}, got {k}")
    _check_device(queries, keys)
    b, d = queries.shape
    n = keys.shape[0]
    k_out = min(k, n)
    dev = queries.device
    values = torch.empty((b, k_out), dtype=torch.float32, device=dev)
    indices = torch.empty((b, k_out), dtype=torch.int64, device=dev)
    if b == 0 or n == 0:
        return values, indices
    q = _kernel_input(queries)
    # Raw keys are normalized here, in float32 like the reference: a router's keys are
    # normalized once when it is fitted and come with keys_normalized=True.
    kt = _kernel_input(keys) if keys_normalized else unit_rows(keys).contiguous()
    dot_dtype = torch.promote_types(q.dtype, kt.dtype)
    # The interpreter's tl.dot mishandles bfloat16 (numpy has no bfloat16); bfloat16 products
    # are exact in float32, so the float32 dot computes the same sums there.
    ieee = dot_dtype == torch.float32 or (INTERPRETED and dot_dtype == torch.bfloat16)
    kpad = _pow2(k)
    plan = plan_launch(b, d, n, kpad, dot_dtype.itemsize, target_programs(dev), chunks)
    qblocks = triton.cdiv(b, plan.block_b)
    flags = torch.empty(qblocks * plan.chunks, dtype=torch.int32, device=dev)
    final = plan.chunks == 1
    partials = values if final else torch.empty((b, plan.chunks, kpad), dtype=torch.int64, device=dev)
    bias = key_bias.reshape(-1).contiguous() if key_bias is not None else q
    weight = query_weight.reshape(-1).contiguous() if query_weight is not None else q
    _score_topk_kernel[(qblocks, plan.chunks)](
        q, kt, bias, weight, values, indices, partials, flags,
        b, n, d, q.stride(0), kt.stride(0), plan.chunk_len, plan.chunks, k_out,
        HAS_BIAS=key_bias is not None, HAS_WEIGHT=key_bias is not None and query_weight is not None,
        FINAL=final, USE_DOT=plan.use_dot, DOT_DTYPE=_DOT_DTYPES[dot_dtype],
        IEEE_FP32=ieee,
        BLOCK_B=plan.block_b, BLOCK_N=plan.block_n, BLOCK_D=plan.block_d, KPAD=kpad,
        LOG_B=_log2(plan.block_b), LOG_BN=_log2(plan.block_n), LOG_K=_log2(kpad),
        num_warps=plan.num_warps, num_stages=plan.num_stages,
    )
    if not final:
        group = max(1, min(_pow2(plan.chunks), 1024 // kpad))
        _merge_kernel[(b,)](partials, values, indices, b, plan.chunks, k_out, BLOCK_B=1, KPAD=kpad, GROUP=group,
                            LOG_K=_log2(kpad), LOG_G=_log2(group))
    # A device-to-host copy, not a kernel: the single-launch path stays one launch.
    if bool(flags.cpu().any()):
        name_nonfinite(queries, keys, key_bias, query_weight)
    return values, indices
