"""Graceful shutdown. On SIGTERM the gateway drains before uvicorn stops it:

1. liveness and readiness answer 503, and new /v1 requests get an OpenAI error
   (503 `shutting_down`, `connection: close`), so load balancers and clients move on;
2. requests in flight, streams included, run to their end, for up to `drain_timeout_s`;
3. whatever is still running then is ended: a stream with an SSE error event, a request
   that has not answered yet with the same 503 error; then uvicorn's own handler runs.

uvicorn installs its SIGTERM handler before the app's startup; `install` (called from the
lifespan, main thread only) wraps it, so the drain comes first and uvicorn's shutdown after.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from typing import Any

from gateway.errors import error_body

log = logging.getLogger("switchyard.gateway")

SHUTTING_DOWN = error_body(503, "the gateway is shutting down; retry on another replica", None, "shutting_down")


class Drain:
    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.draining = False
        self.inflight = 0
        self._expired: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def expired(self) -> asyncio.Future[None]:
        if self._expired is None:
            self._expired = asyncio.get_running_loop().create_future()
        return self._expired

    def install(self) -> None:
        """Put the drain in front of the process's SIGTERM handler (uvicorn's)."""
        if threading.current_thread() is not threading.main_thread():
            return  # an in-thread server (tests, demo): no signals there
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def then() -> None:
            if callable(previous):
                previous(signal.SIGTERM, None)
            else:
                signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
                signal.raise_signal(signal.SIGTERM)

        def on_sigterm(_sig: int, _frame: Any) -> None:
            loop.call_soon_threadsafe(self.begin, then)

        signal.signal(signal.SIGTERM, on_sigterm)

    def begin(self, then: Any = None) -> None:
        if self.draining:
            if then is not None and self._task is not None and self._task.done():
                then()  # a second SIGTERM after the drain: stop now
            return
        self.draining = True
        log.warning("SIGTERM: draining %d in-flight requests (up to %.0f s)", self.inflight, self.timeout_s)
        self._task = asyncio.get_running_loop().create_task(self._drain(then))

    async def _drain(self, then: Any) -> None:
        deadline = time.monotonic() + self.timeout_s
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.inflight:
            log.warning("drain timeout: ending %d requests with an error", self.inflight)
            self.expired().set_result(None)
            while self.inflight and time.monotonic() < deadline + 2:
                await asyncio.sleep(0.02)
        if then is not None:
            then()


class DrainMiddleware:
    """Pure ASGI: refuses /v1 requests while draining; ends in-flight ones at the drain timeout."""

    def __init__(self, app: Any, drain: Drain) -> None:
        self.app, self.drain = app, drain

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        if self.drain.draining:
            return await _send_refusal(send)
        sent = {"started": False, "ended": False, "sse": False}

        async def tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["started"] = True
                sent["sse"] = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                sent["ended"] = True
            await send(message)

        self.drain.inflight += 1
        try:
            task = asyncio.ensure_future(self.app(scope, receive, tracked))
            expired = self.drain.expired()
            try:
                done, _ = await asyncio.wait({task, expired}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                task.cancel()
                raise
            if task in done:
                return task.result()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if not sent["started"]:
                await _send_refusal(send)
            elif sent["sse"] and not sent["ended"]:
                await send({"type": "http.response.body", "body": f"data: {json.dumps(SHUTTING_DOWN)}\n\n".encode(), "more_body": False})
        finally:
            self.drain.inflight -= 1


async def _send_refusal(send: Any) -> None:
    body = json.dumps(SHUTTING_DOWN).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
