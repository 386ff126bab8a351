"""`switchyard batch`: route a whole file of chat requests, run them grouped by expert, and write
OpenAI-format results in input order (switchyard/batch_io.py holds the file formats).

Routing is the gateway's own: every query is embedded in one batched call into the gateway's
embedding cache, then `Gateway.plan` decides each line (its lookups hit the cache), and
`Gateway.complete` runs it, so the routing metadata, cost accounting and error statuses are
exactly the gateway's. In-process engines plug into the gateway's dispatcher as one more backend.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from experts.batch import group_by, run_groups
from experts.engines.backend import EngineBackend
from experts.engines.base import model_loads
from experts.errors import UpstreamError
from experts.spec import ENGINE_BACKENDS, ExpertSpec
from gateway.app import create_app
from gateway.errors import GatewayError
from gateway.pipeline import Gateway, RoutePlan
from gateway.schemas import ChatCompletionRequest
from gateway.settings import load_settings
from routers.embedder import Embedder, text_key
from switchyard.batch_io import (Line, ProgressLog, failure_record, finished_output, line_error, read_lines, response_record,
                                 retryable)

PLAN_CHUNK = 1024


async def route_all(gateway: Gateway, requests: list[ChatCompletionRequest], progress: bool = True) -> list[RoutePlan | GatewayError]:
    """Plans for all requests: one batched embedding call, then the gateway's own decision per line."""
    qe = gateway.embedder
    if qe is not None and requests:
        texts = list(dict.fromkeys(r.query_text() for r in requests))
        qe.cache.capacity = max(qe.cache.capacity, len(texts))  # keep every vector until its line is planned
        vecs = await asyncio.to_thread(qe.embedder.encode, texts, 64, progress)
        for text, vec in zip(texts, vecs):
            qe.cache.put(text_key(qe.embedder.cache_id, text), vec)

    async def plan(req: ChatCompletionRequest) -> RoutePlan | GatewayError:
        try:
            return await gateway.plan(req)
        except GatewayError as exc:
            return exc

    plans: list[RoutePlan | GatewayError] = []
    for start in range(0, len(requests), PLAN_CHUNK):  # concurrent, so a route batcher can group them
        plans += await asyncio.gather(*(plan(r) for r in requests[start : start + PLAN_CHUNK]))
    return plans


class _Job:
    """One run over the lines still to do: the gateway, the log, the counters."""

    def __init__(self, gateway: Gateway, log: ProgressLog, records: dict[int, dict[str, Any]]) -> None:
        self.gateway, self.log, self.records = gateway, log, records
        self.bar: tqdm | None = None
        self.completion_tokens = 0

    def finish(self, line: Line, record: dict[str, Any]) -> None:
        self.log.append(line, record)
        self.records[line.index] = record
        response = record["response"]
        if response and response["status_code"] == 200:
            self.completion_tokens += int((response["body"].get("usage") or {}).get("completion_tokens") or 0)

    async def run_one(self, item: tuple[Line, RoutePlan]) -> None:
        line, plan = item
        assert line.request is not None
        try:
            record = response_record(line, 200, await self.gateway.complete(line.request, plan))
        except UpstreamError as exc:
            record = failure_record(line, exc.status, str(exc), exc.code, plan.metadata())
        except Exception as exc:  # noqa: BLE001 - one line's surprise must not end the job
            record = failure_record(line, 500, f"internal error: {type(exc).__name__}: {exc}", "internal_error", plan.metadata())
        self.finish(line, record)
        if self.bar is not None:
            self.bar.update()


def _summary(out: Path, lines: list[Line], resumed: int, job: _Job, groups: dict[str, list], experts: dict[str, ExpertSpec],
             loads: Counter[str], route_s: float, run_s: float, total_s: float) -> dict[str, Any]:
    ran = sum(len(g) for g in groups.values())
    return {
        "out": str(out),
        "lines": len(lines),
        "resumed": resumed,
        "ran": ran,
        "succeeded": sum(1 for r in job.records.values() if r["response"] and r["response"]["status_code"] == 200),
        "failed": sum(1 for r in job.records.values() if not (r["response"] and r["response"]["status_code"] == 200)),
        "groups": {n: {"backend": experts[n].backend, "lines": len(g)} for n, g in groups.items()},
        "model_loads": {n: loads.get(n, 0) for n in dict.fromkeys(
            [*(n for n in groups if experts[n].backend in ENGINE_BACKENDS), *(n for n, c in loads.items() if c > 0)])},
        "route_seconds": round(route_s, 3),
        "run_seconds": round(run_s, 3),
        "seconds": round(total_s, 3),
        "lines_per_second": round(ran / run_s, 2) if run_s > 0 else None,
        "completion_tokens_per_second": round(job.completion_tokens / run_s, 2) if run_s > 0 else None,
    }


