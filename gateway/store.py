"""Shared state: in-process memory (the embedded default) or Redis (several workers/replicas).

Both hold the expert registry as name -> spec JSON, and the client keys, their rate-limit
windows and the usage ledger (gateway/limits.py has the rules, gateway/redis_scripts.py the
same rules in Lua). Redis also holds the query-embedding cache that replicas share; the memory
store has none (the process's own LRU is the cache there). Redis calls use short socket timeouts so a dead Redis turns into a
StoreError quickly instead of a hanging request.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from abc import ABC, abstractmethod
from collections import defaultdict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import redis_scripts
from gateway.breaker_store import MemoryBreakerMixin, RedisBreakerMixin
from gateway.keys import KeyRecord
from gateway.limits import Admission, UsageEntry, WindowState, admit_local, bucket_of

PREFIX = "switchyard:"
EXPERTS_KEY = PREFIX + "experts"
KEYS_KEY = PREFIX + "keys"
BY_HASH_KEY = PREFIX + "keys:by_hash"
VECTOR_PREFIX = PREFIX + "emb:"
USAGE_KINDS = ("key", "router", "expert")
USAGE_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cost_usd")

Usage = dict[str, dict[str, dict[str, float]]]  # {"keys"|"routers"|"experts": {name: {field: value}}}


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

    # -- client keys, limits, usage -----------------------------------------------------------

    @abstractmethod
    async def create_key(self, record: KeyRecord) -> None: ...

    @abstractmethod
    async def list_keys(self) -> list[KeyRecord]: ...

    @abstractmethod
    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        """Mark the key revoked and forget its hash (it stops working at once); None if unknown."""

    @abstractmethod
    async def admit(self, token_hash: str, window_s: float, count: bool = True) -> Admission:
        """Look the key up and check its limits; if it passes and `count`, count one request."""

    @abstractmethod
    async def record_usage(self, entry: UsageEntry, window_s: float) -> None:
        """Add an answered request to the ledger (per key, router, expert) and the key's token window."""

    @abstractmethod
    async def usage(self) -> Usage: ...

    async def get_vectors(self, keys: list[str]) -> list[bytes | None]:
        """Cached query embeddings by key (None where absent). No shared cache by default."""
        return [None] * len(keys)

    async def put_vectors(self, vectors: dict[str, bytes], ttl_s: float) -> None:
        """Share embeddings with the other replicas for `ttl_s` (a no-op without a shared cache)."""

    async def close(self) -> None:
        return None


class MemoryStore(MemoryBreakerMixin, Store):
    kind = "memory"

    def __init__(self) -> None:
        self._experts: dict[str, str] = {}
        self._keys: dict[str, KeyRecord] = {}
        self._by_hash: dict[str, str] = {}
        self._windows: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: {"requests": {}, "tokens": {}})
        self._usage: Usage = {f"{k}s": defaultdict(lambda: dict.fromkeys(USAGE_FIELDS, 0)) for k in USAGE_KINDS}

    async def get_experts(self) -> dict[str, str]:
        return dict(self._experts)

    async def put_expert(self, name: str, spec_json: str) -> None:
        self._experts[name] = spec_json

    async def delete_expert(self, name: str) -> bool:
        return self._experts.pop(name, None) is not None

    async def ping(self) -> bool:
        return True

    async def create_key(self, record: KeyRecord) -> None:
        self._keys[record.id] = record
        self._by_hash[record.hash] = record.id

    async def list_keys(self) -> list[KeyRecord]:
        return list(self._keys.values())

    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        record = self._keys.get(key_id)
        if record is None:
            return None
        self._by_hash.pop(record.hash, None)
        if record.revoked_at is None:
            record = self._keys[key_id] = record.model_copy(update={"revoked_at": time.time()})
        return record

    async def admit(self, token_hash: str, window_s: float, count: bool = True) -> Admission:
        key_id = self._by_hash.get(token_hash)
        if key_id is None:
            return Admission("unknown", any_keys=bool(self._keys))
        spent = self._usage["keys"][key_id]["cost_usd"] if key_id in self._usage["keys"] else 0.0
        return admit_local(self._keys[key_id].id, self._keys[key_id].limits, spent, self._windows[key_id], window_s, count)

    async def record_usage(self, entry: UsageEntry, window_s: float) -> None:
        for kind, name in (("keys", entry.key_id), ("routers", entry.router), ("experts", entry.expert)):
            row = self._usage[kind][name]
            row["requests"] += 1
            row["prompt_tokens"] += entry.prompt_tokens
            row["completion_tokens"] += entry.completion_tokens
            row["cost_usd"] += entry.cost_usd
        record = self._keys.get(entry.key_id)
        tokens = entry.prompt_tokens + entry.completion_tokens
        if record is not None and record.limits.tpm is not None and tokens:
            window = self._windows[entry.key_id]["tokens"]
            b = bucket_of(time.time(), window_s)
            window[b] = window.get(b, 0) + tokens

    async def usage(self) -> Usage:
        return {kind: {name: dict(row) for name, row in rows.items()} for kind, rows in self._usage.items()}


