"""Plain torch reference for score_topk: normalize, matmul, add the cost term, topk."""

from __future__ import annotations

import torch


def check_finite(name: str, t: torch.Tensor | None) -> None:
    if t is not None and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"score_topk: {name} contains NaN or inf")


def score_topk_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    key_bias: torch.Tensor | None = None,
    query_weight: torch.Tensor | None = None,
    keys_normalized: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """score[b, n] = cos(q_b, key_n) - query_weight[b] * key_bias[n]; top k per row.

    Returns (values[B, min(k, N)], indices[B, min(k, N)]) in descending score; ties go to
    the lower key index (a stable descending sort guarantees it).
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"score_topk: shapes {tuple(queries.shape)} and {tuple(keys.shape)} do not match")
    if k < 1:
        raise ValueError("score_topk: k must be >= 1")
    # Pre-normalized keys belong to a fitted router, checked once when it was fitted or loaded;
    # scanning N x D keys on every request would dominate the hot path.
    for name, t in (("queries", queries), ("keys", None if keys_normalized else keys), ("key_bias", key_bias), ("query_weight", query_weight)):
        check_finite(name, t)
    b, n = queries.shape[0], keys.shape[0]
    kk = min(k, n)
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    kt = keys.float() if keys_normalized else torch.nn.functional.normalize(keys.float(), dim=1)
    scores = q @ kt.T
    if key_bias is not None:
        w = query_weight.float().reshape(b, 1) if query_weight is not None else 1.0
        scores = scores - w * key_bias.float().reshape(1, n)
    if b == 0 or n == 0:
        return scores.new_zeros((b, kk)), torch.zeros((b, kk), dtype=torch.long)
    values, indices = torch.sort(scores, dim=1, descending=True, stable=True)
    return values[:, :kk].contiguous(), indices[:, :kk].contiguous()
