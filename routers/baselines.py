"""Baseline routers to compare against: random, cheapest, best-single, kNN, and the oracle.

All of them fit numpy-only state, so their artifacts are plain npz like carrot's. Costs are
required (as for carrot): every baseline reports a per-model cost so `decide` can trade.

The oracle is not a router: it needs each prompt's true scores, which no query at serving
time has. It is the function `oracle_choice`, for evaluation only, and is deliberately kept
out of ROUTER_KINDS, so `switchyard train oracle` or a gateway config naming it fails with
"unknown router kind 'oracle'" instead of serving something meaningless.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from routers.base import Estimates, Router, cost_reference, decide, fill_missing, training_costs
from routers.carrot import CarrotRouter
from routers.dataset import RoutingDataset
from routers.linear import LinearCost  # noqa: F401 - re-exported for routers written against baselines


def column_means(matrix: np.ndarray) -> np.ndarray:
    """Per-model mean over prompts, ignoring NaN (0 for a model with no values at all)."""
    return fill_missing(matrix).mean(axis=0).astype(np.float32) if len(matrix) else np.zeros(matrix.shape[1], np.float32)


class _ConstantRouter(Router):
    """Shared state of the per-model-constant baselines: mean score and mean cost per model."""

    def __init__(self, models: list[str], cost_ref: float = 1.0, **params: Any) -> None:
        super().__init__(models, cost_ref, **params)
        self.mean_score = np.zeros(len(models), dtype=np.float32)
        self.mean_cost = np.zeros(len(models), dtype=np.float32)

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> _ConstantRouter:
        costs = training_costs(data, self.kind)
        self.mean_score = column_means(data.scores)
        self.mean_cost = column_means(costs)
        self.cost_ref = cost_reference(costs)
        return self

    def _tile(self, row: np.ndarray, batch: int) -> np.ndarray:
        return np.tile(row[None, :], (batch, 1))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mean_score": self.mean_score, "mean_cost": self.mean_cost}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.mean_score, self.mean_cost = arrays["mean_score"], arrays["mean_cost"]


class BestSingleRouter(_ConstantRouter):
    """Each model's mean training score and cost, the same for every query: at w=0 it always
    sends everything to the best model on average; at w>0 to the best single model for that w."""

    kind = "best-single"

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        b = len(embeddings)
        return Estimates(quality=self._tile(self.mean_score, b), cost=self._tile(self.mean_cost, b))


class CheapestRouter(_ConstantRouter):
    """Always the cheapest model on average, at any w.

    Quality is reported as 0 for every model (not the mean score): with equal quality the
    utility can only differ by cost, and `decide` breaks ties toward the cheaper model, so the
    cheapest wins at w=0 as well as w=1. The mean score is kept in the artifact for reference.
    """

    kind = "cheapest"

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        b = len(embeddings)
        return Estimates(quality=np.zeros((b, len(self.models)), np.float32), cost=self._tile(self.mean_cost, b))


class RandomRouter(_ConstantRouter):
    """Quality is a uniform draw per (query, model), so at w=0 the argmax is a uniformly random
    model; cost is each model's mean training cost.

    The draw is seeded from a hash of the query embedding's bytes plus `seed`, not from a
    running generator, so the same query always routes the same way (across restarts, batch
    sizes and processes) while different queries spread over all models.
    """

    kind = "random"

    def __init__(self, models: list[str], cost_ref: float = 1.0, seed: int = 0, **params: Any) -> None:
        super().__init__(models, cost_ref, seed=int(seed), **params)
        self.seed = int(seed)

    def _draw(self, row: np.ndarray) -> np.ndarray:
        digest = hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(), digest_size=16,
                                 key=self.seed.to_bytes(8, "little", signed=True)).digest()
        return np.random.default_rng(int.from_bytes(digest, "little")).random(len(self.models), dtype=np.float32)

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        b = len(embeddings)
        quality = np.stack([self._draw(e) for e in embeddings]) if b else np.zeros((0, len(self.models)), np.float32)
        return Estimates(quality=quality, cost=self._tile(self.mean_cost, b))


class KnnRouter(CarrotRouter):
    """RouterBench's kNN baseline: carrot's estimator (mean score and cost of the k nearest
    training prompts by cosine) with a fixed k instead of one chosen by cross-validation."""

    kind = "knn"
    DEFAULT_K = 40

    def __init__(self, models: list[str], cost_ref: float = 1.0, k: int | None = DEFAULT_K, **params: Any) -> None:
        super().__init__(models, cost_ref, k=int(k or self.DEFAULT_K), **params)

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> KnnRouter:
        self.k = max(1, min(int(self.k or self.DEFAULT_K), len(embeddings)))  # k above n would fail in top-k
        super().fit(embeddings, data)
        return self


def oracle_choice(scores: np.ndarray, costs: np.ndarray, cost_weight: float, cost_ref: float) -> np.ndarray:
    """The oracle's pick per prompt [N] from the true scores and costs [N, M] (evaluation only).

    It ranks with `decide`, so ties break exactly as a router's would (cheaper model first).
    Models with a missing score or cost on a prompt are skipped; a prompt with none gets -1.
    """
    known = np.isfinite(scores) & np.isfinite(costs)
    q, c = np.nan_to_num(scores), np.nan_to_num(costs)
    out = np.full(len(scores), -1, dtype=np.int64)
    for i in np.flatnonzero(known.any(axis=1)):
        out[i] = decide(q[i], c[i], cost_weight, cost_ref, allowed=known[i]).chosen[0]
    return out
