"""The router contract: estimate quality and cost per model, then decide under a tradeoff.

utility = (1 - w) * quality - w * cost / cost_ref, w in [0, 1]. For a fixed query this is a
linear scalarization, so the chosen cost never rises as w rises (ties go to the cheaper
model, which keeps that true at the boundaries too).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from routers.dataset import RoutingDataset


@dataclass(frozen=True)
class Estimates:
    quality: np.ndarray  # [B, M] predicted score in the dataset's scale (0..1)
    cost: np.ndarray  # [B, M] predicted USD per request


@dataclass(frozen=True)
class Decision:
    """One query's decision over M models; `ranking` excludes disallowed models."""

    ranking: list[int]
    chosen: list[int]
    quality: np.ndarray  # [M]
    cost: np.ndarray  # [M]
    utility: np.ndarray  # [M]


def utility(quality: np.ndarray, cost: np.ndarray, cost_weight: float, cost_ref: float) -> np.ndarray:
    return (1.0 - cost_weight) * quality - cost_weight * cost / cost_ref


def decide(
    quality: np.ndarray,
    cost: np.ndarray,
    cost_weight: float,
    cost_ref: float,
    k: int = 1,
    allowed: np.ndarray | None = None,
) -> Decision:
    """Rank models by utility (desc), then cost (asc), then index; keep the allowed top k."""
    if not 0.0 <= cost_weight <= 1.0:
        raise ValueError(f"cost_weight must be in [0, 1], got {cost_weight}")
    u = utility(quality, cost, cost_weight, cost_ref)
    order = np.lexsort((np.arange(len(u)), cost, -u))
    if allowed is not None:
        order = order[allowed[order]]
    ranking = [int(i) for i in order]
    return Decision(ranking=ranking, chosen=ranking[:k], quality=quality, cost=cost, utility=u)


class Router(ABC):
    """A fitted router over `models`. Subclasses hold numpy arrays only, so artifacts stay npz."""

    kind: ClassVar[str]

    def __init__(self, models: list[str], cost_ref: float = 1.0, **params: Any) -> None:
        self.models = list(models)
        self.cost_ref = float(cost_ref)
        self.params = params

    @abstractmethod
    def fit(self, embeddings: np.ndarray, data: RoutingDataset) -> Router: ...

    @abstractmethod
    def estimate(self, embeddings: np.ndarray) -> Estimates: ...

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Fitted state, saved into the artifact."""

    @abstractmethod
    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None: ...

    def meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "models": self.models, "cost_ref": self.cost_ref, "params": self.params}


def fill_missing(matrix: np.ndarray) -> np.ndarray:
    """Replace NaN by the column mean (0 where a whole column is empty)."""
    out = matrix.astype(np.float32, copy=True)
    col = np.nanmean(np.where(np.isnan(out).all(0), 0.0, out), axis=0) if out.size else np.zeros(out.shape[1])
    rows, cols = np.nonzero(np.isnan(out))
    out[rows, cols] = np.nan_to_num(col)[cols]
    return out


def cost_reference(costs: np.ndarray) -> float:
    """c_ref: the most expensive model's mean cost, a fixed scale for the tradeoff."""
    ref = float(np.nanmax(np.nanmean(costs, axis=0))) if costs.size else 0.0
    return ref if ref > 0 else 1.0
