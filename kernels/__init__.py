"""Similarity search on the routing hot path: normalize, score, cost-penalize, top-k.

`score_topk` is the one entry point routers call; `reference.py` holds the plain torch
implementation that runs everywhere.
"""

from kernels.dispatch import score_topk

__all__ = ["score_topk"]
