"""Several experts per query (`routing.k` > 1): ask the k recruited experts concurrently, then
combine their answers (experts/aggregation.py):

- `synthesize` (Symbolic-MoE): an aggregator expert gets the question and the candidates'
  answers and writes the final one. Which expert: the request's `routing.aggregator`, else the
  router config's `aggregator`, else the router's own validation-based choice (skills), else
  the top-ranked recruited expert. If the aggregator fails, the best candidate answers instead.
- `vote`: the majority over extracted final answers (choice letters, numbers); ties go to the
  higher predicted quality. No extractable answer: as `best`.
- `best`: the candidate whose expert has the highest predicted quality.

Experts that fail are named in `routing.failed`; fewer than `min_successful` answers is an
OpenAI error. Usage and cost add up every call, the aggregator's included, and `routing.calls`
lists each call's tokens and cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from experts.aggregation import best, extract_answer, synthesis_messages, vote
from experts.dispatcher import HeldStream
from experts.errors import UpstreamError
from experts.spec import ExpertSpec
from gateway.errors import GatewayError
from gateway.schemas import ChatCompletionRequest, RoutingOptions
from gateway.settings import RouterConfig
from gateway.streaming import answer_events, relay_events
from routers.base import Router

if TYPE_CHECKING:
    from gateway.pipeline import Gateway, RoutePlan

T = TypeVar("T")


@dataclass(frozen=True)
class Aggregation:
    mode: str  # synthesize | vote | best
    aggregator: ExpertSpec | None  # synthesize only
    min_successful: int = 1

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "aggregator": self.aggregator.name if self.aggregator else None, "min_successful": self.min_successful}


def choose_aggregation(
    config: RouterConfig, router: Router, opts: RoutingOptions, chosen: list[ExpertSpec], experts: dict[str, ExpertSpec]
) -> Aggregation:
    """How this request's answers will combine, decided at planning time (so /v1/route shows it)."""
    mode = opts.aggregate or config.aggregate
    aggregator = None
    if mode == "synthesize":
        if opts.aggregator is not None:
            if (aggregator := experts.get(opts.aggregator)) is None:
                raise GatewayError(404, f"routing.aggregator names an unknown expert {opts.aggregator!r}", "routing.aggregator",
                                   "expert_not_found")
        elif config.aggregator is not None:
            if (aggregator := experts.get(config.aggregator)) is None:
                raise GatewayError(503, f"router {config.name!r}'s aggregator {config.aggregator!r} is not a registered expert",
                                   "routing.aggregator", "no_aggregator")
        else:
            aggregator = _router_choice(router, chosen, experts) or chosen[0]
    return Aggregation(mode, aggregator, opts.min_successful)


def _router_choice(router: Router, chosen: list[ExpertSpec], experts: dict[str, ExpertSpec]) -> ExpertSpec | None:
    """The registered expert standing for the model the router picked to aggregate, if it has one
    (skills: the best on its validation data); a recruited one first, then by name."""
    model = getattr(router, "aggregator", None)
    if not isinstance(model, str):
        return None
    standing = [e for e in chosen if e.profile == model] + sorted((e for e in experts.values() if e.profile == model), key=lambda e: e.name)
    return standing[0] if standing else None


@dataclass
class Call:
    expert: str
    role: str  # candidate | aggregator
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass
class Answer:
    expert: ExpertSpec
    data: dict[str, Any]
    quality: float

    @property
    def text(self) -> str:
        choices = self.data.get("choices") or [{}]
        return str((choices[0].get("message") or {}).get("content") or "")


