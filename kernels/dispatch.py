"""Pick the score_topk implementation: the fused Triton kernel on CUDA, the reference elsewhere.

The choice, in order: the `impl` argument, then `SWITCHYARD_SCORE_TOPK`, each one of
auto | reference | triton. `auto` takes Triton for CUDA tensors when triton is installed and
k <= its MAX_K, the reference otherwise; naming `triton` fails loudly when it cannot run
(no triton, CPU tensors without TRITON_INTERPRET=1, k too large) instead of falling back.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from kernels.reference import ERROR_PREFIX, score_topk_reference

ENV = "SWITCHYARD_SCORE_TOPK"
CHOICES = ("auto", "reference", "triton")
Array = np.ndarray | torch.Tensor


def _as_tensor(x: Array | None) -> torch.Tensor | None:
    if x is None or isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(x))


def choose(q: torch.Tensor, k: int, impl: str | None = None) -> str:
    """The implementation a call would use: 'reference' or 'triton'."""
    choice = impl or os.environ.get(ENV) or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ERROR_PREFIX} unknown implementation {choice!r}: want one of {', '.join(CHOICES)} ({ENV} or impl=)")
    if choice != "auto":
        return choice
    if not q.is_cuda:
        return "reference"
    try:
        from kernels.triton_topk import MAX_K  # noqa: PLC0415 - triton is an optional extra
    except ImportError:
        return "reference"
    return "triton" if k <= MAX_K else "reference"


def score_topk(
    queries: Array,
    keys: Array,
    k: int,
    key_bias: Array | None = None,
    query_weight: Array | None = None,
    keys_normalized: bool = False,
    impl: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k keys per query by cosine similarity minus query_weight[b] * key_bias[n].

    queries [B, D], keys [N, D] (numpy or torch; fp32, fp16 or bf16), 1 <= k. Returns
    (values [B, min(k, N)] float32, indices [B, min(k, N)] int64), best first, ties to the
    lower index; NaN or inf anywhere raises ValueError. `keys_normalized=True` promises
    unit-norm keys (a fitted router's) and skips normalizing them.
    """
    q, kt = _as_tensor(queries), _as_tensor(keys)
    bias, qw = _as_tensor(key_bias), _as_tensor(query_weight)
    if choose(q, k, impl) == "triton":
        from kernels.triton_topk import score_topk_triton  # noqa: PLC0415 - triton is an optional extra

        return score_topk_triton(q, kt, k, bias, qw, keys_normalized=keys_normalized)
    return score_topk_reference(q, kt, k, bias, qw, keys_normalized=keys_normalized)
