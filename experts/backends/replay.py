"""Replay: an expert that answers with a routing dataset's recorded response of the model it
stands for, for benchmarks that push a whole test split through the real HTTP path.

Clearly labelled: a replay expert's name must contain "replay", and the routing metadata
lists replayed experts under `replay`. Usage reports the recorded cost itself as
`usage.cost` (as OpenRouter does), which the gateway accounts instead of tokens x prices, so
the gateway's accounted cost can be checked against the dataset's to the cent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

from experts.errors import UpstreamError
from experts.spec import ExpertSpec
from routers.dataset import RoutingDataset
from routers.tokens import estimate_tokens


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ReplayBook:
    """One dataset's recorded answers, indexed by prompt text."""

    def __init__(self, data: RoutingDataset) -> None:
        if data.responses is None:
            raise ValueError(f"{data.source or 'dataset'}: replay needs recorded responses (RouterBench has them)")
        self.data = data
        self.rows = {_key(p): i for i, p in enumerate(data.prompts)}

    def answer(self, expert: ExpertSpec, prompt: str) -> tuple[str, float | None]:
        row = self.rows.get(_key(prompt))
        if row is None:
            raise UpstreamError(expert.name, "replay has no recorded response for this prompt", status=404)
        if expert.profile not in self.data.models:
            raise UpstreamError(expert.name, f"replay data has no model {expert.profile!r}", status=404)
        m = self.data.models.index(expert.profile)
        text = self.data.responses[row][m]
        if text is None:
            raise UpstreamError(expert.name, "replay data has no response of this model for this prompt", status=404)
        cost = None if self.data.costs is None else float(self.data.costs[row, m])
        return text, cost


def _last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else "\n".join(p.get("text", "") for p in c or [] if p.get("type", "text") == "text")
    return ""


class ReplayBackend:
    """Same interface as OpenAIHTTPBackend: complete() and open_stream()."""

    CHUNKS = 4  # a streamed replay arrives in a few pieces, like a real stream

    def __init__(self) -> None:
        self._books: dict[str, ReplayBook] = {}

    def book(self, expert: ExpertSpec) -> ReplayBook:
        path = expert.replay_data or ""
        if path not in self._books:
            from evaluation.loaders import load_dataset  # noqa: PLC0415 - benchmark-only path

            self._books[path] = ReplayBook(load_dataset(path))
        return self._books[path]

    async def _answer(self, expert: ExpertSpec, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        book = self._books.get(expert.replay_data or "") or await asyncio.to_thread(self.book, expert)
        prompt = _last_user_text(body)
        text, cost = book.answer(expert, prompt)
        pt, ct = estimate_tokens(prompt), estimate_tokens(text)
        usage: dict[str, Any] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        if cost is not None:
            usage["cost"] = cost
        return text, usage

    async def complete(self, expert: ExpertSpec, body: dict[str, Any]) -> dict[str, Any]:
        text, usage = await self._answer(expert, body)
        return {"id": f"replay-{_key(text)[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": expert.upstream_model, "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}

    async def open_stream(self, expert: ExpertSpec, body: dict[str, Any]) -> ReplayStream:
        text, usage = await self._answer(expert, body)
        return ReplayStream(expert, text, usage, self.CHUNKS)

    async def aclose(self) -> None:
        self._books.clear()


class ReplayStream:
    def __init__(self, expert: ExpertSpec, text: str, usage: dict[str, Any], chunks: int) -> None:
        self.expert, self.text, self.usage, self.chunks = expert, text, usage, chunks

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        base = {"id": f"replay-{_key(self.text)[:12]}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.expert.upstream_model}
        step = max(1, -(-len(self.text) // self.chunks))
        for i, start in enumerate(range(0, len(self.text), step)):
            delta = {"content": self.text[start : start + step]} | ({"role": "assistant"} if i == 0 else {})
            yield base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield base | {"choices": [], "usage": self.usage}

    async def aclose(self) -> None:
        return None
