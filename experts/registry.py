"""The expert registry: a local snapshot of the experts kept in the store.

Reads on the request path hit the snapshot; a background loop refreshes it, and a miss
refreshes once before answering 404, so an expert registered on another replica is seen
at once.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from pydantic import ValidationError

from experts.periodic import Periodic
from experts.spec import ExpertSpec

log = logging.getLogger("switchyard.registry")


class ExpertStore(Protocol):
    async def get_experts(self) -> dict[str, str]: ...
    async def put_expert(self, name: str, spec_json: str) -> None: ...
    async def delete_expert(self, name: str) -> bool: ...


class ExpertRegistry:
    def __init__(self, store: ExpertStore, refresh_s: float = 1.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._experts: dict[str, ExpertSpec] = {}
        self.refreshed_at = 0.0
        # Keep serving on the last snapshot when a refresh fails.
        self._loop = Periodic(self.refresh, refresh_s, "expert registry refresh", log, wait_first=True)
        self.start, self.stop = self._loop.start, self._loop.stop

    def snapshot(self) -> dict[str, ExpertSpec]:
        return self._experts

    async def refresh(self) -> dict[str, ExpertSpec]:
        raw = await self.store.get_experts()
        experts = {}
        for name, blob in raw.items():
            try:
                experts[name] = ExpertSpec.model_validate_json(blob)
            except ValidationError:
                log.warning("skipping unreadable expert %r in the store", name)
        self._experts = experts
        self.refreshed_at = time.monotonic()
        return experts

    async def get(self, name: str) -> ExpertSpec | None:
        spec = self._experts.get(name)
        if spec is None:
            spec = (await self.refresh()).get(name)
        return spec

    async def put(self, spec: ExpertSpec) -> None:
        await self.store.put_expert(spec.name, spec.model_dump_json())
        self._experts = {**self._experts, spec.name: spec}

    async def delete(self, name: str) -> bool:
        found = await self.store.delete_expert(name)
        self._experts = {k: v for k, v in self._experts.items() if k != name}
        return found