@dataclass
class Outcome:
    """What the fan-out did so far: every call made, the failures, the aggregation's details."""

    calls: list[Call] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def usage(self) -> dict[str, int]:
        pt = sum(c.prompt_tokens for c in self.calls)
        ct = sum(c.completion_tokens for c in self.calls)
        return {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}

    def cost(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    def fail(self, expert: ExpertSpec, role: str, exc: UpstreamError) -> None:
        self.failed.append({"expert": expert.name, "role": role, "status": exc.status, "code": exc.code, "message": str(exc)})


class FanOutStream:
    """A fan-out's answer to stream: the aggregator's upstream stream, or a finished answer."""

    def __init__(self, outcome: Outcome, answering: ExpertSpec, held: HeldStream | None = None,
                 answer: Answer | None = None) -> None:
        self.outcome, self.answering, self.held, self.answer = outcome, answering, held, answer

    async def aclose(self) -> None:
        if self.held is not None:
            await self.held.aclose()


def _body(req: ChatCompletionRequest) -> dict[str, Any]:
    body = req.upstream_body()
    body.pop("stream", None)
    body.pop("stream_options", None)
    return body


class FanOut:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    # -- the candidates ---------------------------------------------------------------------

    async def _book(self, plan: RoutePlan, outcome: Outcome, expert: ExpertSpec, role: str, usage: dict[str, Any] | None) -> float:
        cost = await self.gw._account(plan, expert, usage)  # noqa: SLF001 - the pipeline's one accounting path
        u = usage or {}
        outcome.calls.append(Call(expert.name, role, int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0), cost))
        return cost

    async def _candidates(self, plan: RoutePlan, body: dict[str, Any]) -> tuple[list[Answer], Outcome]:
        outcome = Outcome()
        results = await asyncio.gather(*(self.gw.call(e, body, plan) for e in plan.experts), return_exceptions=True)
        answers = []
        for expert, result in zip(plan.experts, results):
            if isinstance(result, UpstreamError):
                outcome.fail(expert, "candidate", result)
            elif isinstance(result, BaseException):
                raise result
            else:
                await self._book(plan, outcome, expert, "candidate", result.get("usage"))
                answers.append(Answer(expert, result, float(plan.predicted.get(expert.name, {}).get("quality", 0.0))))
        assert plan.aggregation is not None
        need = plan.aggregation.min_successful
        if len(answers) < need:
            statuses = {f["status"] for f in outcome.failed}
            status = statuses.pop() if len(statuses) == 1 else 502
            why = "; ".join(f["message"] for f in outcome.failed)
            self.gw.metrics.aggregations.labels(plan.aggregation.mode, "too_few").inc()
            raise GatewayError(status, f"{len(answers)} of {len(plan.experts)} experts answered, fewer than min_successful={need}: {why}",
                               "routing.min_successful", "too_few_answers")
        return answers, outcome

    def _pick(self, plan: RoutePlan, answers: list[Answer], outcome: Outcome) -> Answer:
        """vote or best (also synthesize's fallback); notes the extracted answers when voting."""
        quality = [a.quality for a in answers]
        assert plan.aggregation is not None
        if plan.aggregation.mode == "vote":
            extracted = [extract_answer(a.text) for a in answers]
            outcome.detail["answers"] = {a.expert.name: x for a, x in zip(answers, extracted)}
            i = vote(extracted, quality)
            if i is not None:
                outcome.detail["answer"] = extracted[i]
                return answers[i]
            outcome.detail["note"] = "no final answer could be extracted: the best-predicted expert's answer"
        return answers[best(quality)]

    def _synthesis_body(self, body: dict[str, Any], answers: list[Answer]) -> dict[str, Any]:
        return {**body, "messages": synthesis_messages(body["messages"], [a.text for a in answers])}

    def _routing(self, plan: RoutePlan, outcome: Outcome, answering: ExpertSpec, cost: float | None) -> dict[str, Any]:
        meta = plan.metadata(cost)
        meta["aggregate"] = {**meta["aggregate"], "answered_by": answering.name, **outcome.detail}
        meta["calls"] = [asdict(c) for c in outcome.calls]
        meta["failed"] = outcome.failed
        return meta

    def _done(self, plan: RoutePlan, outcome: Outcome, how: str) -> None:
        assert plan.aggregation is not None
        self.gw.metrics.aggregations.labels(plan.aggregation.mode, how).inc()

    # -- plain responses --------------------------------------------------------------------

    async def _synthesized(self, plan: RoutePlan, outcome: Outcome, answers: list[Answer],
                           ask: Callable[[ExpertSpec], Awaitable[T]]) -> tuple[ExpertSpec, T] | None:
        """The aggregator's answer when the mode is synthesize (`ask` calls it), or None: not
        synthesizing, or the aggregator failed (noted), and the caller picks instead."""
        assert plan.aggregation is not None
        agg = plan.aggregation.aggregator
        if plan.aggregation.mode != "synthesize" or agg is None or len(answers) < 2:
            return None
        try:
            result = await ask(agg)
        except UpstreamError as exc:
            outcome.fail(agg, "aggregator", exc)
            outcome.detail["note"] = "the aggregator failed: the best-predicted expert's answer"
            return None
        self._done(plan, outcome, "synthesized")
        return agg, result

    async def complete(self, req: ChatCompletionRequest, plan: RoutePlan) -> dict[str, Any]:
        body = _body(req)
        answers, outcome = await self._candidates(plan, body)

        async def ask(agg: ExpertSpec) -> dict[str, Any]:
            data = await self.gw.call(agg, self._synthesis_body(body, answers), plan)
            await self._book(plan, outcome, agg, "aggregator", data.get("usage"))
            return data

        synthesized = await self._synthesized(plan, outcome, answers, ask)
        if synthesized is not None:
            answering, data = synthesized
        else:
            chosen = self._pick(plan, answers, outcome)
            data, answering = dict(chosen.data), chosen.expert
            self._done(plan, outcome, "picked")
        data["model"] = answering.name
        data["usage"] = outcome.usage()
        data["routing"] = self._routing(plan, outcome, answering, outcome.cost())
        return data

    # -- streams ----------------------------------------------------------------------------

    async def open_stream(self, req: ChatCompletionRequest, plan: RoutePlan) -> FanOutStream:
        """Run the candidates (not streamed: all are needed before anything is final), then open
        the aggregator's stream; every failure up to here is still a plain HTTP error."""
        body = _body(req)
        answers, outcome = await self._candidates(plan, body)

        async def ask(agg: ExpertSpec) -> HeldStream:
            stream_body = {**self._synthesis_body(body, answers), "stream": True}
            if req.stream_options is not None:
                stream_body["stream_options"] = req.stream_options.model_dump()
            return await self.gw.open_call(agg, stream_body, plan)

        synthesized = await self._synthesized(plan, outcome, answers, ask)
        if synthesized is not None:
            return FanOutStream(outcome, synthesized[0], held=synthesized[1])
        chosen = self._pick(plan, answers, outcome)
        self._done(plan, outcome, "picked")
        return FanOutStream(outcome, chosen.expert, answer=chosen)

    def relay(self, req: ChatCompletionRequest, plan: RoutePlan, fs: FanOutStream) -> AsyncIterator[bytes]:
        outcome, answering = fs.outcome, fs.answering

        def routing(cost: float | None) -> dict[str, Any]:
            return self._routing(plan, outcome, answering, cost)

        async def account(usage: dict[str, Any]) -> tuple[dict[str, Any], float]:
            if fs.held is not None:  # the aggregator's own usage chunk: book it, then show the sum
                await self._book(plan, outcome, answering, "aggregator", usage)
            return outcome.usage(), outcome.cost()

        if fs.held is not None:
            events = fs.held.events()
        else:
            assert fs.answer is not None
            events = answer_events(fs.answer.data, outcome.usage())
        return relay_events(
            events, model=answering.name, want_usage=bool(req.stream_options and req.stream_options.include_usage),
            routing=routing, account=account, on_upstream_error=lambda exc: self.gw._failed(answering, exc),  # noqa: SLF001
            close=fs.aclose,
        )
