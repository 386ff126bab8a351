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

from routers.base import Estimates, Router, cost_reference, fill_missing, training_costs
from routers.dataset import RoutingDataset
from routers.linear import LinearCost


def mlp_forward(x: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray]) -> np.ndarray:
    h = np.asarray(x, dtype=np.float32)
    for w, b in zip(weights[:-1], biases[:-1]):
        h = np.maximum(h @ w + b, 0.0)  # MLPRegressor's default relu
    return (h @ weights[-1] + biases[-1]).reshape(len(h), len(biases[-1]))


def fit_mlp(x: np.ndarray, y: np.ndarray, hidden: int, l2: float, seed: int,
            max_iter: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from sklearn.exceptions import ConvergenceWarning  # noqa: PLC0415 - training-only imports
    from sklearn.neural_network import MLPRegressor  # noqa: PLC0415
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - ships with sklearn

    stop = len(x) >= 20  # early stopping holds out a tenth (rounded up) of the rows
    net = MLPRegressor(hidden_layer_sizes=(hidden,), alpha=l2, random_state=seed, max_iter=max_iter, early_stopping=stop,
                       n_iter_no_change=10, batch_size=min(128, len(x) - (-(-len(x) // 10) if stop else 0)))
    # One BLAS thread: the minibatch products are small, and threads cost more than they give
    # (tens of times slower on a busy 2-core machine).
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # stopping at max_iter is fine here
        net.fit(x, y if y.shape[1] > 1 else y[:, 0])
    return [w.astype(np.float32) for w in net.coefs_], [b.astype(np.float32) for b in net.intercepts_]


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
        costs = training_costs(data, self.kind)
        scores = fill_missing(data.scores)  # the MLP needs a full target matrix; NaN -> model mean
        x = np.asarray(embeddings, dtype=np.float32)
        self.weights, self.biases = fit_mlp(x, scores, self.params["hidden"], self.params["alpha"], self.params["seed"],
                                            self.params["max_iter"])
        # Clip predictions to the training range: an identity output layer can overshoot 0..1.
        self.lo, self.hi = scores.min(axis=0), scores.max(axis=0)
        self.cost.fit(x, costs)
        self.cost_ref = cost_reference(costs)
        return self

    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        out = mlp_forward(embeddings, self.weights, self.biases)
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