def run_batch(input_path: Path, config: Path, out: Path, retry_failed: bool = False, overwrite: bool = False,
              embedder: Embedder | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a batch job; returns the summary. Bad files and configs raise ValueError/OSError."""
    started = time.perf_counter()
    lines = read_lines(input_path)
    log = ProgressLog(out)
    if out.is_dir():
        raise ValueError(f"--out is a folder: {out}")
    finished = out.exists() and not log.path.exists()
    if finished and not (overwrite or retry_failed):
        raise ValueError(f"{out} exists (a finished job); pass --overwrite to run it again, or --retry-failed for its 5xx lines")
    settings = load_settings(config)
    settings.store_url = None  # the config's experts, in-process: a batch job never touches shared state
    gateway: Gateway = create_app(settings, embedder=embedder).state.gateway
    stored = log.open()
    if finished and retry_failed and not overwrite:
        stored = finished_output(out, lines)  # keep its good lines, rerun the failed ones
    try:
        return asyncio.run(_run(gateway, settings.experts, lines, stored, log, out, retry_failed, progress, started))
    finally:
        log.close()


async def _run(gateway: Gateway, specs: list[ExpertSpec], lines: list[Line], stored: dict[int, tuple[str, dict[str, Any]]],
               log: ProgressLog, out: Path, retry_failed: bool, progress: bool, started: float) -> dict[str, Any]:
    for spec in specs:
        await gateway.registry.put(spec)
    engines = EngineBackend()
    for name in ENGINE_BACKENDS:
        gateway.dispatcher.backends[name] = engines
    records = {i: rec for i, (key, rec) in stored.items()
               if i < len(lines) and key == lines[i].key and not (retry_failed and retryable(rec))}
    resumed = len(records)
    todo = [line for line in lines if line.index not in records]
    loads_before = Counter(model_loads)
    job = _Job(gateway, log, records)
    for line in todo:
        if line.error is not None:
            job.finish(line, line_error(line))
    runnable = [line for line in todo if line.request is not None]
    t0 = time.perf_counter()
    plans = await route_all(gateway, [line.request for line in runnable], progress)  # type: ignore[misc]
    route_s = time.perf_counter() - t0
    routed: list[tuple[Line, RoutePlan]] = []
    for line, plan in zip(runnable, plans):
        if isinstance(plan, GatewayError):
            job.finish(line, failure_record(line, plan.status, plan.message, plan.code))
        else:
            routed.append((line, plan))
    by_expert = group_by([plan.experts[0].name for _, plan in routed])
    groups = {name: [routed[i] for i in idx] for name, idx in by_expert.items()}
    experts = {plan.experts[0].name: plan.experts[0] for _, plan in routed}
    # An engine that k > 1 lines of other groups also recruit stays loaded to the end (released by
    # aclose) rather than being loaded again for them.
    shared = {e.name for _, plan in routed for e in plan.experts[1:]}

    async def release(name: str) -> None:
        if name not in shared:
            await engines.release(name)

    t1 = time.perf_counter()
    with tqdm(total=len(routed), desc="batch", unit="req", disable=not progress) as bar:
        job.bar = bar
        try:
            await run_groups(groups, experts, job.run_one, release)
        finally:
            await gateway.dispatcher.aclose()
    run_s = time.perf_counter() - t1
    log.finalize([records[i] for i in range(len(lines))])
    loads = Counter(model_loads)
    loads.subtract(loads_before)
    return _summary(out, lines, resumed, job, groups, experts, loads, route_s, run_s, time.perf_counter() - started)


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM (a `kill`) ends the job like Ctrl-C: finished lines stay in the progress log."""

    def stop(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