def _unbase64(text: str) -> bytes | None:
    """A stored vector, or None for a corrupt one (a cache miss, never a failed request)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


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
        self._admit = self._redis.register_script(redis_scripts.ADMIT)  # EVALSHA, reloaded if Redis restarts
        self._record = self._redis.register_script(redis_scripts.RECORD)

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

    async def create_key(self, record: KeyRecord) -> None:
        limits = {k: v for k, v in record.limits.model_dump().items() if v is not None}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(KEYS_KEY, record.id, record.model_dump_json())
            pipe.hset(BY_HASH_KEY, record.hash, record.id)
            if limits:
                pipe.hset(f"{PREFIX}key:{record.id}:limits", mapping=limits)
            await self._call(pipe.execute())

    async def list_keys(self) -> list[KeyRecord]:
        raw = await self._call(self._redis.hgetall(KEYS_KEY))
        return [KeyRecord.model_validate_json(v) for v in raw.values()]

    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        raw = await self._call(self._redis.hget(KEYS_KEY, key_id))
        if raw is None:
            return None
        record = KeyRecord.model_validate_json(raw)
        if record.revoked_at is None:
            record = record.model_copy(update={"revoked_at": time.time()})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(BY_HASH_KEY, record.hash)
            pipe.hset(KEYS_KEY, key_id, record.model_dump_json())
            await self._call(pipe.execute())
        return record

    async def admit(self, token_hash: str, window_s: float, count: bool = True) -> Admission:
        raw = await self._call(self._admit(keys=[BY_HASH_KEY, KEYS_KEY], args=[token_hash, window_s, int(count), PREFIX]))
        d = json.loads(raw)
        for kind in ("requests", "tokens"):
            if isinstance(d.get(kind), dict):
                d[kind] = WindowState(**d[kind])
            else:
                d.pop(kind, None)  # cjson writes an absent table as nothing, an empty one as {}
        return Admission(**d)

    async def record_usage(self, entry: UsageEntry, window_s: float) -> None:
        args = [PREFIX, entry.key_id, entry.router, entry.expert, entry.prompt_tokens, entry.completion_tokens,
                repr(float(entry.cost_usd)), window_s]
        await self._call(self._record(keys=[], args=args))

    async def usage(self) -> Usage:
        out: Usage = {}
        for kind in USAGE_KINDS:
            names = sorted(await self._call(self._redis.smembers(f"{PREFIX}usage:{kind}s")))
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(f"{PREFIX}usage:{kind}:{name}")
                rows = await self._call(pipe.execute())
            out[f"{kind}s"] = {n: {f: (float if f == "cost_usd" else int)(r.get(f, 0)) for f in USAGE_FIELDS} for n, r in zip(names, rows)}
        return out

    async def get_vectors(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        found = await self._call(self._redis.mget([VECTOR_PREFIX + k for k in keys]))
        return [None if v is None else _unbase64(v) for v in found]  # the client decodes text: vectors travel as base64

    async def put_vectors(self, vectors: dict[str, bytes], ttl_s: float) -> None:
        if not vectors:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key, blob in vectors.items():
            pipe.set(VECTOR_PREFIX + key, base64.b64encode(blob).decode("ascii"), ex=max(1, int(ttl_s)))
        await self._call(pipe.execute())

    async def close(self) -> None:
        await self._redis.aclose()


def make_store(url: str | None) -> Store:
    if not url or url == "memory://":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise ValueError(f"unsupported store URL {url!r} (use redis://... or leave it unset)")
