"""How much per-prompt signal does routing data hold beyond the task? The diagnostic behind the
README's reading of the RouterBench targets.

    .venv/bin/python -m evaluation.signal --data ../shared/data/routerbench --out out/signal

1. Probe: within each task, for each model, a logistic regression on the prompt embeddings
   (5-fold cross-validated on the train split, L2 by default) predicts whether the model is
   right; its out-of-fold ROC AUC says how well the embedding separates that model's right
   answers from its wrong ones (0.5 = no signal). The same probe on the question's length
   alone (one standardized feature) is the baseline.
2. Question only: the RouterBench prompts are few-shot (the same worked examples before every
   question of a task); each router kind's test AIQ when it embeds the whole prompt (tail cut,
   the default) against only the last block (the question).
3. Missing outcomes: each kind's test AIQ and cost to match the reference model when a missing
   outcome is skipped (this project's convention) or counted as a wrong answer.

Writes results.json and signal.png (the probe's AUC per task and model) into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("knn", "carrot", "carrot-linear", "mf")
REFERENCE = "gpt-4-1106-preview"


def question(prompt: str) -> str:
    """The last non-empty block of a few-shot prompt (blocks are separated by blank lines)."""
    blocks = [b for b in prompt.split("\n\n") if b.strip()]
    return blocks[-1] if blocks else prompt


def probe_auc(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Out-of-fold ROC AUC of a logistic probe x -> y (NaN when y has a single class)."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415

    if len(np.unique(y)) < 2 or min(np.bincount(y.astype(int))) < folds:
        return float("nan")
    out = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        out[te] = LogisticRegression(max_iter=2000).fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
    return float(roc_auc_score(y, out))


def probes(data, x: np.ndarray) -> dict[str, dict[str, dict[str, float]]]:  # noqa: ANN001
    """{task: {model: {"embedding": auc, "length": auc}}} on `data` (the train split)."""
    tasks = np.asarray(data.tasks)
    lengths = np.array([len(question(p)) for p in data.prompts], dtype=np.float64)
    lengths = ((lengths - lengths.mean()) / (lengths.std() or 1.0))[:, None]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for task in sorted(set(data.tasks)):
        rows = np.flatnonzero(tasks == task)
        out[task] = {}
        for j, model in enumerate(data.models):
            y = data.scores[rows, j]
            known = np.isfinite(y)
            y = (y[known] >= 0.5).astype(int)
            out[task][model] = {"embedding": probe_auc(x[rows][known], y), "length": probe_auc(lengths[rows][known], y)}
    return out


def _aiq_and_match(router, x: np.ndarray, test, scores: np.ndarray) -> tuple[float, float]:  # noqa: ANN001
    from evaluation.metrics import aiq, cost_at_quality, cost_range_of, single_model_points, sweep  # noqa: PLC0415

    single = single_model_points(scores, test.costs)
    points = sweep(router, x, scores, test.costs)
    ref = test.models.index(REFERENCE) if REFERENCE in test.models else int(np.nanargmax([q for _, q in single]))
    ref_cost, ref_quality = single[ref]
    value = aiq([p.cost for p in points], [p.quality for p in points], cost_range_of(single))
    return value, cost_at_quality(points, ref_quality) / ref_cost


def router_study(train, test, x_train: np.ndarray, x_test: np.ndarray, q_train: np.ndarray, q_test: np.ndarray,  # noqa: ANN001
                 kinds: Sequence[str]) -> dict[str, dict[str, float]]:
    from evaluation.metrics import fill_outcomes  # noqa: PLC0415
    from routers.artifacts import build_router  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    out: dict[str, dict[str, float]] = {}
    zero = fill_outcomes(test.scores, "zero")
    for kind in tqdm(kinds, desc="routers", unit="kind"):
        whole = build_router(kind, train.models).fit(x_train, train)
        only_q = build_router(kind, train.models).fit(q_train, train)
        aiq_whole, match_whole = _aiq_and_match(whole, x_test, test, test.scores)
        aiq_q, _ = _aiq_and_match(only_q, q_test, test, test.scores)
        aiq_zero, match_zero = _aiq_and_match(whole, x_test, test, zero)
        out[kind] = {"aiq_whole_prompt": aiq_whole, "aiq_question_only": aiq_q, "aiq_missing_as_wrong": aiq_zero,
                     "match_cost_share": match_whole, "match_cost_share_missing_as_wrong": match_zero}
    return out


def _finite(obj: Any) -> Any:
    """NaN (no AUC for a single-class cell, a cost target not reached) as null: valid JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def plot(auc: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    tasks = list(auc)
    models = list(next(iter(auc.values())))
    grid = np.array([[auc[t][m]["embedding"] for m in models] for t in tasks])
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.6 * len(tasks)))
    im = ax.imshow(grid, vmin=0.4, vmax=0.8, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(models)), [m.split("/")[-1] for m in models], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks)
    for i in range(len(tasks)):
        for j in range(len(models)):
            if math.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="within-task ROC AUC (0.5 = no signal)")
    ax.set_title("Does the prompt embedding tell whether a model will be right? (5-fold probe, train split)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run(data_path: Path, out: Path, kinds: Sequence[str] = KINDS) -> dict[str, Any]:
    from evaluation.loaders import load_dataset  # noqa: PLC0415
    from routers.embedder import Embedder, embed_cached  # noqa: PLC0415

    data = load_dataset(data_path)
    train, test = data.split("train"), data.split("test")
    if len(train) == 0 or len(test) == 0 or test.costs is None:
        raise ValueError(f"{data_path}: needs train and test splits and per-prompt costs")
    embedder = Embedder()
    x_train, x_test = embed_cached(embedder, train.prompts), embed_cached(embedder, test.prompts)
    q_train = embed_cached(embedder, [question(p) for p in train.prompts])
    q_test = embed_cached(embedder, [question(p) for p in test.prompts])
    auc = probes(train, x_train)
    result = {"data": str(data_path), "probe_auc": auc, "routers": router_study(train, test, x_train, x_test, q_train, q_test, kinds)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_finite(result), indent=2))
    plot(auc, out / "signal.png")
    return result


