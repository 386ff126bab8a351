"""Rate limits and budgets: the sliding window both stores implement, the admission result,
and how it reaches the client (x-ratelimit-* headers, 429s).

Window: the last `window_s` seconds cut into 60 buckets (1 s each for a minute). A request
is admitted while the window holds fewer than `rpm` requests and fewer than `tpm` tokens and
the key has spent less than its budget. Admission counts the request at once (atomically, in
the store), so N concurrent requests against a limit of L admit exactly L. Tokens and spend
are known only when the answer is in: they count then, so the request that crosses the token
limit or the budget completes and the next one is refused. The Redis store runs the same
rules in Lua (gateway/redis_scripts.py) on the server's clock, so replicas agree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.errors import GatewayError
from gateway.keys import KeyLimits

BUCKETS = 60


@dataclass
class WindowState:
    limit: int
    used: float
    reset_s: float  # until the window is empty again

    @property
    def remaining(self) -> int:
        return max(0, int(self.limit - self.used))


@dataclass
class Admission:
    """The store's verdict on one presented key."""

    status: str  # ok; unknown (no such key); requests, tokens, budget (the limit that refused it)
    key_id: str | None = None
    any_keys: bool = False  # for `unknown`: does the store hold any key at all?
    requests: WindowState | None = None
    tokens: WindowState | None = None
    budget_usd: float | None = None
    spent_usd: float = 0.0
    retry_after_s: float | None = None


# -- the window, in Python (MemoryStore); the Lua script mirrors it -------------------------


def bucket_of(now: float, window_s: float) -> int:
    return math.floor(now / (window_s / BUCKETS))


def live_buckets(buckets: dict[int, float], now: float, window_s: float) -> list[tuple[int, float]]:
    """Drop buckets that fell out of the window; return the rest, oldest first."""
    first = bucket_of(now, window_s) - BUCKETS + 1
    for b in [b for b in buckets if b < first]:
        del buckets[b]
    return sorted(buckets.items())


def freed_at(bucket: int, window_s: float) -> float:
    """When `bucket` leaves the window."""
    return (bucket + BUCKETS) * (window_s / BUCKETS)


def window_state(items: list[tuple[int, float]], limit: int, now: float, window_s: float) -> tuple[WindowState, float | None]:
    """The window's state, and (if it is full) the wait until it has room again."""
    used = sum(v for _, v in items)
    reset = max(0.0, freed_at(items[-1][0], window_s) - now) if items else 0.0
    wait, left = None, used
    if used >= limit:
        for b, v in items:
            left -= v
            if left < limit:
                wait = max(0.0, freed_at(b, window_s) - now)
                break
    return WindowState(limit, used, reset), wait


def admit_local(key_id: str, limits: KeyLimits, spent: float, windows: dict[str, dict[int, float]], window_s: float,
                count: bool) -> Admission:
    """MemoryStore's admission (windows: "requests"/"tokens" -> bucket -> count), the same
    rules as the Lua ADMIT script, on this process's clock."""
    now = time.time()
    adm = Admission("ok", key_id, budget_usd=limits.budget_usd, spent_usd=spent)
    waits: dict[str, float | None] = {}
    for kind, limit in (("requests", limits.rpm), ("tokens", limits.tpm)):
        if limit is not None:
            state, waits[kind] = window_state(live_buckets(windows[kind], now, window_s), limit, now, window_s)
            setattr(adm, kind, state)
    if limits.budget_usd is not None and spent >= limits.budget_usd:
        adm.status = "budget"
    elif (refused := next((k for k in ("requests", "tokens") if waits.get(k) is not None), None)) is not None:
        adm.status, adm.retry_after_s = refused, waits[refused]
    elif count and adm.requests is not None:
        b = bucket_of(now, window_s)
        windows["requests"][b] = windows["requests"].get(b, 0) + 1
        adm.requests.used += 1
        adm.requests.reset_s = freed_at(b, window_s) - now
    return adm


# -- to the client --------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    """OpenAI writes resets as durations ('1s', '6m0s'); seconds with ms precision here."""
    return f"{round(seconds, 3):g}s"


def ratelimit_headers(adm: Admission) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, state in (("requests", adm.requests), ("tokens", adm.tokens)):
        if state is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = _duration(state.reset_s)
    if adm.budget_usd is not None:
        headers["x-switchyard-budget-usd"] = f"{adm.budget_usd:g}"
        headers["x-switchyard-budget-remaining-usd"] = f"{max(0.0, adm.budget_usd - adm.spent_usd):.6g}"
    if adm.retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(adm.retry_after_s)))
    if adm.status == "budget":
        headers["x-should-retry"] = "false"  # the openai client would otherwise retry a budget that never resets
    return headers


class LimitExceeded(GatewayError):
    def __init__(self, message: str, code: str, kind: str) -> None:
        super().__init__(429, message, None, code)
        self.kind = kind


def refusal(adm: Admission, window_s: float) -> LimitExceeded:
    if adm.status == "budget":
        # 429 with type insufficient_quota is what OpenAI answers for an exhausted quota, so
        # clients' existing handling applies; x-should-retry: false stops the SDK's retries.
        return LimitExceeded(f"key {adm.key_id} has spent its budget of ${adm.budget_usd:g} (spent ${adm.spent_usd:.6g})",
                             "budget_exceeded", "insufficient_quota")
    state = adm.requests if adm.status == "requests" else adm.tokens
    assert state is not None
    return LimitExceeded(
        f"rate limit reached for key {adm.key_id}: {state.limit} {adm.status} per {window_s:g} s; "
        f"retry after {math.ceil(adm.retry_after_s or 0)} s", "rate_limit_exceeded", "rate_limit_error")


def install_limit_handler(app: FastAPI) -> None:
    @app.exception_handler(LimitExceeded)
    async def _limit(_: Request, exc: LimitExceeded) -> JSONResponse:
        body = {"error": {"message": exc.message, "type": exc.kind, "param": None, "code": exc.code}}
        return JSONResponse(body, status_code=429)


@dataclass
class UsageEntry:
    """One answered request, for the ledger."""

    key_id: str
    router: str
    expert: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
