"""Generalization suite (`switchyard bench generalization`).

(a) Unseen tasks. Data with out-of-distribution rows (RouterDC's single-file tasks: split '')
    trains on the in-distribution train split and tests on those rows; other data does
    leave-one-task-out: for each task, fit on the other tasks' train rows and test on the
    task's test rows, against the same router fitted with the task (held in). Reported per
    router: mean true score at w = 0 held in vs held out, with the best single model (chosen
    on the training rows) and the oracle on the same test rows.
(b) A new expert. One model is held out of training; it then joins the fitted router
    - by description (kinds that read ExpertCards: `skills`, `glider`), and
    - by a calibration set of its recorded outcomes on `calibration` train prompts
      (Router.calibrate_expert, what `switchyard experts calibrate` does),
    and the router is evaluated on the test split with and without it: mean true score and
    cost at a cost weight, and the share of prompts the new expert receives. Its predicted
    cost where the router has none is its dataset cost for the prompt (the data's costs are
    its prices x tokens, what the gateway's pricing computes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evaluation.embed import embed_by_split
from evaluation.metrics import choose_from, outcome
from routers.artifacts import build_router
from routers.base import Estimates, ExpertCard, OnboardingError, Router
from routers.dataset import RoutingDataset
from routers.embedder import Embedder

Log = Callable[[str], None]


def _w0_quality(router: Router, x: np.ndarray, test: RoutingDataset) -> float:
    est = router.predict(x)
    return outcome(choose_from(est.quality, est.cost, 0.0, router.cost_ref), test.scores, test.costs)[0]


def _best_single(train: RoutingDataset, test: RoutingDataset) -> float:
    best = int(np.nanargmax(np.nanmean(train.scores, axis=0)))
    return float(np.nanmean(test.scores[:, best]))


def _oracle(test: RoutingDataset) -> float:
    return float(np.nanmean(np.nanmax(test.scores, axis=1)))


def task_splits(data: RoutingDataset) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, held-out train rows, held-in train rows, test rows) per unseen-task experiment."""
    splits, tasks = np.asarray(data.splits), np.asarray(data.tasks)
    train = splits == "train"
    if (splits == "").any() and train.any():
        ood = splits == ""
        return [("out-of-distribution: " + ", ".join(sorted(set(tasks[ood]))), np.flatnonzero(train), np.flatnonzero(train),
                 np.flatnonzero(ood))]
    if not train.any():  # no splits at all: a seeded holdout, as RoutingDataset.split does
        rng = np.random.default_rng(0)
        train = rng.random(len(data)) >= 0.3
        splits = np.where(train, "train", "test")
    # A task with no test rows (LLMRouter's test split covers 10 of its 14 tasks) has nothing to
    # measure: it is no experiment, rather than a NaN that would poison the means.
    return [(t, np.flatnonzero(train & (tasks != t)), np.flatnonzero(train), test)
            for t in sorted(set(tasks)) if len(test := np.flatnonzero((splits == "test") & (tasks == t)))]


def unseen_tasks(data: RoutingDataset, x: np.ndarray, kinds: list[str], log: Log) -> list[dict[str, Any]]:
    rows = []
    experiments = task_splits(data)
    for (name, out_rows, in_rows, test_rows), kind in tqdm([(e, k) for e in experiments for k in kinds], desc="unseen tasks"):
        test = data.subset(test_rows)
        row: dict[str, Any] = {"task": name, "router": kind, "test_prompts": len(test_rows)}
        try:
            held_out = build_router(kind, data.models).fit(x[out_rows], data.subset(out_rows))
            held_in = build_router(kind, data.models).fit(x[in_rows], data.subset(in_rows))
        except (ValueError, OnboardingError) as exc:
            log(f"{kind}: skipped ({exc})")
            continue
        row |= {"held_in": _w0_quality(held_in, x[test_rows], test), "held_out": _w0_quality(held_out, x[test_rows], test),
                "best_single": _best_single(data.subset(out_rows), test), "oracle": _oracle(test)}
        rows.append(row)
    return rows


