"""The router contract: estimate quality and cost per model, then decide under a tradeoff.

utility = (1 - w) * quality - w * cost / cost_ref, w in [0, 1]. For a fixed query this is a
linear scalarization, so the chosen cost never rises as w rises (ties go to the cheaper
model, which keeps that true at the boundaries too).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from routers.dataset import RoutingDataset


@dataclass(frozen=True)
class Estimates:
    quality: np.ndarray  # [B, M] predicted score in the dataset's scale (0..1)
    cost: np.ndarray  # [B, M] predicted USD per request
    # [B, M] predicted completion tokens, from routers that estimate them (CARROT): the gateway
    # then prices each expert by its own prices instead of the training data's costs.
    output_tokens: np.ndarray | None = None


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


Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> [n, D] embeddings, same model as the router's


class OnboardingError(ValueError):
    """The router cannot take this expert on the way it was offered."""


@dataclass(frozen=True)
class ExpertCard:
    """What a router may know of an expert it was not trained on: words, not outcomes."""

    name: str
    description: str = ""
    skills: tuple[str, ...] = ()


@dataclass
class Profile:
    """A calibrated expert's labelled outcomes: kNN over these gives its quality and cost."""

    keys: np.ndarray  # [n, D] unit-norm calibration prompt embeddings
    scores: np.ndarray  # [n]
    costs: np.ndarray  # [n] (NaN where unknown: the gateway prices it)


def decide_many(quality: np.ndarray, cost: np.ndarray, cost_weight: float, cost_ref: float) -> np.ndarray:
    """Each row's pick [N] from estimates [N, M] by `decide`'s rule (utility desc, then cost
    asc, then index), for all rows at once: what offline evaluation and benchmarks call."""
    if not 0.0 <= cost_weight <= 1.0:
        raise ValueError(f"cost_weight must be in [0, 1], got {cost_weight}")
    quality, cost = np.asarray(quality), np.asarray(cost)
    if quality.ndim != 2 or quality.shape != cost.shape:
        raise ValueError(f"quality and cost must both be [N, M], got {quality.shape} and {cost.shape}")
    if quality.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    u = utility(quality, cost, cost_weight, cost_ref)
    index = np.broadcast_to(np.arange(quality.shape[1]), quality.shape)
    return np.lexsort((index, cost, -u), axis=-1)[:, 0].astype(np.int64)


