"""The request pipeline, in order: resolve the target -> embed -> route -> dispatch -> account.

`Gateway.plan` turns a request into a RoutePlan (which expert, why); `complete` and `stream`
carry it out against the expert and attach the routing metadata and the cost.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experts.dispatcher import Dispatcher, HeldStream
from experts.errors import UpstreamError
from experts.registry import ExpertRegistry
from experts.spec import ExpertSpec
from gateway.embedding import QueryEmbedder
from gateway.errors import GatewayError, sse_error
from gateway.metrics import Metrics
from gateway.onboarding import Onboarder, price
from gateway.schemas import ChatCompletionRequest, RoutingOptions
from gateway.settings import RouterConfig
from routers.base import Router, decide
from routers.defence import PrefixDefence


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
    defence: dict[str, Any] | None = None  # the prefix defence's verdict, when it is on

    def metadata(self, cost_usd: float | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "router": self.router,
            "cost_weight": self.cost_weight,
            "experts": [e.name for e in self.experts],
            "predicted": self.predicted,
            "route_ms": round(self.route_ms, 3),
        }
        if cost_usd is not None:
            meta["cost_usd"] = cost_usd
        if self.defence is not None:
            meta["defence"] = self.defence
        if replayed := [e.name for e in self.experts if e.backend == "replay"]:
            meta["replay"] = replayed  # answers are recorded ones, not live generations
        return meta

    def headers(self) -> dict[str, str]:
        return {"x-switchyard-router": self.router or "none", "x-switchyard-expert": ",".join(e.name for e in self.experts)}


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


class Gateway:
    def __init__(
        self,
        routers: dict[str, LoadedRouter],
        default_router: str | None,
        registry: ExpertRegistry,
        embedder: QueryEmbedder | None,
        dispatcher: Dispatcher,
        metrics: Metrics,
        defence: PrefixDefence | None = None,
    ) -> None:
        self.defence = defence  # settings.defence: screens router requests for prefix gadgets
        self.routers = routers
        self.onboarder = Onboarder(embedder.embedder.encode) if embedder is not None else None
        self.default_router = default_router
        self.registry = registry
        self.embedder = embedder
        self.dispatcher = dispatcher
        self.metrics = metrics

    # -- planning -------------------------------------------------------------------------

    async def plan(self, req: ChatCompletionRequest) -> RoutePlan:
        opts = req.routing or RoutingOptions()
        name, weight = _parse_model(req.model)
        if opts.cost_weight is not None:
            weight = opts.cost_weight
        if opts.k > 1:
            raise GatewayError(400, "routing.k > 1 needs answer aggregation, which this gateway does not offer yet", "routing.k", "unsupported")
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
        candidates = await self._candidates(loaded, opts)
        assert self.embedder is not None  # routers configured => embedder built
        query = req.query_text()
        vec = await self.embedder.embed(query)
        verdict = None
        if self.defence is not None:  # a flagged query is routed on its core (routers/defence.py PrefixDefence.screen)
            core = self.defence.core(query)
            core_vec = None if core is None else await self.embedder.embed(core)
            vec, verdict = self.defence.screen(loaded.router, query, vec, core_vec, w)
        est = loaded.router.predict(vec[None, :])
        models = loaded.router.all_models
        cols = [models.index(e.profile) for e in candidates]
        quality = est.quality[0, cols].astype(np.float64)
        tokens = None if est.output_tokens is None else est.output_tokens[0, cols]
        cost = price(est.cost[0, cols], tokens, candidates, query, req.max_tokens())
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
        elapsed = time.perf_counter() - started
        self.metrics.route_seconds.labels(loaded.config.name).observe(elapsed)
        return RoutePlan(loaded.config.name, w, [candidates[i] for i in decision.chosen], predicted, elapsed * 1000, verdict)

    # -- carrying out ---------------------------------------------------------------------

    def _account(self, plan: RoutePlan, expert: ExpertSpec, usage: dict[str, Any] | None) -> float:
        pt, ct, cost = _usage_cost(expert, usage)
        self.metrics.tokens.labels(expert.name, "prompt").inc(pt)
        self.metrics.tokens.labels(expert.name, "completion").inc(ct)
        self.metrics.cost.labels(expert.name).inc(cost)
        return cost

    def _failed(self, expert: ExpertSpec, exc: UpstreamError) -> None:
        self.metrics.upstream_errors.labels(expert.name, exc.code).inc()

    async def complete(self, req: ChatCompletionRequest, plan: RoutePlan) -> dict[str, Any]:
        expert = plan.experts[0]
        self.metrics.expert_requests.labels(expert.name, plan.router or "none").inc()
        started = time.perf_counter()
        try:
            data = await self.dispatcher.complete(expert, req.upstream_body())
        except UpstreamError as exc:
            self._failed(expert, exc)
            raise
        self.metrics.upstream_seconds.labels(expert.name).observe(time.perf_counter() - started)
        data["model"] = expert.name
        data["routing"] = plan.metadata(self._account(plan, expert, data.get("usage")))
        return data

    async def open_stream(self, req: ChatCompletionRequest, plan: RoutePlan) -> HeldStream:
        """Open the upstream stream; failures raised here still become plain HTTP errors."""
        expert = plan.experts[0]
        self.metrics.expert_requests.labels(expert.name, plan.router or "none").inc()
        started = time.perf_counter()
        try:
            held = await self.dispatcher.open_stream(expert, req.upstream_body())
        except UpstreamError as exc:
            self._failed(expert, exc)
            raise
        self.metrics.upstream_seconds.labels(expert.name).observe(time.perf_counter() - started)
        return held

    async def relay(self, req: ChatCompletionRequest, plan: RoutePlan, held: HeldStream) -> AsyncIterator[bytes]:
        """SSE out: each upstream chunk renamed to the expert, routing on the first chunk, the
        cost on the usage chunk; an error event if the expert fails mid-stream."""
        expert = plan.experts[0]
        want_usage = bool(req.stream_options and req.stream_options.include_usage)
        first = True
        try:
            async for chunk in held.events():
                chunk["model"] = expert.name
                if first:
                    chunk["routing"] = plan.metadata()
                    first = False
                usage = chunk.get("usage")
                if usage:
                    cost = self._account(plan, expert, usage)
                    if not want_usage:
                        if not chunk.get("choices"):
                            continue
                        chunk.pop("usage")
                    else:
                        chunk["routing"] = plan.metadata(cost)
                elif not want_usage:
                    chunk.pop("usage", None)
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except UpstreamError as exc:
            self._failed(expert, exc)
            yield sse_error(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client gets an error event, never a traceback
            yield sse_error(exc)
        finally:
            await held.aclose()
