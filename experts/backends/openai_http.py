"""OpenAI-compatible HTTP upstream (vLLM's `vllm serve`, TGI, llama.cpp, OpenAI itself).

One pooled httpx.AsyncClient for all experts: keep-alive connections, timeouts per phase
(connect, write, pool, and read = the longest silence between two bytes, so a long
generation that keeps streaming is never cut).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from experts.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from experts.spec import ExpertSpec


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 120.0
    write: float = 30.0
    pool: float = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """Tries per expert before its first byte; waits are full-jitter exponential backoff
    (uniform in [0, min(max_backoff_s, backoff_s * 2^retry)]), run by tenacity."""

    attempts: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def retrying(self, before_sleep: Callable[[RetryCallState], None] | None = None) -> AsyncRetrying:
        return AsyncRetrying(stop=stop_after_attempt(self.attempts),
                             wait=wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s),
                             retry=retry_if_exception(lambda e: isinstance(e, UpstreamError) and e.retryable),
                             before_sleep=before_sleep, reraise=True)


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)
    except (ValueError, AttributeError):
        pass
    return f"HTTP {resp.status_code}"


def _status_error(expert: ExpertSpec, resp: httpx.Response) -> UpstreamError:
    msg = _error_message(resp)
    if resp.status_code in (400, 404, 413, 422, 429):
        # The expert rejected this request as such: the client should see the same status.
        return UpstreamError(expert.name, msg, status=400 if resp.status_code == 422 else resp.status_code)
    if resp.status_code == 503:
        return UpstreamUnavailable(expert.name, msg, retryable=True)
    return UpstreamError(expert.name, f"{msg} (HTTP {resp.status_code})", retryable=resp.status_code == 502)


class UpstreamStream:
    """An open streaming response: iterate `events()` for each SSE data payload; always aclose()."""

    def __init__(self, expert: ExpertSpec, resp: httpx.Response) -> None:
        self.expert = expert
        self._resp = resp

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for line in self._resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    yield json.loads(data)
                except ValueError:
                    raise UpstreamError(self.expert.name, "sent a malformed stream event") from None
        except httpx.TimeoutException:
            raise UpstreamTimeout(self.expert.name, "stopped sending within the read timeout") from None
        except httpx.TransportError as exc:
            raise UpstreamError(self.expert.name, f"stream broke: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._resp.aclose()


class OpenAIHTTPBackend:
    def __init__(
        self,
        timeouts: Timeouts = Timeouts(),
        max_connections: int = 1024,
        retry: RetryPolicy = RetryPolicy(),
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.retry, self.on_retry = retry, on_retry
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=timeouts.connect, read=timeouts.read, write=timeouts.write, pool=timeouts.pool),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def _request(self, expert: ExpertSpec, body: dict[str, Any]) -> httpx.Request:
        headers = {"content-type": "application/json"}
        key = expert.api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
        payload = {**body, "model": expert.upstream_model}
        return self.client.build_request(
            "POST", f"{expert.base_url}/chat/completions", content=json.dumps(payload).encode(), headers=headers
        )

    async def _send(self, expert: ExpertSpec, body: dict[str, Any], stream: bool) -> httpx.Response:
        """Send, retrying what failed before the first byte; a stream, once open, is never retried."""
        counted = None if self.on_retry is None else (lambda _state: self.on_retry(expert.name))
        return await self.retry.retrying(counted)(self._send_once, expert, body, stream)

    async def _send_once(self, expert: ExpertSpec, body: dict[str, Any], stream: bool) -> httpx.Response:
        try:
            resp = await self.client.send(self._request(expert, body), stream=stream)
        except httpx.ConnectError as exc:
            raise UpstreamUnavailable(expert.name, f"cannot connect ({exc})", retryable=True) from None
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(expert.name, f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise UpstreamError(expert.name, f"transport error ({type(exc).__name__})") from None
        if resp.status_code >= 400:
            if stream:
                await resp.aread()
                await resp.aclose()
            raise _status_error(expert, resp)
        return resp

    async def complete(self, expert: ExpertSpec, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self._send(expert, {**body, "stream": False}, stream=False)
        try:
            data = resp.json()
        except ValueError:
            raise UpstreamError(expert.name, "answered with invalid JSON") from None
        if not isinstance(data, dict) or "choices" not in data:
            raise UpstreamError(expert.name, "answered without 'choices'")
        return data

    async def open_stream(self, expert: ExpertSpec, body: dict[str, Any]) -> UpstreamStream:
        """Send the request and wait for the status line: failures here precede the first byte."""
        opts = {**(body.get("stream_options") or {}), "include_usage": True}  # usage drives cost accounting
        resp = await self._send(expert, {**body, "stream": True, "stream_options": opts}, stream=True)
        return UpstreamStream(expert, resp)

    async def aclose(self) -> None:
        await self.client.aclose()
