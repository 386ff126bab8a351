"""RoutingDataset: the in-memory shape every loader produces and every router fits on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RoutingDataset:
    """Per-prompt, per-model outcomes.

    scores[n, m] is model m's score on prompt n (NaN where the source has none);
    costs[n, m] is what that response cost in USD (None when the source has no costs);
    responses[n][m] is the recorded answer text when the source carries it.
    """

    prompts: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray | None = None
    tasks: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)
    responses: list[list[str | None]] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n, m = len(self.prompts), len(self.models)
        if self.scores.shape != (n, m):
            raise ValueError(f"scores shape {self.scores.shape} != ({n}, {m})")
        if self.costs is not None and self.costs.shape != (n, m):
            raise ValueError(f"costs shape {self.costs.shape} != ({n}, {m})")
        self.tasks = self.tasks or [""] * n
        self.splits = self.splits or [""] * n
        self.sample_ids = self.sample_ids or [str(i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: np.ndarray | list[int]) -> RoutingDataset:
        idx = np.asarray(index, dtype=np.int64)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return RoutingDataset(
            prompts=pick(self.prompts),
            models=list(self.models),
            scores=self.scores[idx],
            costs=None if self.costs is None else self.costs[idx],
            tasks=pick(self.tasks),
            splits=pick(self.splits),
            sample_ids=pick(self.sample_ids),
            responses=None if self.responses is None else pick(self.responses),
            source=self.source,
        )

    def split(self, name: str, seed: int = 0, test_fraction: float = 0.3) -> RoutingDataset:
        """The rows of split `name`; data without splits gets a seeded holdout split."""
        marks = np.asarray(self.splits)
        if not (marks == "").all():
            return self.subset(np.flatnonzero(marks == name))
        rng = np.random.default_rng(seed)
        is_test = rng.random(len(self)) < test_fraction
        return self.subset(np.flatnonzero(is_test if name == "test" else ~is_test))
