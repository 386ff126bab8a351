"""Offline routing metrics: operating points under a cost-weight sweep, RouterBench's AIQ and
RouteLLM's APGR / CPT. numpy only; every per-prompt step is vectorised.

Conventions (the same for routers, single models and the oracle, so they compare):
- An operating point is (cost_weight, mean true quality, mean true cost) of the models a router
  chose on an evaluation set, with the dataset's recorded outcomes as the truth.
- A chosen model whose true score is missing (NaN: the source recorded no outcome for that
  prompt and model) is left out of that point's mean quality, as the data's own per-model
  accuracies do (RouterBench's gpt-4 0.880 is a NaN-skipping mean); counting it as 0 would
  penalise a router for a gap in the data, not for a wrong answer. Missing true costs are
  skipped the same way.
- AIQ (RouterBench, arXiv 2403.12031, sec. 3): the non-decreasing convex hull of a router's
  (cost, quality) points, integrated over the single models' cost range [c_min, c_max] and
  divided by its width. Randomising between two operating points reaches any point on the
  segment between them (hence the concave upper hull), and paying more for the same quality
  is always possible (hence the flat extension to the right of the best point). Below the
  router's cheapest point nothing is reachable: the hull counts 0 there, as RouterBench's
  reference code does (it integrates from the first hull point only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from routers.base import decide_many as choose_from  # noqa: F401 - the evaluation's name for it

# Cost weights for sweeps: dense near 0, where a little cost pressure already moves most traffic.
DEFAULT_WEIGHTS: np.ndarray = np.unique(np.concatenate([np.linspace(0.0, 0.1, 41), np.linspace(0.1, 1.0, 46)]))


class Point(NamedTuple):
    """One operating point: the cost weight and the mean true quality and cost it gave."""

    cost_weight: float
    quality: float
    cost: float


# -- choosing ------------------------------------------------------------------------------


def choose(router, embeddings: np.ndarray, cost_weight: float) -> np.ndarray:  # noqa: ANN001 - any Router
    """Chosen column of `router.all_models` per prompt [N] at `cost_weight`."""
    est = router.predict(np.asarray(embeddings, dtype=np.float32))
    return choose_from(est.quality, est.cost, cost_weight, router.cost_ref)


def _check_truth(columns: int, scores: np.ndarray, costs: np.ndarray | None) -> None:
    if scores.ndim != 2 or scores.shape[1] != columns:
        raise ValueError(f"true scores have shape {scores.shape}, expected [N, {columns}] (one column per router model)")
    if costs is not None and costs.shape != scores.shape:
        raise ValueError(f"true costs have shape {costs.shape}, scores {scores.shape}")


def outcome(picks: np.ndarray, scores: np.ndarray, costs: np.ndarray | None) -> tuple[float, float]:
    """Mean true quality and cost of picks [N] (NaN outcomes skipped; -1 = no pick, skipped)."""
    ok = picks >= 0
    rows, cols = np.flatnonzero(ok), picks[ok]
    q = scores[rows, cols]
    quality = float(np.nanmean(q)) if np.isfinite(q).any() else float("nan")
    if costs is None:
        return quality, float("nan")
    c = costs[rows, cols]
    return quality, float(np.nanmean(c)) if np.isfinite(c).any() else float("nan")


def sweep_estimates(quality: np.ndarray, cost: np.ndarray, cost_ref: float, scores: np.ndarray,
                    costs: np.ndarray | None, weights: Sequence[float] = DEFAULT_WEIGHTS) -> list[Point]:
    """Operating points from precomputed estimates (one `predict` serves the whole sweep)."""
    _check_truth(quality.shape[1], scores, costs)
    return [Point(float(w), *outcome(choose_from(quality, cost, float(w), cost_ref), scores, costs)) for w in weights]


def sweep(router, embeddings: np.ndarray, scores: np.ndarray, costs: np.ndarray | None,  # noqa: ANN001
          weights: Sequence[float] = DEFAULT_WEIGHTS) -> list[Point]:
    """The router's operating points on a labelled set: for each w, the mean TRUE score and cost
    of the models it chose (scores/costs [N, M] aligned with `router.all_models`)."""
    est = router.predict(np.asarray(embeddings, dtype=np.float32))
    return sweep_estimates(est.quality, est.cost, router.cost_ref, np.asarray(scores), costs, weights)


def fill_outcomes(scores: np.ndarray, missing: str = "skip") -> np.ndarray:
    """The truth matrix under a convention for missing outcomes: "skip" (leave NaN: skipped in
    every mean, the default here), "zero" (a missing outcome is a wrong answer) or "mean" (the
    model's mean score on the set, as `routers.base.fill_missing` does for training)."""
    if missing == "skip":
        return np.asarray(scores)
    if missing == "zero":
        return np.nan_to_num(np.asarray(scores, dtype=np.float64))
    if missing == "mean":
        from routers.base import fill_missing  # noqa: PLC0415

        return fill_missing(np.asarray(scores)).astype(np.float64)
    raise ValueError(f"missing must be 'skip', 'zero' or 'mean', got {missing!r}")


def single_model_points(scores: np.ndarray, costs: np.ndarray | None) -> list[tuple[float, float]]:
    """(mean cost, mean quality) per model, NaN outcomes skipped."""
    out = []
    for m in range(scores.shape[1]):
        picks = np.full(len(scores), m, dtype=np.int64)
        q, c = outcome(picks, scores, costs)
        out.append((c, q))
    return out


def oracle_points(scores: np.ndarray, costs: np.ndarray, weights: Sequence[float] = DEFAULT_WEIGHTS,
                  cost_ref: float | None = None) -> list[Point]:
    """The per-prompt oracle (true scores and costs; `routers.baselines.oracle_choice`) across w."""
    from routers.base import cost_reference  # noqa: PLC0415
    from routers.baselines import oracle_choice  # noqa: PLC0415 - pulls in the router modules

    ref = cost_reference(costs) if cost_ref is None else cost_ref
    return [Point(float(w), *outcome(oracle_choice(scores, costs, float(w), ref), scores, costs)) for w in weights]


# -- AIQ -----------------------------------------------------------------------------------


def _finite_points(costs: Sequence[float], qualities: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    c, q = np.asarray(costs, dtype=np.float64).ravel(), np.asarray(qualities, dtype=np.float64).ravel()
    if c.shape != q.shape:
        raise ValueError(f"{len(c)} costs but {len(q)} qualities")
    keep = np.isfinite(c) & np.isfinite(q)
    return c[keep], q[keep]


def hull(costs: Sequence[float], qualities: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The non-decreasing convex hull's vertices (cost asc, quality strictly rising).

    Points that another point dominates (cheaper or as cheap, and at least as good) are dropped,
    then points under a segment between two others (the upper concave hull)."""
    c, q = _finite_points(costs, qualities)
    if len(c) == 0:
        return c, q
    order = np.lexsort((-q, c))  # cost asc; at equal cost the best first
    c, q = c[order], q[order]
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], q[:-1]]))
    frontier = q > best_before  # strictly better than everything as cheap or cheaper
    c, q = c[frontier], q[frontier]
    keep: list[int] = []
    for i in range(len(c)):
        while len(keep) >= 2:
            a, b = keep[-2], keep[-1]
            # b is on or under the segment a -> i: drop it (cross product >= 0)
            if (c[b] - c[a]) * (q[i] - q[a]) - (q[b] - q[a]) * (c[i] - c[a]) >= 0:
                keep.pop()
            else:
                break
        keep.append(i)
    return c[keep], q[keep]


def hull_value(hull_costs: np.ndarray, hull_qualities: np.ndarray, at: np.ndarray | float) -> np.ndarray:
    """The hull's quality at costs `at`: 0 below its cheapest point, flat beyond its last."""
    at = np.asarray(at, dtype=np.float64)
    if len(hull_costs) == 0:
        return np.zeros_like(at)
    return np.where(at < hull_costs[0], 0.0, np.interp(at, hull_costs, hull_qualities))


def aiq(points_cost: Sequence[float], points_quality: Sequence[float], cost_range: tuple[float, float]) -> float:
    """RouterBench's Average Improvement in Quality: the mean of the non-decreasing convex hull
    of the points over `cost_range` (usually the single models' cheapest and dearest mean cost).

    The hull is exactly piecewise linear, so the integral is exact (no grid). A degenerate range
    (c_min == c_max) gives the hull's value at that cost."""
    lo, hi = float(cost_range[0]), float(cost_range[1])
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        raise ValueError(f"cost_range must be finite with min <= max, got {cost_range}")
    hc, hq = hull(points_cost, points_quality)
    if len(hc) == 0:
        return float("nan")
    if hi == lo:
        return float(hull_value(hc, hq, lo))
    start = max(lo, hc[0])
    if start >= hi:
        return 0.0
    xs = np.concatenate([[start], hc[(hc > start) & (hc < hi)], [hi]])
    area = float(np.sum(np.diff(xs) * (hull_value(hc, hq, xs[1:]) + hull_value(hc, hq, xs[:-1])) / 2))
    return area / (hi - lo)


def cost_range_of(single_points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """[c_min, c_max] over single models' (cost, quality) points."""
    costs = np.array([c for c, _ in single_points], dtype=np.float64)
    costs = costs[np.isfinite(costs)]
    if len(costs) == 0:
        raise ValueError("no single model has a known cost")
    return float(costs.min()), float(costs.max())


def cost_at_quality(points: Sequence[Point], target: float) -> float:
    """The cheapest operating point's cost with mean quality >= target (NaN if none reaches it)."""
    ok = [p.cost for p in points if np.isfinite(p.quality) and p.quality >= target and np.isfinite(p.cost)]
    return float(min(ok)) if ok else float("nan")


# -- RouteLLM: a weak/strong pair --------------------------------------------------------------


class PairCurve(NamedTuple):
    """A router's (call share, quality) curve between a weak and a strong model; its fields are
    the arguments of `apgr` and `cpt` in order: `apgr(*curve)`, `cpt(*curve, level=0.8)`."""

    call_share: np.ndarray  # [P] in [0, 1]: share of traffic to the strong model (see pair_curve)
    quality: np.ndarray  # [P] mean true quality
    weak_quality: float
    strong_quality: float


def pair_curve(router, embeddings: np.ndarray, scores: np.ndarray, costs: np.ndarray | None,  # noqa: ANN001
               weak: int, strong: int, weights: Sequence[float] = DEFAULT_WEIGHTS, mode: str = "pair") -> PairCurve:
    """Operating points of `router` in RouteLLM's terms.

    mode="pair" (RouteLLM's setting): the router only chooses between `weak` and `strong` (its
    estimates for the other models are ignored); the call share is the share of prompts sent
    to `strong`.
    mode="cost": the router chooses among all its models, and a third model counts by its cost:
    call share = (mean cost - cost_weak) / (cost_strong - cost_weak), with the two models' mean
    true costs on this set; a point may then fall outside [0, 1].
    """
    est = router.predict(np.asarray(embeddings, dtype=np.float32))
    return pair_curve_estimates(est.quality, est.cost, router.cost_ref, scores, costs, weak, strong, weights, mode)


def pair_curve_estimates(quality: np.ndarray, cost: np.ndarray, cost_ref: float, scores: np.ndarray,
                         costs: np.ndarray | None, weak: int, strong: int, weights: Sequence[float] = DEFAULT_WEIGHTS,
                         mode: str = "pair") -> PairCurve:
    """`pair_curve` from precomputed estimates [N, M] (one `predict` serves every curve)."""
    scores = np.asarray(scores)
    _check_truth(quality.shape[1], scores, costs)
    weak_q, _ = outcome(np.full(len(scores), weak), scores, costs)
    strong_q, _ = outcome(np.full(len(scores), strong), scores, costs)
    shares, qualities = [], []
    if mode == "pair":
        cols = np.array([weak, strong])
        for w in weights:
            pick = cols[choose_from(quality[:, cols], cost[:, cols], float(w), cost_ref)]
            shares.append(float(np.mean(pick == strong)) if len(pick) else float("nan"))
            qualities.append(outcome(pick, scores, costs)[0])
    elif mode == "cost":
        if costs is None:
            raise ValueError("mode='cost' needs true costs")
        c_weak = float(np.nanmean(costs[:, weak]))
        c_strong = float(np.nanmean(costs[:, strong]))
        if not c_strong > c_weak:
            raise ValueError(f"the strong model must cost more than the weak one ({c_strong} <= {c_weak})")
        for p in sweep_estimates(quality, cost, cost_ref, scores, costs, weights):
            shares.append((p.cost - c_weak) / (c_strong - c_weak))
            qualities.append(p.quality)
    else:
        raise ValueError(f"mode must be 'pair' or 'cost', got {mode!r}")
    return PairCurve(np.asarray(shares), np.asarray(qualities), weak_q, strong_q)


def pgr_curve(call_share: Sequence[float], quality: Sequence[float], weak_quality: float,
              strong_quality: float) -> tuple[np.ndarray, np.ndarray]:
    """The performance-gap-recovered curve over [0, 1] call share, as sorted (x, PGR) vertices.

    PGR = (quality - weak) / (strong - weak). All-weak (0, 0) and all-strong (1, 1) are always
    reachable, so they anchor the ends unless the router has its own points there; at a repeated
    call share the best point counts. Points outside [0, 1] (mode="cost") are clipped into the
    range by interpolation."""
    gap = strong_quality - weak_quality
    if not np.isfinite(gap) or gap <= 0:
        raise ValueError(f"the strong model must score above the weak one (strong {strong_quality}, weak {weak_quality})")
    x, q = _finite_points(call_share, quality)
    y = (q - weak_quality) / gap
    if not np.any(x <= 0):
        x, y = np.append(x, 0.0), np.append(y, 0.0)
    if not np.any(x >= 1):
        x, y = np.append(x, 1.0), np.append(y, 1.0)
    ux = np.unique(x)
    uy = np.array([y[x == v].max() for v in ux])
    inner = (ux > 0) & (ux < 1)
    xs = np.concatenate([[0.0], ux[inner], [1.0]])
    return xs, np.interp(xs, ux, uy)


def apgr(call_share: Sequence[float], quality: Sequence[float], weak_quality: float, strong_quality: float) -> float:
    """Average performance gap recovered (RouteLLM, arXiv 2406.18665): the area under the
    (call share, PGR) curve over [0, 1]; 0.5 for random routing, 1 for an ideal one."""
    xs, ys = pgr_curve(call_share, quality, weak_quality, strong_quality)
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2))


def cpt(call_share: Sequence[float], quality: Sequence[float], weak_quality: float, strong_quality: float,
        level: float = 0.5) -> float:
    """Call-performance threshold CPT(level): the smallest call share in [0, 1] at which the
    (interpolated) PGR curve reaches `level` (0.5 -> CPT(50%), reported x100 as a percentage);
    NaN if it never does (only possible for level > 1)."""
    xs, ys = pgr_curve(call_share, quality, weak_quality, strong_quality)
    hit = np.flatnonzero(ys >= level)
    if len(hit) == 0:
        return float("nan")
    j = int(hit[0])
    if j == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))
