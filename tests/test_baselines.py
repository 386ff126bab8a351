from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.loaders import load_dataset
from routers.artifacts import ROUTER_KINDS, ArtifactError, build_router, load_router, save_router
from routers.base import Router, decide
from routers.baselines import KnnRouter, oracle_choice
from routers.dataset import RoutingDataset
from routers.embedder import embed_cached
from tests.test_routers import _synthetic

BASELINES = ("random", "cheapest", "best-single", "knn", "mlp", "mf")
LEARNED = ("knn", "mlp", "mf")


def _three_models(n: int = 300) -> tuple[np.ndarray, RoutingDataset]:
    """Random prompts over 3 models: 'hi' scores best and costs most, 'lo' the reverse."""
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((n, 8)).astype(np.float32)
    p_correct = np.array([0.9, 0.6, 0.3])
    scores = (rng.random((n, 3)) < p_correct).astype(np.float32)
    costs = np.array([5e-3, 1e-3, 2e-4], dtype=np.float32) * rng.uniform(0.5, 1.5, (n, 3)).astype(np.float32)
    return emb, RoutingDataset(prompts=[f"p{i}" for i in range(n)], models=["hi", "mid", "lo"], scores=scores, costs=costs)


def _picks(router: Router, emb: np.ndarray, w: float) -> np.ndarray:
    est = router.estimate(emb)
    return np.array([decide(est.quality[i], est.cost[i], w, router.cost_ref).chosen[0] for i in range(len(emb))])


def _cluster_queries() -> np.ndarray:
    q = np.zeros((2, 8), dtype=np.float32)
    q[0, 0] = q[1, 1] = 1  # the centres of cluster 0 (model 'a' wins) and cluster 1 ('b' wins)
    return q


@pytest.mark.parametrize("kind", BASELINES)
def test_baseline_fits_estimates_and_round_trips(kind: str, tmp_path: Path) -> None:
    emb, ds = _synthetic()
    router = build_router(kind, ds.models).fit(emb, ds)
    queries = np.random.default_rng(3).standard_normal((7, 8)).astype(np.float32)
    est = router.estimate(queries)
    assert est.quality.shape == est.cost.shape == (7, 2)
    assert np.isfinite(est.quality).all() and (est.cost > 0).all()
    assert router.estimate(queries[:0]).quality.shape == (0, 2)
    assert router.cost_ref == pytest.approx(1e-2)
    loaded = load_router(save_router(router, tmp_path / f"{kind}.npz"))
    assert type(loaded) is type(router) and loaded.models == ds.models
    again = loaded.estimate(queries)
    np.testing.assert_array_equal(again.quality, est.quality)
    np.testing.assert_array_equal(again.cost, est.cost)


def test_cheapest_always_picks_the_cheapest_model() -> None:
    emb, ds = _three_models()
    router = build_router("cheapest", ds.models).fit(emb, ds)
    for w in np.linspace(0, 1, 11):
        assert set(_picks(router, emb, float(w))) == {2}


def test_best_single_always_picks_the_best_mean_model_at_w0() -> None:
    emb, ds = _three_models()
    router = build_router("best-single", ds.models).fit(emb, ds)
    assert set(_picks(router, emb, 0.0)) == {int(np.argmax(ds.scores.mean(0)))} == {0}
    assert set(_picks(router, emb, 1.0)) == {2}  # same constant estimates, traded fully for cost


def test_random_spreads_over_models_and_is_reproducible() -> None:
    emb, ds = _three_models()
    router = build_router("random", ds.models).fit(emb, ds)
    picks = _picks(router, emb, 0.0)
    assert (np.bincount(picks, minlength=3) > len(emb) * 0.2).all()
    # The same query routes the same way, alone or in any batch, and after a rebuild.
    np.testing.assert_array_equal(_picks(router, emb[::-1], 0.0), picks[::-1])
    np.testing.assert_array_equal(router.estimate(emb[5:6]).quality[0], router.estimate(emb).quality[5])
    np.testing.assert_array_equal(_picks(build_router("random", ds.models).fit(emb, ds), emb, 0.0), picks)
    other = build_router("random", ds.models, seed=1).fit(emb, ds)
    assert (_picks(other, emb, 0.0) != picks).any()


@pytest.mark.parametrize("kind", LEARNED)
def test_learned_baselines_find_which_model_wins_where(kind: str) -> None:
    emb, ds = _synthetic()
    router = build_router(kind, ds.models).fit(emb, ds)
    est = router.estimate(_cluster_queries())
    assert est.quality[0, 0] > est.quality[0, 1] + 0.3  # cluster 0: 'a'
    assert est.quality[1, 1] > est.quality[1, 0] + 0.3  # cluster 1: 'b'
    assert est.cost[0, 0] > est.cost[0, 1] * 5  # 'a' costs 10x
    assert _picks(router, _cluster_queries(), 0.0).tolist() == [0, 1]


def test_knn_uses_fixed_k_without_cross_validation() -> None:
    emb, ds = _synthetic()
    router = build_router("knn", ds.models).fit(emb, ds)
    assert isinstance(router, KnnRouter) and router.k == 40 and "cv_mse" not in router.params
    assert build_router("knn", ds.models, k=5).fit(emb, ds).k == 5
    small = ds.subset(np.arange(10))
    assert build_router("knn", ds.models).fit(emb[:10], small).k == 10  # k never exceeds the training set


def test_mf_ignores_missing_scores() -> None:
    emb, ds = _synthetic()
    scores = ds.scores.copy()
    scores[np.random.default_rng(4).random(scores.shape) < 0.3] = np.nan
    holey = RoutingDataset(prompts=ds.prompts, models=ds.models, scores=scores, costs=ds.costs)
    est = build_router("mf", ds.models).fit(emb, holey).estimate(_cluster_queries())
    assert est.quality[0, 0] > est.quality[0, 1] and est.quality[1, 1] > est.quality[1, 0]


def test_oracle_picks_the_true_best_and_cannot_be_served() -> None:
    scores = np.array([[1, 0, 1], [0, 0, 1], [np.nan, 1, 1], [np.nan, np.nan, np.nan]], dtype=np.float32)
    costs = np.tile(np.array([[3.0, 2.0, 1.0]]), (4, 1))
    costs[0, 2] = 9.0
    assert oracle_choice(scores, costs, 0.0, 9.0).tolist() == [0, 2, 2, -1]  # ties go to the cheaper correct model
    assert oracle_choice(scores, costs, 1.0, 9.0).tolist() == [1, 2, 2, -1]
    assert "oracle" not in ROUTER_KINDS
    with pytest.raises(ArtifactError, match="unknown router kind 'oracle'"):
        build_router("oracle", ["a"])


def test_mlp_and_mf_hold_up_against_best_single_on_real_routerbench_slice(bench_slice: Path, embedder) -> None:
    data = load_dataset(bench_slice)
    train, test = data.split("train"), data.split("test")
    x_train = embed_cached(embedder, train.prompts, progress=False)
    x_test = embed_cached(embedder, test.prompts, progress=False)
    rows = np.arange(len(test))
    quality = {}
    for kind in ("best-single", "mlp", "mf"):
        router = build_router(kind, train.models).fit(x_train, train)
        quality[kind] = float(np.nanmean(test.scores[rows, _picks(router, x_test, 0.0)]))
    print(f"real slice, mean test score at w=0: {quality}")
    assert quality["mlp"] >= quality["best-single"] - 0.05, quality
    assert quality["mf"] >= quality["best-single"] - 0.05, quality
