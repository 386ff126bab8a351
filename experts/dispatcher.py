"""Dispatch to experts with bounded concurrency per expert (its max_concurrency), so a burst
for one expert queues behind that expert alone and never starves the others."""

from __future__ import annotations

from typing import Any

from experts.backends.openai_http import OpenAIHTTPBackend, UpstreamStream
from experts.backends.replay import ReplayBackend
from experts.errors import UpstreamUnavailable
from experts.queues import ExpertQueues, Slot
from experts.spec import ExpertSpec


class Dispatcher:
    def __init__(self, backend: OpenAIHTTPBackend, replay: ReplayBackend | None = None, queues: ExpertQueues | None = None) -> None:
        self.backends = {"openai": backend, "replay": replay or ReplayBackend()}
        self.queues = queues or ExpertQueues()  # per-expert FIFO in front of max_concurrency slots

    def queued(self, expert: str) -> int:
        return self.queues.queued(expert)

    def backend(self, expert: ExpertSpec) -> Any:  # noqa: ANN401 - OpenAIHTTPBackend, ReplayBackend or an EngineBackend
        backend = self.backends.get(expert.backend)
        if backend is None:  # in-process engines are registered by `switchyard batch` only
            raise UpstreamUnavailable(
                expert.name, f"backend {expert.backend!r} is not served here (in-process engines run in `switchyard batch`)"
            )
        return backend

    async def complete(self, expert: ExpertSpec, body: dict[str, Any]) -> dict[str, Any]:
        backend = self.backend(expert)
        async with self.queues.hold(expert):
            return await backend.complete(expert, body)

    async def open_stream(self, expert: ExpertSpec, body: dict[str, Any]) -> HeldStream:
        backend = self.backend(expert)
        slot = await self.queues.acquire(expert)
        try:
            return HeldStream(await backend.open_stream(expert, body), slot)
        except BaseException:
            slot.release()
            raise

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()


class HeldStream:
    """An upstream stream holding its expert's concurrency slot until closed (idempotent)."""

    def __init__(self, stream: UpstreamStream, slot: Slot) -> None:
        self.stream = stream
        self._slot: Slot | None = slot

    def events(self):  # noqa: ANN201
        return self.stream.events()

    async def aclose(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            try:
                await self.stream.aclose()
            finally:
                slot.release()
