"""The store contract on both implementations, and replicas sharing experts through real Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from openai import OpenAI

from gateway.store import MemoryStore, RedisStore, StoreError, make_store
from switchyard.threaded import free_port

ADMIN = {"authorization": "Bearer admin-secret"}


@pytest.fixture(params=["memory", "redis"])
def store_factory(request, clean_redis):
    return (lambda: MemoryStore()) if request.param == "memory" else (lambda: RedisStore(clean_redis))


def test_store_contract(store_factory) -> None:
    async def run() -> None:
        store = store_factory()
        assert await store.ping()
        assert await store.get_experts() == {}
        await store.put_expert("a", '{"x": 1}')
        await store.put_expert("b", '{"x": 2}')
        await store.put_expert("a", '{"x": 3}')
        assert await store.get_experts() == {"a": '{"x": 3}', "b": '{"x": 2}'}
        assert await store.delete_expert("a") is True
        assert await store.delete_expert("a") is False
        assert await store.get_experts() == {"b": '{"x": 2}'}
        await store.close()

    asyncio.run(run())


def test_dead_redis_fails_fast_with_a_store_error() -> None:
    async def run() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
        assert await store.ping() is False
        with pytest.raises(StoreError):
            await asyncio.wait_for(store.get_experts(), timeout=3)
        await store.close()

    asyncio.run(run())
    with pytest.raises(ValueError, match="unsupported store URL"):
        make_store("mongodb://x")


def test_expert_registered_on_one_replica_is_seen_by_another_and_survives_restart(loopback, serve_gateway, clean_redis) -> None:
    url, _ = loopback
    one = serve_gateway(url, store_url=clean_redis)
    two = serve_gateway(url, store_url=clean_redis)
    spec = {"name": "fresh-mixtral", "base_url": url, "model": "mixtral", "stands_for": "mistralai/mixtral-8x7b-chat",
            "input_price": 0.5, "output_price": 0.5}
    assert httpx.post(f"{one.url}/admin/experts", headers=ADMIN, json=spec).status_code == 201
    # The second replica answers with it at once (a miss refreshes its snapshot from Redis).
    r = OpenAI(base_url=f"{two.url}/v1", api_key="k", max_retries=0).chat.completions.create(
        model="fresh-mixtral", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "fresh-mixtral"
    assert "fresh-mixtral" in {e["name"] for e in httpx.get(f"{two.url}/admin/experts", headers=ADMIN).json()["data"]}
    # ... and routes to it: it stands for a model the router knows.
    d = httpx.post(f"{two.url}/v1/route", json={"prompt": "hello", "routing": {"experts": ["fresh-mixtral", "gpt-4-1106-preview"]}}).json()
    assert "fresh-mixtral" in d["predicted"]
    assert httpx.get(f"{two.url}/health/ready").json()["store"] == {"kind": "redis", "ok": True, "degraded": False}
    one.stop()
    two.stop()
    three = serve_gateway(url, store_url=clean_redis)  # a restart: config experts plus the registered one
    names = {e["name"] for e in httpx.get(f"{three.url}/admin/experts", headers=ADMIN).json()["data"]}
    assert "fresh-mixtral" in names and len(names) == 12
    assert httpx.delete(f"{three.url}/admin/experts/fresh-mixtral", headers=ADMIN).status_code == 200
    four = serve_gateway(url, store_url=clean_redis)
    assert "fresh-mixtral" not in {e["name"] for e in httpx.get(f"{four.url}/admin/experts", headers=ADMIN).json()["data"]}
