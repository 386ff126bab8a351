"""The `stack` router: fits on a real RouterBench slice, beats per-model means on held-out rows,
round-trips its artifact, and serves through `Router.predict` as the gateway calls it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.loaders import load_dataset
from routers.artifacts import load_router, save_router
from routers.base import decide
from routers.dataset import RoutingDataset
from routers.embedder import Embedder, embed_cached
from routers.stack import StackRouter


def _brier(quality: np.ndarray, scores: np.ndarray) -> float:
    known = np.isfinite(scores)
    return float(np.mean((quality[known] - scores[known]) ** 2))


def test_stack_on_routerbench_slice(bench_slice: Path, embedder: Embedder, tmp_path: Path) -> None:
    data = load_dataset(bench_slice)
    train, test = data.split("train"), data.split("test")
    x_train, x_test = embed_cached(embedder, train.prompts), embed_cached(embedder, test.prompts)
    fitted = StackRouter(train.models).fit(x_train, train)
    assert fitted.params["link"] == "sigmoid"  # RouterBench scores are 0/1
    router = load_router(save_router(fitted, tmp_path / "stack.npz"))  # the gateway loads artifacts
    assert isinstance(router, StackRouter)

    est = router.predict(x_test)
    assert est.quality.shape == est.cost.shape == est.output_tokens.shape == (len(test), len(data.models))
    assert ((est.quality > 0) & (est.quality < 1)).all() and (est.cost > 0).all()
    mem = fitted.predict(x_test)  # the artifact reproduces the fitted router
    np.testing.assert_allclose(est.quality, mem.quality, rtol=1e-6)
    np.testing.assert_allclose(est.cost, mem.cost, rtol=1e-6)

    # Held out: better calibrated per-prompt quality than each model's training mean.
    baseline = np.tile(np.nanmean(train.scores, axis=0), (len(test), 1))
    assert _brier(est.quality, test.scores) < _brier(baseline, test.scores)

    # The gateway's decision on one query: w=1 picks the cheapest predicted model.
    d = decide(est.quality[0], est.cost[0], 1.0, router.cost_ref)
    assert d.chosen == [int(np.argmin(est.cost[0]))]


def test_stack_without_task_labels_clusters_and_routes() -> None:
    """No task labels: k-means groups stand in for tasks, and each cluster goes to its winner."""
    rng = np.random.default_rng(3)
    centre = np.zeros((2, 8), np.float32)
    centre[0, 0] = centre[1, 1] = 1
    label = rng.integers(0, 2, 240)
    x = centre[label] + 0.05 * rng.standard_normal((240, 8)).astype(np.float32)
    noise = rng.random((240, 2)) < 0.1  # a tenth of outcomes flipped: the combiner must not overfit them
    scores = (np.stack([label == 0, label == 1], axis=1) ^ noise).astype(np.float32)
    costs = np.tile(np.array([[1e-2, 1e-3]], np.float32), (240, 1))
    data = RoutingDataset(prompts=[f"p{i}" for i in range(240)], models=["a", "b"], scores=scores, costs=costs)
    router = StackRouter(data.models).fit(x, data)
    assert len(router.centroids) >= 2
    est = router.predict(centre + 0.01)
    assert est.quality[0, 0] > 0.7 > est.quality[0, 1] and est.quality[1, 1] > 0.7 > est.quality[1, 0]
