"""Redis taken away from a running gateway (a real redis-server, killed and started again on
the same port, empty): the gateway keeps serving on local state, says `degraded` on
readiness, no request hangs, and when Redis returns it resyncs and serves on it again."""

from __future__ import annotations

import time

import httpx
import redis
from openai import OpenAI

from gateway.store import EXPERTS_KEY
from switchyard.redis_server import RedisServer
from switchyard.threaded import free_port

ADMIN = {"authorization": "Bearer admin-secret"}
MSG = [{"role": "user", "content": "What is the boiling point of water at sea level?"}]


def test_gateway_serves_through_a_redis_outage_and_resyncs_when_it_returns(loopback, serve_gateway) -> None:
    url, _ = loopback
    with RedisServer(free_port()) as rs:
        gw = serve_gateway(url, store_url=rs.url, registry_refresh_s=0.2, store_retry_s=0.2)
        c = OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0, timeout=5)
        assert httpx.get(f"{gw.url}/health/ready").json()["status"] == "ready"
        rs.stop()
        slowest = 0.0
        for i in range(10):  # routed and named, streaming and not: all answered, none waits on Redis
            started = time.monotonic()
            if i % 2:
                assert list(c.chat.completions.create(model="carrot", messages=MSG, stream=True))[-1].choices[0].finish_reason
            else:
                assert c.chat.completions.create(model="claude-v1", messages=MSG).model == "claude-v1"
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 2.0
        ready = httpx.get(f"{gw.url}/health/ready", timeout=3)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded" and ready.json()["store"]["degraded"] is True
        assert "switchyard_store_degraded 1.0" in httpx.get(f"{gw.url}/metrics").text
        # A write made during the outage lands locally, is served, and is replayed later.
        spec = {"name": "outage-expert", "base_url": url, "model": "m", "stands_for": "claude-v1"}
        assert httpx.post(f"{gw.url}/admin/experts", headers=ADMIN, json=spec, timeout=3).status_code == 201
        assert c.chat.completions.create(model="outage-expert", messages=MSG).model == "outage-expert"
        rs.start()  # back, and empty: no persistence
        deadline = time.monotonic() + 10
        while httpx.get(f"{gw.url}/health/ready").json()["status"] != "ready":
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.1)
        names = set(redis.Redis.from_url(rs.url, decode_responses=True).hgetall(EXPERTS_KEY))
        assert "outage-expert" in names and len(names) == 12  # the config's 11 re-declared, plus the journalled one
        time.sleep(0.5)  # a registry refresh from Redis
        assert c.chat.completions.create(model="carrot", messages=MSG).choices
        assert "switchyard_store_degraded 0.0" in httpx.get(f"{gw.url}/metrics").text


def test_gateway_starts_degraded_when_redis_is_down(loopback, serve_gateway) -> None:
    url, _ = loopback
    gw = serve_gateway(url, store_url=f"redis://127.0.0.1:{free_port()}/0")
    ready = httpx.get(f"{gw.url}/health/ready", timeout=3)
    assert ready.status_code == 200 and ready.json()["status"] == "degraded" and ready.json()["experts"] == 11
    r = OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0, timeout=5).chat.completions.create(model="claude-v2", messages=MSG)
    assert r.model == "claude-v2"
