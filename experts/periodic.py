"""A coroutine run every few seconds in a background task (registry refresh, breaker refresh,
health probes): a failed round is logged and the next one runs anyway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


class Periodic:
    def __init__(self, tick: Callable[[], Awaitable[object]], interval_s: float, what: str, log: logging.Logger,
                 wait_first: bool = False) -> None:
        self.tick, self.interval_s, self.what, self.log, self.wait_first = tick, interval_s, what, log, wait_first
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        if self.wait_first:
            await asyncio.sleep(self.interval_s)
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - keep going on the last good state
                self.log.warning("%s failed: %s", self.what, exc)
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
