"""Circuit-breaker records in the store (experts/breaker.py's BreakerStore), one mixin per store
kind. Redis keeps them in two hashes (failures in a row; when it opened) updated atomically by
a Lua script, and a short-lived key per half-open probe, so replicas share one breaker."""

from __future__ import annotations

import time
from typing import Any

FAILURES_KEY = "switchyard:breaker:failures"
OPENED_KEY = "switchyard:breaker:opened"
PROBE_KEY = "switchyard:breaker:probe:"

# KEYS: failures hash, opened hash, probe key; ARGV: name, threshold, now.
_FAILURE_LUA = """
local f = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if f >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('DEL', KEYS[3])
end
return {f, redis.call('HGET', KEYS[2], ARGV[1]) or '0'}
"""


class MemoryBreakerMixin:
    """One process: plain dicts."""

    def _breakers(self) -> dict[str, list[float]]:
        if not hasattr(self, "_breaker_records"):
            self._breaker_records: dict[str, list[float]] = {}  # name -> [failures, opened_at, probe_until]
        return self._breaker_records

    async def breaker_records(self) -> dict[str, tuple[int, float]]:
        return {n: (int(r[0]), r[1]) for n, r in self._breakers().items()}

    async def breaker_failure(self, name: str, threshold: int, now: float) -> tuple[int, float]:
        r = self._breakers().setdefault(name, [0, 0.0, 0.0])
        r[0] += 1
        if r[0] >= threshold:
            r[1], r[2] = now, 0.0
        return int(r[0]), r[1]

    async def breaker_reset(self, name: str) -> None:
        self._breakers().pop(name, None)

    async def breaker_claim_probe(self, name: str, ttl_s: float) -> bool:
        r = self._breakers().setdefault(name, [0, 0.0, 0.0])
        now = time.monotonic()
        if r[2] > now:
            return False
        r[2] = now + ttl_s
        return True


class RedisBreakerMixin:
    """Several replicas: needs the RedisStore's `_redis` client and `_call` error mapping."""

    _redis: Any
    _call: Any

    async def breaker_records(self) -> dict[str, tuple[int, float]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(FAILURES_KEY)
            pipe.hgetall(OPENED_KEY)
            failures, opened = await self._call(pipe.execute())
        return {n: (int(failures.get(n, 0)), float(opened.get(n, 0))) for n in set(failures) | set(opened)}

    async def breaker_failure(self, name: str, threshold: int, now: float) -> tuple[int, float]:
        keys = [FAILURES_KEY, OPENED_KEY, PROBE_KEY + name]
        f, opened = await self._call(self._redis.eval(_FAILURE_LUA, len(keys), *keys, name, threshold, repr(now)))
        return int(f), float(opened)

    async def breaker_reset(self, name: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(FAILURES_KEY, name)
            pipe.hdel(OPENED_KEY, name)
            pipe.delete(PROBE_KEY + name)
            await self._call(pipe.execute())

    async def breaker_claim_probe(self, name: str, ttl_s: float) -> bool:
        return bool(await self._call(self._redis.set(PROBE_KEY + name, "1", nx=True, px=max(1, int(ttl_s * 1000)))))
