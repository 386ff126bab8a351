"""Per-expert queues: each expert has its own FIFO of callers in front of `max_concurrency`
slots, so a burst for one expert waits behind that expert alone and never starves the others.

An observer (the gateway's metrics) hears each queue's depth, in-flight count and waits; this
package stays free of the gateway's imports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from experts.spec import ExpertSpec


class QueueObserver(Protocol):
    def waiting(self, expert: str, delta: int) -> None: ...

    def running(self, expert: str, delta: int) -> None: ...

    def waited(self, expert: str, seconds: float) -> None: ...


class _Quiet:
    def waiting(self, expert: str, delta: int) -> None:
        pass

    def running(self, expert: str, delta: int) -> None:
        pass

    def waited(self, expert: str, seconds: float) -> None:
        pass


class Slot:
    """One taken slot of an expert; release() is idempotent."""

    def __init__(self, queues: ExpertQueues, expert: str, sem: asyncio.Semaphore) -> None:
        self._queues, self._expert, self._sem = queues, expert, sem
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._sem.release()
            self._queues.observer.running(self._expert, -1)


class ExpertQueues:
    def __init__(self, observer: QueueObserver | None = None) -> None:
        self.observer: QueueObserver = observer or _Quiet()
        # Replaced when the expert's max_concurrency changes (admin API); callers holding the old
        # semaphore release into it, which is harmless.
        self._sems: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self._waiting: dict[str, int] = {}

    def _sem(self, expert: ExpertSpec) -> asyncio.Semaphore:
        held = self._sems.get(expert.name)
        if held is None or held[0] != expert.max_concurrency:
            held = (expert.max_concurrency, asyncio.Semaphore(expert.max_concurrency))
            self._sems[expert.name] = held
        return held[1]

    def queued(self, expert: str) -> int:
        """Callers waiting for a slot of `expert` now."""
        return self._waiting.get(expert, 0)

    async def acquire(self, expert: ExpertSpec) -> Slot:
        sem = self._sem(expert)
        name = expert.name
        started = time.perf_counter()
        self._waiting[name] = self._waiting.get(name, 0) + 1
        self.observer.waiting(name, 1)
        try:
            await sem.acquire()
        finally:  # also when the caller is cancelled while queued
            self._waiting[name] -= 1
            self.observer.waiting(name, -1)
        self.observer.waited(name, time.perf_counter() - started)
        self.observer.running(name, 1)
        return Slot(self, name, sem)

    @asynccontextmanager
    async def hold(self, expert: ExpertSpec) -> AsyncIterator[None]:
        slot = await self.acquire(expert)
        try:
            yield
        finally:
            slot.release()
