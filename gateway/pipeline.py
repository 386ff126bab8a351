"""The request pipeline, in order: resolve the target -> embed -> route -> dispatch -> account.

`Gateway.plan` turns a request into a RoutePlan (which expert, why); `complete` and `stream`
carry it out against the expert and attach the routing metadata and the cost. With k > 1
experts they hand over to gateway/fanout.py; with grouping on, the embedding and the router's
predict run batched across concurrent requests (gateway/batching.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from experts.dispatcher import Dispatcher, HeldStream
from experts.errors import UpstreamError
from experts.registry import ExpertRegistry
from experts.spec import ExpertSpec
from gateway.batching import PerRequest, RouteBatcher
from gateway.embedding import QueryEmbedder
from gateway.errors import GatewayError
from gateway.failover import Failover
from gateway.fanout import Aggregation, FanOut, FanOutStream, choose_aggregation
from gateway.metrics import Metrics, QueueMetrics
from gateway.onboarding import Onboarder, price
from gateway.schemas import ChatCompletionRequest, RoutingOptions
from gateway.settings import GroupingConfig, RouterConfig
from gateway.streaming import relay_events
from gateway.usage import UsageLedger
from routers.base import Estimates, Router, decide
from routers.defence import PrefixDefence

T = TypeVar("T")


@dataclass
class LoadedRouter:
    config: RouterConfig
    router: Router


@dataclass
class RoutePlan:
    router: str | None
    cost_weight: float | None
    experts: list[ExpertSpec]  # chosen, best first
    predicted: dict[str, dict[str, float]] = field(default_factory=dict)
    route_ms: float = 0.0
    aggregation: Aggregation | None = None  # k > 1: how the experts' answers combine
    fallbacks: list[ExpertSpec] = field(default_factory=list)  # the rest of the ranking, best first
    failed: list[dict[str, Any]] = field(default_factory=list)  # experts passed over (gateway/failover.py)
    answered: ExpertSpec | None = None
    defence: dict[str, Any] | None = None  # the prefix defence's verdict, when it is on

    def metadata(self, cost_usd: float | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "router": self.router,
            "cost_weight": self.cost_weight,
            "experts": [e.name for e in self.experts],
            "predicted": self.predicted,
            "route_ms": round(self.route_ms, 3),
        }
        if self.aggregation is not None:
            meta["aggregate"] = self.aggregation.describe()
        if cost_usd is not None:
            meta["cost_usd"] = cost_usd
        if self.failed:
            meta["fallback"] = {"failed": self.failed, "answered_by": self.answered.name if self.answered else None}
        if self.defence is not None:
            meta["defence"] = self.defence
        if replayed := [e.name for e in self.experts if e.backend == "replay"]:
            meta["replay"] = replayed  # answers are recorded ones, not live generations
        return meta

    def headers(self) -> dict[str, str]:
        answering = [self.answered] if self.answered else self.experts
        return {"x-switchyard-router": self.router or "none", "x-switchyard-expert": ",".join(e.name for e in answering)}


def _parse_model(model: str) -> tuple[str, float | None]:
    """'carrot@0.3' -> ('carrot', 0.3)."""
    name, at, weight = model.partition("@")
    if not at:
        return name, None
    try:
        w = float(weight)
    except ValueError:
        w = -1.0
    if not 0.0 <= w <= 1.0:
        raise GatewayError(400, f"model {model!r}: the cost weight after '@' must be a number in [0, 1]", "model", "invalid_cost_weight")
    return name, w


def _usage_cost(expert: ExpertSpec, usage: dict[str, Any] | None) -> tuple[int, int, float]:
    usage = usage or {}
    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    reported = usage.get("cost")  # upstreams that bill it themselves (OpenRouter; replay) say what it cost
    if isinstance(reported, (int, float)) and reported >= 0:
        return pt, ct, float(reported)
    return pt, ct, expert.cost_usd(pt, ct)


def estimate_candidates(router: Router, vec: np.ndarray, candidates: list[ExpertSpec], query: str,
                        max_tokens: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's predicted quality and USD cost for one query embedding: the router's
    predict (kNN through kernels.score_topk for carrot/knn/skills/glider), then pricing.
    With `decide`, the routing step that benchmarks/route_step.py times."""
    return priced_candidates(router, router.predict(vec[None, :]), candidates, query, max_tokens)