class Router(ABC):
    """A fitted router over `models`. Subclasses hold numpy arrays only, so artifacts stay npz.

    Experts join a fitted router without retraining in two ways, both handled here for every
    kind, so callers use `predict` and `all_models`, never `estimate` directly:
    - `calibrate_expert`: a labelled calibration set gives the expert a Profile (kNN estimate,
      saved in the artifact);
    - `onboard`: an ExpertCard (description, skills) alone, for kinds that can read one
      (they override `card_state` and `card_quality`); held in memory, rebuilt from the
      expert registry, so it follows the expert's spec.
    Their cost columns are NaN unless calibration data had costs: the caller prices them.
    """

    kind: ClassVar[str]

    def __init__(self, models: list[str], cost_ref: float = 1.0, **params: Any) -> None:
        self.models = list(models)
        self.cost_ref = float(cost_ref)
        self.params = params
        self.profiles: dict[str, Profile] = {}
        self.cards: dict[str, tuple[ExpertCard, Any]] = {}

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
        return {"kind": self.kind, "models": self.models, "cost_ref": self.cost_ref, "params": self.params,
                "profiles": list(self.profiles)}

    # -- experts that joined after training --------------------------------------------

    @property
    def all_models(self) -> list[str]:
        """Columns of `predict`: trained models, then calibrated, then onboarded ones."""
        extra = [n for n in self.profiles if n not in self.models]
        return self.models + extra + [n for n in self.cards if n not in self.models and n not in self.profiles]

    def predict(self, embeddings: np.ndarray) -> Estimates:
        est = self.estimate(embeddings)
        names = self.all_models[len(self.models):]
        if not names:
            return est
        quality, cost = [est.quality], [est.cost]
        tokens = None if est.output_tokens is None else [est.output_tokens]
        for name in names:
            if name in self.profiles:
                q, c = profile_estimate(self.profiles[name], embeddings, int(self.params.get("profile_k") or PROFILE_K))
            else:
                card, state = self.cards[name]
                q, c = self.card_quality(embeddings, card, state), np.full(len(embeddings), np.nan, np.float32)
            quality.append(np.asarray(q, np.float32)[:, None])
            cost.append(np.asarray(c, np.float32)[:, None])
            if tokens is not None:
                tokens.append(np.full((len(embeddings), 1), np.nan, np.float32))
        return Estimates(quality=np.concatenate(quality, axis=1), cost=np.concatenate(cost, axis=1),
                         output_tokens=None if tokens is None else np.concatenate(tokens, axis=1))

    def calibrate_expert(self, name: str, embeddings: np.ndarray, scores: np.ndarray, costs: np.ndarray | None = None) -> None:
        """Give `name` a profile from labelled prompts (replacing a trained column of that name)."""
        keep = np.isfinite(scores)
        if keep.sum() == 0:
            raise OnboardingError(f"calibration set for {name!r} has no scores")
        keys = embeddings[keep] / np.linalg.norm(embeddings[keep], axis=1, keepdims=True)
        c = np.full(int(keep.sum()), np.nan, np.float32) if costs is None else np.asarray(costs, np.float32)[keep]
        self.profiles[name] = Profile(np.ascontiguousarray(keys, np.float32), np.asarray(scores, np.float32)[keep], c)
        self.cards.pop(name, None)

    def onboard(self, card: ExpertCard, embed: Embed) -> None:
        """Make `card.name` routable from its description and skills (no outcomes needed)."""
        if card.name in self.models or card.name in self.profiles:
            return  # data beats words
        self.cards[card.name] = (card, self.card_state(card, embed))

    def card_state(self, card: ExpertCard, embed: Embed) -> Any:
        """Precompute what `card_quality` needs (embeddings of the description, skills...)."""
        raise OnboardingError(f"router kind {self.kind!r} cannot take on expert {card.name!r} from a description; "
                              f"give it a calibration set (switchyard experts calibrate)")

    def card_quality(self, embeddings: np.ndarray, card: ExpertCard, state: Any) -> np.ndarray:
        """Predicted quality [B] of an onboarded expert, on the same scale as `estimate`'s."""
        raise NotImplementedError

    def profile_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, p in enumerate(self.profiles.values()):
            out |= {f"profile{i}_keys": p.keys, f"profile{i}_scores": p.scores, f"profile{i}_costs": p.costs}
        return out

    def load_profiles(self, names: list[str], arrays: dict[str, np.ndarray]) -> None:
        for i, name in enumerate(names):
            self.profiles[name] = Profile(*(arrays[f"profile{i}_{k}"] for k in ("keys", "scores", "costs")))


PROFILE_K = 20


def profile_estimate(profile: Profile, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean score and cost of a query's k nearest calibration prompts (cosine)."""
    from kernels import score_topk  # noqa: PLC0415 - routers.base stays importable without torch at import time

    k = max(1, min(k, len(profile.keys)))
    if len(embeddings) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    idx = score_topk(np.asarray(embeddings, np.float32), profile.keys, k, keys_normalized=True)[1].numpy()
    return profile.scores[idx].mean(axis=1), profile.costs[idx].mean(axis=1)


def fill_missing(matrix: np.ndarray) -> np.ndarray:
    """Replace NaN by the column mean (0 where a whole column is empty)."""
    out = matrix.astype(np.float32, copy=True)
    col = np.nanmean(np.where(np.isnan(out).all(0), 0.0, out), axis=0) if out.size else np.zeros(out.shape[1])
    rows, cols = np.nonzero(np.isnan(out))
    out[rows, cols] = np.nan_to_num(col)[cols]
    return out


def training_costs(data: RoutingDataset, kind: str) -> np.ndarray:
    if data.costs is None:
        raise ValueError(f"{kind} needs per-prompt costs (or prices to derive them)")
    return fill_missing(data.costs)


def cost_reference(costs: np.ndarray) -> float:
    """c_ref: the most expensive model's mean cost, a fixed scale for the tradeoff."""
    ref = float(np.nanmax(np.nanmean(costs, axis=0))) if costs.size else 0.0
    return ref if ref > 0 else 1.0
