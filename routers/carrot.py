"""CARROT (arXiv 2502.03261): plug-in estimators of each model's score and output tokens from
the query embedding, then argmax (1 - w) * score - w * cost / cost_ref.

Two estimators, as in the paper:
- `carrot` (kNN): the means over the query's k nearest training prompts (cosine), with k chosen
  by leave-one-out cross-validation on the training set;
- `carrot-linear`: ridge regressions on the embedding (strength by sklearn's efficient
  leave-one-out), scores clipped to the training range.

Cost: each estimates the training data's cost directly (what offline evaluation compares) and
the completion tokens; the gateway prices the predicted tokens with each expert's own prices
(input tokens x input price + output tokens x output price), so a deployment whose prices
differ from the training data's still trades correctly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels import score_topk
from routers.base import Estimates, Router, cost_reference, fill_missing, training_costs
from routers.dataset import RoutingDataset
from routers.linear import LinearCost
from routers.tokens import output_token_matrix

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


def training_tokens(data: RoutingDataset) -> np.ndarray:
    return output_token_matrix(data.tasks, data.responses, len(data.models))


class CarrotRouter(Router):
    kind = "carrot"

    def __init__(self, models: list[str], cost_ref: float = 1.0, k: int | None = None, **params: Any) -> None:
        super().__init__(models, cost_ref, k=k, **params)
        self.k = k
        self.keys = np.zeros((0, 0), dtype=np.float32)
        self.scores = np.zeros((0, len(models)), dtype=np.float32)
        self.costs = np.zeros((0, len(models)), dtype=np.float32)
        self.tokens: np.ndarray | None = None

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> CarrotRouter:
        self.costs = training_costs(data, self.kind)
        self.keys = np.ascontiguousarray(embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), dtype=np.float32)
        self.scores = fill_missing(data.scores)
        self.tokens = training_tokens(data)
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
        tokens = None if self.tokens is None else self.tokens[idx].mean(axis=1)
        return Estimates(quality=self.scores[idx].mean(axis=1), cost=self.costs[idx].mean(axis=1), output_tokens=tokens)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"keys": self.keys, "scores": self.scores, "costs": self.costs}
        return out if self.tokens is None else out | {"tokens": self.tokens}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.keys, self.scores, self.costs = arrays["keys"], arrays["scores"], arrays["costs"]
        self.tokens = arrays.get("tokens")  # artifacts from before token estimates have none
        if not np.isfinite(self.keys).all():
            raise ValueError("carrot artifact: keys contain NaN or inf")
        self.k = int(self.params.get("k") or 1)


class CarrotLinearRouter(Router):
    """CARROT's parametric estimator: ridge on the embedding for scores and log output tokens."""

    kind = "carrot-linear"

    def __init__(self, models: list[str], cost_ref: float = 1.0, **params: Any) -> None:
        super().__init__(models, cost_ref, **params)
        self.score = LinearCost()  # a per-model ridge with LOO-chosen strength serves scores as well as costs
        self.tokens = LinearCost()
        self.cost = LinearCost()
        self.lo = np.zeros(len(models), np.float32)
        self.hi = np.ones(len(models), np.float32)

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> CarrotLinearRouter:
        costs = training_costs(data, self.kind)
        scores = fill_missing(data.scores)
        x = np.asarray(embeddings, np.float32)
        self.score.fit(x, scores)
        self.score.floor = np.full(len(self.models), -np.inf, np.float32)  # clipped to [lo, hi] instead
        self.lo, self.hi = scores.min(axis=0), scores.max(axis=0)
        self.tokens.fit(x, np.log1p(training_tokens(data)))  # lengths are skewed: fit the log
        self.cost.fit(x, costs)
        self.cost_ref = cost_reference(costs)
        return self

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        quality = np.clip(self.score.predict(embeddings), self.lo, self.hi)
        return Estimates(quality=quality, cost=self.cost.predict(embeddings), output_tokens=np.expm1(self.tokens.predict(embeddings)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.score.arrays("score_"), **self.tokens.arrays("tokens_"), **self.cost.arrays(), "lo": self.lo, "hi": self.hi}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.score.load_arrays(arrays, "score_")
        self.tokens.load_arrays(arrays, "tokens_")
        self.cost.load_arrays(arrays)
        self.lo, self.hi = arrays["lo"], arrays["hi"]