def priced_candidates(router: Router, est: Estimates, candidates: list[ExpertSpec], query: str,
                      max_tokens: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Row 0 of a router's estimate, restricted to the candidates, priced by their own prices."""
    models = router.all_models
    cols = [models.index(e.profile) for e in candidates]
    tokens = None if est.output_tokens is None else est.output_tokens[0, cols]
    return est.quality[0, cols].astype(np.float64), price(est.cost[0, cols], tokens, candidates, query, max_tokens)


class Gateway:
    def __init__(
        self,
        routers: dict[str, LoadedRouter],
        default_router: str | None,
        registry: ExpertRegistry,
        embedder: QueryEmbedder | None,
        dispatcher: Dispatcher,
        metrics: Metrics,
        grouping: GroupingConfig | None = None,
        ledger: UsageLedger | None = None,
        failover: Failover | None = None,
        defence: PrefixDefence | None = None,
    ) -> None:
        self.failover = failover or Failover(metrics)
        self.defence = defence  # settings.defence: screens router requests for prefix gadgets
        self.routers = routers
        self.onboarder = Onboarder(embedder.embedder.encode) if embedder is not None else None
        self.default_router = default_router
        self.registry = registry
        self.embedder = embedder
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.fanout = FanOut(self)
        dispatcher.queues.observer = QueueMetrics(metrics)
        grouping = grouping or GroupingConfig()
        self.estimator: RouteBatcher | PerRequest | None = None
        if embedder is not None:
            on_batch = self.metrics.route_batch_size_observer()
            self.estimator = (
                RouteBatcher(embedder, grouping.window_ms / 1000, grouping.max_batch, on_batch,
                             alone=(lambda: self.unrouted == 1) if grouping.adaptive else None)
                if grouping.enabled
                else PerRequest(embedder, on_batch)
            )
        self.ledger = ledger
        # Requests between arrival and their routing decision (see `routing`): adaptive grouping
        # sends a query at once when its own request is the only one. Requests waiting on an
        # expert are not counted: they cannot join a routing batch any more.
        self.unrouted = 0

    # -- planning -------------------------------------------------------------------------

    @contextmanager
    def routing(self) -> Iterator[None]:
        """Count a request as not yet routed (the HTTP handlers wrap admission, parsing and
        `plan` in it). Outside it, as in batch jobs, the count stays 0 and grouping waits out its
        window as usual."""
        self.unrouted += 1
        try:
            yield
        finally:
            self.unrouted -= 1

    async def plan(self, req: ChatCompletionRequest) -> RoutePlan:
        opts = req.routing or RoutingOptions()
        name, weight = _parse_model(req.model)
        if opts.cost_weight is not None:
            weight = opts.cost_weight
        if opts.router is not None:
            if name != "auto" and name not in self.routers:
                raise GatewayError(400, "routing.router applies only with model 'auto' or a router's name", "routing.router", "invalid_request")
            name = opts.router
        if name == "auto":
            if self.default_router is None:
                raise GatewayError(404, "no router is configured: name an expert as the model", "model", "model_not_found")
            name = self.default_router
        if name in self.routers:
            return await self._route(self.routers[name], req, opts, weight)
        if opts.router is None and (expert := await self.registry.get(name)) is not None:
            if opts.k > 1:
                raise GatewayError(400, "routing.k > 1 needs a router to recruit the experts: use model 'auto' or a router's name",
                                   "routing.k", "invalid_request")
            return RoutePlan(router=None, cost_weight=None, experts=[expert])
        param = "routing.router" if opts.router is not None else "model"
        raise GatewayError(404, f"unknown model, router or expert {name!r}", param, "model_not_found")

    async def _candidates(self, loaded: LoadedRouter, opts: RoutingOptions) -> list[ExpertSpec]:
        experts = self.registry.snapshot()
        if self.onboarder is not None:
            await self.onboarder.sync(loaded.router, experts)
        if opts.experts is not None:
            missing = [n for n in opts.experts if n not in experts]
            if missing:
                experts = await self.registry.refresh()
                missing = [n for n in opts.experts if n not in experts]
            if missing:
                raise GatewayError(404, f"routing.experts names unknown experts: {missing}", "routing.experts", "expert_not_found")
            experts = {n: experts[n] for n in opts.experts}
        known = set(loaded.router.all_models)
        out = sorted((e for e in experts.values() if e.profile in known), key=lambda e: e.name)
        if not out:
            raise GatewayError(
                503, f"no registered expert stands for a model router {loaded.config.name!r} knows", "routing.experts", "no_expert"
            )
        return out

    async def _route(self, loaded: LoadedRouter, req: ChatCompletionRequest, opts: RoutingOptions, weight: float | None) -> RoutePlan:
        started = time.perf_counter()
        w = loaded.config.cost_weight if weight is None else weight
        candidates = self.failover.routable(await self._candidates(loaded, opts))
        assert self.estimator is not None  # routers configured => embedder built
        query = req.query_text()
        if self.defence is None:
            est, verdict = await self.estimator.estimate(loaded.config.name, loaded.router, query), None
        else:
            est, verdict = await self._screened(loaded.router, query, w)
        quality, cost = priced_candidates(loaded.router, est, candidates, query, req.max_tokens())
        allowed = None if opts.max_cost_usd is None else cost <= opts.max_cost_usd
        if allowed is not None and not allowed.any():
            raise GatewayError(
                400, f"no expert is predicted to cost <= max_cost_usd={opts.max_cost_usd} (cheapest: {cost.min():.6g})",
                "routing.max_cost_usd", "budget_too_low",
            )
        decision = decide(quality, cost, w, loaded.router.cost_ref, k=opts.k, allowed=allowed)
        predicted = {
            e.name: {"quality": round(float(quality[i]), 6), "cost_usd": float(cost[i]), "utility": round(float(decision.utility[i]), 6)}
            for i, e in enumerate(candidates)
        }
        chosen = [candidates[i] for i in decision.chosen]
        aggregation = choose_aggregation(loaded.config, loaded.router, opts, chosen, self.registry.snapshot()) if len(chosen) > 1 else None
        elapsed = time.perf_counter() - started
        self.metrics.route_seconds.labels(loaded.config.name).observe(elapsed)
        return RoutePlan(loaded.config.name, w, chosen, predicted, elapsed * 1000, aggregation,
                         fallbacks=[candidates[i] for i in decision.ranking[len(decision.chosen):]], defence=verdict)

    async def _screened(self, router: Router, query: str, w: float) -> tuple[Estimates, dict[str, Any]]:
        """The prefix defence (routers/defence.py PrefixDefence.screen): a flagged query is
        routed on its core. Per request (two embeddings), not through the grouping batcher."""
        assert self.embedder is not None and self.defence is not None
        vec = await self.embedder.embed(query)
        core = self.defence.core(query)
        core_vec = None if core is None else await self.embedder.embed(core)
        vec, verdict = self.defence.screen(router, query, vec, core_vec, w)
        return router.predict(vec[None, :]), verdict

    # -- carrying out ---------------------------------------------------------------------

    async def _account(self, plan: RoutePlan, expert: ExpertSpec, usage: dict[str, Any] | None) -> float:
        pt, ct, cost = _usage_cost(expert, usage)
        self.metrics.tokens.labels(expert.name, "prompt").inc(pt)
        self.metrics.tokens.labels(expert.name, "completion").inc(ct)
        self.metrics.cost.labels(expert.name).inc(cost)
        if self.ledger is not None:  # per key, router and expert, in the store (budgets, /admin/usage)
            await self.ledger.record(plan.router, expert.name, pt, ct, cost)
        return cost

    async def _booked(self, plan: RoutePlan, expert: ExpertSpec, usage: dict[str, Any]) -> tuple[dict[str, Any], float]:
        return usage, await self._account(plan, expert, usage)

    async def _failed(self, expert: ExpertSpec, exc: UpstreamError) -> None:
        """A stream that failed after its first byte: counted and booked on the breaker."""
        await self.failover.failed(expert, exc)

    async def _counted(self, expert: ExpertSpec, plan: RoutePlan, work: Callable[[], Awaitable[T]]) -> T:
        """One upstream call to `expert`, counted (requests, time to answer) and guarded by its
        breaker (gateway/failover.py Failover.guard, which books failures)."""
        self.metrics.expert_requests.labels(expert.name, plan.router or "none").inc()
        started = time.perf_counter()
        result = await self.failover.guard(expert, work)
        self.metrics.upstream_seconds.labels(expert.name).observe(time.perf_counter() - started)
        return result

    async def call(self, expert: ExpertSpec, body: dict[str, Any], plan: RoutePlan) -> dict[str, Any]:
        """One counted call to one expert (k = 1 and each call of a fan-out)."""
        return await self._counted(expert, plan, lambda: self.dispatcher.complete(expert, body))

    async def open_call(self, expert: ExpertSpec, body: dict[str, Any], plan: RoutePlan) -> HeldStream:
        """One counted stream from one expert, opened (its first byte is in)."""
        return await self._counted(expert, plan, lambda: self.dispatcher.open_stream(expert, body))

    async def complete(self, req: ChatCompletionRequest, plan: RoutePlan) -> dict[str, Any]:
        if plan.aggregation is not None:
            return await self.fanout.complete(req, plan)
        body = req.upstream_body()
        # k = 1: the chosen expert, then down the router's ranking (gateway/failover.py)
        expert, data = await self.failover.run(plan, lambda e: self.call(e, body, plan))
        data["model"] = expert.name
        data["routing"] = plan.metadata(await self._account(plan, expert, data.get("usage")))
        return data

    async def open_stream(self, req: ChatCompletionRequest, plan: RoutePlan) -> HeldStream | FanOutStream:
        """Open the upstream stream; failures raised here still become plain HTTP errors (or a fallback)."""
        if plan.aggregation is not None:
            return await self.fanout.open_stream(req, plan)
        body = req.upstream_body()
        _, held = await self.failover.run(plan, lambda e: self.open_call(e, body, plan))
        return held

    def relay(self, req: ChatCompletionRequest, plan: RoutePlan, held: HeldStream | FanOutStream) -> AsyncIterator[bytes]:
        """SSE out (gateway/streaming.py): chunks renamed to the expert, routing on the first
        chunk, the cost on the usage chunk; an error event if the expert fails mid-stream."""
        if isinstance(held, FanOutStream):
            return self.fanout.relay(req, plan, held)
        expert = plan.answered or plan.experts[0]
        return relay_events(
            held.events(), model=expert.name, want_usage=bool(req.stream_options and req.stream_options.include_usage),
            routing=plan.metadata, account=lambda usage: self._booked(plan, expert, usage),
            on_upstream_error=lambda exc: self._failed(expert, exc), close=held.aclose,
        )
