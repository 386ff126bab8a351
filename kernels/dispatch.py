"""Pick the score_topk implementation: the fused Triton kernel on CUDA, the reference elsewhere.

`SWITCHYARD_SCORE_TOPK=reference|triton` overrides the choice.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from kernels.reference import score_topk_reference


def _as_tensor(x: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
    if x is None or isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(x))


def score_topk(
    queries: np.ndarray | torch.Tensor,
    keys: np.ndarray | torch.Tensor,
    k: int,
    key_bias: np.ndarray | torch.Tensor | None = None,
    query_weight: np.ndarray | torch.Tensor | None = None,
    keys_normalized: bool = False,
    impl: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k keys per query by cosine similarity minus query_weight[b] * key_bias[n]."""
    q, kt = _as_tensor(queries), _as_tensor(keys)
    bias, qw = _as_tensor(key_bias), _as_tensor(query_weight)
    choice = impl or os.environ.get("SWITCHYARD_SCORE_TOPK", "auto")
    if choice not in ("auto", "reference", "triton"):
        raise ValueError(f"score_topk: unknown implementation {choice!r}")
    if choice == "triton" or (choice == "auto" and q.is_cuda):
        try:
            from kernels.fused import score_topk_triton  # noqa: PLC0415 - triton is optional
        except ImportError:
            if choice == "triton":
                raise
        else:
            return score_topk_triton(q, kt, k, bias, qw)
    return score_topk_reference(q, kt, k, bias, qw, keys_normalized=keys_normalized)
