"""Dispatch to experts with bounded concurrency per expert (its max_concurrency), so a burst
for one expert queues behind that expert alone and never starves the others."""

from __future__ import annotations

import asyncio
from typing import Any

from experts.backends.openai_http import OpenAIHTTPBackend, UpstreamStream
from experts.backends.replay import ReplayBackend
from experts.spec import ExpertSpec


class Dispatcher:
    def __init__(self, backend: OpenAIHTTPBackend, replay: ReplayBackend | None = None) -> None:
        self.backends = {"openai": backend, "replay": replay or ReplayBackend()}
        self._slots: dict[str, tuple[int, asyncio.Semaphore]] = {}

    def _slot(self, expert: ExpertSpec) -> asyncio.Semaphore:
        held = self._slots.get(expert.name)
        if held is None or held[0] != expert.max_concurrency:
            held = (expert.max_concurrency, asyncio.Semaphore(expert.max_concurrency))
            self._slots[expert.name] = held
        return held[1]

    def queued(self, expert: str) -> int:
        held = self._slots.get(expert)
        return len(held[1]._waiters or ()) if held else 0  # noqa: SLF001 - asyncio exposes no public count

    async def complete(self, expert: ExpertSpec, body: dict[str, Any]) -> dict[str, Any]:
        async with self._slot(expert):
            return await self.backends[expert.backend].complete(expert, body)

    async def open_stream(self, expert: ExpertSpec, body: dict[str, Any]) -> HeldStream:
        slot = self._slot(expert)
        await slot.acquire()
        try:
            return HeldStream(await self.backends[expert.backend].open_stream(expert, body), slot)
        except BaseException:
            slot.release()
            raise

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()


class HeldStream:
    """An upstream stream holding its expert's concurrency slot until closed (idempotent)."""

    def __init__(self, stream: UpstreamStream, slot: asyncio.Semaphore) -> None:
        self.stream = stream
        self._slot: asyncio.Semaphore | None = slot

    def events(self):  # noqa: ANN201
        return self.stream.events()

    async def aclose(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            try:
                await self.stream.aclose()
            finally:
                slot.release()
