"""The cost/quality suite (`switchyard bench quality`): every router kind on one dataset.

Each kind is fitted on the train split and evaluated on the test split; data without splits
(every row's split is '') is evaluated by k-fold cross-validation instead (each row is
predicted by the router fitted on the other folds). Rows whose split is '' in data that has
splits (RouterDC's out-of-distribution files) are in neither: `bench generalization` uses them.

Per router, over the cost-weight sweep (metrics.DEFAULT_WEIGHTS), with the dataset's recorded
outcomes as the truth:
- AIQ (RouterBench): area under the non-decreasing convex hull of the (cost, quality) points
  over the single models' cost range, divided by its width;
- APGR, CPT(50%), CPT(80%) (RouteLLM): the router restricted to a weak/strong pair, as in
  RouteLLM; call share = share of prompts sent to the strong model;
- best quality and the cost of the cheapest point reaching it; the cost of matching the best
  single model's test quality, as a share of that model's cost; quality at w = 0.
Reference rows: each single model, the single models' hull and the per-prompt oracle.

The pair (overridable): strong = the best model by mean train score; weak = the best-scoring
model whose mean train cost is at most `WEAK_COST_RATIO` of the strong one's (RouteLLM's
GPT-4 / Mixtral pair is about 1/20), else the cheapest model (ties: the lower score). Both are
chosen on training rows only, so the test set does not pick its own reference.

Writes results.json, report.md, curves.png (cost/quality of every router and single model)
and pgr.png (RouteLLM's PGR curves) into the output folder. A kind that fails is reported
with its reason and left out; it never stops the run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evaluation.embed import embed_by_split
from evaluation.metrics import (
    DEFAULT_WEIGHTS,
    Point,
    aiq,
    apgr,
    cost_at_quality,
    cost_range_of,
    cpt,
    hull,
    oracle_points,
    pair_curve_estimates,
    pgr_curve,
    single_model_points,
    sweep_estimates,
)
from evaluation.targets import _reason, markdown
from evaluation.targets import plot as plot_curves
from routers.artifacts import build_router
from routers.base import cost_reference
from routers.dataset import RoutingDataset

WEAK_COST_RATIO = 0.25
HULL = "single models (hull)"  # the row name evaluation.targets.plot draws as the hull
Log = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """Which rows each fit trains on and predicts: one (train, test) pair, or k folds."""

    folds: list[tuple[np.ndarray, np.ndarray]]
    eval_rows: np.ndarray  # sorted union of the test rows
    train_rows: np.ndarray  # rows the pair and references are chosen on
    how: str


def evaluation_plan(data: RoutingDataset, folds: int = 5, seed: int = 0) -> Plan:
    marks = np.asarray(data.splits)
    train, test = np.flatnonzero(marks == "train"), np.flatnonzero(marks == "test")
    if len(train) and len(test):
        return Plan([(train, test)], test, train, f"train split ({len(train)} prompts) -> test split ({len(test)})")
    if (marks != "").any():
        raise ValueError(f"{data.source}: has split marks but not both 'train' and 'test' rows")
    if folds < 2 or len(data) < folds:
        raise ValueError(f"{data.source}: k-fold needs at least {folds} rows and folds >= 2 (got {len(data)} rows)")
    order = np.random.default_rng(seed).permutation(len(data))
    parts = np.array_split(order, folds)
    plan = [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(p)) for i, p in enumerate(parts)]
    every = np.arange(len(data))
    return Plan(plan, every, every, f"{folds}-fold cross-validation over {len(data)} prompts (the data has no splits)")


def choose_pair(data: RoutingDataset, rows: np.ndarray, weak: str | None = None, strong: str | None = None) -> tuple[int, int, str]:
    """(weak column, strong column, how they were chosen); see the module doc."""
    for name in (weak, strong):
        if name is not None and name not in data.models:
            raise ValueError(f"no model {name!r} in the data (it has: {', '.join(data.models)})")
    q = np.nanmean(data.scores[rows], axis=0)
    c = np.nanmean(data.costs[rows], axis=0)
    s = data.models.index(strong) if strong else int(np.nanargmax(q))
    how = "given" if strong else "best mean train score"
    if weak:
        w, how_w = data.models.index(weak), "given"
    else:
        cheap = [m for m in range(len(q)) if m != s and c[m] <= WEAK_COST_RATIO * c[s]]
        if cheap:
            w, how_w = max(cheap, key=lambda m: q[m]), f"best train score at <= {WEAK_COST_RATIO:g}x the strong model's cost"
        else:
            others = [m for m in range(len(q)) if m != s]
            w, how_w = min(others, key=lambda m: (c[m], q[m])), "cheapest model (none costs <= " \
                                                                  f"{WEAK_COST_RATIO:g}x the strong model)"
    if w == s:
        raise ValueError("the weak and the strong model must differ")
    return w, s, f"strong: {how}; weak: {how_w}"


def held_out_estimates(kind: str, data: RoutingDataset, x: np.ndarray, plan: Plan,
                       bar: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample (quality, cost / cost_ref) [len(eval_rows), M]. Costs are divided by the
    fold's router's cost_ref, so one decision rule with cost_ref = 1 reproduces every fold's
    own decisions exactly (the same utility, scaled per fold)."""
    pos = {int(r): i for i, r in enumerate(plan.eval_rows)}
    quality = np.zeros((len(plan.eval_rows), len(data.models)), np.float64)
    cost = np.zeros_like(quality)
    for train, test in plan.folds:
        router = build_router(kind, data.models).fit(x[train], data.subset(train))
        est = router.predict(x[test])
        at = [pos[int(r)] for r in test]
        quality[at], cost[at] = est.quality, est.cost / router.cost_ref
        if bar is not None:
            bar.update()
    return quality, cost


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


