"""The skills router (Symbolic-MoE): profiles, competence, recruitment, calibrated estimates,
artifacts and onboarding by card, on the real RouterBench slice and on small synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.loaders import load_dataset
from routers.artifacts import ROUTER_KINDS, load_router, save_router
from routers.base import ExpertCard, OnboardingError, decide
from routers.dataset import RoutingDataset
from routers.embedder import Embedder, embed_cached
from routers.skills import SkillsRouter, global_competence, pool_bins, recruitment_weights
from tests.test_routers import _synthetic


@pytest.fixture(scope="module")
def slice_fit(bench_slice: Path, embedder: Embedder) -> tuple[SkillsRouter, RoutingDataset, np.ndarray]:
    """The router fitted on the slice's train split, with the test split and its embeddings."""
    data = load_dataset(bench_slice)
    train, test = data.split("train"), data.split("test")
    router = SkillsRouter(train.models).fit(embed_cached(embedder, train.prompts, progress=False), train)
    return router, test, embed_cached(embedder, test.prompts, progress=False)


def _picks(router: SkillsRouter, emb: np.ndarray, w: float) -> np.ndarray:
    est = router.estimate(emb)
    return np.array([decide(est.quality[i], est.cost[i], w, router.cost_ref).chosen[0] for i in range(len(emb))], dtype=np.int64)


def test_fits_the_real_slice_and_beats_a_random_choice(slice_fit: tuple[SkillsRouter, RoutingDataset, np.ndarray]) -> None:
    router, test, emb = slice_fit
    m = len(router.models)
    est = router.estimate(emb)
    assert est.quality.shape == est.cost.shape == (len(test), m)
    assert np.isfinite(est.quality).all() and (est.quality >= 0).all() and (est.quality <= 1).all()
    assert (est.cost > 0).all()
    rows = np.arange(len(test))
    chosen = float(np.nanmean(test.scores[rows, _picks(router, emb, 0.0)]))
    random = float(np.nanmean(np.nanmean(test.scores, axis=0)))  # a uniformly random model's expected score
    assert chosen > random + 0.1, (chosen, random)
    # Cost pressure moves traffic to cheaper models.
    assert np.mean(est.cost[rows, _picks(router, emb, 0.5)]) < np.mean(est.cost[rows, _picks(router, emb, 0.0)])
    assert router.aggregator == "gpt-4-1106-preview"  # the best mean training score: the synthesis proxy
    assert router.recruit(emb).shape == (len(test), 3)


def test_skills_are_named_by_their_terms(slice_fit: tuple[SkillsRouter, RoutingDataset, np.ndarray]) -> None:
    router, _, emb = slice_fit
    names = router.skill_names
    assert len(names) == len(router.centroids) == router.params["n_skills"] == 48
    for name in names:
        assert isinstance(name, str) and name.strip()
        assert all(t.isalpha() for t in name.split()) and 1 <= len(name.split()) <= 3
    assert len(set(names)) > len(names) // 2  # clusters read differently
    skills = router.query_skills(emb)
    assert skills.shape == (len(emb), 3) and (skills[:, 0] >= 0).all()  # always a nearest skill


