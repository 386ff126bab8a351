"""Several experts per query (routing.k > 1) and online grouping, through the real gateway over
HTTP with the official openai client, in front of loopback experts (the stand-in for vLLM)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from experts.aggregation import extract_answer, synthesis_messages, vote
from experts.loopback import Behaviour
from routers.artifacts import load_router
from switchyard.demo import ROUTERBENCH_PRICES
from switchyard.training import train_router

QUESTION = "Which gas do plants absorb from the air for photosynthesis?\nA) oxygen\nB) carbon dioxide\nC) helium\nD) neon\nAnswer:"
MESSAGES = [{"role": "user", "content": QUESTION}]
ADMIN = {"authorization": "Bearer admin-secret"}


def client(gw) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)


def recruited(gw, k: int = 3, **routing) -> tuple[list[str], dict[str, float]]:
    """The experts the router recruits for QUESTION, best first, and their predicted quality."""
    d = httpx.post(f"{gw.url}/v1/route", json={"prompt": QUESTION, "routing": {"k": k, "cost_weight": 0.0, **routing}}).json()
    return d["experts"], {n: v["quality"] for n, v in d["predicted"].items()}


def expected_cost(expert: str, prompt_tokens: int, completion_tokens: int) -> float:
    pin, pout = ROUTERBENCH_PRICES[expert]
    return (prompt_tokens * pin + completion_tokens * pout) / 1e6


def metric(gw, line_start: str, missing: float | None = None) -> float:
    for line in httpx.get(f"{gw.url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    if missing is None:
        raise AssertionError(f"no metric line {line_start!r}")
    return missing  # a labelled series appears with its first observation


def test_answer_extraction_and_vote_tie_break() -> None:
    assert [extract_answer(t) for t in ["The answer is (C).", "B) carbon dioxide", "(D)", "so 6 * 7 = 42", "A plant needs CO2"]] == \
        ["C", "B", "D", "42", "2"]
    assert extract_answer("A plant breathes") is None and extract_answer(None) is None
    assert vote(["A", "B", "B"], [0.9, 0.5, 0.6]) == 2  # the majority, and among its voters the better-predicted
    assert vote(["A", "B", None], [0.5, 0.9, 1.0]) == 1  # a tie goes to the higher predicted quality
    assert vote([None, None], [0.1, 0.2]) is None
    msgs = synthesis_messages([{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}], ["4", "5"])
    assert msgs[0] == {"role": "system", "content": "be brief"} and len(msgs) == 2
    assert "2+2?" in msgs[1]["content"] and "[Answer 1]\n4" in msgs[1]["content"] and "[Answer 2]\n5" in msgs[1]["content"]


def test_vote_takes_the_majority_and_sums_usage_and_cost(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url)
    (e1, e2, e3), quality = recruited(gw)
    state.behaviours.update({e1: Behaviour(answer="The answer is (A)."), e2: Behaviour(answer="B) carbon dioxide"),
                             e3: Behaviour(answer="I think the answer is (B)")})
    r = client(gw).chat.completions.create(model="auto", messages=MESSAGES, extra_body={"routing": {"k": 3, "cost_weight": 0.0,
                                                                                                    "aggregate": "vote"}})
    routing = r.model_extra["routing"]
    assert routing["experts"] == [e1, e2, e3]
    winner = e2 if quality[e2] >= quality[e3] else e3
    assert r.model == winner and extract_answer(r.choices[0].message.content) == "B"
    agg = routing["aggregate"]
    assert agg["mode"] == "vote" and agg["answered_by"] == winner and agg["answer"] == "B"
    assert agg["answers"] == {e1: "A", e2: "B", e3: "B"} and routing["failed"] == []
    # Usage and cost add up the three calls, each priced by its own expert.
    calls = {c["expert"]: c for c in routing["calls"]}
    assert set(calls) == {e1, e2, e3} and all(c["role"] == "candidate" for c in calls.values())
    assert r.usage.prompt_tokens == sum(c["prompt_tokens"] for c in calls.values())
    assert r.usage.completion_tokens == sum(c["completion_tokens"] for c in calls.values()) > 0
    for name, c in calls.items():
        assert c["cost_usd"] == pytest.approx(expected_cost(name, c["prompt_tokens"], c["completion_tokens"]))
    assert routing["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls.values()))
    assert len(state.requests) == 3 and {q["model"] for q in state.requests} == {e1, e2, e3}


def test_a_failed_expert_is_named_and_a_tie_goes_to_predicted_quality(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url)
    (e1, e2, e3), quality = recruited(gw)
    state.behaviours.update({e1: Behaviour(answer="(A)"), e2: Behaviour(answer="(B)"), e3: Behaviour(fail_status=500)})
    r = client(gw).chat.completions.create(model="carrot", messages=MESSAGES, extra_body={
        "routing": {"k": 3, "cost_weight": 0.0, "aggregate": "vote", "min_successful": 2}})
    routing = r.model_extra["routing"]
    assert r.model == (e1 if quality[e1] >= quality[e2] else e2)  # one vote each: the better-predicted expert wins
    assert [f["expert"] for f in routing["failed"]] == [e3] and routing["failed"][0]["status"] == 502
    assert {c["expert"] for c in routing["calls"]} == {e1, e2}  # the failed call cost nothing


def test_too_few_answers_is_an_openai_error_plain_and_streaming(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url)
    (e1, e2, e3), _ = recruited(gw)
    state.behaviours.update({e1: Behaviour(fail_status=500), e3: Behaviour(fail_status=500)})
    body = {"routing": {"k": 3, "cost_weight": 0.0, "aggregate": "best", "min_successful": 2}}
    with pytest.raises(openai.APIStatusError) as err:
        client(gw).chat.completions.create(model="auto", messages=MESSAGES, extra_body=body)
    assert err.value.status_code == 502
    e = err.value.response.json()["error"]
    assert e["code"] == "too_few_answers" and e["param"] == "routing.min_successful" and e1 in e["message"] and e3 in e["message"]
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "auto", "messages": MESSAGES, "stream": True, **body})
    assert r.status_code == 502 and r.json()["error"]["code"] == "too_few_answers"
    # With min_successful = 1 the one answer that came back is the response.
    ok = client(gw).chat.completions.create(model="auto", messages=MESSAGES, extra_body={"routing": {**body["routing"], "min_successful": 1}})
    assert ok.model == e2 and {f["expert"] for f in ok.model_extra["routing"]["failed"]} == {e1, e3}


def test_best_answers_with_the_highest_predicted_quality(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url)
    chosen, quality = recruited(gw, cost_weight=0.5)  # a tradeoff: the ranking is by utility, not by quality
    top = max(chosen, key=lambda n: (quality[n], -chosen.index(n)))
    opts = {"routing": {"k": 3, "cost_weight": 0.5, "aggregate": "best"}}
    r = client(gw).chat.completions.create(model="auto", messages=MESSAGES, extra_body=opts)
    assert r.model == top and r.choices[0].message.content.startswith(f"{top} answers:")
    state.behaviours[top] = Behaviour(fail_status=503)
    rest = [n for n in chosen if n != top]
    r = client(gw).chat.completions.create(model="auto", messages=MESSAGES, extra_body=opts)
    assert r.model == max(rest, key=lambda n: (quality[n], -chosen.index(n)))


def test_synthesize_sends_the_candidates_to_the_configured_aggregator(loopback, serve_gateway, carrot_artifact: Path) -> None:
    url, state = loopback
    router = {"name": "carrot", "kind": "carrot", "artifact": str(carrot_artifact), "aggregator": "claude-v2"}
    gw = serve_gateway(url, routers=[router])
    chosen, _ = recruited(gw)
    plan = httpx.post(f"{gw.url}/v1/route", json={"prompt": QUESTION, "routing": {"k": 3}}).json()
    assert plan["aggregate"] == {"mode": "synthesize", "aggregator": "claude-v2", "min_successful": 1}  # planned, not yet called
    bad = httpx.post(f"{gw.url}/v1/chat/completions", json={"messages": MESSAGES, "routing": {"k": 3, "aggregator": "ghost"}})
    assert bad.status_code == 404 and bad.json()["error"]["param"] == "routing.aggregator" and state.requests == []
    r = client(gw).chat.completions.create(model="auto", messages=MESSAGES, extra_body={"routing": {"k": 3, "cost_weight": 0.0}})
    routing = r.model_extra["routing"]
    assert routing["aggregate"]["mode"] == "synthesize" and routing["aggregate"]["aggregator"] == "claude-v2"
    assert r.model == "claude-v2" and r.choices[0].message.content.startswith("claude-v2 answers: Several models have answered")
    sent = state.requests[-1]
    assert sent["model"] == "claude-v2"
    prompt = sent["messages"][-1]["content"]
    assert QUESTION in prompt and all(f"{n} answers: " in prompt for n in chosen)  # every candidate's answer
    roles = [(c["expert"], c["role"]) for c in routing["calls"]]
    assert sorted(roles[:3]) == sorted((n, "candidate") for n in chosen) and roles[3] == ("claude-v2", "aggregator")
    assert r.usage.total_tokens == sum(c["prompt_tokens"] + c["completion_tokens"] for c in routing["calls"])
    assert routing["cost_usd"] == pytest.approx(sum(expected_cost(c["expert"], c["prompt_tokens"], c["completion_tokens"])
                                                     for c in routing["calls"]))
    # The request may name another aggregator; if it fails, the best candidate answers and it is named.
    state.behaviours["mistralai/mistral-7b-chat"] = Behaviour(fail_status=500)
    r = client(gw).chat.completions.create(model="auto", messages=MESSAGES, extra_body={
        "routing": {"k": 3, "cost_weight": 0.0, "aggregator": "mistralai/mistral-7b-chat"}})
    routing = r.model_extra["routing"]
    assert r.model == chosen[0] and routing["failed"][0]["expert"] == "mistralai/mistral-7b-chat"
    assert routing["failed"][0]["role"] == "aggregator" and "aggregator failed" in routing["aggregate"]["note"]


def test_skills_router_picks_the_aggregator_by_validation(loopback, serve_gateway, bench_slice: Path, embedder,
                                                          tmp_path: Path) -> None:
    url, _ = loopback
    artifact = tmp_path / "skills.npz"
    train_router("skills", bench_slice, artifact, embedder=embedder)
    expected = load_router(artifact).aggregator
    gw = serve_gateway(url, routers=[{"name": "skills", "kind": "skills", "artifact": str(artifact)}])
    r = client(gw).chat.completions.create(model="skills", messages=MESSAGES, extra_body={"routing": {"k": 2}})
    assert r.model == expected and r.model_extra["routing"]["aggregate"]["aggregator"] == expected


def test_streaming_with_k_above_one(loopback, serve_gateway, carrot_artifact: Path) -> None:
    url, state = loopback
    gw = serve_gateway(url, routers=[{"name": "carrot", "kind": "carrot", "artifact": str(carrot_artifact), "aggregator": "claude-v1"}])
    chosen, _ = recruited(gw)
    c = client(gw)
    # synthesize: the aggregator's own stream, the usage chunk carrying every call's sum.
    chunks = list(c.chat.completions.create(model="auto", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
                                            extra_body={"routing": {"k": 3, "cost_weight": 0.0}}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith("claude-v1 answers: Several models") and all(ch.model == "claude-v1" for ch in chunks)
    assert chunks[0].model_extra["routing"]["aggregate"]["aggregator"] == "claude-v1"
    last = chunks[-1].model_extra["routing"]
    assert [c_["role"] for c_ in last["calls"]] == ["candidate"] * 3 + ["aggregator"]
    assert chunks[-1].usage.total_tokens == sum(c_["prompt_tokens"] + c_["completion_tokens"] for c_ in last["calls"])
    assert last["cost_usd"] == pytest.approx(sum(c_["cost_usd"] for c_ in last["calls"])) and last["cost_usd"] > 0
    assert state.requests[-1]["stream"] is True and state.requests[-1]["model"] == "claude-v1"
    # vote: the chosen answer as a chunk stream ending in [DONE].
    for n in chosen:
        state.behaviours[n] = Behaviour(answer="The answer is (B), carbon dioxide.")
    body = {"model": "auto", "stream": True, "messages": MESSAGES, "routing": {"k": 3, "cost_weight": 0.0, "aggregate": "vote"}}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert r.status_code == 200 and lines[-1] == "data: [DONE]"
    plain = list(c.chat.completions.create(model="auto", messages=MESSAGES, stream=True, extra_body={"routing": body["routing"]}))
    assert "".join(ch.choices[0].delta.content or "" for ch in plain if ch.choices) == "The answer is (B), carbon dioxide."
    assert plain[-1].choices[0].finish_reason == "stop" and all(ch.usage is None for ch in plain)
    assert plain[0].model == chosen[0] and plain[0].model_extra["routing"]["aggregate"]["answer"] == "B"


def _concurrently(gw, prompts: list[str]) -> list[str]:
    c = client(gw)

    def one(p: str) -> str:
        return c.chat.completions.create(model="carrot", messages=[{"role": "user", "content": p}]).model

    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(one, prompts))


def test_grouping_routes_concurrent_requests_in_one_predict(loopback, serve_gateway, bench_slice: Path) -> None:
    from evaluation.loaders import load_dataset

    url, _ = loopback
    prompts = load_dataset(bench_slice).split("test").prompts[:6]
    # A long fixed window and a max batch of 6: the six concurrent requests fill one batch.
    on = serve_gateway(url, grouping={"window_ms": 20_000, "max_batch": 6, "adaptive": False})
    off = serve_gateway(url, grouping={"enabled": False})
    started = time.monotonic()
    grouped = _concurrently(on, prompts)
    assert time.monotonic() - started < 20  # flushed by the full batch, not by the window
    assert metric(on, 'switchyard_route_batch_size_count{router="carrot"}') == 1
    assert metric(on, 'switchyard_route_batch_size_sum{router="carrot"}') == 6
    alone = _concurrently(off, prompts)
    assert metric(off, 'switchyard_route_batch_size_count{router="carrot"}') == 6
    assert grouped == alone  # batched routing decides exactly as per-request routing


def test_adaptive_grouping_does_not_hold_a_lone_request(loopback, serve_gateway, bench_slice: Path) -> None:
    """Adaptive (the default): a request alone on its way to routing goes at once; the 20 s
    window only applies while others are coming."""
    from evaluation.loaders import load_dataset

    url, _ = loopback
    prompts = load_dataset(bench_slice).split("test").prompts[:3]
    gw = serve_gateway(url, grouping={"window_ms": 20_000, "max_batch": 64})
    started = time.monotonic()
    for p in prompts:
        _concurrently(gw, [p])
    assert time.monotonic() - started < 15  # a fixed window would have held each one 20 s
    assert metric(gw, 'switchyard_route_batch_size_count{router="carrot"}') == 3


def test_per_expert_concurrency_bound_holds_and_others_are_not_starved(loopback, serve_gateway) -> None:
    url, state = loopback
    gw = serve_gateway(url)
    spec = {"name": "hot-expert", "base_url": url, "model": "hot", "max_concurrency": 2}
    assert httpx.post(f"{gw.url}/admin/experts", headers=ADMIN, json=spec).status_code == 201
    state.behaviours["hot"] = Behaviour(delay_s=1.5)
    c = client(gw)

    def hot(_: int) -> str:
        return c.chat.completions.create(model="hot-expert", messages=[{"role": "user", "content": "x"}]).model

    with ThreadPoolExecutor(7) as pool:
        burst = [pool.submit(hot, i) for i in range(6)]
        deadline, seen = time.monotonic() + 10, 0.0
        while seen < 4 and time.monotonic() < deadline:
            seen = max(seen, metric(gw, 'switchyard_expert_queue_depth{expert="hot-expert"}', missing=0))
            time.sleep(0.02)
        assert seen == 4  # two at the expert, four queued behind them
        other = c.chat.completions.create(model="claude-v1", messages=[{"role": "user", "content": "y"}])
        backlog = sum(not f.done() for f in burst)  # the other expert answered while the hot queue still drained
        assert [f.result() for f in burst] == ["hot-expert"] * 6
    assert other.model == "claude-v1" and backlog >= 2
    assert state.peak_by["hot"] == 2  # never more than max_concurrency at the expert
    assert metric(gw, 'switchyard_expert_queue_wait_seconds_count{expert="hot-expert"}') == 6
    assert metric(gw, 'switchyard_expert_queue_wait_seconds_sum{expert="hot-expert"}') > 3.0  # waves 2 and 3 waited ~1.5 and ~3 s
    assert metric(gw, 'switchyard_expert_queue_depth{expert="hot-expert"}') == 0
