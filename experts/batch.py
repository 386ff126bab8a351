"""Grouping routed work by expert and running the groups (Symbolic-MoE's offline strategy).

HTTP experts' groups run side by side, each with `max_concurrency` requests in flight.
In-process engines' groups run one after another, so one model is resident at a time, and
each is released when its group is done: one load per expert used, not one per prompt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import TypeVar

from experts.spec import ENGINE_BACKENDS, ExpertSpec

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def group_by(keys: Sequence[K]) -> dict[K, list[int]]:
    """Positions per key, keys in order of first appearance."""
    groups: dict[K, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


async def _drain(items: Iterable[T], work: Callable[[T], Awaitable[None]], workers: int) -> None:
    it = iter(items)

    async def worker() -> None:
        for item in it:  # one shared iterator: each item is taken by exactly one worker
            await work(item)

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))


async def run_groups(
    groups: dict[str, list[T]],
    experts: dict[str, ExpertSpec],
    work: Callable[[T], Awaitable[None]],
    release: Callable[[str], Awaitable[None]],
) -> None:
    """Run every group's items through `work`; `release(name)` after each engine group."""
    remote = [n for n in groups if experts[n].backend not in ENGINE_BACKENDS]
    local = [n for n in groups if experts[n].backend in ENGINE_BACKENDS]

    async def engines_in_turn() -> None:
        for name in local:
            try:
                await _drain(groups[name], work, experts[name].max_concurrency)
            finally:
                await release(name)

    await asyncio.gather(engines_in_turn(), *(_drain(groups[n], work, experts[n].max_concurrency) for n in remote))
