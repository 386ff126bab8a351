"""SSE out, for one expert's stream and for a fan-out's answer alike: each chunk renamed to the
answering expert, routing on the first chunk, usage and cost on the usage chunk (only when the
client asked for usage), `data: [DONE]` at the end, and an error event if the stream fails
after its first byte."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from experts.errors import UpstreamError
from gateway.errors import sse_error

DONE = b"data: [DONE]\n\n"


def sse(chunk: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def relay_events(
    events: AsyncIterator[dict[str, Any]],
    *,
    model: str,
    want_usage: bool,
    routing: Callable[[float | None], dict[str, Any]],
    account: Callable[[dict[str, Any]], Awaitable[tuple[dict[str, Any], float]]],
    on_upstream_error: Callable[[UpstreamError], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """`routing(cost)` gives the metadata (cost None before it is known); `account(usage)`
    books an upstream usage chunk and returns (usage to show the client, cost)."""
    first = True
    try:
        async for chunk in events:
            chunk["model"] = model
            if first:
                chunk["routing"] = routing(None)
                first = False
            usage = chunk.get("usage")
            if usage:
                shown, cost = await account(usage)
                if not want_usage:
                    if not chunk.get("choices"):
                        continue
                    chunk.pop("usage")
                else:
                    chunk["usage"] = shown
                    chunk["routing"] = routing(cost)
            elif not want_usage:
                chunk.pop("usage", None)
            yield sse(chunk)
        yield DONE
    except UpstreamError as exc:
        await on_upstream_error(exc)
        yield sse_error(exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the client gets an error event, never a traceback
        yield sse_error(exc)
    finally:
        await close()


async def answer_events(data: dict[str, Any], usage: dict[str, Any], pieces: int = 4) -> AsyncIterator[dict[str, Any]]:
    """A finished chat completion as the chunks a streaming expert would have sent: the role,
    the content in a few pieces, the finish reason, then a usage chunk (no choices)."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content") or ""
    base = {"id": data.get("id", "chatcmpl-switchyard"), "object": "chat.completion.chunk", "created": data.get("created", 0)}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": message.get("role", "assistant"), "content": ""})
    size = max(1, -(-len(text) // pieces))
    for i in range(0, len(text), size):
        yield chunk({"content": text[i : i + size]})
    yield chunk({}, choice.get("finish_reason") or "stop")
    yield {**base, "choices": [], "usage": usage}
