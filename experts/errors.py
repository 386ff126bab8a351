"""Upstream failures, each carrying the HTTP status the gateway should answer with."""

from __future__ import annotations


class UpstreamError(Exception):
    status = 502
    code = "upstream_error"

    def __init__(self, expert: str, message: str, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(f"expert {expert!r}: {message}")
        self.expert = expert
        # True where the request surely did not start generating (refused connection, 502/503
        # status line): the backend may send it again to the same expert.
        self.retryable = retryable
        if status is not None:
            self.status = status

    @property
    def expert_fault(self) -> bool:
        """The expert failed (5xx, timeout, unreachable), not the request (4xx): the next one may answer."""
        return self.status >= 500


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class CircuitOpen(UpstreamUnavailable):
    code = "circuit_open"
