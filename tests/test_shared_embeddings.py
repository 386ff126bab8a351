"""Replicas share query embeddings through Redis: a query one gateway embedded is routed by
another from the store's copy, with the same decision, and is then in its own LRU too."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import httpx
import numpy as np
import pytest
import redis
from openai import OpenAI

from gateway.degraded import DegradableStore
from gateway.store import VECTOR_PREFIX, RedisStore, StoreError
from switchyard.threaded import free_port


def _lookups(gw) -> dict[str, float]:  # noqa: ANN001
    out = {"local": 0.0, "shared": 0.0, "computed": 0.0}
    for line in httpx.get(f"{gw.url}/metrics").text.splitlines():
        if line.startswith("switchyard_embedding_lookups_total{"):
            out[line.split('source="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


def _ask(gw, prompt: str) -> str:  # noqa: ANN001
    c = OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    return c.chat.completions.create(model="carrot", messages=[{"role": "user", "content": prompt}]).model


def test_replicas_share_embeddings_through_redis(loopback, serve_gateway, clean_redis: str, embedder) -> None:  # noqa: ANN001
    url, _ = loopback
    a = serve_gateway(url, store_url=clean_redis, embedding={"shared_ttl_s": 600})
    b = serve_gateway(url, store_url=clean_redis, embedding={"shared_ttl_s": 600})
    prompt = f"Which gas do plants absorb for photosynthesis? ({uuid.uuid4().hex})"
    picked = _ask(a, prompt)
    assert _lookups(a)["computed"] == 1

    r = redis.Redis.from_url(clean_redis)
    keys = r.keys(VECTOR_PREFIX + "*")
    assert len(keys) == 1 and 0 < r.ttl(keys[0]) <= 600
    assert _ask(b, prompt) == picked  # the same decision from the shared vector
    assert _lookups(b) == {"local": 0.0, "shared": 1.0, "computed": 0.0}
    assert _ask(b, prompt) == picked
    assert _lookups(b)["local"] == 1  # now in b's own LRU

    # a vector of the wrong size (another model) or not base64 at all (a corrupt write) is a
    # miss: recomputed, answered, and replaced in Redis
    for bad in ("AAAA", "AAA"):
        r.set(keys[0], bad)
        c = serve_gateway(url, store_url=clean_redis)
        assert _ask(c, prompt) == picked and _lookups(c)["computed"] == 1
        for _ in range(100):  # the write-back runs in the background
            if r.get(keys[0]) != bad.encode():
                break
            time.sleep(0.05)
        stored = np.frombuffer(base64.b64decode(r.get(keys[0])), dtype=np.float32)
        np.testing.assert_allclose(stored, embedder.encode([prompt])[0], atol=1e-5)


def test_a_failing_cache_call_is_a_miss_and_does_not_degrade_the_store() -> None:
    async def main() -> None:
        store = DegradableStore(RedisStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2))
        with pytest.raises(StoreError):
            await store.get_vectors(["k"])
        assert not store.degraded  # only a failing registry/key/limit call takes the store local
        await store.close()

    asyncio.run(main())


def test_shared_cache_off_and_memory_store(loopback, serve_gateway, clean_redis: str) -> None:  # noqa: ANN001
    url, _ = loopback
    prompt = f"Translate 'good morning' into French ({uuid.uuid4().hex})"
    off = [serve_gateway(url, store_url=clean_redis, embedding={"shared_cache": False}) for _ in range(2)]
    for gw in off:
        _ask(gw, prompt)
        assert _lookups(gw)["computed"] == 1  # each replica embeds it itself
    assert not redis.Redis.from_url(clean_redis).keys(VECTOR_PREFIX + "*")
    memory = serve_gateway(url)  # no Redis: the process LRU is the only cache
    _ask(memory, prompt)
    _ask(memory, prompt)
    assert _lookups(memory) == {"local": 1.0, "shared": 0.0, "computed": 1.0}
