"""Experts as routers see them: onboarded from their spec when untrained, priced by their prices.

An expert whose `profile` is neither a trained model nor a calibrated profile of a router, but
has a description or skills, is offered to the router as an ExpertCard. Kinds that read
descriptions (skills, glider) add it as a column; the others refuse once and are not asked
again until the card changes. Cards follow the registry, so an admin POST with a new
description re-onboards the expert on every replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np

from experts.spec import ExpertSpec
from routers.base import Embed, ExpertCard, OnboardingError, Router
from routers.tokens import DEFAULT_OUTPUT_TOKENS, estimate_tokens


class Onboarder:
    def __init__(self, embed: Embed) -> None:
        self.embed = embed
        self._offered: dict[tuple[int, str], ExpertCard] = {}
        self._synced: dict[int, Mapping[str, ExpertSpec]] = {}  # router -> the registry snapshot last seen

    async def sync(self, router: Router, experts: Mapping[str, ExpertSpec]) -> None:
        """Offer new or changed cards; a no-op while the registry snapshot is the same object
        (the registry replaces it on every change), so the request path pays one `is` check."""
        if self._synced.get(id(router)) is experts:
            return
        self._synced[id(router)] = experts
        for e in experts.values():
            if e.profile in router.models or e.profile in router.profiles or not (e.description or e.skills):
                continue
            card = ExpertCard(e.profile, e.description, tuple(e.skills))
            key = (id(router), e.profile)
            if self._offered.get(key) == card:
                continue
            self._offered[key] = card
            try:
                await asyncio.to_thread(router.onboard, card, self.embed)
            except OnboardingError:
                pass  # this kind routes only to experts it has data for; the expert stays reachable by name


def price(cost: np.ndarray, tokens: np.ndarray | None, experts: list[ExpertSpec], query: str, max_tokens: int | None) -> np.ndarray:
    """Each candidate's predicted USD for this query.

    CARROT's rule where the router predicts completion tokens and the expert has prices: the
    query's tokens x input price + predicted tokens (capped by the request's max_tokens) x
    output price, so what the operator pays now counts, not the training data's prices. Else
    the router's cost estimate; where it has none (an expert it was never trained on), the
    prices with a typical answer length.
    """
    out = cost.astype(np.float64, copy=True)
    cap = max_tokens or np.inf
    in_tokens = estimate_tokens(query)
    for i, e in enumerate(experts):
        priced = e.input_price > 0 or e.output_price > 0
        predicted = None if tokens is None or not np.isfinite(tokens[i]) else float(tokens[i])
        if priced and predicted is not None:
            out[i] = e.cost_usd(in_tokens, min(predicted, cap))
        elif np.isnan(out[i]):
            out[i] = e.cost_usd(in_tokens, min(DEFAULT_OUTPUT_TOKENS, cap))
    return out
