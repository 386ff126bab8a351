"""`switchyard bench quality`: fit, sweep and score routers on real RouterBench rows, both with
the data's own splits and (as the project's JSONL without splits) by k-fold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from evaluation.loaders import load_dataset
from evaluation.quality import choose_pair, evaluation_plan, run_quality


def test_quality_on_routerbench_slice(bench_slice: Path, embedder, tmp_path: Path) -> None:
    data = load_dataset(bench_slice)
    r = run_quality(data, ["carrot", "mf", "random"], tmp_path, embedder, log=lambda m: None)
    rows = r["rows"]
    assert r["pair"]["strong"] == "gpt-4-1106-preview"  # best train score
    weak = r["pair"]["weak"]
    train = np.asarray(data.splits) == "train"
    costs = np.nanmean(data.costs[train], axis=0)
    assert costs[data.models.index(weak)] <= 0.25 * costs[data.models.index("gpt-4-1106-preview")]
    assert r["eval_prompts"] == 90 and not r["failures"]
    for name in ("carrot", "mf", "random"):
        row = rows[name]
        assert 0 <= row["aiq"] <= rows["oracle"]["aiq"]  # nothing beats the per-prompt oracle
        assert row["apgr"] <= rows["oracle"]["apgr"] + 1e-9
        assert 0 <= row["cpt50"] <= row["cpt80"] <= 1  # more of the gap needs at least as many strong calls
        assert row["best_quality"] <= rows["oracle"]["best_quality"] + 1e-9
        assert len(row["curve"]) == len(r["weights"])
    assert rows["carrot"]["aiq"] > rows["random"]["aiq"]  # a learned router beats coin flips on AIQ
    assert rows["oracle"]["apgr"] > 0.9
    assert len(rows["single models (hull)"]["models"]) == 11
    for f in ("results.json", "report.md", "curves.png", "pgr.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "APGR" in (tmp_path / "report.md").read_text()


def test_kfold_on_jsonl_without_splits_through_the_cli(bench_slice: Path, tmp_path: Path) -> None:
    data = load_dataset(bench_slice)
    path = tmp_path / "rows.jsonl"
    with path.open("w") as fh:
        for i in range(0, len(data), 2):  # 165 rows, no split field: k-fold
            fh.write(json.dumps({"prompt": data.prompts[i], "task": data.tasks[i],
                                 "scores": {m: float(data.scores[i, j]) for j, m in enumerate(data.models)},
                                 "costs": {m: float(data.costs[i, j]) for j, m in enumerate(data.models)}}) + "\n")
    plan = evaluation_plan(load_dataset(path), folds=3)
    assert len(plan.folds) == 3 and len(plan.eval_rows) == 165
    for train, test in plan.folds:
        assert not set(train) & set(test)  # no row predicts itself
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "switchyard.cli", "bench", "quality", "--data", str(path), "--routers", "carrot,cheapest",
           "--folds", "3", "--weak", "mistralai/mixtral-8x7b-chat", "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "carrot" in p.stdout and "APGR" in p.stdout
    r = json.loads((out / "results.json").read_text())
    assert r["evaluation"].startswith("3-fold") and r["pair"]["weak"] == "mistralai/mixtral-8x7b-chat"
    assert r["rows"]["cheapest"]["apgr"] <= 0.5 + 1e-9  # never calls the strong model on purpose
    bad = subprocess.run(cmd[:-2] + ["--weak", "no-such-model"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no-such-model" in bad.stderr


def test_pair_falls_back_to_the_cheapest_when_costs_are_flat(bench_slice: Path) -> None:
    data = load_dataset(bench_slice)
    data.costs = np.ones_like(data.costs)
    weak, strong, how = choose_pair(data, np.arange(len(data)))
    assert data.models[strong] == "gpt-4-1106-preview" and weak != strong and "cheapest" in how
