"""The HTTP surface: FastAPI routes over the pipeline (gateway/pipeline.py holds the logic)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from experts.backends.openai_http import OpenAIHTTPBackend, RetryPolicy, Timeouts
from experts.dispatcher import Dispatcher
from experts.registry import ExpertRegistry
from experts.spec import ExpertSpec
from gateway.admin_keys import key_routes
from gateway.auth import ClientAccess, check_admin
from gateway.degraded import DegradableStore, resilient, store_status
from gateway.drain import Drain, DrainMiddleware
from gateway.embedding import QueryEmbedder
from gateway.errors import GatewayError, error_response, install_error_handlers
from gateway.failover import build_failover
from gateway.limits import install_limit_handler
from gateway.logs import RequestLog, current
from gateway.metrics import Metrics
from gateway.pipeline import Gateway, LoadedRouter, RoutePlan
from gateway.schemas import ChatCompletionRequest, RouteRequest, parse_body
from gateway.settings import Settings
from gateway.store import StoreError, make_store
from gateway.usage import UsageLedger
from routers.defence import PrefixDefence
from routers.embedder import Embedder

log = logging.getLogger("switchyard.gateway")
T = TypeVar("T")
Req = TypeVar("Req", bound=ChatCompletionRequest)

CHAT_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")}},
    }
}


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"request body over {limit} bytes", None, "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, f"request body over {limit} bytes", None, "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


class ClientGone(Exception):
    pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so the upstream call) if the client disconnects."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # it may have failed as the client left
    raise ClientGone


class RequestMetrics:
    """Pure ASGI middleware (no body buffering): counts responses (RequestLog sets x-request-id)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path.startswith(("/v1/", "/health/", "/admin/")) else "other"
        endpoint = "/admin/experts" if endpoint.startswith("/admin/experts") else endpoint

        async def send_counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(endpoint, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, send_counted)


def load_routers(settings: Settings) -> dict[str, LoadedRouter]:
    from routers.artifacts import load_router  # noqa: PLC0415 - imports torch; a gateway without routers starts without it

    return {rc.name: LoadedRouter(rc, load_router(rc.artifact)) for rc in settings.routers}


