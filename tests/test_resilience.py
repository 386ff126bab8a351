"""Retries before the first byte, fallback along the router's ranking, circuit breakers shared
through Redis, health probes and per-phase timeouts: the real gateway over HTTP in front of
loopback experts (the stand-ins for vLLM), driven by httpx and the official openai client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from experts.loopback import Behaviour, LoopbackState, build_loopback_app
from switchyard.demo import expert_config
from switchyard.threaded import ThreadedServer
from tests.conftest import ROUTERBENCH_MODELS

QUESTION = "Which gas do plants absorb from the air for photosynthesis?\nA) oxygen\nB) carbon dioxide\nC) helium\nD) neon\nAnswer:"
MSG = [{"role": "user", "content": QUESTION}]
NO_RETRY = {"retries": {"attempts": 1}}


def client(gw) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)


def metric(gw, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in httpx.get(f"{gw.url}/metrics").text.splitlines():
        if line.startswith(f"{name}{{{want}}}" if want else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ranking(gw) -> list[str]:
    d = httpx.post(f"{gw.url}/v1/route", json={"messages": MSG, "routing": {"cost_weight": 0.0}}).json()
    return sorted(d["predicted"], key=lambda n: -d["predicted"][n]["utility"])


def sent_to(state: LoopbackState, model: str) -> int:
    return sum(r["model"] == model for r in state.requests)


def wait_for(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_transient_failures_before_the_first_byte_are_retried_but_a_started_stream_is_not(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url, retries={"attempts": 3, "backoff_s": 0.01})
    state.behaviours["claude-v1"] = Behaviour(fail_first=2)  # two 503s, then answers
    r = client(gw).chat.completions.create(model="claude-v1", messages=MSG)
    assert r.model == "claude-v1" and sent_to(state, "claude-v1") == 3
    state.behaviours["claude-v1"] = Behaviour(fail_first=2, fail_first_status=502)
    chunks = list(client(gw).chat.completions.create(model="claude-v1", messages=MSG, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop" and sent_to(state, "claude-v1") == 6
    assert metric(gw, "switchyard_upstream_retries_total", expert="claude-v1") == 4
    # 500 is no transient refusal: not retried. Nor is a stream that broke after its first byte.
    state.behaviours["claude-v2"] = Behaviour(fail_status=500)
    with pytest.raises(openai.InternalServerError):
        client(gw).chat.completions.create(model="claude-v2", messages=MSG)
    state.behaviours["claude-instant-v1"] = Behaviour(chunks=4, die_after_chunks=1)
    with pytest.raises(openai.APIError):
        list(client(gw).chat.completions.create(model="claude-instant-v1", messages=MSG, stream=True))
    assert sent_to(state, "claude-v2") == 1 and sent_to(state, "claude-instant-v1") == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_chosen_expert_falls_back_to_the_next_in_the_ranking(loopback, serve_gateway, stream) -> None:
    url, state = loopback
    gw = serve_gateway(url, **NO_RETRY)
    first, second, third = ranking(gw)[:3]
    state.behaviours[first] = Behaviour(fail_status=500)
    raw = client(gw).chat.completions.with_raw_response.create(
        model="carrot", messages=MSG, stream=stream, extra_body={"routing": {"cost_weight": 0.0}})
    if stream:
        chunks = list(raw.parse())
        resp_model, routing = chunks[0].model, chunks[0].model_extra["routing"]
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        resp = raw.parse()
        resp_model, routing = resp.model, resp.model_extra["routing"]
    assert resp_model == second and raw.headers["x-switchyard-expert"] == second
    assert routing["experts"] == [first]  # the router's choice, as it was
    assert routing["fallback"] == {"failed": [{"expert": first, "code": "upstream_error", "status": 502}], "answered_by": second}
    assert metric(gw, "switchyard_fallbacks_total", expert=first, reason="upstream_error") == 1
    # A request the expert rejects as such (4xx) is the client's to fix: no fallback.
    state.behaviours[first] = Behaviour(fail_status=400)
    with pytest.raises(openai.BadRequestError):
        client(gw).chat.completions.create(model="carrot", messages=MSG, extra_body={"routing": {"cost_weight": 0.0}})
    assert sent_to(state, third) == 0


def test_an_expert_that_never_answers_times_out_and_the_next_one_answers(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url, timeouts={"read": 0.5}, **NO_RETRY)
    first, second = ranking(gw)[:2]
    state.behaviours[first] = Behaviour(delay_s=30)
    started = time.monotonic()
    r = client(gw).chat.completions.create(model="carrot", messages=MSG, extra_body={"routing": {"cost_weight": 0.0}})
    assert r.model == second and r.model_extra["routing"]["fallback"]["failed"][0]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 3


def test_per_phase_timeouts_silence_is_a_504_but_a_long_generation_is_not_cut(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url, timeouts={"read": 0.5}, **NO_RETRY)
    state.behaviours["claude-v1"] = Behaviour(delay_s=30)  # no status line, no byte
    started = time.monotonic()
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "claude-v1", "stream": True, "messages": MSG}, timeout=10)
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2.5
    state.behaviours["claude-v2"] = Behaviour(chunks=4, stall_after_chunks=2)  # starts, then goes silent
    started = time.monotonic()
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json={"model": "claude-v2", "stream": True, "messages": MSG}, timeout=10) as s:
        lines = [ln for ln in s.iter_lines() if ln]
    assert '"upstream_timeout"' in lines[-1] and len(lines) >= 3 and time.monotonic() - started < 2.5
    state.behaviours["claude-instant-v1"] = Behaviour(chunks=8, chunk_delay_s=0.25)  # 2 s in all, never 0.5 s silent
    started = time.monotonic()
    chunks = list(client(gw).chat.completions.create(model="claude-instant-v1", messages=MSG, stream=True))
    assert time.monotonic() - started > 1.5 and chunks[-1].choices[0].finish_reason == "stop"


def test_circuit_breaker_opens_skips_the_expert_then_a_half_open_probe_closes_it(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url, breaker={"failures": 2, "cooldown_s": 2.0, "refresh_s": 0.1}, **NO_RETRY)
    first, second = ranking(gw)[:2]
    state.behaviours[first] = Behaviour(fail_status=500)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client(gw).chat.completions.create(model=first, messages=MSG)
    # Open: the expert is not called; named directly it is a fast 503, routed the next one answers.
    with pytest.raises(openai.APIStatusError) as err:
        client(gw).chat.completions.create(model=first, messages=MSG)
    assert err.value.status_code == 503 and err.value.body["code"] == "circuit_open"
    r = client(gw).chat.completions.create(model="carrot", messages=MSG, extra_body={"routing": {"cost_weight": 0.0}})
    assert r.model == second and r.model_extra["routing"]["fallback"]["failed"][0]["code"] == "circuit_open"
    assert sent_to(state, first) == 2
    assert metric(gw, "switchyard_breaker_state", expert=first) == 2
    # After the cooldown one probe goes through; it succeeds, so the breaker closes.
    state.behaviours.pop(first)
    time.sleep(2.1)
    assert client(gw).chat.completions.create(model=first, messages=MSG).model == first
    assert client(gw).chat.completions.create(model=first, messages=MSG).model == first
    assert sent_to(state, first) == 4 and metric(gw, "switchyard_breaker_state", expert=first) == 0


def test_breaker_state_is_shared_by_replicas_through_redis(loopback, serve_gateway, clean_redis) -> None:
    url, state = loopback
    cfg = {"store_url": clean_redis, "breaker": {"failures": 2, "cooldown_s": 30, "refresh_s": 0.1}, **NO_RETRY}
    one, two = serve_gateway(url, **cfg), serve_gateway(url, **cfg)
    state.behaviours["claude-v1"] = Behaviour(fail_status=500)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client(one).chat.completions.create(model="claude-v1", messages=MSG)
    time.sleep(0.3)  # the other replica's next refresh
    with pytest.raises(openai.APIStatusError) as err:
        client(two).chat.completions.create(model="claude-v1", messages=MSG)
    assert err.value.body["code"] == "circuit_open" and sent_to(state, "claude-v1") == 2


@pytest.fixture()
def second_loopback() -> Iterator[tuple[str, LoopbackState]]:
    state = LoopbackState()
    with ThreadedServer(build_loopback_app(state)) as server:
        yield f"{server.url}/v1", state


def test_health_probes_take_an_unhealthy_expert_out_of_routing_and_put_it_back(loopback, second_loopback, serve_gateway) -> None:
    url, _ = loopback
    gw0 = serve_gateway(url)
    best = ranking(gw0)[0]
    gw0.stop()
    sick_url, sick = second_loopback  # the best expert alone lives on the second server
    experts = expert_config([m for m in ROUTERBENCH_MODELS if m != best], url.removesuffix("/v1"))
    experts += expert_config([best], sick_url.removesuffix("/v1"))
    gw = serve_gateway(url, experts=experts, health={"interval_s": 0.1, "unhealthy_after": 2, "healthy_after": 1})
    assert ranking(gw)[0] == best and metric(gw, "switchyard_expert_healthy", expert=best) == 1
    sick.healthy = False
    wait_for(lambda: best not in ranking(gw))
    assert metric(gw, "switchyard_expert_healthy", expert=best) == 0
    ready = httpx.get(f"{gw.url}/health/ready").json()
    assert ready["status"] == "ready" and list(ready["unhealthy_experts"]) == [best]
    r = client(gw).chat.completions.create(model="carrot", messages=MSG, extra_body={"routing": {"cost_weight": 0.0}})
    assert r.model != best and "fallback" not in r.model_extra["routing"]  # never tried: out of routing
    sick.healthy = True
    wait_for(lambda: ranking(gw)[0] == best)
    assert metric(gw, "switchyard_expert_healthy", expert=best) == 1


async def test_every_upstream_call_goes_through_the_breaker_fan_out_calls_too() -> None:
    """Failover.guard is the one breaker gate: after `failures` booked failures the expert is
    refused without being called, whichever path (k = 1 or a fan-out call) asks."""
    from experts.breaker import BreakerPolicy, Breakers
    from experts.errors import CircuitOpen, UpstreamError
    from experts.spec import ExpertSpec
    from gateway.failover import Failover
    from gateway.metrics import Metrics
    from gateway.store import MemoryStore

    failover = Failover(Metrics(), Breakers(MemoryStore(), BreakerPolicy(failures=2, cooldown_s=60)))
    expert = ExpertSpec(name="e", base_url="http://127.0.0.1:9/v1")
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise UpstreamError("e", "boom", status=502)

    for _ in range(2):
        with pytest.raises(UpstreamError):
            await failover.guard(expert, fail)
    with pytest.raises(CircuitOpen):
        await failover.guard(expert, fail)
    assert calls == 2  # the third was refused before reaching the expert
    ok = ExpertSpec(name="f", base_url="http://127.0.0.1:9/v1")

    async def answer() -> str:
        return "fine"

    assert await failover.guard(ok, answer) == "fine"
