"""A new expert joins a trained router without retraining, and gets traffic where it is strong.

Real data: carrot is trained on the RouterBench slice with Yi-34B's columns removed, then Yi
is calibrated from its recorded outcomes (`switchyard experts calibrate`) and served behind
the gateway; the openai client's requests reach it on the tasks its profile is strong on
(arc-challenge, winogrande: 0.90 and 0.75 against mbpp's 0.39 in RouterBench).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import openai
import pandas as pd
import numpy as np
import pytest

from evaluation.loaders import load_dataset
from experts.spec import ExpertSpec
from gateway.app import create_app
from gateway.onboarding import price
from gateway.settings import load_settings
from routers.embedder import Embedder
from routers.tokens import estimate_tokens
from switchyard.threaded import ThreadedServer
from switchyard.training import train_router
from tests.conftest import ROUTERBENCH_MODELS, write_config

NEW = "zero-one-ai/Yi-34B-Chat"
COST_WEIGHT = 0.1  # past the point where gpt-4 takes everything


def _without_model(src: Path, dst: Path, model: str) -> Path:
    dst.mkdir()
    for f in src.glob("*.csv"):
        df = pd.read_csv(f)
        df.drop(columns=[c for c in df.columns if c == model or c.startswith(f"{model}|")]).to_csv(dst / f.name, index=False)
    return dst


def _shares(artifact: Path, tmp: Path, embedder: Embedder, loopback_url: str) -> dict[str, float]:
    """Share of each test task's prompts the gateway sends to NEW, asked through the openai client."""
    config = write_config(tmp, artifact, loopback_url, ROUTERBENCH_MODELS)
    test = load_dataset(tmp / "full").split("test")
    with ThreadedServer(create_app(load_settings(config), embedder=embedder)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        sent: Counter[str] = Counter()
        for prompt, task in zip(test.prompts, test.tasks):
            r = client.chat.completions.create(model="carrot", messages=[{"role": "user", "content": prompt}],
                                               extra_body={"routing": {"cost_weight": COST_WEIGHT}})
            sent[task] += r.model == NEW
    totals = Counter(test.tasks)
    return {task: sent[task] / totals[task] for task in totals}


def test_calibrated_expert_gets_traffic_where_its_profile_is_strongest(
    bench_slice: Path, tmp_path: Path, embedder: Embedder, loopback: tuple[str, object]
) -> None:
    (tmp_path / "full").symlink_to(bench_slice)
    reduced = _without_model(bench_slice, tmp_path / "reduced", NEW)
    artifact = tmp_path / "carrot.npz"
    train_router("carrot", reduced, artifact, embedder=embedder)
    before = _shares(artifact, tmp_path, embedder, loopback[0])
    assert set(before.values()) == {0.0}  # unknown to the router: never chosen

    r = subprocess.run([sys.executable, "-m", "switchyard.cli", "experts", "calibrate", NEW, "--data", str(bench_slice),
                        "--split", "train", "--artifact", str(artifact)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert 200 <= summary["prompts"] <= 240 and NEW in summary["models"]  # rows with no recorded score are skipped

    after = _shares(artifact, tmp_path, embedder, loopback[0])
    strong = (after["arc-challenge"] + after["winogrande"]) / 2
    assert strong >= 0.2, after
    assert after["mbpp"] < strong / 2, after


def test_calibration_errors_are_one_line(bench_slice: Path, tmp_path: Path, carrot_artifact: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "switchyard.cli", "experts", "calibrate", "no-such-model", "--data", str(bench_slice),
                        "--artifact", str(carrot_artifact), "--out", str(tmp_path / "x.npz")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "no scores for model 'no-such-model'" in r.stderr and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("max_tokens", [None, 16])
def test_costs_come_from_the_experts_prices(max_tokens: int | None) -> None:
    query = "hello world, how are you"
    experts = [ExpertSpec(name=n, base_url="http://x/v1", input_price=p, output_price=2 * p) for n, p in (("a", 1.0), ("b", 3.0), ("free", 0.0))]
    cap = max_tokens or 10**9
    # Predicted tokens + prices win; an untrained expert (NaN) is priced at a typical length; no prices: the router's cost.
    cost = price(np.array([0.5, np.nan, 0.25]), np.array([100.0, np.nan, 50.0]), experts, query, max_tokens)
    assert cost[0] == pytest.approx((estimate_tokens(query) * 1.0 + min(100, cap) * 2.0) / 1e6)
    assert cost[1] == pytest.approx((estimate_tokens(query) * 3.0 + min(256, cap) * 6.0) / 1e6)
    assert cost[2] == 0.25
    assert price(np.array([0.5]), None, experts[:1], query, max_tokens)[0] == 0.5