def summary(result: dict[str, Any]) -> str:
    lines = ["| task | probe AUC, min-max over models | length AUC, min-max |", "|---|---:|---:|"]
    for task, per_model in result["probe_auc"].items():
        e = [v["embedding"] for v in per_model.values() if math.isfinite(v["embedding"])]
        n = [v["length"] for v in per_model.values() if math.isfinite(v["length"])]
        lines.append(f"| {task} | {min(e):.2f}-{max(e):.2f} | {min(n):.2f}-{max(n):.2f} |")
    lines += ["", "| router | AIQ whole prompt | AIQ question only | AIQ, missing = wrong | cost to match (skip / wrong) |",
              "|---|---:|---:|---:|---:|"]
    def share(x: float) -> str:
        return f"{x:.1%}" if math.isfinite(x) else "not reached"

    for kind, r in result["routers"].items():
        lines.append(f"| {kind} | {r['aiq_whole_prompt']:.4f} | {r['aiq_question_only']:.4f} | {r['aiq_missing_as_wrong']:.4f} | "
                     f"{share(r['match_cost_share'])} / {share(r['match_cost_share_missing_as_wrong'])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("SWITCHYARD_DATA", "../shared/data")) / "routerbench")
    p.add_argument("--routers", default=",".join(KINDS))
    p.add_argument("--out", type=Path, default=Path("out/signal"))
    args = p.parse_args(argv)
    try:
        result = run(args.data, args.out, [k for k in args.routers.split(",") if k])
    except (ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(summary(result))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'signal.png'}")


if __name__ == "__main__":
    main()
