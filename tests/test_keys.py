"""Client keys, rate limits, budgets and usage: the store contract on both stores, then real
HTTP against gateways sharing a real Redis, the openai client, and `switchyard serve
--workers 4` in subprocesses. Experts are loopback servers (they stand in for vLLM only)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml
from openai import OpenAI

from gateway.app import create_app
from gateway.keys import KeyLimits, KeyRecord, hash_secret
from gateway.limits import UsageEntry
from gateway.logs import JsonFormatter
from gateway.settings import load_settings
from gateway.store import MemoryStore, RedisStore
from switchyard.demo import expert_config
from switchyard.process import GatewayProcess
from switchyard.threaded import ThreadedServer, free_port

ADMIN = {"authorization": "Bearer admin-secret"}
EXPERTS = ["claude-v1", "claude-v2"]
HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture()
def gateway(tmp_path: Path, loopback) -> Iterator[Callable[..., ThreadedServer]]:
    """Experts-only gateways (no router, so no embedder) over HTTP: gateway(**config)."""
    url, _ = loopback
    started: list[ThreadedServer] = []

    def start(**extra: Any) -> ThreadedServer:
        path = tmp_path / f"gw-{free_port()}.yaml"
        path.write_text(yaml.safe_dump({"experts": expert_config(EXPERTS, url.removesuffix("/v1")), "admin_key": "admin-secret", **extra}))
        server = ThreadedServer(create_app(load_settings(path))).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def create_key(gw: ThreadedServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{gw.url}/admin/keys", headers=ADMIN, json={"name": "team", **body})
    assert r.status_code == 201, r.text
    return r.json()


def client(gw: Any, key: str, **kw: Any) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key=key, **{"max_retries": 0, **kw})


def redis_text(url: str) -> str:
    """Every key and value in the Redis database, as one string."""
    r = redis.Redis.from_url(url, decode_responses=True)
    parts = []
    for k in r.scan_iter():
        kind = r.type(k)
        value = {"string": r.get, "hash": r.hgetall, "set": r.smembers, "list": lambda x: r.lrange(x, 0, -1)}[kind](k)
        parts.append(f"{k} {value}")
    return "\n".join(parts)


# -- the store contract ---------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request, clean_redis):
    return MemoryStore() if request.param == "memory" else RedisStore(clean_redis)


def test_store_limits_windows_budgets_and_revocation(store) -> None:
    window = 1.5

    def record(key_id: str, limits: KeyLimits) -> KeyRecord:
        return KeyRecord(id=key_id, name=key_id, hash=hash_secret(key_id), prefix="sk-sy-x", created_at=time.time(), limits=limits)

    async def run() -> None:
        assert (await store.admit(hash_secret("nobody"), window)).any_keys is False
        await store.create_key(record("rate", KeyLimits(rpm=2)))
        await store.create_key(record("tok", KeyLimits(tpm=100)))
        await store.create_key(record("spend", KeyLimits(budget_usd=0.01)))
        unknown = await store.admit(hash_secret("nobody"), window)
        assert unknown.status == "unknown" and unknown.any_keys is True
        first, second, third = [await store.admit(hash_secret("rate"), window) for _ in range(3)]
        assert (first.status, second.status, third.status) == ("ok", "ok", "requests")
        assert (first.requests.remaining, second.requests.remaining, third.requests.remaining) == (1, 0, 0)
        assert 0 < third.retry_after_s <= window and 0 < second.requests.reset_s <= window
        assert third.tokens is None and third.budget_usd is None
        await asyncio.sleep(third.retry_after_s + 0.05)  # the window slides: room for one again
        assert (await store.admit(hash_secret("rate"), window)).status == "ok"
        # Tokens count when the answer is in; a full token window refuses the next request.
        fresh = await store.admit(hash_secret("tok"), window)
        assert fresh.status == "ok" and fresh.tokens.remaining == 100 and fresh.requests is None
        await store.record_usage(UsageEntry("tok", "carrot", "claude-v1", 90, 20, 0.002), window)
        tokens = await store.admit(hash_secret("tok"), window)
        assert tokens.status == "tokens" and tokens.tokens.used == 110 and 0 < tokens.retry_after_s <= window
        # Budget: the spend so far decides.
        assert (await store.admit(hash_secret("spend"), window)).status == "ok"
        await store.record_usage(UsageEntry("spend", "none", "claude-v2", 5, 5, 0.011), window)
        broke = await store.admit(hash_secret("spend"), window)
        assert broke.status == "budget" and broke.spent_usd == pytest.approx(0.011) and broke.budget_usd == 0.01
        usage = await store.usage()
        assert usage["keys"]["tok"] == {"requests": 1, "prompt_tokens": 90, "completion_tokens": 20, "cost_usd": pytest.approx(0.002)}
        assert usage["routers"]["none"]["cost_usd"] == pytest.approx(0.011) and usage["experts"]["claude-v1"]["requests"] == 1
        revoked = await store.revoke_key("spend")
        assert revoked.revoked and (await store.admit(hash_secret("spend"), window)).status == "unknown"
        assert await store.revoke_key("ghost") is None
        assert {k.id: k.revoked for k in await store.list_keys()} == {"rate": False, "tok": False, "spend": True}
        await store.close()

    asyncio.run(run())


# -- over HTTP, real Redis ------------------------------------------------------------------


def test_keys_are_hashed_in_the_store_and_request_limits_answer_429_with_headers(gateway, loopback, clean_redis) -> None:
    _, state = loopback
    gw = gateway(store_url=clean_redis, api_keys=["config-key"], rate_limit_window_s=2.0)
    assert client(gw, "config-key").chat.completions.create(model="claude-v1", messages=HI).model == "claude-v1"
    made = create_key(gw, rpm=3)
    secret = made["key"]
    assert secret.startswith("sk-sy-") and made["id"].startswith("key_") and "hash" not in made
    dump = redis_text(clean_redis)
    assert secret not in dump and secret[6:] not in dump
    assert hashlib.sha256(secret.encode()).hexdigest() in dump
    listed = httpx.get(f"{gw.url}/admin/keys", headers=ADMIN).json()["data"]
    assert [k["id"] for k in listed] == [made["id"]] and secret not in json.dumps(listed)

    c = client(gw, secret)
    remaining = []
    for _ in range(3):
        raw = c.chat.completions.with_raw_response.create(model="claude-v1", messages=HI)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert float(raw.headers["x-ratelimit-reset-requests"].removesuffix("s")) <= 2.0
    assert remaining == ["2", "1", "0"]
    sent = len(state.requests)
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model="claude-v1", messages=HI)
    r = err.value.response
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded" and r.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(r.headers["retry-after"]) <= 2 and r.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(state.requests) == sent  # refused before any expert was called
    time.sleep(float(r.headers["x-ratelimit-reset-requests"].removesuffix("s")) + 0.1)
    assert c.chat.completions.create(model="claude-v1", messages=HI).model == "claude-v1"
    # Wrong or missing keys are 401 now; the config key has no limits.
    with pytest.raises(openai.AuthenticationError):
        client(gw, "sk-sy-guessed").chat.completions.create(model="claude-v1", messages=HI)
    assert httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "claude-v1", "messages": HI}).status_code == 401
    for _ in range(5):
        raw = client(gw, "config-key").chat.completions.with_raw_response.create(model="claude-v1", messages=HI)
        assert "x-ratelimit-limit-requests" not in raw.headers
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'switchyard_rate_limited_total{limit="requests"} 1.0' in metrics and "switchyard_auth_failures_total 2.0" in metrics


def test_token_limit_and_budget(gateway, loopback, clean_redis) -> None:
    _, state = loopback
    gw = gateway(store_url=clean_redis)
    tokens = client(gw, create_key(gw, tpm=8)["key"])
    first = tokens.chat.completions.with_raw_response.create(model="claude-v1", messages=HI)
    assert first.headers["x-ratelimit-remaining-tokens"] == "8"  # this request's own tokens count once it is answered
    assert first.parse().usage.total_tokens >= 8
    with pytest.raises(openai.RateLimitError) as err:
        tokens.chat.completions.create(model="claude-v1", messages=HI)
    assert err.value.response.headers["x-ratelimit-remaining-tokens"] == "0" and int(err.value.response.headers["retry-after"]) >= 1
    # claude-v2 costs $8/$24 per million tokens: one request spends a budget of $0.0001.
    budget = create_key(gw, budget_usd=0.0001)
    spend = client(gw, budget["key"], max_retries=2)  # the SDK's default retries: x-should-retry stops them
    ok = spend.chat.completions.with_raw_response.create(model="claude-v2", messages=HI)
    assert ok.headers["x-switchyard-budget-usd"] == "0.0001" and ok.parse().model_extra["routing"]["cost_usd"] > 0.0001
    sent = len(state.requests)
    with pytest.raises(openai.RateLimitError) as err:
        spend.chat.completions.create(model="claude-v2", messages=HI)
    body = err.value.response.json()["error"]
    assert body["code"] == "budget_exceeded" and body["type"] == "insufficient_quota" and budget["id"] in body["message"]
    assert err.value.response.headers["x-should-retry"] == "false" and "retry-after" not in err.value.response.headers
    assert len(state.requests) == sent
    # A stream counts too.
    streamed = create_key(gw, budget_usd=0.0001, rpm=5)
    raw = client(gw, streamed["key"]).chat.completions.with_raw_response.create(model="claude-v2", messages=HI, stream=True)
    assert raw.headers["x-ratelimit-remaining-requests"] == "4" and raw.headers["x-switchyard-budget-remaining-usd"] == "0.0001"
    assert list(raw.parse())[-1].choices[0].finish_reason == "stop"
    with pytest.raises(openai.RateLimitError):
        client(gw, streamed["key"]).chat.completions.create(model="claude-v2", messages=HI, stream=True)


def test_revoke_takes_effect_at_once_on_another_gateway(gateway, clean_redis) -> None:
    one, two = gateway(store_url=clean_redis), gateway(store_url=clean_redis)
    made = create_key(one)
    c = client(two, made["key"])
    assert c.chat.completions.create(model="claude-v1", messages=HI).model == "claude-v1"
    revoked = httpx.delete(f"{one.url}/admin/keys/{made['id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="claude-v1", messages=HI)
    assert httpx.delete(f"{two.url}/admin/keys/{made['id']}", headers=ADMIN).status_code == 200  # idempotent
    missing = httpx.delete(f"{two.url}/admin/keys/key_nope", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    bad = httpx.post(f"{one.url}/admin/keys", headers=ADMIN, json={"name": "x", "rpm": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    assert httpx.post(f"{one.url}/admin/keys", json={"name": "x"}).status_code == 401


def test_admin_usage_sums_equal_the_responses_cost(loopback, serve_gateway, clean_redis) -> None:
    gw = serve_gateway(loopback[0], store_url=clean_redis)
    keys = [create_key(gw, name=n) for n in ("alpha", "beta")]
    seen: dict[str, dict[str, float]] = {"keys": {}, "experts": {}, "routers": {}}

    def add(key_id: str, expert: str, router: str | None, cost: float) -> None:
        for kind, name in (("keys", key_id), ("experts", expert), ("routers", router or "none")):
            seen[kind][name] = seen[kind].get(name, 0.0) + cost

    prompts = ["What is 17 * 23?", "Write a haiku about rivers.", "Which planet is largest?"]
    for key in keys:
        c = client(gw, key["key"])
        for p in prompts:
            r = c.chat.completions.create(model="carrot@0.3", messages=[{"role": "user", "content": p}])
            add(key["id"], r.model, "carrot", r.model_extra["routing"]["cost_usd"])
        r = c.chat.completions.create(model="claude-v2", messages=HI)
        add(key["id"], r.model, None, r.model_extra["routing"]["cost_usd"])
        last = list(c.chat.completions.create(model="carrot", messages=HI, stream=True, stream_options={"include_usage": True}))[-1]
        add(key["id"], last.model, "carrot", last.model_extra["routing"]["cost_usd"])
    usage = httpx.get(f"{gw.url}/admin/usage", headers=ADMIN).json()
    for kind in seen:
        assert set(usage[kind]) == set(seen[kind]), kind
        for name, cost in seen[kind].items():
            assert usage[kind][name]["cost_usd"] == pytest.approx(cost, rel=1e-9), (kind, name)
    assert usage["keys"][keys[0]["id"]]["requests"] == 5 and usage["keys"][keys[0]["id"]]["name"] == "alpha"
    assert usage["total"]["cost_usd"] == pytest.approx(sum(seen["keys"].values())) and usage["total"]["requests"] == 10
    listed = {k["id"]: k for k in httpx.get(f"{gw.url}/admin/keys", headers=ADMIN).json()["data"]}
    assert listed[keys[1]["id"]]["usage"]["cost_usd"] == pytest.approx(seen["keys"][keys[1]["id"]])


def test_request_ids_and_json_logs_without_prompts_unless_switched_on(gateway) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("switchyard.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        quiet, loud = gateway(), gateway(logging={"prompts": True})
        secret_prompt = "my private question about zebras"
        for gw in (quiet, loud):
            r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"x-request-id": "req-abc.1"},
                           json={"model": "claude-v1", "messages": [{"role": "user", "content": secret_prompt}]})
            assert r.status_code == 200 and r.headers["x-request-id"] == "req-abc.1"
        fresh = httpx.get(f"{quiet.url}/v1/models", headers={"x-request-id": "bad id with spaces"})
        assert len(fresh.headers["x-request-id"]) == 32 and fresh.headers["x-request-id"] != "bad id with spaces"
        assert httpx.get(f"{quiet.url}/nowhere").headers["x-request-id"]
    finally:
        logger.removeHandler(handler)
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    chats = [r for r in records if r["path"] == "/v1/chat/completions"]
    assert [r["request_id"] for r in chats] == ["req-abc.1", "req-abc.1"]
    assert chats[0]["status"] == 200 and chats[0]["experts"] == ["claude-v1"] and chats[0]["cost_usd"] > 0
    assert chats[0]["key_id"] == "anonymous" and chats[0]["completion_tokens"] > 0 and chats[0]["duration_ms"] > 0
    assert secret_prompt not in json.dumps(chats[0]) and chats[1]["prompt"] == secret_prompt
    assert any(r["request_id"] == fresh.headers["x-request-id"] for r in records)


# -- several workers (subprocesses) ---------------------------------------------------------


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os  # noqa: PLC0415

    return subprocess.run([sys.executable, "-m", "switchyard.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_limits_hold_across_four_workers(tmp_path: Path, loopback, clean_redis) -> None:
    url, state = loopback
    state.record = False
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump({"experts": expert_config(EXPERTS, url.removesuffix("/v1")), "admin_key": "admin-secret",
                                      "store_url": clean_redis}))
    log = tmp_path / "gateway.log"
    with GatewayProcess(config, log, ready_timeout=300, args=("--workers", "4")) as gw:
        deadline = time.monotonic() + 300  # all four up, so the kernel spreads connections over them
        while log.read_text().count("Application startup complete") < 4:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        admin = {"SWITCHYARD_URL": gw.url, "SWITCHYARD_ADMIN_KEY": "admin-secret"}
        made = cli("keys", "create", "load-test", "--rpm", "12", **admin)
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)
        limit, n = 12, 48

        def one(i: int) -> int:
            c = OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0, http_client=httpx.Client())  # a connection each
            try:
                c.chat.completions.create(model=EXPERTS[i % 2], messages=[{"role": "user", "content": f"question {i}"}])
                return 200
            except openai.RateLimitError:
                return 429
            finally:
                c.close()

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(one, range(n)))
        assert statuses.count(200) == limit and statuses.count(429) == n - limit
        # /metrics sums every worker's counts, whichever worker answers the scrape.
        for _ in range(3):
            text = httpx.get(f"{gw.url}/metrics").text
            assert f'switchyard_requests_total{{endpoint="/v1/chat/completions",status="200"}} {float(limit)}' in text
            assert f'switchyard_rate_limited_total{{limit="requests"}} {float(n - limit)}' in text
        listed = json.loads(cli("keys", "list", **admin).stdout)
        assert listed[0]["usage"]["requests"] == limit
        assert cli("keys", "revoke", key["id"], **admin).returncode == 0
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0).models.list()
        wrong = cli("keys", "list", SWITCHYARD_URL=gw.url, SWITCHYARD_ADMIN_KEY="nope")
        assert wrong.returncode == 2 and wrong.stderr.startswith("error: 401") and wrong.stderr.count("\n") == 1
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    served = [r for r in records if r.get("path") == "/v1/chat/completions"]
    assert len(served) == n and all(r["request_id"] for r in served)
    assert len({r["pid"] for r in served}) >= 2  # more than one worker answered
    assert not any("question 1" in json.dumps(r) for r in records)  # no prompt text in the logs


def test_several_workers_refuse_the_memory_store(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump({"experts": expert_config(EXPERTS, "http://127.0.0.1:9")}))
    r = cli("serve", "--config", str(config), "--workers", "2")
    assert r.returncode == 2 and r.stderr.startswith("error: --workers 2 needs a shared store") and r.stderr.count("\n") == 1
    config.write_text(yaml.safe_dump({"experts": expert_config(EXPERTS, "http://127.0.0.1:9"), "store_url": f"redis://127.0.0.1:{free_port()}/0"}))
    r = cli("serve", "--config", str(config), "--workers", "2")
    assert r.returncode == 2 and "cannot reach the store" in r.stderr and r.stderr.count("\n") == 1
    r = cli("keys", "create", "x", "--url", f"http://127.0.0.1:{free_port()}", "--admin-key", "a")
    assert r.returncode == 2 and r.stderr.startswith("error: cannot reach the gateway") and r.stderr.count("\n") == 1
