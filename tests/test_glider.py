"""GLIDER: global (task instruction vs expert description) + local (MLP) routing, on real data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from evaluation.loaders import load_dataset
from routers.artifacts import ROUTER_KINDS, load_router, save_router
from routers.base import ExpertCard, OnboardingError
from routers.dataset import RoutingDataset
from routers.embedder import Embedder, embed_cached
from routers.glider import ALPHA_GRID, GliderRouter
from tests.conftest import DATA

CODER = "an expert Python programmer that writes correct code"


@pytest.fixture(scope="module")
def slice_data(bench_slice: Path, embedder: Embedder) -> tuple[RoutingDataset, np.ndarray, RoutingDataset, np.ndarray]:
    data = load_dataset(bench_slice)
    train, test = data.split("train"), data.split("test")
    x_train, x_test = (embed_cached(embedder, d.prompts, progress=False) for d in (train, test))
    return train, x_train, test, x_test


@pytest.fixture(scope="module")
def fitted(slice_data) -> GliderRouter:  # noqa: ANN001
    train, x_train, _, _ = slice_data
    return GliderRouter(train.models).fit(x_train, train)


def _clusters(n: int = 200, nan_share: float = 0.0, tasks: bool = True) -> tuple[np.ndarray, RoutingDataset]:
    """Two tasks in 8-d: 'a' wins on t0 (around e0), 'b' on t1 (around e1); 'a' costs 10x."""
    rng = np.random.default_rng(1)
    centre = np.eye(8, dtype=np.float32)[:2]
    label = rng.integers(0, 2, n)
    emb = centre[label] + 0.05 * rng.standard_normal((n, 8)).astype(np.float32)
    scores = np.stack([label == 0, label == 1], axis=1).astype(np.float32)
    scores[rng.random(scores.shape) < nan_share] = np.nan
    costs = np.tile(np.array([[1e-2, 1e-3]], dtype=np.float32), (n, 1))
    return emb, RoutingDataset(prompts=[f"p{i} {'apple pear' if t == 0 else 'code python'}" for i, t in enumerate(label)],
                               models=["a", "b"], scores=scores, costs=costs, tasks=[f"t{t}" for t in label] if tasks else [])


def _fake_embed(texts: Sequence[str]) -> np.ndarray:
    """Texts naming 'apple' point at task t0's centre, 'python' at t1's, anything else between."""
    out = np.zeros((len(texts), 8), np.float32)
    for i, t in enumerate(texts):
        out[i, 0], out[i, 1] = float("apple" in t) + 0.1, float("python" in t) + 0.1
    return out


def test_fits_real_slice_and_beats_the_mean_model(fitted: GliderRouter, slice_data) -> None:  # noqa: ANN001
    _, _, test, x_test = slice_data
    est = fitted.estimate(x_test)
    m = len(test.models)
    assert est.quality.shape == est.cost.shape == (len(test), m)
    assert np.isfinite(est.quality).all() and (est.quality >= 0).all() and (est.quality <= 1).all()
    assert (est.cost > 0).all() and fitted.cost_ref > 0
    picks = est.quality.argmax(axis=1)
    # The calibration is shared and increasing: the w=0 choice is the argmax of the GLIDER logits.
    logits = fitted.local_scores(x_test) + fitted.alpha * fitted.global_scores(x_test)
    np.testing.assert_array_equal(picks, logits.argmax(axis=1))
    chosen = float(np.nanmean(test.scores[np.arange(len(test)), picks]))
    mean_model = float(np.nanmean(np.nanmean(test.scores, axis=0)))
    print(f"glider w=0 on the slice: {chosen:.3f} vs mean model {mean_model:.3f}")
    assert chosen > mean_model + 0.05
    assert fitted.params["tasks"] == ["arc-challenge", "mbpp", "winogrande"]
    assert all(d.startswith(f"Task {t}: ") for d, t in zip(fitted.params["task_descriptions"], fitted.params["tasks"]))
    json.dumps(fitted.params)  # the artifact header holds them


def test_alpha_from_grid_and_global_favours_the_matching_description() -> None:
    emb, ds = _clusters()
    router = GliderRouter(ds.models).fit(emb, ds)
    assert router.params["alpha"] in ALPHA_GRID and set(router.params["val_scores"]) == {str(a) for a in ALPHA_GRID}
    queries = np.eye(8, dtype=np.float32)[:2]  # the centres of t0 and t1
    g = router.global_scores(queries)  # learned descriptions: 'a' is the t0 expert, 'b' the t1 expert
    assert g[0, 0] > g[0, 1] and g[1, 1] > g[1, 0]
    assert router.estimate(queries).quality.argmax(axis=1).tolist() == [0, 1]
    # Text descriptions (swapped against the data on purpose) drive the global score instead.
    described = GliderRouter(ds.models, descriptions={"a": "python coder", "b": "apple grower"}, embed=_fake_embed).fit(emb, ds)
    g = described.global_scores(queries)
    assert g[0, 1] > g[0, 0] and g[1, 0] > g[1, 1]
    # An instruction LLM's text replaces the nearest task.
    g = described.global_from_instruction(["write python code", "grow an apple"], _fake_embed)
    assert g.shape == (2, 2) and g[0, 0] > g[0, 1] and g[1, 1] > g[1, 0]
    np.testing.assert_allclose(described.estimate(queries, global_scores=described.global_scores(queries)).quality,
                               described.estimate(queries).quality)
    fixed = GliderRouter(ds.models, alpha=0.7).fit(emb, ds)
    assert fixed.alpha == 0.7 and "val_scores" not in fixed.params


def test_artifact_round_trip_gives_identical_estimates(fitted: GliderRouter, slice_data, embedder: Embedder,  # noqa: ANN001
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ROUTER_KINDS, "glider", GliderRouter)
    _, _, _, x_test = slice_data
    loaded = load_router(save_router(fitted, tmp_path / "glider.npz"))
    assert isinstance(loaded, GliderRouter) and loaded.models == fitted.models and loaded.params == fitted.params
    a, b = fitted.estimate(x_test), loaded.estimate(x_test)
    np.testing.assert_array_equal(a.quality, b.quality)
    np.testing.assert_array_equal(a.cost, b.cost)
    card = ExpertCard("coder", CODER)
    loaded.onboard(card, embedder.encode)
    fitted.onboard(card, embedder.encode)
    np.testing.assert_array_equal(fitted.predict(x_test).quality, loaded.predict(x_test).quality)
    fitted.cards.clear()


def test_onboarded_coder_is_predicted_best_on_coding_prompts(fitted: GliderRouter, slice_data,  # noqa: ANN001
                                                             embedder: Embedder) -> None:
    _, _, test, x_test = slice_data
    fitted.onboard(ExpertCard("coder", CODER, skills=("python", "unit tests")), embedder.encode)
    try:
        est = fitted.predict(x_test)
        assert fitted.all_models == fitted.models + ["coder"] and est.quality.shape == (len(test), len(fitted.models) + 1)
        assert np.isnan(est.cost[:, -1]).all()  # priced by the gateway from the expert's prices
        tasks = np.asarray(test.tasks)
        mean = {t: float(est.quality[tasks == t, -1].mean()) for t in ("arc-challenge", "mbpp", "winogrande")}
        print(f"onboarded coder, mean predicted quality per task: {mean}")
        assert mean["mbpp"] > mean["arc-challenge"] and mean["mbpp"] > mean["winogrande"]
        assert ((est.quality[:, -1] >= 0) & (est.quality[:, -1] <= 1)).all()
    finally:
        fitted.cards.clear()
    with pytest.raises(OnboardingError, match="description or skills"):
        fitted.onboard(ExpertCard("blank"), embedder.encode)
    with pytest.raises(OnboardingError, match="dimensions"):
        fitted.onboard(ExpertCard("odd", "words"), lambda texts: np.ones((len(texts), 3), np.float32))


def test_llmrouter_feature_descriptions(embedder: Embedder) -> None:
    folder = DATA / "llmrouter"
    data = load_dataset(folder / "train.json")
    tasks = np.asarray(data.tasks)
    rows = np.concatenate([np.flatnonzero(tasks == t)[:4] for t in sorted(set(data.tasks))])  # 4 prompts a task, 14 tasks
    small = data.subset(rows)
    x = embed_cached(embedder, small.prompts, progress=False)
    features = {name: spec["feature"] for name, spec in json.loads((folder / "default_llm.json").read_text()).items()}
    router = GliderRouter(small.models, descriptions=features, embed=embedder.encode).fit(x, small)
    assert set(small.models) <= set(features)
    for i, m in enumerate(small.models):  # every expert's description vector is its own feature text
        np.testing.assert_allclose(router.experts[i], embedder.encode([features[m]])[0], atol=1e-5)
    est = router.estimate(x)
    assert est.quality.shape == (len(small), len(small.models)) and ((est.quality >= 0) & (est.quality <= 1)).all()
    # The blurbs are mostly generic, but the code model's ("focuses exclusively on code
    # generation") meets coding prompts better than its average prompt.
    g = router.global_scores(x[tasks[rows] == "mbpp"]).mean(axis=0)
    print("mean global score on mbpp:", dict(zip(small.models, g.round(3))))
    assert g[small.models.index("codegemma-7b")] > 0.03
    learned = GliderRouter(small.models).fit(x, small)
    assert not np.allclose(learned.table, router.table) and router.params["descriptions"] == features


def test_edge_cases() -> None:
    emb, ds = _clusters(nan_share=0.3)
    router = GliderRouter(ds.models).fit(emb, ds)
    q = np.eye(8, dtype=np.float32)[:2]
    est = router.estimate(q)
    assert np.isfinite(est.quality).all() and est.quality.argmax(axis=1).tolist() == [0, 1]
    # No queries.
    assert router.estimate(q[:0]).quality.shape == router.estimate(q[:0]).cost.shape == (0, 2)
    assert router.global_scores(q[:0]).shape == router.global_from_instruction([], _fake_embed).shape == (0, 2)
    router.onboard(ExpertCard("new", "apple expert"), _fake_embed)
    assert router.predict(q[:0]).quality.shape == (0, 3) and np.isfinite(router.predict(q).quality).all()
    # One model; unlabelled prompts become seeded KMeans pseudo-tasks; tiny data fits in-sample.
    one = RoutingDataset(prompts=ds.prompts, models=["a"], scores=ds.scores[:, :1], costs=ds.costs[:, :1])
    solo = GliderRouter(["a"]).fit(emb, one)
    assert solo.estimate(q).quality.shape == (2, 1) and solo.params["tasks"][0].startswith("cluster-")
    again = GliderRouter(["a"]).fit(emb, one)
    np.testing.assert_array_equal(again.estimate(q).quality, solo.estimate(q).quality)  # seeded throughout
    emb2, unlabelled = _clusters(tasks=False)
    assert 2 <= len(GliderRouter(unlabelled.models, n_clusters=2).fit(emb2, unlabelled).params["tasks"]) <= 2
    tiny = GliderRouter(ds.models).fit(emb[:8], ds.subset(np.arange(8)))
    assert np.isfinite(tiny.estimate(q).quality).all()
    # Graded scores outside 0..1 get a linear calibration.
    scaled = RoutingDataset(prompts=ds.prompts, models=ds.models, scores=ds.scores * 10, costs=ds.costs, tasks=ds.tasks)
    assert GliderRouter(ds.models).fit(emb, scaled).params["link"] == "identity"
    with pytest.raises(ValueError, match="glider needs per-prompt costs"):
        GliderRouter(ds.models).fit(emb, RoutingDataset(prompts=ds.prompts, models=ds.models, scores=ds.scores))
