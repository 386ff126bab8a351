"""Request ids, the per-request context, and structured JSON logs.

`RequestLog` (outermost ASGI middleware) gives every request an id (the client's
`x-request-id` when it is a sane token, else a fresh one), echoes it, adds the headers the
request earned on the way (rate limits), and writes one JSON line when the response ends:
method, path, status, duration, key, router, expert, tokens, cost. The prompt is logged only
when `logging.prompts` is on. The context lives in a ContextVar holding one mutable object, so
code deeper in the request (auth, the usage ledger, a streaming generator in a child task)
fills it in without being handed it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

access_log = logging.getLogger("switchyard.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass
class RequestContext:
    request_id: str
    key_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # added to the response when it starts
    router: str | None = None
    experts: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    prompt: str | None = None

    def note_usage(self, router: str | None, expert: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        self.router = router
        if expert not in self.experts:
            self.experts.append(expert)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost


_current: ContextVar[RequestContext | None] = ContextVar("switchyard_request", default=None)


def current() -> RequestContext:
    """This request's context; outside a request, a throwaway one (offline callers)."""
    return _current.get() or RequestContext(request_id="-")


class RequestLog:
    """Pure ASGI middleware (no body buffering, streams pass through untouched)."""

    def __init__(self, app: Any, access: bool = True, prompts: bool = False) -> None:
        self.app, self.access, self.prompts = app, access, prompts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        ctx = RequestContext(request_id=given if _SANE_ID.match(given) else uuid.uuid4().hex)
        token = _current.set(ctx)
        started = time.perf_counter()
        status: list[int] = []

        async def send_with_context(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", ctx.request_id.encode()))
                headers += [(k.encode(), v.encode()) for k, v in ctx.headers.items()]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            status.append(500)  # answered by the outermost error middleware, after this line is written
            raise
        finally:
            _current.reset(token)
            if self.access:
                self._log(scope, ctx, status[0] if status else 499, time.perf_counter() - started)

    def _log(self, scope: dict, ctx: RequestContext, status: int, elapsed: float) -> None:
        fields = {k: v for k, v in asdict(ctx).items() if k != "headers" and v not in (None, [], 0, 0.0)}
        if not self.prompts:
            fields.pop("prompt", None)
        fields.update(method=scope["method"], path=scope["path"], status=status, duration_ms=round(elapsed * 1000, 3))
        access_log.info("request", extra={"fields": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, pid, the request id when inside a
    request, and any `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6), "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(), "pid": os.getpid(),
        }
        if (ctx := _current.get()) is not None:
            out["request_id"] = ctx.request_id
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with the request's fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        return " ".join([super().format(record), *(f"{k}={v}" for k, v in fields.items())])


def log_config(level: str = "info", fmt: str = "json") -> dict[str, Any]:
    """logging.config dict for uvicorn.run: our loggers and uvicorn's, JSON (or plain) on stderr.
    A dict, not handlers, so each worker process applies it itself."""
    formatter = {"()": f"gateway.logs.{'Json' if fmt == 'json' else 'Text'}Formatter"}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "loggers": {
            "switchyard": {"handlers": ["main"], "level": lvl, "propagate": False},
            "uvicorn": {"handlers": ["main"], "level": lvl, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # RequestLog writes the access lines
        },
    }
