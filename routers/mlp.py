"""RouterBench's MLP baseline: one multi-output MLP predicting every model's score from the
query embedding; cost from a per-model ridge regression (`LinearCost`).

scikit-learn's MLPRegressor does the fitting (Adam, early stopping on a held-out tenth), but
only its weight matrices are kept and the forward pass is numpy, so the artifact is plain npz
and loading needs neither pickle nor sklearn.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from routers.base import cost_reference, Estimates, fill_missing, Router, training_costs
from routers.dataset import RoutingDataset
from routers.linear import LinearCost


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class MlpRouter(Router):
    kind = "mlp"

    def __init__(self, models: list[str], cost_ref: float = 1.0, hidden: int = 128, alpha: float = 1e-3,
                 seed: int = 0, max_iter: int = 200, **params: Any) -> None:
        super().__init__(models, cost_ref, hidden=int(hidden), alpha=float(alpha), seed=int(seed), max_iter=int(max_iter),
                         **params)
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        self.lo = np.zeros(len(models), dtype=np.float32)
        self.hi = np.ones(len(models), dtype=np.float32)
        self.cost = LinearCost()

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> MlpRouter:
        from sklearn.exceptions import ConvergenceWarning  # noqa: PLC0415 - training-only imports
        from sklearn.neural_network import MLPRegressor  # noqa: PLC0415

        costs = training_costs(data, self.kind)
        scores = fill_missing(data.scores)  # the MLP needs a full target matrix; NaN -> model mean
        x = np.asarray(embeddings, dtype=np.float32)
        net = MLPRegressor(
            hidden_layer_sizes=(self.params["hidden"],), alpha=self.params["alpha"], random_state=self.params["seed"],
            max_iter=self.params["max_iter"], early_stopping=len(x) >= 20, n_iter_no_change=10, batch_size=min(128, len(x)),
        )
        with warnings.catch_warnings():  # hitting max_iter is fine for a baseline; don't spam the trainer's output
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(x, scores if scores.shape[1] > 1 else scores[:, 0])
        self.weights = [w.astype(np.float32) for w in net.coefs_]
        self.biases = [b.astype(np.float32) for b in net.intercepts_]
        # Clip predictions to the training range: an identity output layer can overshoot 0..1.
        self.lo, self.hi = scores.min(axis=0), scores.max(axis=0)
        self.cost.fit(x, costs)
        self.cost_ref = cost_reference(costs)
        self.params["epochs"] = int(net.n_iter_)
        return self

    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        h = np.asarray(embeddings, dtype=np.float32)
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = relu(h @ w + b)  # MLPRegressor's default activation
        out = h @ self.weights[-1] + self.biases[-1]
        return np.clip(out, self.lo, self.hi)

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        return Estimates(quality=self.predict_scores(embeddings), cost=self.cost.predict(embeddings))

    def arrays(self) -> dict[str, np.ndarray]:
        layers = {f"w{i}": w for i, w in enumerate(self.weights)} | {f"b{i}": b for i, b in enumerate(self.biases)}
        return {**layers, "lo": self.lo, "hi": self.hi, **self.cost.arrays()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        n = sum(1 for k in arrays if k.startswith("w") and k[1:].isdigit())
        self.weights = [arrays[f"w{i}"] for i in range(n)]
        self.biases = [arrays[f"b{i}"] for i in range(n)]
        self.lo, self.hi = arrays["lo"], arrays["hi"]
        self.cost.load_arrays(arrays)
