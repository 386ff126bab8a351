"""Cost-weight calibration: targets parse, each kind is met on real data (re-measured), and the
`switchyard calibrate` command prints JSON or fails in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.metrics import DEFAULT_WEIGHTS, choose_from
from routers.calibration import Target, calibrate, parse_target


@pytest.fixture(scope="module")
def fitted(bench_slice: Path, embedder):  # noqa: ANN001, ANN201
    """A knn router fitted on the slice's train split, with the test split and its embeddings."""
    from evaluation.loaders import load_dataset
    from routers.artifacts import build_router
    from routers.embedder import embed_cached

    data = load_dataset(bench_slice)
    train, test = data.split("train"), data.split("test")
    router = build_router("knn", train.models, k=10).fit(embed_cached(embedder, train.prompts), train)
    return router, embed_cached(embedder, test.prompts), test


_ESTIMATES: dict[int, object] = {}


def measure(router, x: np.ndarray, data, w: float) -> tuple[float, float, float]:  # noqa: ANN001
    """Independent re-measurement: (mean true quality, USD per 1k, share to the best-scoring model)."""
    if id(router) not in _ESTIMATES:
        _ESTIMATES[id(router)] = router.predict(x)
    est = _ESTIMATES[id(router)]
    picks = choose_from(est.quality, est.cost, w, router.cost_ref)
    rows = np.arange(len(picks))
    strong = int(np.nanargmax(np.nanmean(data.scores, axis=0)))
    return float(np.nanmean(data.scores[rows, picks])), float(np.mean(data.costs[rows, picks]) * 1000), float(np.mean(picks == strong))


def test_parse_target() -> None:
    assert parse_target("strong-share=0.2") == Target("strong-share", 0.2)
    assert parse_target(" quality = 95% ") == Target("quality", 0.95)
    assert parse_target("budget-usd-per-1k=0.5") == Target("budget-usd-per-1k", 0.5)
    assert str(parse_target("strong_share=20%")) == "strong-share=0.2"
    for bad, why in [("foo=1", "expected one of"), ("strong-share", "expected one of"), ("strong-share=abc", "not a number"),
                     ("strong-share=1.5", "between 0 and 1"), ("quality=0", r"\(0, 1\]"), ("quality=1.2", r"\(0, 1\]"),
                     ("budget-usd-per-1k=-1", "negative"), ("budget-usd-per-1k=nan", "finite"), ("", "expected one of")]:
        with pytest.raises(ValueError, match=why):
            parse_target(bad)


@pytest.mark.parametrize("target", ["strong-share=0.2", "strong-share=0", "budget-usd-per-1k=0.5", "budget-usd-per-1k=2",
                                    "quality=0.95", "quality=0.9", "quality=1"])
def test_calibrate_meets_each_target_and_remeasures(fitted, target: str) -> None:  # noqa: ANN001
    router, x, data = fitted
    result = calibrate(router, x, data, target)
    t = parse_target(target)
    q, c, share = measure(router, x, data, result.w)
    q0 = measure(router, x, data, 0.0)[0]
    measured = {"strong-share": share, "budget-usd-per-1k": c, "quality": q / q0}[t.kind]
    assert result.achieved == pytest.approx(measured, rel=1e-6)
    assert (result.quality, result.cost_usd_per_1k, result.strong_share) == pytest.approx((q, c, share), rel=1e-6)
    if t.is_floor:
        assert measured >= t.value - 1e-9
    else:
        assert measured <= t.value + 1e-9
    # The most quality-minded w under a ceiling (no smaller grid weight meets it), the most
    # cost-minded w above a floor (no larger grid weight meets it).
    for w in DEFAULT_WEIGHTS:
        if (w < result.w) if not t.is_floor else (w > result.w):
            qw, cw, sw = measure(router, x, data, float(w))
            value = {"strong-share": sw, "budget-usd-per-1k": cw, "quality": qw / q0}[t.kind]
            assert (value < t.value * (1 - 1e-6)) if t.is_floor else (value > t.value * (1 + 1e-6)), w
    assert result.strong_model == "gpt-4-1106-preview"
    assert set(result.as_dict()) >= {"cost_weight", "achieved", "target"}


def test_calibrate_boundaries(fitted) -> None:  # noqa: ANN001
    router, x, data = fitted
    # A generous budget is met at w=0 already; the quality floor 1.0 too (w=0 itself).
    assert calibrate(router, x, data, "budget-usd-per-1k=1000").w == 0.0
    assert calibrate(router, x, data, "strong-share=1").w == 0.0
    # Share falls with w: a tighter share needs a larger weight.
    assert calibrate(router, x, data, "strong-share=0.1").w >= calibrate(router, x, data, "strong-share=0.5").w


def test_unreachable_and_bad_targets(fitted) -> None:  # noqa: ANN001
    router, x, data = fitted
    with pytest.raises(ValueError, match=r"even w=1 costs \$[0-9.e-]+ per 1k"):
        calibrate(router, x, data, "budget-usd-per-1k=0.00001")
    with pytest.raises(ValueError, match="expected one of"):
        calibrate(router, x, data, "speed=3")
    no_costs = data.subset(np.arange(len(data)))
    no_costs.costs = None
    with pytest.raises(ValueError, match="budget targets need per-prompt costs"):
        calibrate(router, x, no_costs, "budget-usd-per-1k=1")
    partial = data.subset(np.arange(len(data)))
    partial.models = [m + "-x" if i == 0 else m for i, m in enumerate(partial.models)]
    with pytest.raises(ValueError, match="no outcomes for router model"):
        calibrate(router, x, partial, "quality=0.9")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_calibrate(carrot_artifact: Path, bench_slice: Path, fitted) -> None:  # noqa: ANN001 - fitted warms the embedding cache
    r = run_cli("calibrate", "--artifact", str(carrot_artifact), "--data", str(bench_slice), "--target", "strong-share=0.2")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 0.0 <= out["cost_weight"] <= 1.0 and out["achieved"] <= 0.2 and out["target"] == "strong-share=0.2"
    assert out["split"] == "test" and out["rows"] == 90
    assert "Loading weights" not in r.stderr  # errors after the model loads stay one line (unreachable: tested in-process)
    for artifact, target in [(carrot_artifact, "strong-share=2"), (carrot_artifact, "nonsense"),
                             (bench_slice / "missing.npz", "quality=0.9")]:
        r = run_cli("calibrate", "--artifact", str(artifact), "--data", str(bench_slice), "--target", target)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr
