"""Similarity search on the routing hot path: normalize, score, cost-penalize, top-k.

`score_topk` is the one entry point routers call (kernels/dispatch.py picks the
implementation): `reference.py` holds the plain torch one that runs everywhere and defines the
rules, `triton_topk.py` the fused Triton kernel for CUDA (the optional `triton` extra).
"""

from kernels.dispatch import score_topk

__all__ = ["score_topk"]
