"""RouteLLM's matrix-factorization router (arXiv 2406.18665), generalized from pairwise
preferences over two models to absolute per-prompt scores over N models.

RouteLLM's MFModel scores a (prompt, model) pair as  c . (normalize(v_m) * W e_q)  with a
learned model embedding v_m, a text projection W (no bias) and a classifier vector c, and
trains the difference of two such logits on win/loss labels. Here each model's score is
regressed directly, so each model also gets a bias b_m (its base rate, which the pairwise
difference cancelled):

    logit(q, m) = c . (normalize(v_m) * (W e_q)) + b_m

Scores within 0..1 (RouterBench's 0/1 correctness, or graded scores) use a sigmoid link and
binary cross-entropy, which is still minimized at the mean for soft targets; other scales use
the identity link and squared error. Missing scores (NaN) are simply left out of the loss,
which is what factorization is for. torch trains it (CPU, seeded, full batch Adam, the step
with the best loss on a held-out tenth of the prompts is kept); the weights are stored as
numpy arrays and `estimate` is numpy, so serving needs no torch model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routers.base import Estimates, Router, cost_reference, training_costs
from routers.dataset import RoutingDataset
from routers.linear import LinearCost


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form


class MfRouter(Router):
    kind = "mf"

    def __init__(self, models: list[str], cost_ref: float = 1.0, dim: int = 64, steps: int = 400, lr: float = 3e-3,
                 weight_decay: float = 1e-4, seed: int = 0, **params: Any) -> None:
        super().__init__(models, cost_ref, dim=int(dim), steps=int(steps), lr=float(lr), weight_decay=float(weight_decay),
                         seed=int(seed), **params)
        self.proj = np.zeros((0, dim), dtype=np.float32)  # W: [D, d]
        self.model_emb = np.zeros((len(models), dim), dtype=np.float32)  # normalize(v_m): [M, d]
        self.classifier = np.zeros(dim, dtype=np.float32)  # c: [d]
        self.bias = np.zeros(len(models), dtype=np.float32)  # b_m: [M]
        self.cost = LinearCost()

    @property
    def link(self) -> str:
        return str(self.params.get("link", "sigmoid"))

    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> MfRouter:
        costs = training_costs(data, self.kind)
        x = np.asarray(embeddings, dtype=np.float32)
        known = np.isfinite(data.scores)
        y = np.where(known, data.scores, 0.0).astype(np.float32)
        in_unit = bool(known.any()) and float(y[known].min()) >= 0.0 and float(y[known].max()) <= 1.0
        self.params["link"] = "sigmoid" if in_unit else "identity"
        self._train(x, y, known)
        self.cost.fit(x, costs)
        self.cost_ref = cost_reference(costs)
        return self

    def _train(self, x: np.ndarray, y: np.ndarray, known: np.ndarray) -> None:
        import torch  # noqa: PLC0415 - training only

        p = self.params
        gen = torch.Generator().manual_seed(p["seed"])
        n, m, d = len(x), len(self.models), p["dim"]
        # Hold out a tenth of the prompts to pick the stopping step (none when data is tiny).
        order = torch.randperm(n, generator=gen)
        n_val = n // 10 if n >= 50 else 0
        val_idx, tr_idx = order[:n_val], order[n_val:]
        xt, yt, mt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(known.astype(np.float32))

        proj = torch.nn.Parameter(torch.randn(x.shape[1], d, generator=gen) / np.sqrt(x.shape[1]))
        emb = torch.nn.Parameter(torch.randn(m, d, generator=gen))
        clf = torch.nn.Parameter(torch.randn(d, generator=gen) / np.sqrt(d))
        # Start each bias at the model's base rate so early steps learn the per-query part.
        rate = (yt * mt).sum(0) / mt.sum(0).clamp(min=1)
        base = torch.logit(rate.clamp(0.02, 0.98)) if self.link == "sigmoid" else rate
        bias = torch.nn.Parameter(base.clone())
        params = [proj, emb, clf, bias]
        opt = torch.optim.AdamW(params, lr=p["lr"], weight_decay=p["weight_decay"])

        def logits(rows: torch.Tensor) -> torch.Tensor:
            vm = torch.nn.functional.normalize(emb, dim=1)
            return ((xt[rows] @ proj) * clf) @ vm.T + bias

        def loss(rows: torch.Tensor) -> torch.Tensor:
            z, target, mask = logits(rows), yt[rows], mt[rows]
            if self.link == "sigmoid":
                per = torch.nn.functional.binary_cross_entropy_with_logits(z, target, reduction="none")
            else:
                per = (z - target) ** 2
            return (per * mask).sum() / mask.sum().clamp(min=1)

        best = (float("inf"), [t.detach().clone() for t in params], 0)
        for step in range(1, p["steps"] + 1):
            opt.zero_grad()
            loss(tr_idx).backward()
            opt.step()
            if step % 10 == 0 or step == p["steps"]:
                with torch.no_grad():
                    score = float(loss(val_idx if n_val else tr_idx))
                if score < best[0]:
                    best = (score, [t.detach().clone() for t in params], step)
        proj_b, emb_b, clf_b, bias_b = best[1]
        self.proj = proj_b.numpy().astype(np.float32)
        self.model_emb = torch.nn.functional.normalize(emb_b, dim=1).numpy().astype(np.float32)
        self.classifier = clf_b.numpy().astype(np.float32)
        self.bias = bias_b.numpy().astype(np.float32)
        self.params["best_step"] = best[2]
        self.params["val_loss"] = round(best[0], 6)

    def predict_scores(self, embeddings: np.ndarray) -> np.ndarray:
        z = ((np.asarray(embeddings, dtype=np.float32) @ self.proj) * self.classifier) @ self.model_emb.T + self.bias
        return sigmoid(z).astype(np.float32) if self.link == "sigmoid" else z.astype(np.float32)

    def estimate(self, embeddings: np.ndarray) -> Estimates:
        return Estimates(quality=self.predict_scores(embeddings), cost=self.cost.predict(embeddings))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"proj": self.proj, "model_emb": self.model_emb, "classifier": self.classifier, "bias": self.bias,
                **self.cost.arrays()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.proj, self.model_emb = arrays["proj"], arrays["model_emb"]
        self.classifier, self.bias = arrays["classifier"], arrays["bias"]
        self.cost.load_arrays(arrays)