class Scorer:
    """The metrics of one set of operating points, against fixed references."""

    def __init__(self, scores: np.ndarray, costs: np.ndarray, weak: int, strong: int, weights: Sequence[float]) -> None:
        self.scores, self.costs, self.weak, self.strong = scores, costs, weak, strong
        self.weights = [float(w) for w in weights]
        self.single = single_model_points(scores, costs)
        self.cost_range = cost_range_of(self.single)
        self.best = int(np.nanargmax([q for _, q in self.single]))
        self.best_cost, self.best_quality = self.single[self.best]

    def row(self, points: list[Point], pair_q: np.ndarray, pair_c: np.ndarray, **extra: Any) -> dict[str, Any]:
        costs, quals = [p.cost for p in points], [p.quality for p in points]
        top = float(np.nanmax(quals))
        at_top = cost_at_quality(points, top)
        match = cost_at_quality(points, self.best_quality)
        curve = pair_curve_estimates(pair_q, pair_c, 1.0, self.scores, self.costs, self.weak, self.strong, self.weights)
        try:
            pair = {"apgr": _r(apgr(*curve)), "cpt50": _r(cpt(*curve, level=0.5)), "cpt80": _r(cpt(*curve, level=0.8))}
            xs, ys = pgr_curve(*curve)
            pair["pgr_curve"] = [[float(a), float(b)] for a, b in zip(xs, ys)]
        except ValueError as exc:  # the strong model does not beat the weak one on this set
            pair = {"apgr": None, "cpt50": None, "cpt80": None, "pair_note": str(exc)}
        hc, hq = hull(costs, quals)
        return {"aiq": _r(aiq(costs, quals, self.cost_range)), "best_quality": _r(top), "cost_at_best_quality": _r(at_top, 8),
                "cost_to_match_best_single": _r(match / self.best_cost if math.isfinite(match) else float("nan")),
                "quality_at_w0": _r(points[0].quality), **pair,
                "curve": [[float(c), float(q)] for c, q in zip(costs, quals)],
                "hull": [[float(c), float(q)] for c, q in zip(hc, hq)], **extra}


