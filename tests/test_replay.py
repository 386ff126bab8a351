"""The replay backend end to end: a test split through the gateway (a child process) with the
openai client; routing equals the offline evaluation and accounted cost equals the dataset's."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from evaluation.replay_bench import run_replay
from experts.spec import ExpertSpec


def test_replay_split_through_the_gateway(bench_slice: Path, carrot_artifact: Path, tmp_path: Path) -> None:
    r = run_replay(bench_slice, carrot_artifact, tmp_path, cost_weight=0.05, concurrency=4, limit=40)
    n = r["requests"]
    assert n == 40
    assert r["decisions_equal_offline"] == n
    assert r["answers_are_recorded"] == n and r["replay_labelled"]
    assert r["max_abs_cost_diff_usd"] < 1e-9
    assert r["accounted_cost_usd"] == pytest.approx(r["dataset_cost_usd"], rel=1e-9)
    assert r["warm"]["p50_ms"] > 0
    for name in ("results.json", "report.md", "latency.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "40 / 40" in (tmp_path / "report.md").read_text()


def test_replay_experts_are_labelled() -> None:
    with pytest.raises(ValidationError, match="must contain 'replay'"):
        ExpertSpec(name="gpt-4", backend="replay", replay_data="x")
    with pytest.raises(ValidationError, match="needs replay_data"):
        ExpertSpec(name="replay-gpt-4", backend="replay")
    with pytest.raises(ValidationError, match="base_url is required"):
        ExpertSpec(name="gpt-4")
