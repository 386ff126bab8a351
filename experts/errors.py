"""Upstream failures, each carrying the HTTP status the gateway should answer with."""

from __future__ import annotations


class UpstreamError(Exception):
    status = 502
    code = "upstream_error"

    def __init__(self, expert: str, message: str, status: int | None = None) -> None:
        super().__init__(f"expert {expert!r}: {message}")
        self.expert = expert
        if status is not None:
            self.status = status


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
