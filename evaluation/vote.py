"""Several experts per query, offline: majority vote over the k recruited experts' recorded
answers on multiple-choice tasks, against k = 1 (the router's single pick). (Weighting votes
by predicted quality was tried and changed accuracy by at most 0.1 point on RouterBench.)

The gold letter is not in RouterBench's files; it is the letter the recorded answers scored
1.0 commit to (prompts where no model was right are skipped: no answer can be checked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from experts.aggregation import extract_choice, majority
from routers.base import Router, decide
from routers.dataset import RoutingDataset

MULTIPLE_CHOICE = ("arc", "winogrande", "mmlu", "hellaswag")


def is_multiple_choice(task: str) -> bool:
    return task.lower().startswith(MULTIPLE_CHOICE)


def gold_choices(data: RoutingDataset) -> list[str | None]:
    out: list[str | None] = []
    for i, row in enumerate(data.responses or []):
        if not is_multiple_choice(data.tasks[i]):
            out.append(None)
            continue
        right = [extract_choice(r) for m, r in enumerate(row) if data.scores[i, m] == 1.0]
        letters = [a for a in right if a]
        out.append(max(set(letters), key=letters.count) if letters else None)
    return out


def vote_eval(router: Router, embeddings: np.ndarray, data: RoutingDataset, ks: tuple[int, ...] = (1, 3, 5),
              cost_weight: float = 0.0) -> list[dict[str, Any]]:
    """Accuracy and cost per k on the multiple-choice rows of `data` (needs recorded responses)."""
    if data.responses is None or data.costs is None:
        raise ValueError("vote evaluation needs recorded responses and costs")
    gold = gold_choices(data)
    rows = [i for i in range(len(data)) if gold[i] is not None]
    est = router.predict(embeddings[rows])
    results = []
    for k in ks:
        right, cost = [], []
        for j, i in enumerate(rows):
            known = np.array([data.responses[i][m] is not None for m in range(len(data.models))])
            chosen = decide(est.quality[j], est.cost[j], cost_weight, router.cost_ref, k=k, allowed=known).chosen
            answers = [extract_choice(data.responses[i][m]) for m in chosen]
            pick = majority(answers)
            right.append(pick is not None and answers[pick] == gold[i])
            cost.append(float(np.nansum(data.costs[i, chosen])))
        results.append({"k": k, "prompts": len(rows), "accuracy": float(np.mean(right)) if rows else 0.0,
                        "mean_cost_usd": float(np.mean(cost)) if rows else 0.0})
    return results


def write_vote_report(rows: list[dict[str, Any]], out: Path, context: dict[str, Any]) -> None:
    """results.json, report.md and vote.png (accuracy and mean cost per k) into `out`."""
    import json  # noqa: PLC0415

    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(context | {"rows": rows}, indent=2))
    table = ["| k | prompts | accuracy | mean $ / prompt |", "|---:|---:|---:|---:|"]
    table += [f"| {r['k']} | {r['prompts']} | {r['accuracy']:.3f} | {r['mean_cost_usd']:.6f} |" for r in rows]
    (out / "report.md").write_text("\n".join([
        "# Majority vote over k recruited experts", "",
        f"`{context['data']}` test split, multiple-choice rows with a checkable answer ({', '.join(MULTIPLE_CHOICE)}); "
        f"router `{context['router']}` at cost weight {context['cost_weight']}; each expert's recorded answer; "
        "ties go to the better-ranked expert.", "", *table, "", "![vote](vote.png)", ""]))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ks = [r["k"] for r in rows]
    ax.plot(ks, [r["accuracy"] for r in rows], "o-", label="accuracy")
    ax.set_xlabel("experts recruited (k)")
    ax.set_ylabel("accuracy (majority vote)")
    ax.set_xticks(ks)
    ax2 = ax.twinx()
    ax2.plot(ks, [r["mean_cost_usd"] for r in rows], "s--", color="tab:red", label="mean $ per prompt")
    ax2.set_ylabel("mean $ per prompt", color="tab:red")
    ax.set_title(f"Majority vote vs k ({rows[0]['prompts'] if rows else 0} multiple-choice prompts)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "vote.png", dpi=120)
    plt.close(fig)
