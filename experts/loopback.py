"""A loopback expert server that speaks OpenAI's chat-completions protocol.

It stands in for `vllm serve` where no GPU or weights exist (demos, tests, benchmarks): the
same endpoints (/v1/chat/completions with SSE streaming and usage, /v1/models, /health),
an instant deterministic answer instead of a generation. Per-model behaviours inject faults;
`POST /loopback/faults` sets them at run time in a loopback running as its own process
(`python -m experts.loopback --port N`), and `healthy: false` makes /health answer 503.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Behaviour:
    delay_s: float = 0.0  # before the status line
    fail_status: int | None = None  # answer this HTTP error instead
    fail_first: int = 0  # the next N requests answer `fail_first_status` (a transient failure); counts down
    fail_first_status: int = 503
    chunks: int = 3  # content chunks when streaming
    chunk_delay_s: float = 0.0
    die_after_chunks: int | None = None  # drop the connection mid-stream
    answer: str | None = None  # reply this text (e.g. "The answer is (B)", for voting) instead of the echo
    stall_after_chunks: int | None = None  # go silent mid-stream (the gateway's read timeout ends it)


@dataclass
class LoopbackState:
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    record: bool = True
    in_flight: int = 0
    cancelled: int = 0
    in_flight_by: dict[str, int] = field(default_factory=dict)  # per model, during the delay
    peak_by: dict[str, int] = field(default_factory=dict)  # the most seen at once, per model
    healthy: bool = True  # False: GET /health answers 503, as vLLM's does when its engine died
    streaming: int = 0  # streams being sent now

    def behaviour(self, model: str) -> Behaviour:
        return self.behaviours.get(model) or self.behaviours.get("*") or Behaviour()


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _answer(model: str, messages: list[dict[str, Any]], fixed: str | None = None) -> tuple[str, int, int]:
    last = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    reply = fixed if fixed is not None else f"{model} answers: {last[:120]}"
    prompt_tokens = sum(len(_text(m.get("content")).split()) + 4 for m in messages)
    return reply, prompt_tokens, len(reply.split())


async def _client_left_during(request: Request, seconds: float) -> bool:
    """Sleep `seconds`, watching for the caller's disconnect (uvicorn does not cancel handlers)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.02, left))
    return False


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "server_error", "param": None, "code": status}}, status)


def build_loopback_app(state: LoopbackState | None = None) -> Starlette:
    state = state or LoopbackState()

    async def chat(request: Request) -> Response:
        try:
            body = await request.json()
            model, messages = body["model"], body["messages"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "model and messages are required")
        if state.record:
            state.requests.append(body)
        b = state.behaviour(model)
        state.in_flight += 1
        state.in_flight_by[model] = now = state.in_flight_by.get(model, 0) + 1
        state.peak_by[model] = max(state.peak_by.get(model, 0), now)
        try:
            if b.delay_s and await _client_left_during(request, b.delay_s):
                state.cancelled += 1  # the caller gave up (e.g. the gateway cancelled upstream)
                return Response(status_code=499)
        finally:
            state.in_flight -= 1
            state.in_flight_by[model] -= 1
        if b.fail_first > 0:
            b.fail_first -= 1
            return _error(b.fail_first_status, f"injected transient failure for {model}")
        if b.fail_status:
            return _error(b.fail_status, f"injected failure for {model}")
        reply, pt, ct = _answer(model, messages, b.answer)
        rid, created = f"chatcmpl-loop{len(state.requests)}", int(time.time())
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        words = reply.split(" ")
        size = max(1, -(-len(words) // b.chunks))
        pieces = [" ".join(words[i : i + size]) + (" " if i + size < len(words) else "") for i in range(0, len(words), size)]

        def event(delta: dict[str, Any], finish: str | None = None, usage_: dict | None = None, choices: bool = True) -> str:
            chunk = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []
            if usage_ is not None:
                chunk["usage"] = usage_
            return f"data: {json.dumps(chunk)}\n\n"

        async def gen():  # noqa: ANN202
            state.streaming += 1
            try:
                async for ev in events():
                    yield ev
            finally:
                state.streaming -= 1

        async def events():  # noqa: ANN202
            yield event({"role": "assistant", "content": ""})
            for i, piece in enumerate(pieces):
                if b.die_after_chunks is not None and i >= b.die_after_chunks:
                    raise ConnectionResetError("injected mid-stream failure")
                if b.stall_after_chunks is not None and i >= b.stall_after_chunks:
                    await asyncio.sleep(3600)
                if b.chunk_delay_s:
                    await asyncio.sleep(b.chunk_delay_s)
                yield event({"content": piece})
            yield event({}, finish="stop")
            if include_usage:
                yield event({}, usage_=usage, choices=False)
            yield "data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def models(_: Request) -> Response:
        names = [m for m in state.behaviours if m != "*"]
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "loopback"} for m in names]})

    async def health(_: Request) -> Response:
        return Response(status_code=200 if state.healthy else 503)

    async def faults(request: Request) -> Response:
        """{"healthy": bool, "behaviours": {model or "*": {Behaviour fields} or null}}; null clears."""
        try:
            body = await request.json()
            if "healthy" in body:
                state.healthy = bool(body["healthy"])
            for model, fields in (body.get("behaviours") or {}).items():
                if fields is None:
                    state.behaviours.pop(model, None)
                else:
                    state.behaviours[model] = Behaviour(**fields)
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(400, f"bad faults body: {exc}")
        return JSONResponse({"healthy": state.healthy, "behaviours": sorted(state.behaviours), "streaming": state.streaming})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/loopback/faults", faults, methods=["POST"]),
        ]
    )
    app.state.loopback = state
    return app


if __name__ == "__main__":  # a loopback expert in its own process, one that can be killed
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="loopback OpenAI-compatible expert server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    state = LoopbackState(record=False)
    uvicorn.run(build_loopback_app(state), host=args.host, port=args.port, log_level="warning", access_log=False)
