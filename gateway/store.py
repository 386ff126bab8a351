"""Shared state: in-process memory (the embedded default) or Redis (several workers/replicas).

Both hold the expert registry as name -> spec JSON. Redis calls use short socket timeouts
so a dead Redis turns into a StoreError quickly instead of a hanging request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.breaker_store import MemoryBreakerMixin, RedisBreakerMixin

EXPERTS_KEY = "switchyard:experts"


class StoreError(RuntimeError):
    pass


class Store(ABC):
    kind: str

    @abstractmethod
    async def get_experts(self) -> dict[str, str]: ...

    @abstractmethod
    async def put_expert(self, name: str, spec_json: str) -> None: ...

    @abstractmethod
    async def delete_expert(self, name: str) -> bool: ...

    @abstractmethod
    async def ping(self) -> bool: ...

    async def close(self) -> None:
        return None


class MemoryStore(MemoryBreakerMixin, Store):
    kind = "memory"

    def __init__(self) -> None:
        self._experts: dict[str, str] = {}

    async def get_experts(self) -> dict[str, str]:
        return dict(self._experts)

    async def put_expert(self, name: str, spec_json: str) -> None:
        self._experts[name] = spec_json

    async def delete_expert(self, name: str) -> bool:
        return self._experts.pop(name, None) is not None

    async def ping(self) -> bool:
        return True


class RedisStore(RedisBreakerMixin, Store):
    kind = "redis"

    def __init__(self, url: str, socket_timeout: float = 0.5, max_connections: int = 1024) -> None:
        self.url = url
        # redis-py's pool holds 100 connections by default and fails the 101st concurrent call;
        # hundreds of in-flight requests (breaker records) need more.
        self._redis = aioredis.from_url(
            url, decode_responses=True, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            max_connections=max_connections,
        )

    async def _call(self, coro):  # noqa: ANN001, ANN202
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis at {self.url}: {type(exc).__name__}: {exc}") from None

    async def get_experts(self) -> dict[str, str]:
        return await self._call(self._redis.hgetall(EXPERTS_KEY))

    async def put_expert(self, name: str, spec_json: str) -> None:
        await self._call(self._redis.hset(EXPERTS_KEY, name, spec_json))

    async def delete_expert(self, name: str) -> bool:
        return bool(await self._call(self._redis.hdel(EXPERTS_KEY, name)))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def make_store(url: str | None) -> Store:
    if not url or url == "memory://":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise ValueError(f"unsupported store URL {url!r} (use redis://... or leave it unset)")
