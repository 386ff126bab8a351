"""Cost-weight calibration: find the w that meets an operator's target on labelled data.

A target is one of (parsed from `name=value`):
- `strong-share=0.2`: at most this share of traffic goes to the strongest model (the one with
  the best mean score in the data);
- `budget-usd-per-1k=0.5`: the mean TRUE cost of the chosen models, per 1,000 requests, is at
  most this many USD;
- `quality=0.95`: the mean TRUE quality is at least this fraction of the quality at w=0.

Share and budget are ceilings: the answer is the smallest w that keeps under them (the most
quality-minded setting the ceiling allows). Quality is a floor: the answer is the largest w
that still reaches it (the most cost-minded setting the floor allows). Each prompt's chosen
model has a predicted cost that never rises with w, so share and cost fall with w almost
everywhere; measured on true outcomes none of the three is guaranteed monotone, quality least
of all. So no plain bisection over [0, 1]: measure a grid (dense near 0), take its first (for a
ceiling) or last (for a floor) weight that meets the target, and bisect only the interval
between it and its unmet neighbour. The returned w is always one that was measured to meet
the target, so re-measuring it gives `achieved` exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.metrics import DEFAULT_WEIGHTS, choose_from, outcome
from routers.dataset import RoutingDataset

TARGET_KINDS = {
    "strong-share": "share of traffic to the strongest model, 0..1 (a ceiling)",
    "budget-usd-per-1k": "mean true cost per 1,000 requests in USD (a ceiling)",
    "quality": "fraction of the mean quality at w=0, 0..1 (a floor)",
}
_ALIASES = {"strong_share": "strong-share", "share": "strong-share", "budget": "budget-usd-per-1k",
            "budget_usd_per_1k": "budget-usd-per-1k"}
_FORMS = "strong-share=0.2, budget-usd-per-1k=0.5 or quality=0.95"
BISECT_STEPS = 40


@dataclass(frozen=True)
class Target:
    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"

    @property
    def is_floor(self) -> bool:
        return self.kind == "quality"


def parse_target(text: str | Target) -> Target:
    """`strong-share=0.2` -> Target("strong-share", 0.2); shares and fractions may be given as 20%."""
    if isinstance(text, Target):
        return text
    name, sep, raw = str(text).partition("=")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if not sep or name not in TARGET_KINDS:
        raise ValueError(f"bad target {text!r}: expected one of {_FORMS}")
    raw = raw.strip()
    percent = raw.endswith("%") and name != "budget-usd-per-1k"
    try:
        value = float(raw[:-1] if percent else raw)
    except ValueError:
        raise ValueError(f"bad target {text!r}: {raw!r} is not a number") from None
    value = value / 100 if percent else value
    if not np.isfinite(value):
        raise ValueError(f"bad target {text!r}: the value must be finite")
    if name == "strong-share" and not 0 <= value <= 1:
        raise ValueError(f"bad target {text!r}: a share is between 0 and 1")
    if name == "budget-usd-per-1k" and value < 0:
        raise ValueError(f"bad target {text!r}: a budget cannot be negative")
    if name == "quality" and not 0 < value <= 1:
        raise ValueError(f"bad target {text!r}: quality is a fraction of the w=0 quality, in (0, 1]")
    return Target(name, value)


@dataclass(frozen=True)
class CalibrationResult:
    w: float  # the cost weight to configure
    achieved: float  # the target's quantity measured at w (same unit as target.value)
    target: Target
    quality: float  # mean true quality at w
    cost_usd_per_1k: float  # mean true cost per 1,000 requests at w (NaN without costs)
    strong_share: float  # share of prompts sent to `strong_model` at w
    strong_model: str
    quality_at_zero: float  # mean true quality at w=0
    rows: int  # prompts measured

    def as_dict(self) -> dict[str, Any]:
        r = lambda x: None if not np.isfinite(x) else round(float(x), 6)  # noqa: E731
        return {"cost_weight": r(self.w), "achieved": r(self.achieved), "target": str(self.target),
                "quality": r(self.quality), "cost_usd_per_1k": r(self.cost_usd_per_1k),
                "strong_share": r(self.strong_share), "strong_model": self.strong_model,
                "quality_at_w0": r(self.quality_at_zero), "rows": self.rows}


class _Meter:
    """Measures one w on the labelled set from one `predict` (estimates reused for every w)."""

    def __init__(self, router, embeddings: np.ndarray, data: RoutingDataset) -> None:  # noqa: ANN001 - any Router
        columns = list(router.all_models)
        missing = [m for m in columns if m not in data.models]
        if missing:
            raise ValueError(f"the data has no outcomes for router model(s) {', '.join(missing)}; "
                             f"calibrate on data that covers every model the router can choose")
        if len(data) == 0:
            raise ValueError("no rows to calibrate on")
        if len(embeddings) != len(data):
            raise ValueError(f"{len(embeddings)} embeddings for {len(data)} rows")
        idx = [data.models.index(m) for m in columns]
        self.scores = np.asarray(data.scores, dtype=np.float64)[:, idx]
        self.costs = None if data.costs is None else np.asarray(data.costs, dtype=np.float64)[:, idx]
        means = np.array([np.nanmean(c) if np.isfinite(c).any() else -np.inf for c in self.scores.T])
        self.strong = int(np.argmax(means))
        self.strong_model = columns[self.strong]
        est = router.predict(np.asarray(embeddings, dtype=np.float32))
        self.quality, self.cost, self.cost_ref = est.quality, est.cost, router.cost_ref
        self.cache: dict[float, tuple[float, float, float]] = {}

    def __call__(self, w: float) -> tuple[float, float, float]:
        """(mean true quality, mean true cost per 1k, strong share) at w."""
        w = float(w)
        if w not in self.cache:
            picks = choose_from(self.quality, self.cost, w, self.cost_ref)
            q, c = outcome(picks, self.scores, self.costs)
            self.cache[w] = (q, c * 1000.0, float(np.mean(picks == self.strong)))
        return self.cache[w]


def _quantity(target: Target, measured: tuple[float, float, float], q0: float) -> float:
    q, c, share = measured
    if target.kind == "strong-share":
        return share
    if target.kind == "budget-usd-per-1k":
        return c
    return q / q0 if q0 > 0 else float("nan")


def _meets(target: Target, x: float) -> bool:
    if not np.isfinite(x):
        return False
    # A tiny tolerance so that a target equal to a measured value (0.2 of 0.2) counts as met.
    eps = 1e-9 * max(1.0, abs(target.value))
    return x >= target.value - eps if target.is_floor else x <= target.value + eps


def calibrate(router, embeddings: np.ndarray, data: RoutingDataset, target: str | Target,  # noqa: ANN001
              weights: Sequence[float] = DEFAULT_WEIGHTS) -> CalibrationResult:
    """The cost weight that meets `target` on labelled `data` (embeddings [N, D] of its prompts).

    Raises ValueError for a malformed or unreachable target, naming what is reachable."""
    target = parse_target(target)
    if target.kind == "budget-usd-per-1k" and data.costs is None:
        raise ValueError("budget targets need per-prompt costs: this data has none (give prices to derive them)")
    meter = _Meter(router, embeddings, data)
    q0 = meter(0.0)[0]
    if target.kind == "quality" and not (np.isfinite(q0) and q0 > 0):
        raise ValueError(f"a quality target needs a positive quality at w=0 (got {q0})")
    quantity = lambda w: _quantity(target, meter(w), q0)  # noqa: E731
    grid = np.unique(np.clip(np.concatenate([[0.0, 1.0], np.asarray(weights, dtype=np.float64)]), 0.0, 1.0))
    met = np.array([_meets(target, quantity(w)) for w in grid])
    if not met.any():
        raise ValueError(_unreachable(target, meter, q0))
    if target.is_floor:  # the largest w that keeps the quality: the last met grid point, then refine upward
        j = int(np.flatnonzero(met)[-1])
        lo, hi = grid[j], grid[min(j + 1, len(grid) - 1)]
    else:  # the smallest w under the ceiling: the first met grid point, then refine downward
        j = int(np.flatnonzero(met)[0])
        lo, hi = grid[max(j - 1, 0)], grid[j]
    # Bisect the bracket (lo, hi) around the boundary; a floor keeps lo met, a ceiling keeps hi met.
    for _ in range(BISECT_STEPS):
        if hi - lo < 1e-9:
            break
        mid = (lo + hi) / 2
        if _meets(target, quantity(mid)) == target.is_floor:  # floor met, or ceiling missed: move up
            lo = mid
        else:
            hi = mid
    best = float(lo if target.is_floor else hi)
    q, c, share = meter(best)
    return CalibrationResult(w=float(best), achieved=quantity(best), target=target, quality=q, cost_usd_per_1k=c,
                             strong_share=share, strong_model=meter.strong_model, quality_at_zero=q0, rows=len(data))


def _unreachable(target: Target, meter: _Meter, q0: float) -> str:
    _, c1, s1 = meter(1.0)
    if target.kind == "budget-usd-per-1k":
        cheapest = min(m[1] for m in meter.cache.values())
        return (f"target {target} is unreachable: even w=1 costs ${c1:.4g} per 1k requests "
                f"(the cheapest measured: ${cheapest:.4g})")
    if target.kind == "strong-share":
        lowest = min(m[2] for m in meter.cache.values())
        return (f"target {target} is unreachable: even w=1 sends {s1:.1%} of traffic to {meter.strong_model} "
                f"(the lowest measured: {lowest:.1%})")
    best = max(m[0] for m in meter.cache.values())
    return f"target {target} is unreachable: the best measured quality is {best / q0:.4f} of the w=0 quality"


def calibrate_artifact(artifact: str | Path, data: str | Path, target: str, split: str = "test",
                       prices: str | Path | None = None, embedder=None) -> dict[str, Any]:  # noqa: ANN001
    """`switchyard calibrate`: load an artifact and a dataset, embed its `split` rows with the
    artifact's embedding model, and calibrate. Data without splits uses the seeded holdout's
    test part for "test" (RoutingDataset.split); "all" uses every row."""
    from evaluation.loaders import load_dataset  # noqa: PLC0415
    from routers.artifacts import load_router  # noqa: PLC0415
    from routers.embedder import Embedder, embed_cached  # noqa: PLC0415

    # The command's output is one JSON object or one error line: no weight-loading progress bars.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    parsed = parse_target(target)  # a malformed target fails before any loading
    router = load_router(artifact)
    dataset = load_dataset(data, prices=None if prices is None else Path(prices))
    if split != "all":
        if split not in ("train", "test"):
            raise ValueError(f"split must be train, test or all, got {split!r}")
        dataset = dataset.split(split)
    if len(dataset) == 0:
        raise ValueError(f"{data}: no rows in split {split!r}")
    embedder = embedder or Embedder.from_cache_id(getattr(router, "header", {}).get("embedding_model"))
    vecs = embed_cached(embedder, dataset.prompts, progress=False)
    return calibrate(router, vecs, dataset, parsed).as_dict() | {"split": split}
