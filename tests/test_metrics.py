"""Evaluation metrics: vectorised choice, sweeps, RouterBench's AIQ and RouteLLM's APGR / CPT."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import (
    DEFAULT_WEIGHTS,
    aiq,
    apgr,
    choose,
    choose_from,
    cost_at_quality,
    cost_range_of,
    cpt,
    hull,
    oracle_points,
    pair_curve,
    pgr_curve,
    single_model_points,
    sweep,
)
from routers.base import Estimates, decide
from routers.baselines import oracle_choice


class FixedRouter:
    """The slice of the Router contract the metrics use: fixed estimates, whatever the input."""

    def __init__(self, quality: np.ndarray, cost: np.ndarray, cost_ref: float = 1.0) -> None:
        self.quality, self.cost, self.cost_ref = np.asarray(quality, np.float32), np.asarray(cost, np.float32), cost_ref
        self.all_models = [f"m{i}" for i in range(self.quality.shape[1])]

    def predict(self, embeddings: np.ndarray) -> Estimates:
        assert len(embeddings) == len(self.quality)
        return Estimates(quality=self.quality, cost=self.cost)


# -- choose ----------------------------------------------------------------------------------


def test_choose_matches_decide_row_by_row_including_ties() -> None:
    rng = np.random.default_rng(0)
    n, m = 500, 6
    # Coarse values force exact ties in utility and in cost, so every tie rule is exercised.
    quality = rng.integers(0, 4, (n, m)).astype(np.float32) / 4
    cost = rng.integers(1, 4, (n, m)).astype(np.float32) / 1000
    for w in (0.0, 0.001, 0.25, 0.5, 0.9, 1.0):
        picks = choose_from(quality, cost, w, 0.003)
        expected = [decide(quality[i], cost[i], w, 0.003).chosen[0] for i in range(n)]
        assert picks.tolist() == expected, w
    router = FixedRouter(quality, cost, 0.003)
    assert choose(router, np.zeros((n, 4)), 0.5).tolist() == [decide(quality[i], cost[i], 0.5, 0.003).chosen[0] for i in range(n)]


def test_choose_on_a_real_router(bench_slice, embedder) -> None:  # noqa: ANN001
    from evaluation.loaders import load_dataset
    from routers.artifacts import build_router
    from routers.embedder import embed_cached

    data = load_dataset(bench_slice)
    train, test = data.split("train"), data.split("test")
    router = build_router("knn", train.models, k=10).fit(embed_cached(embedder, train.prompts), train)
    x = embed_cached(embedder, test.prompts)
    est = router.predict(x)
    for w in (0.0, 0.05, 0.3, 1.0):
        got = choose(router, x, w)
        want = [decide(est.quality[i], est.cost[i], w, router.cost_ref).chosen[0] for i in range(len(x))]
        assert got.tolist() == want
    points = sweep(router, x, test.scores, test.costs)
    assert len(points) == len(DEFAULT_WEIGHTS) and points[0].cost_weight == 0.0 and points[-1].cost_weight == 1.0
    assert points[-1].cost <= points[0].cost
    lo, hi = cost_range_of(single_model_points(test.scores, test.costs))
    assert 0.5 < aiq([p.cost for p in points], [p.quality for p in points], (lo, hi)) < 1.0


def test_choose_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="cost_weight"):
        choose_from(np.zeros((2, 2)), np.zeros((2, 2)), 1.5, 1.0)
    with pytest.raises(ValueError, match=r"\[N, M\]"):
        choose_from(np.zeros((2, 2)), np.zeros((2, 3)), 0.5, 1.0)
    assert choose_from(np.zeros((0, 3)), np.zeros((0, 3)), 0.5, 1.0).shape == (0,)


# -- sweep, single models, oracle --------------------------------------------------------------


def test_sweep_uses_true_outcomes_and_skips_missing_scores() -> None:
    # The router believes model 1 is best everywhere; the truth says otherwise on prompt 1.
    router = FixedRouter([[0.2, 0.9], [0.2, 0.9], [0.2, 0.9]], [[1.0, 3.0]] * 3, cost_ref=3.0)
    scores = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, np.nan]])
    costs = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]])
    best, cheap = sweep(router, np.zeros((3, 1)), scores, costs, weights=[0.0, 1.0])
    assert best.cost_weight == 0.0 and best.quality == pytest.approx(0.5) and best.cost == pytest.approx(4.0)
    assert cheap.quality == pytest.approx(2 / 3) and cheap.cost == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one column per router model"):
        sweep(router, np.zeros((3, 1)), scores[:, :1], costs[:, :1])
    assert single_model_points(scores, costs) == [(pytest.approx(1.0), pytest.approx(2 / 3)), (pytest.approx(4.0), pytest.approx(0.5))]


def test_fill_outcomes() -> None:
    from evaluation.metrics import fill_outcomes

    s = np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 0.0]])
    assert np.isnan(fill_outcomes(s)[0, 1])
    assert fill_outcomes(s, "zero")[0, 1] == 0.0 and fill_outcomes(s, "mean")[0, 1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="missing"):
        fill_outcomes(s, "drop")


def test_oracle_points_match_oracle_choice() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 2, (50, 4)).astype(np.float64)
    scores[3, 1] = np.nan
    costs = rng.uniform(0.1, 1.0, (50, 4))
    pts = oracle_points(scores, costs, weights=[0.0, 0.5, 1.0], cost_ref=1.0)
    assert pts[0].quality == pytest.approx(np.nanmax(scores, axis=1).mean())
    for p in pts:
        picks = oracle_choice(scores, costs, p.cost_weight, 1.0)
        assert p.cost == pytest.approx(costs[np.arange(50), picks].mean())
    assert pts[-1].cost == pytest.approx(costs.min(axis=1).mean())


# -- AIQ ---------------------------------------------------------------------------------------


def test_hull_drops_dominated_and_under_segment_points() -> None:
    costs = [0.0, 1.0, 2.0, 1.5, 0.5, 3.0, 1.0]
    quals = [0.5, 0.8, 0.9, 0.6, 0.4, 0.85, 0.6]
    hc, hq = hull(costs, quals)
    assert hc.tolist() == [0.0, 1.0, 2.0] and hq.tolist() == [0.5, 0.8, 0.9]
    hc, hq = hull([0.0, 1.0, 2.0], [0.5, 0.6, 0.9])  # (1, 0.6) is under the segment (0.7 there)
    assert hc.tolist() == [0.0, 2.0]


def test_aiq_hand_computed() -> None:
    costs, quals = [0.0, 1.0, 2.0, 1.5, 0.5, 3.0], [0.5, 0.8, 0.9, 0.6, 0.4, 0.85]
    assert aiq(costs, quals, (0.0, 2.0)) == pytest.approx((0.65 + 0.85) / 2)
    assert aiq(costs, quals, (0.0, 4.0)) == pytest.approx((0.65 + 0.85 + 1.8) / 4)  # flat beyond the best point
    assert aiq([0.0, 1.0, 2.0], [0.5, 0.6, 0.9], (0.0, 2.0)) == pytest.approx(0.7)  # the concave hull, not the points


def test_aiq_single_point_flat_line_and_range_edges() -> None:
    assert aiq([1.0], [0.8], (0.0, 2.0)) == pytest.approx(0.4)  # nothing reachable below the cheapest point
    assert aiq([1.0], [0.8], (1.0, 1.0)) == pytest.approx(0.8)  # degenerate range: the value there
    assert aiq([1.0], [0.8], (0.0, 0.5)) == 0.0  # the router cannot operate that cheaply
    assert aiq([0.0, 1.0, 2.0], [0.5, 0.5, 0.5], (0.0, 2.0)) == pytest.approx(0.5)
    assert aiq([0.0, 2.0], [0.6, 1.0], (1.0, 2.0)) == pytest.approx(0.9)  # cheaper than c_min: interpolated at c_min
    assert aiq([0.0, np.nan, 2.0], [0.6, 1.0, 1.0], (0.0, 2.0)) == pytest.approx(0.8)  # NaN points ignored
    assert np.isnan(aiq([], [], (0.0, 1.0)))
    with pytest.raises(ValueError, match="cost_range"):
        aiq([1.0], [1.0], (2.0, 1.0))


def test_hull_is_the_least_non_decreasing_concave_majorant() -> None:
    """At any cost x the hull equals the best mix of two points spanning x, or the best point
    no dearer than x (1-D Caratheodory): checked against brute force on random point sets."""
    rng = np.random.default_rng(2)
    for _ in range(30):
        c, q = rng.uniform(0, 1, 12), rng.uniform(0, 1, 12)
        hc, hq = hull(c, q)
        for x in rng.uniform(c.min(), 1.2, 20):
            best = q[c <= x].max()
            for i in range(12):
                for j in range(12):
                    if c[i] <= x <= c[j] and c[i] < c[j]:
                        best = max(best, q[i] + (q[j] - q[i]) * (x - c[i]) / (c[j] - c[i]))
            assert np.interp(x, hc, hq) == pytest.approx(best)


def test_cost_at_quality() -> None:
    from evaluation.metrics import Point

    pts = [Point(0.0, 0.9, 5.0), Point(0.1, 0.85, 2.0), Point(0.5, 0.7, 1.0)]
    assert cost_at_quality(pts, 0.85) == 2.0
    assert np.isnan(cost_at_quality(pts, 0.95))


# -- RouteLLM ----------------------------------------------------------------------------------


def test_apgr_and_cpt_hand_made() -> None:
    # weak 0.5, strong 0.9; one router point at 50% strong calls reaching 0.8 (PGR 0.75).
    assert apgr([0.5], [0.8], 0.5, 0.9) == pytest.approx(0.5 * 0.75 / 2 + 0.5 * (0.75 + 1) / 2)
    assert cpt([0.5], [0.8], 0.5, 0.9, 0.5) == pytest.approx(0.5 * 0.5 / 0.75)
    assert cpt([0.5], [0.8], 0.5, 0.9, 0.8) == pytest.approx(0.5 + 0.5 * 0.05 / 0.25)
    # Random routing: quality linear in the call share -> APGR 0.5, CPT(50%) = 50%.
    share = np.linspace(0, 1, 11)
    assert apgr(share, 0.5 + 0.4 * share, 0.5, 0.9) == pytest.approx(0.5)
    assert cpt(share, 0.5 + 0.4 * share, 0.5, 0.9, 0.5) == pytest.approx(0.5)
    # A router that already beats the strong model with no strong calls.
    assert cpt([0.0, 1.0], [0.95, 0.9], 0.5, 0.9, 0.8) == 0.0
    assert np.isnan(cpt([0.5], [0.8], 0.5, 0.9, 1.5))
    xs, ys = pgr_curve([0.2, 0.2, 0.6], [0.6, 0.7, 0.9], 0.5, 0.9)
    assert xs.tolist() == [0.0, 0.2, 0.6, 1.0] and ys.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="strong model must score above"):
        apgr([0.5], [0.8], 0.9, 0.5)


def test_pair_curve_modes() -> None:
    # Models: 0 weak (cost 1), 1 strong (cost 10), 2 a middle one (cost 4).
    quality = [[0.1, 0.9, 0.5], [0.1, 0.3, 0.2], [0.1, 0.9, 0.8], [0.1, 0.2, 0.9]]
    cost = [[1.0, 10.0, 4.0]] * 4
    router = FixedRouter(quality, cost, cost_ref=10.0)
    scores = np.array([[0, 1, 1], [0, 0, 0], [0, 1, 1], [1, 1, 1]], dtype=float)
    costs = np.array(cost)
    pair = pair_curve(router, np.zeros((4, 1)), scores, costs, weak=0, strong=1, weights=[0.0, 1.0])
    assert pair.call_share.tolist() == [1.0, 0.0]  # w=0: model 1 beats model 0 everywhere; w=1: all weak
    assert pair.quality.tolist() == [0.75, 0.25] and (pair.weak_quality, pair.strong_quality) == (0.25, 0.75)
    assert apgr(*pair) == pytest.approx(0.5) and cpt(*pair, level=0.8) == pytest.approx(0.8)  # two pure points: a line
    full = pair_curve(router, np.zeros((4, 1)), scores, costs, weak=0, strong=1, weights=[0.0], mode="cost")
    # w=0 picks 1, 1, 1, 2 -> mean cost (10 + 10 + 10 + 4) / 4 = 8.5 -> share (8.5 - 1) / 9
    assert full.call_share.tolist() == pytest.approx([7.5 / 9])
    with pytest.raises(ValueError, match="mode"):
        pair_curve(router, np.zeros((4, 1)), scores, costs, weak=0, strong=1, mode="nope")


# -- the targets table -------------------------------------------------------------------------


def test_targets_on_the_slice(bench_slice, embedder, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import json

    from evaluation.targets import run_targets
    from routers.artifacts import ROUTER_KINDS
    from routers.baselines import BestSingleRouter

    class Broken(BestSingleRouter):
        kind = "broken"

        def fit(self, embeddings, data):  # noqa: ANN001, ANN202
            raise RuntimeError("cannot fit")

    monkeypatch.setitem(ROUTER_KINDS, "broken", Broken)
    data = tmp_path / "data"
    data.mkdir()
    (data / "routerbench").symlink_to(bench_slice)
    with pytest.raises(ValueError, match="unknown router kind"):
        run_targets(data, ["nope"], tmp_path / "out", embedder=embedder)
    logged: list[str] = []
    results = run_targets(data, ["best-single", "knn", "broken"], tmp_path / "out", embedder=embedder, log=logged.append)
    rb = results["sections"]["routerbench"]
    assert set(rb["rows"]) == {"single models (hull)", "oracle", "task means (true task)", "best-single", "knn"}
    # knowing the task beats one model everywhere, and the per-prompt oracle beats knowing the task
    assert rb["rows"]["single models (hull)"]["aiq"] < rb["rows"]["task means (true task)"]["aiq"] < rb["rows"]["oracle"]["aiq"]
    assert "cannot fit" in rb["failures"]["broken"] and any("skipped broken" in m for m in logged)
    assert rb["rows"]["oracle"]["aiq"] >= rb["rows"]["knn"]["aiq"] > 0.5
    # best-single's points are single models' test points, so its hull lies under theirs
    assert rb["rows"]["best-single"]["aiq"] <= rb["rows"]["single models (hull)"]["aiq"] + 1e-9
    assert set(results["skipped_sections"]) == {"routerdc7", "llmrouter"}
    for name in ("results.json", "report.md", "routerbench_curves.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["routers"] == ["best-single", "knn", "broken"]
    assert "| knn |" in (tmp_path / "out" / "report.md").read_text()


def test_targets_seed_spread(bench_slice, embedder, tmp_path) -> None:  # noqa: ANN001
    """--seeds: seeded kinds get a spread whose first run is the row itself; unseeded kinds none."""
    from evaluation.targets import run_targets, seed_spread, seeded

    assert seeded("mf") and seeded("mlp") and not seeded("knn")
    assert seed_spread([0.5, None, 0.7]) == {"values": [0.5, None, 0.7], "mean": 0.6, "min": 0.5, "max": 0.7,
                                             "reached": 2, "runs": 3}
    data = tmp_path / "data"
    data.mkdir()
    (data / "routerbench").symlink_to(bench_slice)
    with pytest.raises(ValueError, match="seeds"):
        run_targets(data, ["knn"], tmp_path / "out", embedder=embedder, seeds=0)
    rb = run_targets(data, ["knn", "mlp"], tmp_path / "out", embedder=embedder, seeds=3)["sections"]["routerbench"]
    spread = rb["rows"]["mlp"]["seeds"]["aiq"]
    assert spread["runs"] == 3 and spread["values"][0] == rb["rows"]["mlp"]["aiq"]
    assert spread["min"] <= spread["mean"] <= spread["max"]
    assert len(set(spread["values"])) > 1  # the seed changes the fit
    assert "seeds" not in rb["rows"]["knn"]
    assert "AIQ over 3 seeds" in (tmp_path / "out" / "report.md").read_text()
