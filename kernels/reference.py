"""Plain torch reference for score_topk: normalize, matmul, add the cost term, sort.

It is the definition every implementation must match:
- score[b, n] = cos(q_b, key_n) - query_weight[b] * key_bias[n] (query_weight defaults to 1
  when only key_bias is given; no cost term without key_bias), computed in float32 whatever
  the input dtype;
- rows in descending score, ties to the lower key index (-0.0 and +0.0 are equal);
- k > N returns all N keys: values and indices are [B, min(k, N)], never padded;
- NaN or inf in any input, or a score that overflows float32: ValueError.
"""

from __future__ import annotations

import operator

import torch

ERROR_PREFIX = "score_topk:"


def check_finite(name: str, t: torch.Tensor | None) -> None:
    if t is not None and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{ERROR_PREFIX} {name} contains NaN or inf")


def validate(queries: torch.Tensor, keys: torch.Tensor, k: int, key_bias: torch.Tensor | None,
             query_weight: torch.Tensor | None) -> int:
    """The argument rules shared by every implementation (one message for each mistake); k as an int."""
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"{ERROR_PREFIX} shapes {tuple(queries.shape)} and {tuple(keys.shape)} do not match: want [B, D] and [N, D]")
    try:
        k = -1 if isinstance(k, bool) else operator.index(k)  # ints and numpy integers; not floats or bools
    except TypeError:
        k = -1
    if k < 1:
        raise ValueError(f"{ERROR_PREFIX} k must be an integer >= 1")
    if key_bias is not None and key_bias.numel() != keys.shape[0]:
        raise ValueError(f"{ERROR_PREFIX} key_bias has {key_bias.numel()} values for {keys.shape[0]} keys")
    if query_weight is not None and query_weight.numel() != queries.shape[0]:
        raise ValueError(f"{ERROR_PREFIX} query_weight has {query_weight.numel()} values for {queries.shape[0]} queries")
    return k


def name_nonfinite(queries: torch.Tensor, keys: torch.Tensor, key_bias: torch.Tensor | None,
                   query_weight: torch.Tensor | None) -> None:
    """Raise naming the first input with NaN or inf; if none has, a score overflowed."""
    for name, t in (("queries", queries), ("keys", keys), ("key_bias", key_bias), ("query_weight", query_weight)):
        check_finite(name, t)
    raise ValueError(f"{ERROR_PREFIX} a score overflowed float32 (query_weight * key_bias too large)")


def unit_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm in float32, safe for large magnitudes: each row is first
    divided by a power of two near its largest |value| (exact), so the sum of squares cannot
    overflow (plain F.normalize turns a float32 row of 1e20s into zeros). Zero rows stay zero."""
    x = x.float()
    peak = x.abs().amax(dim=1, keepdim=True) if x.shape[1] else x.new_zeros((x.shape[0], 1))
    scale = torch.where(peak > 0, torch.exp2(-torch.floor(torch.log2(peak))), torch.ones_like(peak))
    return torch.nn.functional.normalize(x * scale, dim=1, eps=eps)


def score_topk_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    key_bias: torch.Tensor | None = None,
    query_weight: torch.Tensor | None = None,
    keys_normalized: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k keys per query; see the module docstring for the rules.

    Returns (values[B, min(k, N)] float32, indices[B, min(k, N)] int64), best first.
    """
    k = validate(queries, keys, k, key_bias, query_weight)
    b, n = queries.shape[0], keys.shape[0]
    kk = min(k, n)
    if b == 0 or n == 0:
        return queries.new_zeros((b, kk), dtype=torch.float32), torch.zeros((b, kk), dtype=torch.long, device=queries.device)
    # The inputs are not scanned one by one (for a fitted router's keys that would be a second
    # pass over N x D per request): any NaN or inf in them reaches the scores, checked below.
    q = unit_rows(queries)
    kt = keys.float() if keys_normalized else unit_rows(keys)
    scores = q @ kt.T
    if key_bias is not None:
        w = query_weight.float().reshape(b, 1) if query_weight is not None else 1.0
        scores = scores - w * key_bias.float().reshape(1, n)
    if not bool(torch.isfinite(scores).all()):
        name_nonfinite(queries, keys, key_bias, query_weight)
    values, indices = torch.sort(scores, dim=1, descending=True, stable=True)
    return values[:, :kk].contiguous(), indices[:, :kk].contiguous()
