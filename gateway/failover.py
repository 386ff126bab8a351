"""Which expert answers: the router's choice, else the next in its ranking.

Before the first byte, an expert that fails for its own reasons (unreachable, 5xx, timeout,
after the backend's retries) or whose circuit breaker is open is passed over for the next
expert in the plan's ranking, up to `max_experts` tried. A 4xx is the request's fault: it goes
back to the client at once. Health probes act earlier: unhealthy experts never enter the
ranking (`routable`). The plan records what failed and who answered, for the routing metadata.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from experts.breaker import STATE_VALUE, BreakerPolicy, Breakers, BreakerStore
from experts.errors import CircuitOpen, UpstreamError
from experts.health import HealthMonitor, HealthPolicy
from experts.registry import ExpertRegistry
from experts.spec import ExpertSpec
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.pipeline import RoutePlan

T = TypeVar("T")


class Failover:
    def __init__(
        self,
        metrics: Metrics,
        breakers: Breakers | None = None,
        health: HealthMonitor | None = None,
        max_experts: int = 3,
    ) -> None:
        self.metrics, self.breakers, self.health, self.max_experts = metrics, breakers, health, max_experts

    def start(self) -> None:
        for part in (self.breakers, self.health):
            if part is not None:
                part.start()

    async def stop(self) -> None:
        for part in (self.breakers, self.health):
            if part is not None:
                await part.stop()

    def routable(self, candidates: list[ExpertSpec]) -> list[ExpertSpec]:
        """The candidates whose health probes pass; 503 when none do."""
        if self.health is None:
            return candidates
        healthy = [e for e in candidates if self.health.healthy(e.name)]
        if candidates and not healthy:
            raise GatewayError(503, f"all {len(candidates)} candidate experts fail their health probes", None, "no_healthy_expert")
        return healthy

    async def guard(self, expert: ExpertSpec, work: Callable[[], Awaitable[T]]) -> T:
        """One call to one expert through its breaker: refused fast while it is open; a failure
        is counted (and, the expert's own fault, booked on the breaker); a success closes it.
        Every upstream call goes through here: k = 1 with its fallbacks, and each fan-out call."""
        if self.breakers is not None and not await self.breakers.allow(expert.name):
            raise CircuitOpen(expert.name, "circuit breaker open after repeated failures; try again after its cooldown")
        try:
            result = await work()
        except UpstreamError as exc:
            await self.failed(expert, exc)
            raise
        if self.breakers is not None:
            await self.breakers.success(expert.name)
        return result

    async def run(self, plan: RoutePlan, call: Callable[[ExpertSpec], Awaitable[T]]) -> tuple[ExpertSpec, T]:
        """`call(expert)` (guarded) for the chosen expert, then down the ranking while they fail."""
        order = [plan.experts[0], *plan.fallbacks][: self.max_experts]
        last: UpstreamError | None = None
        for i, expert in enumerate(order):
            try:
                result = await call(expert)
            except UpstreamError as exc:
                if not exc.expert_fault:
                    raise
                last = exc
                self._passed_over(plan, expert, exc, more=i + 1 < len(order))
                continue
            plan.answered = expert
            return expert, result
        assert last is not None  # order holds at least the chosen expert
        raise last

    async def failed(self, expert: ExpertSpec, exc: UpstreamError) -> None:
        """A failed call, before or after its first byte: counted; the expert's own fault
        (5xx, timeout, unreachable; not a 4xx) also goes to its breaker."""
        self.metrics.upstream_errors.labels(expert.name, exc.code).inc()
        if exc.expert_fault and self.breakers is not None:
            await self.breakers.failure(expert.name)

    def _passed_over(self, plan: RoutePlan, expert: ExpertSpec, exc: UpstreamError, more: bool) -> None:
        plan.failed.append({"expert": expert.name, "code": exc.code, "status": exc.status})
        if more:
            self.metrics.fallbacks.labels(expert.name, exc.code).inc()


def build_failover(settings: Settings, store: BreakerStore, registry: ExpertRegistry, metrics: Metrics) -> Failover:
    """The configured failover: breakers on the (shared) store, health probes, fallback depth."""
    b, h = settings.breaker, settings.health
    breakers = (
        Breakers(store, BreakerPolicy(b.failures, b.cooldown_s, b.refresh_s),
                 on_state=lambda name, state: metrics.breaker_state.labels(name).set(STATE_VALUE[state]))
        if b.enabled else None
    )
    health = (
        HealthMonitor(registry, HealthPolicy(h.interval_s, h.timeout_s, h.unhealthy_after, h.healthy_after),
                      on_change=lambda name, ok: metrics.expert_healthy.labels(name).set(int(ok)))
        if h.enabled else None
    )
    depth = settings.fallback.max_experts if settings.fallback.enabled else 1
    return Failover(metrics, breakers, health, depth)
