"""Background health probes: each expert server's `GET /health` (vLLM serves it at the root,
beside /v1), one probe per distinct server per round. `unhealthy_after` failed probes in a row
take its experts out of routing; `healthy_after` passed ones put them back.

A probe passes when the server answers with a status below 500: a 404 or 405 means a server
that is up but has no /health (OpenAI itself, some proxies). It fails on a refused connection,
a timeout, or a 5xx (vLLM answers 500 when its engine died). Experts start healthy, so a new
gateway routes before its first round; replay experts are never probed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from experts.periodic import Periodic
from experts.registry import ExpertRegistry
from experts.spec import ExpertSpec

log = logging.getLogger("switchyard.health")


def health_url(expert: ExpertSpec) -> str | None:
    if expert.backend != "openai" or not expert.base_url:
        return None
    return expert.base_url.removesuffix("/v1") + "/health"


@dataclass
class _Server:
    healthy: bool = True
    passed: int = 0
    failed: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class HealthPolicy:
    interval_s: float = 5.0
    timeout_s: float = 2.0
    unhealthy_after: int = 2
    healthy_after: int = 1


class HealthMonitor:
    def __init__(
        self, registry: ExpertRegistry, policy: HealthPolicy = HealthPolicy(), on_change: Callable[[str, bool], None] | None = None
    ) -> None:
        self.registry, self.policy, self.on_change = registry, policy, on_change
        self._servers: dict[str, _Server] = {}
        self._unhealthy: frozenset[str] = frozenset()
        self._client = httpx.AsyncClient(timeout=policy.timeout_s)
        self._loop = Periodic(self.probe_all, policy.interval_s, "health probe round", log)
        self.start = self._loop.start

    def healthy(self, name: str) -> bool:
        return name not in self._unhealthy

    def unhealthy(self) -> dict[str, str | None]:
        """Expert name -> the last probe error, for experts out of routing."""
        out = {}
        for name, spec in self.registry.snapshot().items():
            if name in self._unhealthy and (url := health_url(spec)) in self._servers:
                out[name] = self._servers[url].last_error
        return out

    async def _probe(self, url: str) -> str | None:
        """None when it passed, else why not."""
        try:
            resp = await self._client.get(url)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        return None if resp.status_code < 500 else f"HTTP {resp.status_code}"

    async def probe_all(self) -> None:
        experts = self.registry.snapshot()
        urls = {name: url for name, spec in experts.items() if (url := health_url(spec))}
        distinct = sorted(set(urls.values()))
        results = await asyncio.gather(*(self._probe(u) for u in distinct))
        for url, error in zip(distinct, results):
            s = self._servers.setdefault(url, _Server())
            s.last_error = error
            if error is None:
                s.passed, s.failed = s.passed + 1, 0
                if not s.healthy and s.passed >= self.policy.healthy_after:
                    s.healthy = True
                    log.warning("expert server %s is healthy again", url)
            else:
                s.passed, s.failed = 0, s.failed + 1
                if s.healthy and s.failed >= self.policy.unhealthy_after:
                    s.healthy = False
                    log.warning("expert server %s is unhealthy (%s): out of routing", url, error)
        for url in set(self._servers) - set(distinct):
            del self._servers[url]  # no expert points there any more
        self._unhealthy = frozenset(n for n, u in urls.items() if not self._servers[u].healthy)
        if self.on_change is not None:
            for name in experts:
                self.on_change(name, name not in self._unhealthy)

    async def stop(self) -> None:
        await self._loop.stop()
        await self._client.aclose()
