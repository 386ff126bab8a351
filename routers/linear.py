"""A per-model ridge regression on the query embedding, the parametric estimator several routers share."""

from __future__ import annotations

import numpy as np


class LinearCost:
    """Per-model cost as a ridge regression on the embedding, shared by the mlp and mf routers.

    Chosen over a neighbour mean because it needs no training embeddings in the artifact and
    costs one matmul at serving time. The ridge strength is picked per model by sklearn's
    efficient leave-one-out (GCV). Predictions are floored at the model's cheapest training
    cost: a linear fit can dip below zero, and a free-looking model would win every w=1 query.
    """

    ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)

    def __init__(self) -> None:
        self.coef = np.zeros((0, 0), dtype=np.float32)  # [D, M]
        self.intercept = np.zeros(0, dtype=np.float32)  # [M]
        self.floor = np.zeros(0, dtype=np.float32)  # [M]

    def fit(self, embeddings: np.ndarray, costs: np.ndarray) -> LinearCost:
        from sklearn.linear_model import RidgeCV  # noqa: PLC0415 - only needed when training

        # Regress cost / scale so the ridge penalty means the same whatever the currency unit.
        scale = float(np.abs(costs).mean()) or 1.0
        ridge = RidgeCV(alphas=self.ALPHAS, alpha_per_target=True).fit(embeddings.astype(np.float64), costs / scale)
        self.coef = (np.atleast_2d(ridge.coef_).T * scale).astype(np.float32)
        self.intercept = (np.atleast_1d(ridge.intercept_) * scale).astype(np.float32)
        self.floor = costs.min(axis=0).astype(np.float32)
        return self

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        return np.maximum(embeddings.astype(np.float32) @ self.coef + self.intercept, self.floor)

    def arrays(self, prefix: str = "cost_") -> dict[str, np.ndarray]:
        return {f"{prefix}coef": self.coef, f"{prefix}intercept": self.intercept, f"{prefix}floor": self.floor}

    def load_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "cost_") -> None:
        self.coef, self.intercept, self.floor = (arrays[f"{prefix}{k}"] for k in ("coef", "intercept", "floor"))
