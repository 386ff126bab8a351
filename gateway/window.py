"""A micro-batch window: items gathered for `window_s` after the first one (or until
`max_batch` of them), then handed to `run` together as one task. Each item carries its own
future, which `run` settles. The query embedder and the route batcher both gather this way.

Adaptive mode batches only while busy: an item that arrives while no batch is running goes out
on the next pass of the event loop (with whatever arrived in the same pass), so a lone request
never waits for company that is not coming; items that arrive while a batch runs gather until
it ends (or `window_s`, or `max_batch`), which is when grouping pays."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Window(Generic[T]):
    def __init__(self, window_s: float, max_batch: int, run: Callable[[list[T]], Awaitable[None]],
                 adaptive: bool = False) -> None:
        self.window_s, self.max_batch, self.run, self.adaptive = window_s, max_batch, run, adaptive
        self._pending: list[T] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each batch is done

    def add(self, item: T) -> None:
        self._pending.append(item)
        if len(self._pending) >= self.max_batch:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            # A zero window (or an idle adaptive one) still groups the items that arrive in the
            # same pass of the loop.
            wait = self.window_s > 0 and not (self.adaptive and not self._tasks)
            self._timer = loop.call_later(self.window_s, self.flush) if wait else loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self.run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self.adaptive and not self._tasks and self._pending:
            self.flush()  # the busy spell is over: what gathered during it goes now
