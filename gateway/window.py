"""A micro-batch window: items gathered for `window_s` after the first one (or until
`max_batch` of them), then handed to `run` together as one task. Each item carries its own
future, which `run` settles. The query embedder and the route batcher both gather this way.

Adaptive mode (`alone` given) waits only when company can come: when the first item of a batch
arrives and `alone()` says no other request is on its way to routing, it goes out on the next pass of the
event loop (with whatever arrived in the same pass), so a lone request never waits for company
that is not coming; otherwise the window opens as in fixed mode."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Window(Generic[T]):
    def __init__(self, window_s: float, max_batch: int, run: Callable[[list[T]], Awaitable[None]],
                 alone: Callable[[], bool] | None = None) -> None:
        self.window_s, self.max_batch, self.run, self.alone = window_s, max_batch, run, alone
        self._pending: list[T] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each batch is done

    def add(self, item: T) -> None:
        self._pending.append(item)
        if len(self._pending) >= self.max_batch:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            # A zero window (or a lone adaptive item) still groups the items that arrive in the
            # same pass of the loop.
            wait = self.window_s > 0 and not (self.alone is not None and self.alone())
            self._timer = loop.call_later(self.window_s, self.flush) if wait else loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self.run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
