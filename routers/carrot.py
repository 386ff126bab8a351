"""CARROT (arXiv 2502.03261), kNN estimator: a query's predicted score and cost for each
model are the means over its k nearest training prompts (cosine similarity), with k chosen
by leave-one-out cross-validation on the training set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels import score_topk
from routers.base import Estimates, Router, cost_reference, fill_missing
from routers.dataset import RoutingDataset

K_CANDIDATES = (5, 10, 20, 40, 80, 160)


def neighbours(queries: np.ndarray, keys: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices [B, k] of each query's nearest keys, in chunks to bound memory."""
    out = [score_topk(queries[s : s + chunk], keys, k, keys_normalized=True)[1].numpy() for s in range(0, len(queries), chunk)]
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def loo_neighbours(keys: np.ndarray, k: int) -> np.ndarray:
    """Each training prompt's k nearest other prompts (itself removed)."""
    idx = neighbours(keys, keys, min(k + 1, len(keys)))
    is_self = idx == np.arange(len(keys))[:, None]
    is_self[~is_self.any(1), -1] = True  # a duplicate outranked self: drop the farthest instead
    order = np.argsort(is_self, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)[:, : idx.shape[1] - 1]


class CarrotRouter(Router):
    kind = "carrot"

    def __init__(self, models: list[str], cost_ref: float = 1.0, k: int | None = None, **params: Any) -> None:
        super().__init__(models, cost_ref, k=k, **params)
        self.k = k
        self.keys = np.zeros((0, 0), dtype=np.float32)
        self.scores = np.zeros((0, len(models)), dtype=np.float32)
        self.costs = np.zeros((0, len(models)), dtype=np.float32)

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> CarrotRouter:
        if data.costs is None:
            raise ValueError("carrot needs per-prompt costs (or prices to derive them)")
        self.keys = np.ascontiguousarray(embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), dtype=np.float32)
        self.scores = fill_missing(data.scores)
        self.costs = fill_missing(data.costs)
        self.cost_ref = cost_reference(self.costs)
        if self.k is None:
            self.k = self._choose_k()
        self.params["k"] = self.k
        return self

    def _choose_k(self) -> int:
        candidates = [k for k in K_CANDIDATES if k < len(self.keys)] or [max(1, len(self.keys) - 1)]
        idx = loo_neighbours(self.keys, max(candidates))
        errors = {}
        for k in candidates:
            pred = self.scores[idx[:, :k]].mean(axis=1)
            errors[k] = float(np.mean((pred - self.scores) ** 2))
        self.params["cv_mse"] = {str(k): round(v, 6) for k, v in errors.items()}
        return min(errors, key=errors.get)

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        idx = neighbours(embeddings, self.keys, self.k or 1)
        return Estimates(quality=self.scores[idx].mean(axis=1), cost=self.costs[idx].mean(axis=1))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys, "scores": self.scores, "costs": self.costs}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.keys, self.scores, self.costs = arrays["keys"], arrays["scores"], arrays["costs"]
        if not np.isfinite(self.keys).all():
            raise ValueError("carrot artifact: keys contain NaN or inf")
        self.k = int(self.params.get("k") or 1)
