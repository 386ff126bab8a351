"""Online grouping, the routing half: the queries that arrive within `window_s` of the first
one (or `max_batch` of them) are embedded together and routed with one `router.predict` per
router over their stacked embeddings. The dispatch half is experts/queues.py: each request
then waits in its chosen expert's queue alone.

With grouping off, `PerRequest` routes each query by itself (its embedding still goes through
the QueryEmbedder's own micro-batch), as the gateway did before grouping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gateway.embedding import QueryEmbedder
from gateway.window import Window
from routers.base import Estimates, Router

OnBatch = Callable[[str, int], None]  # (router name, queries in one predict call)


def row(est: Estimates, i: int) -> Estimates:
    """Query i's estimates, kept [1, M] like a batch of one."""
    pick = slice(i, i + 1)
    return Estimates(est.quality[pick], est.cost[pick], None if est.output_tokens is None else est.output_tokens[pick])


class PerRequest:
    """Grouping off: embed (QueryEmbedder's window) and predict one query at a time."""

    def __init__(self, embedder: QueryEmbedder, on_batch: OnBatch) -> None:
        self.embedder, self.on_batch = embedder, on_batch

    async def estimate(self, name: str, router: Router, text: str) -> Estimates:
        vec = await self.embedder.embed(text)
        est = router.predict(vec[None, :])
        self.on_batch(name, 1)
        return est


@dataclass
class _Waiting:
    name: str
    router: Router
    text: str
    future: asyncio.Future[Estimates]


class RouteBatcher:
    """Grouping on: one embedding call and one predict per router for each window's queries."""

    def __init__(self, embedder: QueryEmbedder, window_s: float, max_batch: int, on_batch: OnBatch,
                 alone: Callable[[], bool] | None = None) -> None:
        self.embedder, self.on_batch = embedder, on_batch
        self._window: Window[_Waiting] = Window(window_s, max_batch, self._run, alone)

    async def estimate(self, name: str, router: Router, text: str) -> Estimates:
        fut: asyncio.Future[Estimates] = asyncio.get_running_loop().create_future()
        self._window.add(_Waiting(name, router, text, fut))
        return await fut

    async def _run(self, batch: list[_Waiting]) -> None:
        live = [w for w in batch if not w.future.done()]  # callers that left while queued are skipped
        if not live:
            return
        try:
            vecs = await self.embedder.embed_many([w.text for w in live])
        except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
            _fail(live, exc)
            return
        groups: dict[str, list[int]] = {}
        for i, w in enumerate(live):
            groups.setdefault(w.name, []).append(i)
        for name, idx in groups.items():
            members = [live[i] for i in idx]
            try:
                est = members[0].router.predict(vecs[np.asarray(idx)])
            except Exception as exc:  # noqa: BLE001
                _fail(members, exc)
                continue
            self.on_batch(name, len(idx))
            for j, w in enumerate(members):
                if not w.future.done():
                    w.future.set_result(row(est, j))


def _fail(waiting: list[_Waiting], exc: Exception) -> None:
    for w in waiting:
        if not w.future.done():
            w.future.set_exception(exc)
