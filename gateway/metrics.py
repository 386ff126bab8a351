"""Prometheus metrics, one registry per app (so several gateways can live in one process).

Several workers (`switchyard serve --workers N`): prometheus-client's multiprocess mode. With
PROMETHEUS_MULTIPROC_DIR set before the first import (the CLI sets it), every metric writes
to per-process files in that folder and /metrics sums them over all workers, whichever
worker answers the scrape. A Gauge needs `multiprocess_mode` (e.g. "livemax", "livesum") to
read right there; counters and histograms need nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "switchyard_requests_total", "Requests answered, by endpoint and status.", ["endpoint", "status"], registry=self.registry
        )
        self.route_seconds = Histogram(
            "switchyard_route_seconds", "Embedding plus routing time per request.", ["router"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.upstream_seconds = Histogram(
            "switchyard_upstream_seconds", "Time to the expert's full answer (first byte when streaming).", ["expert"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.expert_requests = Counter(
            "switchyard_expert_requests_total", "Requests sent to each expert, by router.", ["expert", "router"], registry=self.registry
        )
        self.tokens = Counter("switchyard_tokens_total", "Tokens used, by expert and kind.", ["expert", "kind"], registry=self.registry)
        self.cost = Counter("switchyard_cost_usd_total", "Accounted cost in USD, by expert.", ["expert"], registry=self.registry)
        self.upstream_errors = Counter(
            "switchyard_upstream_errors_total", "Upstream failures, by expert and code.", ["expert", "code"], registry=self.registry
        )
        self.embedding_lookups = Counter(
            "switchyard_embedding_lookups_total",
            "Query embeddings by where they came from: local (this process's LRU), shared (the store's cache), computed.",
            ["source"], registry=self.registry,
        )
        # Online grouping (gateway/batching.py) and the per-expert queues (experts/queues.py).
        self.route_batch_size = Histogram(
            "switchyard_route_batch_size", "Queries per router.predict call (1 each with grouping off).", ["router"],
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.queue_depth = Gauge(
            "switchyard_expert_queue_depth", "Calls waiting for a free slot of the expert (its max_concurrency).", ["expert"],
            registry=self.registry, multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "switchyard_expert_in_flight", "Calls holding a slot of the expert.", ["expert"], registry=self.registry, multiprocess_mode="livesum"
        )
        self.queue_wait_seconds = Histogram(
            "switchyard_expert_queue_wait_seconds", "Time a call waited for a slot of its expert.", ["expert"],
            buckets=(0.0,) + LATENCY_BUCKETS, registry=self.registry,
        )
        self.aggregations = Counter(
            "switchyard_aggregations_total", "Answers combined from k > 1 experts, by mode and outcome.", ["mode", "outcome"],
            registry=self.registry,
        )

        self.rate_limited = Counter(
            "switchyard_rate_limited_total", "Requests refused by a key's limit, by limit (requests, tokens, budget).", ["limit"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "switchyard_auth_failures_total", "Client requests refused for a missing, unknown or revoked key.", registry=self.registry
        )
        # Resilience (gateway/failover.py, experts/breaker.py, experts/health.py, gateway/degraded.py).
        self.retries = Counter(
            "switchyard_upstream_retries_total", "Retries of an expert before its first byte.", ["expert"], registry=self.registry
        )
        self.fallbacks = Counter(
            "switchyard_fallbacks_total", "Times a request moved past an expert to the next in the ranking, by the expert and why.",
            ["expert", "reason"], registry=self.registry,
        )
        self.breaker_state = Gauge(
            "switchyard_breaker_state", "Circuit breaker per expert: 0 closed, 1 half-open, 2 open.", ["expert"], registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.expert_healthy = Gauge(
            "switchyard_expert_healthy", "1 when the expert's last health probes passed, 0 when it is out of routing.", ["expert"],
            registry=self.registry, multiprocess_mode="livemin",
        )
        self.store_degraded = Gauge(
            "switchyard_store_degraded", "1 while the shared store is unreachable and the gateway serves on local state.",
            registry=self.registry, multiprocess_mode="livemax",
        )

    def render(self) -> bytes:
        if multiprocess_dir():
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)

    def route_batch_size_observer(self) -> Callable[[str, int], None]:
        return lambda router, size: self.route_batch_size.labels(router).observe(size)


class QueueMetrics:
    """experts/queues.py's observer: depth, in-flight count and waits per expert."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def waiting(self, expert: str, delta: int) -> None:
        self.metrics.queue_depth.labels(expert).inc(delta)

    def running(self, expert: str, delta: int) -> None:
        self.metrics.in_flight.labels(expert).inc(delta)

    def waited(self, expert: str, seconds: float) -> None:
        self.metrics.queue_wait_seconds.labels(expert).observe(seconds)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