def test_global_competence_follows_the_papers_formula() -> None:
    profile = np.array([[3.0, -2.0, 1.0], [1.0, -1.0, -2.0]])  # totals 4, -3, -1
    # Shifted by -min + 1 (some are negative): 8, 1, 3; squared (T = 0.5): 64, 1, 9; sum 74.
    np.testing.assert_allclose(global_competence(profile), np.array([64, 1, 9]) / 74, rtol=1e-6)
    # All totals >= 0: no shift. T = 1 leaves the powers alone.
    np.testing.assert_allclose(global_competence(np.array([[2.0, 0.0, 1.0]]), temperature=1.0), [2 / 3, 0, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(global_competence(np.zeros((2, 4))), np.full(4, 0.25))  # no evidence: uniform
    # Recruitment: positive suitability x competence, the rest 0; none positive: shifted to min 1 first.
    local = np.array([[2.0, -1.0, 1.0], [-3.0, -1.0, -2.0]])
    comp = np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(recruitment_weights(local, comp), [[1.0, 0.0, 0.25], [0.5, 0.75, 0.5]])


def test_profiles_count_right_minus_wrong_and_ignore_missing_scores() -> None:
    emb, ds = _synthetic()
    scores = ds.scores.copy()
    scores[::7, 0] = np.nan  # missing outcomes add nothing
    scores[1::7, 1] = 0.5  # partial credit adds 2 * 0.5 - 1 = 0
    holey = RoutingDataset(prompts=ds.prompts, models=ds.models, scores=scores, costs=ds.costs)
    router = SkillsRouter(ds.models, n_skills=4).fit(emb, holey)
    member = router._membership(router.query_skills(emb))
    expected = member.T @ np.nan_to_num(2 * scores - 1)
    np.testing.assert_allclose(router.profile, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(router.counts, member.T @ np.isfinite(scores), rtol=1e-6)
    np.testing.assert_allclose(router.competence, global_competence(expected), rtol=1e-5)
    # Each cluster's winner is found, and is preferred by a margin.
    q = np.zeros((2, 8), np.float32)
    q[0, 0] = q[1, 1] = 1
    est = router.estimate(q)
    assert est.quality[0, 0] > est.quality[0, 1] + 0.3 and est.quality[1, 1] > est.quality[1, 0] + 0.3
    assert router.recruit(q, 1)[:, 0].tolist() == [0, 1]


def test_artifact_round_trip_gives_identical_estimates(slice_fit: tuple[SkillsRouter, RoutingDataset, np.ndarray],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    router, _, emb = slice_fit
    monkeypatch.setitem(ROUTER_KINDS, "skills", SkillsRouter)
    loaded = load_router(save_router(router, tmp_path / "skills.npz"))
    assert isinstance(loaded, SkillsRouter) and loaded.models == router.models
    assert loaded.skill_names == router.skill_names and loaded.aggregator == router.aggregator
    assert loaded.header["params"]["skill_names"] == router.skill_names  # type: ignore[attr-defined]
    before, after = router.estimate(emb), loaded.estimate(emb)
    np.testing.assert_array_equal(after.quality, before.quality)
    np.testing.assert_array_equal(after.cost, before.cost)
    np.testing.assert_array_equal(loaded.recruit(emb), router.recruit(emb))
    assert loaded.cost_ref == pytest.approx(router.cost_ref)


def test_onboarded_coder_is_rated_highest_on_coding_prompts(slice_fit: tuple[SkillsRouter, RoutingDataset, np.ndarray],
                                                             embedder: Embedder) -> None:
    router, test, emb = slice_fit
    card = ExpertCard("new-coder", description="A code model.", skills=("python programming", "writing python functions"))
    router.onboard(card, embedder.encode)
    try:
        assert router.all_models[-1] == "new-coder"
        est = router.predict(emb)
        assert est.quality.shape == (len(test), len(router.models) + 1)
        q = est.quality[:, -1]
        assert np.isfinite(q).all() and (q >= 0).all() and (q <= 1).all()
        assert np.isnan(est.cost[:, -1]).all()  # priced by the gateway
        tasks = np.asarray(test.tasks)
        by_task = {t: float(q[tasks == t].mean()) for t in ("mbpp", "arc-challenge", "winogrande")}
        assert by_task["mbpp"] > max(by_task["arc-challenge"], by_task["winogrande"]), by_task
        assert router.predict(emb[:0]).quality.shape == (0, len(router.models) + 1)
    finally:
        router.cards.clear()
    with pytest.raises(OnboardingError, match="skills or description"):
        router.card_state(ExpertCard("blank"), embedder.encode)


def test_keywords_from_an_annotator_map_to_the_vocabulary(slice_fit: tuple[SkillsRouter, RoutingDataset, np.ndarray],
                                                          embedder: Embedder) -> None:
    router, test, emb = slice_fit
    skills = router.skills_from_keywords(["python", "  ", "lists"], embedder.encode)
    assert len(skills) == 2 and all(0 <= s < len(router.centroids) for s in skills)
    # The annotated path gives the same estimates as the embedding path for the same skills.
    own = router.query_skills(emb[:5])
    ragged = [[int(s) for s in row if s >= 0] for row in own]
    np.testing.assert_allclose(router.quality_from_skills(ragged), router.estimate(emb[:5]).quality)


def test_sampling_is_reproducible_and_distinct(slice_fit: tuple[SkillsRouter, RoutingDataset, np.ndarray]) -> None:
    router, _, emb = slice_fit
    a, b = router.sample(emb, k=3, seed=7), router.sample(emb, k=3, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (len(emb), 3) and ((a >= 0) & (a < len(router.models))).all()
    assert all(len(set(row)) == 3 for row in a.tolist())
    assert (router.sample(emb, k=3, seed=8) != a).any()
    assert router.sample(emb, k=50, seed=0).shape == (len(emb), len(router.models))  # k is capped at M
    # Models with no weight are drawn only after every weighted one.
    w = router.weights(emb)
    for row, drawn in zip(w, a):
        live = int((row > 0).sum())
        assert all(row[i] > 0 for i in drawn[: min(live, 3)])


def test_edge_cases_empty_batch_missing_scores_one_model() -> None:
    emb, ds = _synthetic()
    router = SkillsRouter(ds.models, n_skills=4).fit(emb, ds)
    empty = router.estimate(emb[:0])
    assert empty.quality.shape == empty.cost.shape == (0, 2)
    assert router.recruit(emb[:0]).shape == (0, 2) and router.sample(emb[:0], 2).shape == (0, 2)
    scores = ds.scores.copy()
    scores[np.random.default_rng(0).random(scores.shape) < 0.3] = np.nan
    scores[:, 1] = np.nan  # a model with no outcomes at all
    holey = RoutingDataset(prompts=ds.prompts, models=ds.models, scores=scores, costs=ds.costs)
    est = SkillsRouter(ds.models, n_skills=4).fit(emb, holey).estimate(emb)
    assert np.isfinite(est.quality).all() and (est.quality[:, 1] == 0).all()
    solo = RoutingDataset(prompts=ds.prompts, models=["a"], scores=ds.scores[:, :1], costs=ds.costs[:, :1])
    one = SkillsRouter(["a"]).fit(emb, solo)
    assert one.estimate(emb).quality.shape == (len(emb), 1) and one.competence.tolist() == [1.0]
    assert one.recruit(emb, 3).shape == (len(emb), 1) and one.aggregator == "a"
    tiny = SkillsRouter(ds.models).fit(emb[:3], ds.subset([0, 1, 2]))  # fewer prompts than skills
    assert len(tiny.centroids) == 3 and tiny.estimate(emb).quality.shape == (len(emb), 2)
    no_costs = RoutingDataset(prompts=ds.prompts, models=ds.models, scores=ds.scores)
    with pytest.raises(ValueError, match="skills needs per-prompt costs"):
        SkillsRouter(ds.models).fit(emb, no_costs)


def test_pool_bins_keeps_equal_x_together_and_merges_a_short_tail() -> None:
    x = np.array([0, 0, 0, 1, 2, 2, 3], dtype=np.float64)
    y = np.array([0, 1, 0, 1, 1, 1, 0], dtype=np.float64)
    bx, by, size = pool_bins(x, y, 2)
    assert size.tolist() == [3, 4]  # [0,0,0] then [1,2,2] with the lone 3 folded in
    np.testing.assert_allclose(bx, [0, 2])
    np.testing.assert_allclose(by, [1 / 3, 3 / 4])
    assert pool_bins(x, y, 100)[2].tolist() == [7]
