"""The gateway over real HTTP, driven by the official openai client, in front of loopback
experts that speak the OpenAI protocol (they stand in for vLLM only)."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from experts.loopback import Behaviour

ADMIN = {"authorization": "Bearer admin-secret"}
QUESTION = "Which gas do plants absorb from the air for photosynthesis?\nA) oxygen\nB) carbon dioxide\nC) helium\nD) neon\nAnswer:"


def client(gw, **kw) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0, **kw)


def test_routed_answer_comes_from_the_chosen_expert_with_routing_metadata(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url)
    raw = client(gw).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": QUESTION}], temperature=0.2, seed=7,
        extra_body={"routing": {"cost_weight": 0.0}},
    )
    resp = raw.parse()
    routing = resp.model_extra["routing"]
    assert routing["router"] == "carrot" and routing["cost_weight"] == 0.0
    assert routing["experts"] == [resp.model]
    assert len(routing["predicted"]) == 11
    best = max(routing["predicted"].items(), key=lambda kv: kv[1]["utility"])[0]
    assert resp.model == best
    assert raw.headers["x-switchyard-router"] == "carrot" and raw.headers["x-switchyard-expert"] == resp.model
    assert resp.choices[0].message.content.startswith(f"{resp.model} answers:")
    # The expert received the upstream model id, the unknown fields, and not the gateway's own.
    sent = state.requests[-1]
    assert sent["model"] == resp.model and sent["temperature"] == 0.2 and sent["seed"] == 7 and "routing" not in sent
    expected = (resp.usage.prompt_tokens * 10.0 + resp.usage.completion_tokens * 30.0) / 1e6 if resp.model == "gpt-4-1106-preview" else None
    assert routing["cost_usd"] > 0 and (expected is None or routing["cost_usd"] == pytest.approx(expected))


def test_cost_weight_moves_traffic_to_cheaper_experts(loopback, serve_gateway, bench_slice) -> None:
    from evaluation.loaders import load_dataset

    url, _ = loopback
    gw = serve_gateway(url)
    prompts = load_dataset(bench_slice).split("test").prompts[:30]
    c = client(gw)
    share, cost = {}, {}
    for w in (0.0, 0.5, 1.0):
        chosen, predicted = [], []
        for p in prompts:
            r = c.chat.completions.create(model=f"carrot@{w}", messages=[{"role": "user", "content": p}])
            chosen.append(r.model)
            predicted.append(r.model_extra["routing"]["predicted"][r.model]["cost_usd"])
        share[w], cost[w] = np.mean([m == "gpt-4-1106-preview" for m in chosen]), np.mean(predicted)
    assert share[0.0] > share[0.5] >= share[1.0]
    assert cost[0.0] > cost[0.5] > cost[1.0]
    assert share[0.0] > 0.3 and share[1.0] == 0.0


def test_streaming_relays_chunks_usage_and_cost(loopback, serve_gateway) -> None:
    url, _ = loopback
    gw = serve_gateway(url)
    c = client(gw)
    chunks = list(c.chat.completions.create(
        model="carrot", messages=[{"role": "user", "content": QUESTION}], stream=True, stream_options={"include_usage": True}
    ))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    expert = chunks[0].model
    assert text.startswith(f"{expert} answers:") and all(ch.model == expert for ch in chunks)
    assert chunks[0].model_extra["routing"]["experts"] == [expert]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].model_extra["routing"]["cost_usd"] > 0
    # Without include_usage the client gets no usage chunk (the gateway still asked upstream for it).
    plain = list(c.chat.completions.create(model="carrot", messages=[{"role": "user", "content": QUESTION}], stream=True))
    assert all(ch.usage is None for ch in plain) and plain[-1].choices[0].finish_reason == "stop"
    # The raw wire ends with [DONE].
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions",
                      json={"model": "carrot", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"


def test_route_endpoint_models_and_direct_expert(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url)
    d = httpx.post(f"{gw.url}/v1/route", json={"prompt": QUESTION, "routing": {"cost_weight": 1.0}}).json()
    assert d["router"] == "carrot" and d["experts"] == ["mistralai/mistral-7b-chat"]
    assert state.requests == []  # routing only: no expert was called
    allow = httpx.post(f"{gw.url}/v1/route", json={"messages": [{"role": "user", "content": QUESTION}],
                                                  "routing": {"experts": ["claude-v2", "gpt-3.5-turbo-1106"], "cost_weight": 0}}).json()
    assert allow["experts"][0] in ("claude-v2", "gpt-3.5-turbo-1106") and set(allow["predicted"]) == {"claude-v2", "gpt-3.5-turbo-1106"}
    cheap = httpx.post(f"{gw.url}/v1/route", json={"prompt": QUESTION, "routing": {"cost_weight": 0, "max_cost_usd": 0.001}}).json()
    assert all(v["cost_usd"] <= 0.001 for k, v in cheap["predicted"].items() if k in cheap["experts"])
    ids = {m.id for m in client(gw).models.list().data}
    assert {"auto", "carrot", "gpt-4-1106-preview", "mistralai/mistral-7b-chat"} <= ids
    r = client(gw).chat.completions.create(model="claude-v2", messages=[{"role": "user", "content": "hello"}])
    assert r.model == "claude-v2" and r.model_extra["routing"]["router"] is None


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (json.dumps({"model": "auto"}).encode(), 400, "messages"),
        (json.dumps({"model": "auto", "messages": []}).encode(), 400, "messages"),
        (json.dumps({"model": "auto", "messages": "hi"}).encode(), 400, "messages"),
        (json.dumps({"model": 5, "messages": [{"role": "user", "content": "x"}]}).encode(), 400, "model"),
        (json.dumps({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "messages.0.role"),
        (json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}).encode(), 404, "model"),
        (json.dumps({"model": "carrot@2", "messages": [{"role": "user", "content": "x"}]}).encode(), 400, "model"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"cost_weight": "high"}}).encode(), 400, "routing.cost_weight"),
        (json.dumps({"model": "claude-v1", "messages": [{"role": "user", "content": "x"}], "routing": {"k": 2}}).encode(), 400, "routing.k"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"k": 2, "min_successful": 3}}).encode(), 400, "routing"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"k": 2, "aggregate": "mean"}}).encode(), 400,
         "routing.aggregate"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"colour": 1}}).encode(), 400, "routing.colour"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"router": "nope"}}).encode(), 404, "routing.router"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "routing": {"experts": ["ghost"]}}).encode(), 404, "routing.experts"),
    ],
)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(loopback, serve_gateway, body, status, param) -> None:
    url, _ = loopback
    gw = serve_gateway(url)
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["param"] == param
    assert "Traceback" not in r.text
    ok = client(gw).chat.completions.create(model="claude-v1", messages=[{"role": "user", "content": "still there?"}])
    assert ok.model == "claude-v1"


def test_oversized_body_is_413(loopback, serve_gateway) -> None:
    url, _ = loopback
    gw = serve_gateway(url, max_body_bytes=2000)
    big = {"model": "carrot", "messages": [{"role": "user", "content": "x" * 5000}]}
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_openai_client_sees_typed_errors(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url, timeouts={"read": 0.5, "connect": 1.0})
    c = client(gw)
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="auto", messages=[])
    state.behaviours["claude-v1"] = Behaviour(fail_status=500)
    with pytest.raises(openai.InternalServerError) as err:
        c.chat.completions.create(model="claude-v1", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 502
    state.behaviours["claude-v2"] = Behaviour(delay_s=3)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        c.chat.completions.create(model="claude-v2", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 504 and time.monotonic() - started < 2.5


def test_unreachable_expert_is_503(serve_gateway) -> None:
    from switchyard.threaded import free_port

    gw = serve_gateway(f"http://127.0.0.1:{free_port()}/v1")
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "claude-v1", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"


def test_failure_after_the_first_byte_ends_the_stream_with_an_error_event(loopback, serve_gateway) -> None:
    url, state = loopback
    state.behaviours["claude-v1"] = Behaviour(chunks=4, die_after_chunks=1)
    gw = serve_gateway(url)
    c = client(gw)
    got = []
    with pytest.raises(openai.APIError):
        for ch in c.chat.completions.create(model="claude-v1", messages=[{"role": "user", "content": "tell me more"}], stream=True):
            got.append(ch)
    assert got and got[0].model == "claude-v1"  # the stream had started before it failed
    assert c.chat.completions.create(model="claude-v1", messages=[{"role": "user", "content": "x"}], stream=False).choices
    # An expert that fails before its first byte answers a plain HTTP error instead.
    state.behaviours["claude-v2"] = Behaviour(fail_status=503)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "claude-v2", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503 and "error" in r.json()


def test_client_disconnect_cancels_the_upstream_request(loopback, serve_gateway) -> None:
    url, state = loopback
    state.behaviours["claude-v1"] = Behaviour(delay_s=5)
    gw = serve_gateway(url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "claude-v1", "messages": [{"role": "user", "content": "x"}]}, timeout=0.5)
    deadline = time.monotonic() + 3
    while state.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.cancelled == 1 and state.in_flight == 0


def test_health_metrics_and_admin(loopback, serve_gateway) -> None:
    url, _ = loopback
    gw = serve_gateway(url)
    assert httpx.get(f"{gw.url}/health/live").status_code == 200
    ready = httpx.get(f"{gw.url}/health/ready").json()
    assert ready["status"] == "ready" and ready["store"]["kind"] == "memory" and ready["experts"] == 11
    client(gw).chat.completions.create(model="carrot", messages=[{"role": "user", "content": QUESTION}])
    text = httpx.get(f"{gw.url}/metrics").text
    assert 'switchyard_requests_total{endpoint="/v1/chat/completions",status="200"} 1.0' in text
    assert "switchyard_route_seconds_bucket" in text and "switchyard_cost_usd_total" in text
    assert httpx.get(f"{gw.url}/admin/experts").status_code == 401
    assert httpx.get(f"{gw.url}/admin/experts", headers={"authorization": "Bearer wrong"}).status_code == 401
    listed = httpx.get(f"{gw.url}/admin/experts", headers=ADMIN).json()["data"]
    assert len(listed) == 11
    bad = httpx.post(f"{gw.url}/admin/experts", headers=ADMIN, json={"name": "x", "base_url": "ftp://nope"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "base_url"
    spec = {"name": "mistral-fast", "base_url": url, "model": "mistral-7b", "stands_for": "mistralai/mistral-7b-chat", "input_price": 0.1, "output_price": 0.1}
    assert httpx.post(f"{gw.url}/admin/experts", headers=ADMIN, json=spec).status_code == 201
    r = client(gw).chat.completions.create(model="mistral-fast", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "mistral-fast" and r.choices[0].message.content.startswith("mistral-7b answers")
    assert httpx.delete(f"{gw.url}/admin/experts/mistral-fast", headers=ADMIN).status_code == 200
    assert httpx.delete(f"{gw.url}/admin/experts/mistral-fast", headers=ADMIN).status_code == 404
    # An in-process engine expert is batch-only: named online it is a clear 503, not a 500.
    engine = {"name": "tiny-local", "backend": "transformers", "model": "/models/tiny"}
    assert httpx.post(f"{gw.url}/admin/experts", headers=ADMIN, json=engine).status_code == 201
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "tiny-local", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503 and "switchyard batch" in r.json()["error"]["message"]


def test_client_keys_when_configured(loopback, serve_gateway) -> None:
    url, _ = loopback
    gw = serve_gateway(url, api_keys=["team-key"])
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{gw.url}/v1", api_key="wrong", max_retries=0).models.list()
    assert OpenAI(base_url=f"{gw.url}/v1", api_key="team-key", max_retries=0).models.list().data
