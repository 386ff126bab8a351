from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evaluation.generalization import run_generalization, task_splits
from evaluation.loaders import load_dataset

NEW = "zero-one-ai/Yi-34B-Chat"


def test_task_splits_hold_each_task_out(bench_slice: Path) -> None:
    data = load_dataset(bench_slice)
    experiments = task_splits(data)
    assert [e[0] for e in experiments] == ["arc-challenge", "mbpp", "winogrande"]
    tasks = np.asarray(data.tasks)
    for task, out_rows, in_rows, test_rows in experiments:
        assert task not in set(tasks[out_rows]) and task in set(tasks[in_rows])
        assert set(tasks[test_rows]) == {task} and not set(test_rows) & set(in_rows)
    # a task with train rows but no test rows is no experiment (nothing to measure), not a NaN row
    no_test = data.subset(np.flatnonzero(~((tasks == "mbpp") & (np.asarray(data.splits) == "test"))))
    assert [e[0] for e in task_splits(no_test)] == ["arc-challenge", "winogrande"]


def test_generalization_suite(bench_slice: Path, embedder, tmp_path: Path) -> None:
    data = load_dataset(bench_slice)
    result = run_generalization(data, ["carrot", "knn"], tmp_path, model=NEW, calibration=120, cost_weight=0.1,
                                embedder=embedder, log=lambda m: None)
    assert {(r["task"], r["router"]) for r in result["unseen_tasks"]} == {(t, k) for t in ("arc-challenge", "mbpp", "winogrande")
                                                                          for k in ("carrot", "knn")}
    rows = {(r["router"], r["how"]): r for r in result["new_expert"]["rows"]}
    assert rows[("carrot", "without it")]["share_to_new"] == 0.0
    assert rows[("carrot", "by description")]["quality"] is None  # carrot needs outcomes
    assert rows[("carrot", "calibrated (120 prompts)")]["share_to_new"] > 0.1
    assert json.loads((tmp_path / "results.json").read_text())["new_expert"]["model"] == NEW
    assert (tmp_path / "report.md").exists() and (tmp_path / "unseen_tasks.png").stat().st_size > 1000
    assert (tmp_path / "new_expert.png").stat().st_size > 1000
