"""Routing decisions without a server (the `switchyard route` command): the same pipeline
planning code the gateway runs, against the config's experts in an in-process store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.errors import GatewayError
from gateway.schemas import RouteRequest, RoutingOptions
from gateway.settings import load_settings


def route_once(config: Path, prompt: str, cost_weight: float | None, router: str | None) -> dict[str, Any]:
    settings = load_settings(config)
    settings.store_url = None  # decisions only: never touch shared state
    app = create_app(settings)
    gateway = app.state.gateway

    async def run() -> dict[str, Any]:
        for spec in settings.experts:
            await gateway.registry.put(spec)
        req = RouteRequest(prompt=prompt, routing=RoutingOptions(cost_weight=cost_weight, router=router))
        return (await gateway.plan(req)).metadata()

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        raise ValueError(exc.message) from None