def create_app(settings: Settings, embedder: Embedder | None = None) -> FastAPI:
    """Build the app; routers and the embedder load here so a bad config fails at start."""
    routers = load_routers(settings)
    if routers and embedder is None:
        e = settings.embedding
        embedder = Embedder(e.model, device=e.device, truncate=e.truncate)
    metrics = Metrics()
    store = resilient(make_store(settings.store_url), settings.store_retry_s, lambda down: metrics.store_degraded.set(int(down)))
    registry = ExpertRegistry(store, settings.registry_refresh_s)
    query_embedder = (
        QueryEmbedder(embedder, settings.embedding.cache_size, settings.embedding.batch_window_ms / 1000, settings.embedding.max_batch,
                      # the memory store shares nothing: asking it on every miss would be work for no hit
                      shared=store if settings.embedding.shared_cache and store.kind != "memory" else None,
                      shared_ttl_s=settings.embedding.shared_ttl_s,
                      on_lookup=lambda source, n: metrics.embedding_lookups.labels(source).inc(n))
        if embedder
        else None
    )
    t = settings.timeouts
    r = settings.retries
    dispatcher = Dispatcher(OpenAIHTTPBackend(Timeouts(t.connect, t.read, t.write, t.pool), retry=RetryPolicy(r.attempts, r.backoff_s, r.max_backoff_s),
                                              on_retry=lambda name: metrics.retries.labels(name).inc()))
    failover = build_failover(settings, store, registry, metrics)
    ledger = UsageLedger(store, settings.rate_limit_window_s)
    access = ClientAccess(store, settings.api_keys, settings.rate_limit_window_s, metrics)
    defence = PrefixDefence.for_embedder(embedder, **settings.defence.params) if settings.defence.enabled and embedder else None
    gateway = Gateway(routers, settings.default_router, registry, query_embedder, dispatcher, metrics, settings.grouping,
                      ledger=ledger, failover=failover, defence=defence)
    drain = Drain(settings.shutdown.drain_timeout_s)

    async def declare_config_experts(target: Any) -> None:  # also when Redis returns, maybe empty
        for spec in settings.experts:
            await target.put_expert(spec.name, spec.model_dump_json())

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202
        try:
            for spec in settings.experts:  # the config's experts are declared state: they win
                await registry.put(spec)
            await registry.refresh()
        except StoreError as exc:
            raise RuntimeError(f"cannot reach the store: {exc}") from None
        if isinstance(store, DegradableStore):
            store.on_recover = declare_config_experts
        registry.start()
        failover.start()
        drain.install()
        yield
        await failover.stop()
        await registry.stop()
        await dispatcher.aclose()
        await store.close()

    app = FastAPI(title="Switchyard", version="0.1.0", lifespan=lifespan)
    app.state.gateway = gateway
    install_error_handlers(app)
    install_limit_handler(app)

    @app.exception_handler(ClientDisconnect)
    async def _client_left(_: Request, __: ClientDisconnect) -> Response:
        return Response(status_code=499)  # the client left while sending its body: no one to answer

    app.add_middleware(DrainMiddleware, drain=drain)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(RequestLog, access=settings.logging.access, prompts=settings.logging.prompts)  # outermost
    app.include_router(key_routes(store, ledger, settings.admin_key))

    async def planned(request: Request, body: type[Req]) -> tuple[Req, RoutePlan]:
        """Admission, the body, the routing decision: the part of a request adaptive grouping
        counts as not yet routed (Gateway.routing)."""
        with gateway.routing():
            await access.admit(request)
            req = parse_body(await read_body(request, settings.max_body_bytes), body)
            if settings.logging.prompts:
                current().prompt = req.query_text()
            return req, await gateway.plan(req)

    @app.post("/v1/chat/completions", openapi_extra=CHAT_SCHEMA)
    async def chat_completions(request: Request) -> Response:
        req, plan = await planned(request, ChatCompletionRequest)
        if not req.stream:
            try:
                data = await unless_disconnected(request, gateway.complete(req, plan))
            except ClientGone:
                return Response(status_code=499)
            return JSONResponse(data, headers=plan.headers())
        try:
            held = await unless_disconnected(request, gateway.open_stream(req, plan))
        except ClientGone:
            return Response(status_code=499)
        return StreamingResponse(
            gateway.relay(req, plan, held),
            media_type="text/event-stream",
            headers={**plan.headers(), "cache-control": "no-cache"},
            background=BackgroundTask(held.aclose),  # runs even if the client left before the first chunk
        )

    @app.post("/v1/route")
    async def route(request: Request) -> JSONResponse:
        _, plan = await planned(request, RouteRequest)
        return JSONResponse({"object": "routing.decision", **plan.metadata()}, headers=plan.headers())

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        await access.admit(request, count=False)
        data = [{"id": "auto", "object": "model", "owned_by": "switchyard", "kind": "router", "router": settings.default_router}]
        data += [{"id": n, "object": "model", "owned_by": "switchyard", "kind": "router", "router_kind": r.config.kind,
                  "models": r.router.models} for n, r in routers.items()]
        data += [{"id": e.name, "object": "model", "owned_by": "switchyard", "kind": "expert", "stands_for": e.profile,
                  "input_price": e.input_price, "output_price": e.output_price} for e in registry.snapshot().values()]
        return {"object": "list", "data": data}

    @app.get("/admin/experts")
    async def list_experts(request: Request) -> dict[str, Any]:
        check_admin(request, settings.admin_key)
        experts = await registry.refresh()
        return {"object": "list", "data": [e.model_dump() for e in experts.values()]}

    @app.post("/admin/experts", status_code=201)
    async def add_expert(request: Request) -> JSONResponse:
        check_admin(request, settings.admin_key)
        raw = await read_body(request, settings.max_body_bytes)
        try:
            spec = ExpertSpec.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise GatewayError(400, f"{loc or 'body'}: {first['msg']}", loc or None, "invalid_expert") from None
        if spec.name in routers or spec.name == "auto":
            raise GatewayError(400, f"{spec.name!r} is a router's name", "name", "invalid_expert")
        await registry.put(spec)
        return JSONResponse(spec.model_dump(), status_code=201)

    @app.delete("/admin/experts/{name:path}")
    async def delete_expert(name: str, request: Request) -> dict[str, Any]:
        check_admin(request, settings.admin_key)
        if not await registry.delete(name):
            raise GatewayError(404, f"no expert named {name!r}", "name", "expert_not_found")
        return {"deleted": name}

    @app.get("/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"status": "shutting_down" if drain.draining else "ok"}, status_code=503 if drain.draining else 200)

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        # Degraded (Redis down, serving on local state) is still ready: taking every replica out
        # of the load balancer because Redis died would turn a partial outage into a full one.
        store_state = await store_status(store)
        experts = len(registry.snapshot())
        ok = (store_state["ok"] or store_state["degraded"]) and experts > 0 and not drain.draining
        status = "shutting_down" if drain.draining else "not_ready" if not ok else "degraded" if store_state["degraded"] else "ready"
        body = {"status": status, "store": store_state, "experts": experts, "routers": sorted(routers)}
        if failover.health is not None:
            body["unhealthy_experts"] = failover.health.unhealthy()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def not_found(path: str) -> JSONResponse:
        return error_response(404, f"no route /{path}", None, "not_found")

    return app
