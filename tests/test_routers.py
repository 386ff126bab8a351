from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.loaders import load_dataset
from routers.artifacts import ArtifactError, build_router, load_router, save_router
from routers.base import decide
from routers.carrot import CarrotRouter, loo_neighbours
from routers.dataset import RoutingDataset
from routers.embedder import embed_cached


def test_raising_cost_weight_never_raises_the_chosen_cost() -> None:
    rng = np.random.default_rng(0)
    weights = np.linspace(0, 1, 41)
    for _ in range(500):
        m = int(rng.integers(1, 12))
        q = rng.random(m).round(1)  # coarse values make ties common
        c = rng.random(m).round(1)
        costs = [c[decide(q, c, w, cost_ref=1.0).chosen[0]] for w in weights]
        assert all(a >= b for a, b in zip(costs, costs[1:])), (q, c, costs)


def test_decide_extremes_and_allowed_mask() -> None:
    q = np.array([0.9, 0.5, 0.7])
    c = np.array([3.0, 1.0, 2.0])
    assert decide(q, c, 0.0, 3.0).chosen == [0]
    assert decide(q, c, 1.0, 3.0).chosen == [1]
    assert decide(q, c, 0.0, 3.0, k=2).chosen == [0, 2]
    d = decide(q, c, 0.0, 3.0, allowed=np.array([False, True, True]))
    assert d.ranking == [2, 1]
    with pytest.raises(ValueError):
        decide(q, c, 1.5, 3.0)


def test_loo_neighbours_exclude_self() -> None:
    keys = np.eye(6, dtype=np.float32)
    keys[1] = keys[0]  # a duplicate of row 0 ties with it
    idx = loo_neighbours(keys, 3)
    assert idx.shape == (6, 3)
    assert all(i not in row for i, row in enumerate(idx))
    assert idx[0, 0] == 1 and idx[1, 0] == 0


def _synthetic(n: int = 200) -> tuple[np.ndarray, RoutingDataset]:
    """Two clusters: model 'a' wins on cluster 0, model 'b' on cluster 1; 'a' costs 10x."""
    rng = np.random.default_rng(1)
    centre = np.zeros((2, 8), dtype=np.float32)
    centre[0, 0] = centre[1, 1] = 1
    label = rng.integers(0, 2, n)
    emb = centre[label] + 0.05 * rng.standard_normal((n, 8)).astype(np.float32)
    scores = np.stack([label == 0, label == 1], axis=1).astype(np.float32)
    costs = np.tile(np.array([[1e-2, 1e-3]], dtype=np.float32), (n, 1))
    ds = RoutingDataset(prompts=[f"p{i}" for i in range(n)], models=["a", "b"], scores=scores, costs=costs)
    return emb, ds


def test_carrot_learns_which_model_wins_where_and_round_trips(tmp_path: Path) -> None:
    emb, ds = _synthetic()
    router = CarrotRouter(ds.models).fit(emb, ds)
    assert router.k in (5, 10, 20, 40, 80, 160)
    q0 = np.zeros((1, 8), dtype=np.float32)
    q0[0, 0] = 1
    est = router.estimate(q0)
    assert est.quality[0, 0] > 0.9 and est.quality[0, 1] < 0.1
    assert est.cost[0, 0] == pytest.approx(1e-2)
    path = save_router(router, tmp_path / "r.npz")
    loaded = load_router(path)
    np.testing.assert_allclose(loaded.estimate(q0).quality, est.quality)
    assert loaded.cost_ref == pytest.approx(router.cost_ref)


def test_load_router_rejects_other_files(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        load_router(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a switchyard router artifact"):
        load_router(junk)


def test_carrot_on_real_routerbench_slice_trades_quality_for_cost(bench_slice: Path, carrot_artifact: Path, embedder) -> None:
    test = load_dataset(bench_slice).split("test")
    router = load_router(carrot_artifact)
    est = router.estimate(embed_cached(embedder, test.prompts, progress=False))
    rows = np.arange(len(test))
    results = {}
    for w in (0.0, 1.0):
        chosen = np.array([decide(est.quality[i], est.cost[i], w, router.cost_ref).chosen[0] for i in rows])
        results[w] = (np.nanmean(test.scores[rows, chosen]), np.nanmean(test.costs[rows, chosen]))
    (q_best, c_best), (q_cheap, c_cheap) = results[0.0], results[1.0]
    assert c_cheap < c_best / 10  # the cheapest end costs far less ...
    assert q_best > q_cheap + 0.1  # ... and the quality end answers far better


@pytest.mark.parametrize("kind", ["carrot", "carrot-linear"])
def test_carrot_estimates_output_tokens_and_round_trips(kind: str, bench_slice: Path, embedder, tmp_path: Path) -> None:
    """Both CARROT estimators predict completion lengths from the recorded responses: code
    answers (mbpp) run far longer than multiple-choice ones (arc-challenge)."""
    data = load_dataset(bench_slice)
    train, test = data.split("train"), data.split("test")
    router = build_router(kind, data.models).fit(embed_cached(embedder, train.prompts, progress=False), train)
    queries = embed_cached(embedder, test.prompts, progress=False)
    est = router.estimate(queries)
    assert est.output_tokens is not None and est.output_tokens.shape == (len(test), len(data.models))
    tasks = np.array(test.tasks)
    assert np.median(est.output_tokens[tasks == "mbpp"]) > 3 * np.median(est.output_tokens[tasks == "arc-challenge"])
    assert ((est.quality >= 0) & (est.quality <= 1)).all()
    loaded = load_router(save_router(router, tmp_path / "r.npz"))
    again = loaded.estimate(queries)
    np.testing.assert_allclose(again.output_tokens, est.output_tokens, rtol=1e-5)
    np.testing.assert_allclose(again.quality, est.quality, rtol=1e-5)
