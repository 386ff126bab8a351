"""Fast versions of the reliability suite's load and bad-input scenarios (the suite itself,
`python -m benchmarks.reliability`, runs them for minutes against separate processes):
bad input gets OpenAI errors, schemathesis over /openapi.json finds no server error, and
concurrent streams all end in [DONE]."""

from __future__ import annotations

import asyncio

import httpx

from benchmarks.reliability import bad_inputs, load, schemathesis, summarise
from experts.loopback import Behaviour


def test_bad_inputs_get_openai_errors_and_schemathesis_finds_no_server_error(loopback, serve_gateway, tmp_path) -> None:
    url, _ = loopback
    gw = serve_gateway(url)
    rows = bad_inputs(gw.url)
    assert rows and all(400 <= r["status"] < 500 and r["openai_error"] for r in rows), rows
    st = schemathesis(gw.url, examples=5, report=tmp_path / "st.xml")
    assert st["exit_code"] == 0, st["summary"]
    assert "testcase" in (tmp_path / "st.xml").read_text()  # it did run cases
    assert httpx.get(f"{gw.url}/health/live").status_code == 200


def test_concurrent_streams_all_end_in_done_and_none_is_lost(loopback, serve_gateway) -> None:
    """The soak in small: 50 concurrent routed streams for 3 s (the suite runs 200 for minutes)."""
    url, state = loopback
    state.record = False
    state.behaviours["*"] = Behaviour(chunks=6, chunk_delay_s=0.02)
    gw = serve_gateway(url)
    outcomes, _ = asyncio.run(load(gw.url, streams=50, duration=3.0))
    s = summarise(outcomes)
    assert s["requests"] >= 50 and s["done"] == s["requests"], s