def run_quality(data: RoutingDataset, kinds: Sequence[str], out: Path, embedder: Any = None, *, weak: str | None = None,
                strong: str | None = None, folds: int = 5, seed: int = 0, weights: Sequence[float] = DEFAULT_WEIGHTS,
                log: Log = print) -> dict[str, Any]:
    """Fit, sweep and score every kind in `kinds` on `data`; write the report files to `out`."""
    from routers.embedder import Embedder  # noqa: PLC0415 - heavy import

    if data.costs is None:
        raise ValueError(f"{data.source}: the quality suite needs per-prompt costs (give the loader a prices file)")
    started = time.perf_counter()
    plan = evaluation_plan(data, folds, seed)
    w_col, s_col, pair_how = choose_pair(data, plan.train_rows, weak, strong)
    embedder = embedder or Embedder()
    x = embed_by_split(embedder, data)
    scores, costs = data.scores[plan.eval_rows], data.costs[plan.eval_rows]
    sc = Scorer(scores, costs, w_col, s_col, weights)
    models = data.models
    rows: dict[str, dict[str, Any]] = {}
    single_rows = {m: {"cost": _r(c, 8), "quality": _r(q)} for m, (c, q) in zip(models, sc.single)}
    hc, hq = hull([c for c, _ in sc.single], [q for _, q in sc.single])
    rows[HULL] = {"kind": "reference", "aiq": _r(aiq([c for c, _ in sc.single], [q for _, q in sc.single], sc.cost_range)),
                  "best_quality": _r(sc.best_quality), "cost_at_best_quality": _r(sc.best_cost, 8),
                  "cost_to_match_best_single": 1.0, "hull": [[float(c), float(q)] for c, q in zip(hc, hq)], "models": single_rows}
    ref = cost_reference(costs)
    truth_q = np.nan_to_num(scores.astype(np.float64))  # the oracle's "estimates" are the truth
    rows["oracle"] = sc.row(oracle_points(scores, costs, weights, ref), truth_q, np.nan_to_num(costs) / ref, kind="reference")
    failures: dict[str, str] = {}
    bar = tqdm(total=len(kinds) * len(plan.folds), desc="fit + sweep", unit="fit")
    for kind in kinds:
        bar.set_postfix(router=kind)
        t0 = time.perf_counter()
        try:
            q, c = held_out_estimates(kind, data, x, plan, bar)
            points = sweep_estimates(q, c, 1.0, scores, costs, weights)
            rows[kind] = sc.row(points, q, c, kind="router", seconds=round(time.perf_counter() - t0, 2))
        except Exception as exc:  # noqa: BLE001 - one broken kind must not stop the table
            failures[kind] = _reason(exc)
            log(f"skipped {kind}: {failures[kind]}")
    bar.close()
    results = {
        "data": data.source, "evaluation": plan.how, "eval_prompts": int(len(plan.eval_rows)), "routers": list(kinds),
        "embedding_model": getattr(embedder, "cache_id", None), "weights": [float(w) for w in weights],
        "pair": {"weak": models[w_col], "strong": models[s_col], "rule": pair_how,
                 "weak_quality": _r(sc.single[w_col][1]), "strong_quality": _r(sc.single[s_col][1])},
        "best_single": {"model": models[sc.best], "quality": _r(sc.best_quality), "cost": _r(sc.best_cost, 8)},
        "cost_range": list(sc.cost_range), "rows": rows, "failures": failures,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_outputs(results, Path(out))
    return results


# -- rendering -----------------------------------------------------------------------------


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _short(name: str) -> str:
    return name.split("/")[-1]


def table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    pair, best = results["pair"], results["best_single"]
    head = ["router", "AIQ", f"APGR ({_short(pair['weak'])} / {_short(pair['strong'])})", "CPT(50%)", "CPT(80%)",
            "best quality", "its $ / prompt", f"$ to match {_short(best['model'])} ({best['quality']:.3f})", "quality at w=0"]
    body = []
    for name, r in results["rows"].items():
        match = r.get("cost_to_match_best_single")
        body.append([name, _num(r.get("aiq")), _num(r.get("apgr")), _num(r.get("cpt50"), "{:.1%}"), _num(r.get("cpt80"), "{:.1%}"),
                     _num(r.get("best_quality")), _num(r.get("cost_at_best_quality"), "{:.6f}"),
                     "not reached" if match is None else f"{match:.1%}", _num(r.get("quality_at_w0"))])
    for m, p in results["rows"][HULL]["models"].items():
        body.append([f"  {_short(m)}", "-", "-", "-", "-", _num(p["quality"]), _num(p["cost"], "{:.6f}"), "-", "-"])
    return head, body


def report(results: dict[str, Any]) -> str:
    pair = results["pair"]
    lo, hi = results["cost_range"]
    parts = ["# Cost / quality", "",
             f"Data: `{results['data']}`; {results['evaluation']}; {len(results['weights'])} cost weights; "
             f"{results['seconds']:.0f} s.", "",
             f"AIQ over the single models' cost range ${lo:.6f} .. ${hi:.6f} per prompt. APGR and CPT (RouteLLM): the router "
             f"choosing only between weak `{pair['weak']}` ({pair['weak_quality']}) and strong `{pair['strong']}` "
             f"({pair['strong_quality']}) ({pair['rule']}); CPT(x) = the share of calls to the strong model at which x of the "
             "quality gap is recovered. '$ to match' = the cheapest operating point as good as the best single model, as a "
             "share of that model's cost. Indented rows: the single models.", "",
             markdown(*table(results)), "", "![cost/quality curves](curves.png)", "", "![PGR curves](pgr.png)", ""]
    if results["failures"]:
        parts += ["## Skipped", ""] + [f"- {k}: {why}" for k, why in results["failures"].items()] + [""]
    return "\n".join(parts)


def plot_pgr(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.plot([0, 1], [0, 1], ":", color="0.5", label="random split of calls (APGR 0.5)")
    for name, r in results["rows"].items():
        if "pgr_curve" not in r:
            continue
        xy = np.array(r["pgr_curve"])
        style = {"color": "black", "lw": 2.2} if name == "oracle" else {"lw": 1.4}
        ax.plot(xy[:, 0], xy[:, 1], label=f"{name} (APGR {r['apgr']:.3f})", **style)
    pair = results["pair"]
    ax.set_xlabel(f"share of calls to the strong model ({_short(pair['strong'])})")
    ax.set_ylabel(f"performance gap recovered (weak: {_short(pair['weak'])})")
    ax.set_title("RouteLLM's PGR curve per router (pair setting)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results))
    plot_curves(results, out / "curves.png", title=f"{Path(results['data']).name}: cost / quality over the cost-weight sweep")
    plot_pgr(results, out / "pgr.png")


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console() if Console().is_terminal else Console(width=160)  # piped: no 80-column wrap
    head, body = table(results)
    t = Table(title=f"{Path(results['data']).name}: {results['evaluation']}")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in body:
        t.add_row(*r)
    console.print(t)
