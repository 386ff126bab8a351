"""Prometheus metrics, one registry per app (so several gateways can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        # Resilience (gateway/failover.py, experts/breaker.py, experts/health.py, gateway/degraded.py).
        self.retries = Counter(
            "switchyard_upstream_retries_total", "Retries of an expert before its first byte.", ["expert"], registry=self.registry
        )
        self.fallbacks = Counter(
            "switchyard_fallbacks_total", "Times a request moved past an expert to the next in the ranking, by the expert and why.",
            ["expert", "reason"], registry=self.registry,
        )
        self.breaker_state = Gauge(
            "switchyard_breaker_state", "Circuit breaker per expert: 0 closed, 1 half-open, 2 open.", ["expert"], registry=self.registry
        )
        self.expert_healthy = Gauge(
            "switchyard_expert_healthy", "1 when the expert's last health probes passed, 0 when it is out of routing.", ["expert"],
            registry=self.registry,
        )
        self.store_degraded = Gauge(
            "switchyard_store_degraded", "1 while the shared store is unreachable and the gateway serves on local state.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
