"""A micro-batch window: items gathered for `window_s` after the first one (or until
`max_batch` of them), then handed to `run` together as one task. Each item carries its own
future, which `run` settles. The query embedder and the route batcher both gather this way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Window(Generic[T]):
    def __init__(self, window_s: float, max_batch: int, run: Callable[[list[T]], Awaitable[None]]) -> None:
        self.window_s, self.max_batch, self.run = window_s, max_batch, run
        self._pending: list[T] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each batch is done

    def add(self, item: T) -> None:
        self._pending.append(item)
        if len(self._pending) >= self.max_batch:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            # A zero window still groups the items that arrive in the same pass of the loop.
            self._timer = loop.call_later(self.window_s, self.flush) if self.window_s > 0 else loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self.run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
