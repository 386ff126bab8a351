"""Keep serving when Redis is unreachable: a store wrapper that falls back to local state.

Every store call goes to Redis first. On a StoreError (the RedisStore's short socket timeouts
make that quick) the wrapper turns degraded: from then on calls go to an in-process
MemoryStore at once, so no request waits on a dead Redis, while a background task pings Redis
every `retry_s`. The local store mirrors the expert registry as last read from Redis, so
routing goes on with the same experts; registry writes made while degraded are journalled.
When Redis answers again the wrapper resyncs (replays the journal, then `on_recover`, which
re-declares the config's experts in case Redis came back empty) and turns healthy again.

API keys are mirrored too (every few seconds), so clients keep authenticating. Other state
(breaker records, rate windows, spend, counters) starts afresh locally during an outage and is
not replayed: it is approximate by nature and Redis's own copy wins when it returns.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.store import MemoryStore, Store, StoreError

log = logging.getLogger("switchyard.store")

# Writes replayed into Redis on recovery: the registry, and API keys created or revoked meanwhile.
JOURNALLED = frozenset({"put_expert", "delete_expert", "create_key", "revoke_key"})
# Cache calls: their failure is the caller's miss, not a reason to take the whole store local
# (a slow pipelined write of vectors must not flip rate limits and keys to local state).
CACHE_ONLY = frozenset({"get_vectors", "put_vectors"})
KEY_SYNC_S = 5.0  # how stale the local copy of the API keys may be when an outage starts


class DegradableStore:
    def __init__(self, primary: Store, retry_s: float = 1.0, on_change: Callable[[bool], None] | None = None) -> None:
        self.primary, self.local = primary, MemoryStore()
        self.kind = primary.kind
        self.retry_s, self.on_change = retry_s, on_change
        self.on_recover: Callable[[Store], Awaitable[None]] | None = None  # given Redis itself
        self.degraded_since: float | None = None  # wall-clock time, for /health/ready
        self.last_error: str | None = None
        self._journal: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._keys_synced = float("-inf")

    @property
    def degraded(self) -> bool:
        return self.degraded_since is not None

    def __getattr__(self, name: str) -> Any:
        """Any store method, primary first; methods added to Store later get the same fallback."""
        target = getattr(self.primary, name)
        if not inspect.iscoroutinefunction(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name in CACHE_ONLY:
                store = self.local if self.degraded_since is not None else self.primary
                return await getattr(store, name)(*args, **kwargs)  # a StoreError reaches the caller
            if self.degraded_since is None:
                try:
                    result = await getattr(self.primary, name)(*args, **kwargs)
                except StoreError as exc:
                    self._degrade(exc)
                else:
                    await self._mirror(name, args, kwargs, result)
                    return result
            if name in JOURNALLED:
                self._journal.append((name, args, kwargs))
            return await getattr(self.local, name)(*args, **kwargs)

        return call

    async def _mirror(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        """Keep the local copy of the registry current, so an outage starts from the last state."""
        if name == "get_experts":
            for gone in set(await self.local.get_experts()) - set(result):
                await self.local.delete_expert(gone)
            for expert, blob in result.items():
                await self.local.put_expert(expert, blob)
            await self._mirror_keys()
        elif name in JOURNALLED:
            await getattr(self.local, name)(*args, **kwargs)

    async def _mirror_keys(self) -> None:
        """Copy the API keys (hashes and limits, never secrets) every KEY_SYNC_S, piggybacking on
        the registry refresh, so clients keep authenticating through an outage. Their rate
        windows and spend start afresh locally: limits are approximate until Redis returns."""
        now = time.monotonic()
        if now - self._keys_synced < KEY_SYNC_S:
            return
        self._keys_synced = now
        try:
            records = await self.primary.list_keys()
        except StoreError:
            return
        for record in records:
            await self.local.create_key(record)
            if record.revoked:
                await self.local.revoke_key(record.id)

    def _degrade(self, exc: StoreError) -> None:
        self.last_error = str(exc)
        if self.degraded_since is not None:
            return
        self.degraded_since = time.time()
        log.error("store unreachable, serving on local state until it returns: %s", exc)
        if self.on_change is not None:
            self.on_change(True)
        self._task = asyncio.get_running_loop().create_task(self._recover_loop())

    async def _recover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_s)
            if not await self.primary.ping():
                continue
            try:
                await self._resync()
            except StoreError as exc:
                self.last_error = str(exc)
                continue
            took = time.time() - (self.degraded_since or time.time())
            self.degraded_since, self.last_error, self._task = None, None, None
            log.warning("store is back after %.1f s: resynced, serving on shared state again", took)
            if self.on_change is not None:
                self.on_change(False)
            return

    async def _resync(self) -> None:
        while self._journal:
            name, args, kwargs = self._journal[0]
            await getattr(self.primary, name)(*args, **kwargs)
            self._journal.pop(0)
        if self.on_recover is not None:
            await self.on_recover(self.primary)

    async def ping(self) -> bool:
        """Serving on Redis now? Store calls decide, not pings: under a busy event loop one ping
        can miss its short timeout while Redis is fine, and readiness would flap."""
        return not self.degraded

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "ok": not self.degraded, "degraded": self.degraded}
        if self.degraded_since is not None:
            out.update(since=round(self.degraded_since, 3), error=self.last_error, journalled=len(self._journal))
        return out

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.primary.close()


def resilient(store: Store, retry_s: float = 1.0, on_change: Callable[[bool], None] | None = None) -> Store | DegradableStore:
    """Redis gets the local fallback; the memory store is local state already."""
    return store if isinstance(store, MemoryStore) else DegradableStore(store, retry_s, on_change)


async def store_status(store: Store | DegradableStore) -> dict[str, Any]:
    """For /health/ready: {kind, ok, degraded, ...}."""
    ok = await store.ping()
    if isinstance(store, DegradableStore):
        return store.status()
    return {"kind": store.kind, "ok": ok, "degraded": False}