def _with_truth(router: Router, est: Estimates, data: RoutingDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Estimates and true outcomes with columns in `router.all_models` order; an expert with no
    predicted cost gets its dataset cost (its prices x tokens)."""
    cols = [data.models.index(m) for m in router.all_models]
    scores, costs = data.scores[:, cols], data.costs[:, cols]
    cost = np.where(np.isnan(est.cost), costs, est.cost)
    return est.quality, cost, scores, costs


def new_expert(data: RoutingDataset, x: np.ndarray, kinds: list[str], model: str, embed: Callable[[list[str]], np.ndarray],
               description: str, skills: tuple[str, ...], calibration: int, cost_weight: float, log: Log) -> list[dict[str, Any]]:
    if data.costs is None:
        raise ValueError("the new-expert experiment needs costs")
    train_rows, test_rows = np.flatnonzero(np.asarray(data.splits) == "train"), np.flatnonzero(np.asarray(data.splits) == "test")
    if not len(train_rows) or not len(test_rows):
        rng = np.random.default_rng(0)
        is_test = rng.random(len(data)) < 0.3
        train_rows, test_rows = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    keep = [m for m in data.models if m != model]
    reduced = RoutingDataset(prompts=data.prompts, models=keep, scores=data.scores[:, [data.models.index(m) for m in keep]],
                             costs=data.costs[:, [data.models.index(m) for m in keep]], tasks=data.tasks, splits=data.splits)
    test = data.subset(test_rows)
    cal = np.random.default_rng(0).choice(train_rows, size=min(calibration, len(train_rows)), replace=False)
    m = data.models.index(model)
    rows = []
    for kind in tqdm(kinds, desc=f"new expert {model}"):
        try:
            router = build_router(kind, keep).fit(x[train_rows], reduced.subset(train_rows))
        except ValueError as exc:
            log(f"{kind}: skipped ({exc})")
            continue

        def measure(how: str) -> None:
            q, c, scores, costs = _with_truth(router, router.predict(x[test_rows]), test)
            picks = choose_from(q, c, cost_weight, router.cost_ref)
            quality, cost = outcome(picks, scores, costs)
            share = float(np.mean(np.asarray(router.all_models)[picks] == model))
            rows.append({"router": kind, "how": how, "quality": quality, "cost_usd": cost, "share_to_new": share})

        measure("without it")
        try:
            router.onboard(ExpertCard(model, description, skills), embed)
            measure("by description")
        except OnboardingError:
            rows.append({"router": kind, "how": "by description", "quality": None, "cost_usd": None, "share_to_new": None,
                         "note": "this kind needs outcomes"})
        router.cards.clear()
        router.calibrate_expert(model, x[cal], data.scores[cal, m], data.costs[cal, m])
        measure(f"calibrated ({len(cal)} prompts)")
        router.profiles.clear()
        fitted = build_router(kind, data.models).fit(x[train_rows], data.subset(train_rows))
        q, c, scores, costs = _with_truth(fitted, fitted.predict(x[test_rows]), test)
        picks = choose_from(q, c, cost_weight, fitted.cost_ref)
        quality, cost = outcome(picks, scores, costs)
        rows.append({"router": kind, "how": "trained with it", "quality": quality, "cost_usd": cost,
                     "share_to_new": float(np.mean(np.asarray(fitted.all_models)[picks] == model))})
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.6f}" if abs(v) < 0.01 else f"{v:.4f}"
    return str(v)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(cols))) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def plot(unseen: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    kinds = sorted({r["router"] for r in unseen})
    held_in = [np.mean([r["held_in"] for r in unseen if r["router"] == k]) for k in kinds]
    held_out = [np.mean([r["held_out"] for r in unseen if r["router"] == k]) for k in kinds]
    fig, ax = plt.subplots(figsize=(max(6, len(kinds) * 0.9), 4))
    pos = np.arange(len(kinds))
    ax.bar(pos - 0.2, held_in, 0.4, label="task held in")
    ax.bar(pos + 0.2, held_out, 0.4, label="task held out")
    ax.set_xticks(pos, kinds, rotation=30, ha="right")
    ax.set_ylabel("mean true score at w = 0")
    ax.set_ylim(min(held_in + held_out) - 0.05, max(held_in + held_out) + 0.03)
    ax.legend()
    ax.set_title("Unseen tasks: mean over held-out tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_generalization(data: RoutingDataset, kinds: list[str], out: Path, model: str | None = None, description: str = "",
                       skills: tuple[str, ...] = (), calibration: int = 200, cost_weight: float = 0.0,
                       embedder: Embedder | None = None, log: Log = print) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    embedder = embedder or Embedder()
    x = embed_by_split(embedder, data)
    unseen = unseen_tasks(data, x, kinds, log)
    model = model or data.models[int(np.nanargmax(np.nanmean(data.scores, axis=0)))]
    joined = new_expert(data, x, kinds, model, embedder.encode, description, skills, calibration, cost_weight, log)
    results = {"data": data.source, "unseen_tasks": unseen, "new_expert": {"model": model, "description": description,
               "skills": list(skills), "cost_weight": cost_weight, "rows": joined}}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report = ["# Generalization", "", f"Data: `{data.source}`", "", "## Unseen tasks (mean true score at w = 0)", "",
              _table(unseen, ["task", "router", "test_prompts", "held_in", "held_out", "best_single", "oracle"]), "",
              f"## A new expert: `{model}` held out of training, then added (w = {cost_weight})", "",
              _table(joined, ["router", "how", "quality", "cost_usd", "share_to_new"]), "", "![unseen](unseen_tasks.png)", "",
              "![new expert](new_expert.png)", ""]
    (out / "report.md").write_text("\n".join(report))
    if unseen:
        plot(unseen, out / "unseen_tasks.png")
    if joined:
        plot_new_expert(joined, model, out / "new_expert.png")
    return results


def plot_new_expert(rows: list[dict[str, Any]], model: str, path: Path) -> None:
    """Quality per router: without the new expert, added by description, calibrated, trained with it."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    kinds = list(dict.fromkeys(r["router"] for r in rows))
    hows = list(dict.fromkeys(r["how"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, len(kinds) * 1.2), 4))
    width = 0.8 / len(hows)
    for j, how in enumerate(hows):
        vals = [next((r["quality"] for r in rows if r["router"] == k and r["how"] == how), None) for k in kinds]
        ax.bar(np.arange(len(kinds)) + (j - (len(hows) - 1) / 2) * width, [np.nan if v is None else v for v in vals], width,
               label=how)
    ax.set_xticks(np.arange(len(kinds)), kinds, rotation=30, ha="right")
    finite = [r["quality"] for r in rows if r["quality"] is not None and np.isfinite(r["quality"])] or [0.0, 1.0]
    ax.set_ylim(min(finite) - 0.03, max(finite) + 0.02)
    ax.set_ylabel("mean true score (test)")
    ax.set_title(f"New expert {model.split('/')[-1]}: held out, then added", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
