"""`stack`: CARROT's plug-in estimators combined by stacked generalization (Wolpert 1992).

Why: on routing data most of a model's predictable quality is its mean on the query's task
(kNN, ridge and MF each recover it, each with its own noise), and the per-prompt signal on top
is weak. So the level-0 estimators here are
- `group`: each model's mean score and cost on the query's task, the task read off the
  nearest training-task centroid of the embedding (k-means clusters when the data has no
  task labels) - the level every other estimator has to beat;
- `carrot` (kNN, k by leave-one-out) and `carrot-linear` (ridge), as fitted by their own kinds;
and the level-1 combiner is, per model, a logistic regression on the level-0 predictions' logits
fitted on OUT-OF-FOLD predictions of the training split (K folds), its L2 strength chosen by
cross-validated log-loss on those rows. Fitting on out-of-fold rows is what lets the combiner
learn how much each estimator's per-prompt deviation is worth without trusting in-sample fits;
its logistic output is also a calibrated probability per model, so the argmax across models
compares like with like. Scores outside 0..1 (graded, unbounded) fall back to ridge as the
combiner (identity link).

Cost and output tokens come from `carrot-linear` (ridge on the embedding; tokens priced by the
gateway like carrot's). Everything saved is numpy: the level-0 routers' arrays under a prefix,
the combiner's coefficients, the centroids and group means.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routers.base import Estimates, Router, cost_reference, fill_missing, training_costs
from routers.carrot import CarrotLinearRouter, CarrotRouter
from routers.dataset import RoutingDataset

BASES: dict[str, type[Router]] = {"carrot": CarrotRouter, "carrot-linear": CarrotLinearRouter}
EPS = 0.01  # logits of 0 and 1 predictions are clipped here: a neighbour mean is often exactly 0 or 1
C_GRID = (0.01, 0.1, 1.0, 10.0)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1.0 - EPS)
    return np.log(p / (1.0 - p)).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fold_index(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[i::k]) for i in range(k)]


class StackRouter(Router):
    kind = "stack"

    def __init__(self, models: list[str], cost_ref: float = 1.0, folds: int = 5, seed: int = 0, clusters: int = 8,
                 **params: Any) -> None:
        super().__init__(models, cost_ref, folds=int(folds), seed=int(seed), clusters=int(clusters), **params)
        self.bases: dict[str, Router] = {}
        self.centroids = np.zeros((0, 0), np.float32)  # [G, D] unit-norm group centroids
        self.group_scores = np.zeros((0, len(models)), np.float32)  # [G, M]
        self.coef = np.zeros((len(models), 0), np.float32)  # [M, F] combiner weights per model
        self.intercept = np.zeros(len(models), np.float32)
        self.lo = np.zeros(len(models), np.float32)
        self.hi = np.ones(len(models), np.float32)

    @property
    def link(self) -> str:
        return str(self.params.get("link", "sigmoid"))

    # -- level 0 ----------------------------------------------------------------------------

    def _groups(self, x: np.ndarray, data: RoutingDataset) -> np.ndarray:
        """Group label per training row: its task, or a k-means cluster where tasks are absent."""
        names = sorted(set(data.tasks))
        if len(names) > 1 or (names and names[0]):
            return np.array([names.index(t) for t in data.tasks])
        from sklearn.cluster import KMeans  # noqa: PLC0415 - training only

        g = max(1, min(self.params["clusters"], len(x) // 20))
        return KMeans(g, n_init=4, random_state=self.params["seed"]).fit_predict(x)

    @staticmethod
    def _group_means(labels: np.ndarray, x: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.unique(labels)
        cents = unit(np.stack([x[labels == g].mean(0) for g in ids]))
        means = np.stack([scores[labels == g].mean(0) for g in ids]).astype(np.float32)
        return cents, means

    @staticmethod
    def _group_predict(x: np.ndarray, cents: np.ndarray, means: np.ndarray) -> np.ndarray:
        return means[np.argmax(unit(x) @ cents.T, axis=1)]

    def _level0(self, x: np.ndarray, bases: dict[str, Router], cents: np.ndarray, means: np.ndarray) -> list[np.ndarray]:
        """Level-0 quality predictions, each [B, M]: the group mean, then each base's."""
        return [self._group_predict(x, cents, means)] + [bases[k].estimate(x).quality for k in BASES]

    def _features(self, preds: list[np.ndarray], m: int) -> np.ndarray:
        cols = [p[:, m] for p in preds]
        return np.stack([logit(c) for c in cols] if self.link == "sigmoid" else cols, axis=1)

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> StackRouter:
        import warnings  # noqa: PLC0415

        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - ships with sklearn

        # One BLAS thread: the fits are many and small (see routers.mlp). sklearn's
        # FutureWarnings about LogisticRegressionCV's defaults say nothing about this fit.
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", FutureWarning)
            return self._fit(embeddings, data)

    def _fit(self, embeddings: np.ndarray, data: RoutingDataset) -> StackRouter:
        costs = training_costs(data, self.kind)
        x = np.asarray(embeddings, np.float32)
        scores = fill_missing(data.scores)
        known = np.isfinite(data.scores)
        in_unit = bool(known.any()) and float(np.nanmin(data.scores)) >= 0.0 and float(np.nanmax(data.scores)) <= 1.0
        self.params["link"] = "sigmoid" if in_unit else "identity"
        labels = self._groups(x, data)
        n = len(x)
        k = max(2, min(self.params["folds"], n // 10)) if n >= 20 else 0
        # Out-of-fold level-0 predictions: every training row predicted by models that never saw it.
        oof = [np.zeros_like(scores) for _ in range(1 + len(BASES))]
        for f in fold_index(n, k, self.params["seed"]) if k else []:
            rest = np.setdiff1d(np.arange(n), f)
            sub = data.subset(rest)
            bases = {name: cls(self.models).fit(x[rest], sub) for name, cls in BASES.items()}
            cents, means = self._group_means(labels[rest], x[rest], scores[rest])
            for o, p in zip(oof, self._level0(x[f], bases, cents, means)):
                o[f] = p
        self.bases = {name: cls(self.models).fit(x, data) for name, cls in BASES.items()}
        self.centroids, self.group_scores = self._group_means(labels, x, scores)
        if not k:  # too few rows to stack: fall back to the full-data level-0 predictions
            oof = self._level0(x, self.bases, self.centroids, self.group_scores)
        self._fit_combiner(oof, data.scores, known)
        self.lo, self.hi = scores.min(axis=0), scores.max(axis=0)
        self.cost_ref = cost_reference(costs)
        return self

    def _fit_combiner(self, oof: list[np.ndarray], truth: np.ndarray, known: np.ndarray) -> None:
        m_count, f_count = truth.shape[1], len(oof)
        self.coef = np.zeros((m_count, f_count), np.float32)
        self.intercept = np.zeros(m_count, np.float32)
        chosen = []
        for m in range(m_count):
            rows = known[:, m]
            feats, y = self._features(oof, m)[rows], truth[rows, m]
            w, b, c = (self._fit_logistic(feats, y) if self.link == "sigmoid" else self._fit_ridge(feats, y))
            self.coef[m], self.intercept[m] = w, b
            chosen.append(c)
        self.params["combiner_c"] = chosen

    @staticmethod
    def _fit_logistic(feats: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float | None]:
        """Soft-label logistic regression: each row enters as a 1 with weight y and a 0 with
        weight 1 - y, which is cross-entropy against graded scores in 0..1 (exact for 0/1)."""
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV  # noqa: PLC0415

        if len(y) == 0 or y.min() == y.max():  # nothing to learn: the constant rate
            rate = float(y.mean()) if len(y) else 0.5
            return np.zeros(feats.shape[1]), float(logit(np.array([rate]))[0]), None
        xx = np.concatenate([feats, feats])
        yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
        ww = np.concatenate([y, 1.0 - y])
        keep = ww > 0
        xx, yy, ww = xx[keep], yy[keep], ww[keep]
        if len(y) >= 50:
            cv = LogisticRegressionCV(Cs=list(C_GRID), cv=3, scoring="neg_log_loss", max_iter=1000)
            cv.fit(xx, yy, sample_weight=ww)
            c = float(cv.C_[0])
        else:
            c = 1.0
        clf = LogisticRegression(C=c, max_iter=1000).fit(xx, yy, sample_weight=ww)
        return clf.coef_[0].astype(np.float32), float(clf.intercept_[0]), c

    @staticmethod
    def _fit_ridge(feats: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float | None]:
        from sklearn.linear_model import RidgeCV  # noqa: PLC0415

        r = RidgeCV(alphas=[1.0 / c for c in C_GRID]).fit(feats, y)
        return r.coef_.astype(np.float32), float(r.intercept_), float(1.0 / r.alpha_)

    # -- serving ------------------------------------------------------------------------------

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        x = np.asarray(embeddings, np.float32)
        preds = self._level0(x, self.bases, self.centroids, self.group_scores)
        z = np.stack([self._features(preds, m) @ self.coef[m] + self.intercept[m] for m in range(len(self.models))], 1)
        quality = 1.0 / (1.0 + np.exp(-z)) if self.link == "sigmoid" else np.clip(z, self.lo, self.hi)
        linear = self.bases["carrot-linear"].estimate(x)
        return Estimates(quality=quality.astype(np.float32), cost=linear.cost, output_tokens=linear.output_tokens)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"centroids": self.centroids, "group_scores": self.group_scores, "coef": self.coef,
               "intercept": self.intercept, "lo": self.lo, "hi": self.hi}
        for name, router in self.bases.items():
            out |= {f"{name}__{k}": v for k, v in router.arrays().items()}
        return out

    def meta(self) -> dict[str, Any]:
        self.params["base_params"] = {name: r.params for name, r in self.bases.items()}
        return super().meta()

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids, self.group_scores = arrays["centroids"], arrays["group_scores"]
        self.coef, self.intercept, self.lo, self.hi = arrays["coef"], arrays["intercept"], arrays["lo"], arrays["hi"]
        base_params = self.params.get("base_params", {})
        self.bases = {}
        for name, cls in BASES.items():
            router = cls(self.models, self.cost_ref, **base_params.get(name, {}))
            router.load_arrays({k[len(name) + 2:]: v for k, v in arrays.items() if k.startswith(f"{name}__")})
            self.bases[name] = router
