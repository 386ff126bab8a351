"""The dispatcher backend for in-process engines: per-request `complete` calls in, batched
`generate` calls out.

The model loads on an expert's first request and stays until `release` (the batch runner
releases it when the expert's group is done). Requests arriving together — the dispatcher
lets `max_concurrency` of them in at once — are collected for a couple of milliseconds and
generated as one batch, in a worker thread so the event loop keeps driving HTTP experts.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from experts.engines.base import Engine
from experts.errors import UpstreamError
from experts.spec import ExpertSpec

COLLECT_S = 0.002


def load_engine(spec: ExpertSpec) -> Engine:
    if spec.backend == "transformers":
        from experts.engines.transformers_engine import TransformersEngine  # noqa: PLC0415 - imports torch

        return TransformersEngine(spec)
    if spec.backend == "vllm":
        from experts.engines.vllm_engine import VLLMEngine  # noqa: PLC0415

        return VLLMEngine(spec)
    raise ValueError(f"backend {spec.backend!r} is not an in-process engine")


@dataclass
class _Slot:
    pending: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None
    engine: Engine | None = None
    failed: UpstreamError | None = None  # a load that failed once fails the rest of the group fast


class EngineBackend:
    def __init__(self, loader: Callable[[ExpertSpec], Engine] = load_engine) -> None:
        self.loader = loader
        self._slots: dict[str, _Slot] = {}

    async def complete(self, expert: ExpertSpec, body: dict[str, Any]) -> dict[str, Any]:
        slot = self._slots.setdefault(expert.name, _Slot())
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        slot.pending.append((body, fut))
        if slot.worker is None or slot.worker.done():
            slot.worker = asyncio.create_task(self._drain(expert, slot))
        return await fut

    async def open_stream(self, expert: ExpertSpec, body: dict[str, Any]) -> Any:
        raise UpstreamError(expert.name, f"backend {expert.backend!r} runs batch jobs only; it does not stream", status=400)

    async def _engine(self, expert: ExpertSpec, slot: _Slot) -> Engine:
        if slot.failed is not None:
            raise slot.failed
        if slot.engine is None:
            try:
                slot.engine = await asyncio.to_thread(self.loader, expert)
            except UpstreamError as exc:
                slot.failed = exc
                raise
            except Exception as exc:  # noqa: BLE001 - a bad model folder is the requests' error, not a crash
                slot.failed = UpstreamError(expert.name, f"cannot load model {expert.model!r}: {type(exc).__name__}: {exc}", status=503)
                raise slot.failed from None
        return slot.engine

    async def _drain(self, expert: ExpertSpec, slot: _Slot) -> None:
        await asyncio.sleep(COLLECT_S)  # let the rest of the burst join this batch
        while slot.pending:
            batch, slot.pending = slot.pending[: expert.max_concurrency], slot.pending[expert.max_concurrency :]
            try:
                engine = await self._engine(expert, slot)
                results: list[Any] = await asyncio.to_thread(engine.generate, [b for b, _ in batch])
            except UpstreamError as exc:
                results = [exc] * len(batch)
            except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
                results = [UpstreamError(expert.name, f"engine failed: {type(exc).__name__}: {exc}")] * len(batch)
            for (_, fut), result in zip(batch, results):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def release(self, name: str) -> None:
        """Unload an expert's model (its group is done), so the next group has the memory."""
        slot = self._slots.pop(name, None)
        if slot is not None and slot.engine is not None:
            slot.engine.close()
            slot.engine = None
            gc.collect()

    async def aclose(self) -> None:
        for name in list(self._slots):
            await self.release(name)
