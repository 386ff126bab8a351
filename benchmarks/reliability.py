#!/usr/bin/env python
"""The reliability suite: does the gateway survive load, faults and bad input without losing
a request? Everything runs on 127.0.0.1 in its own process: two loopback expert servers
(`python -m experts.loopback`, the vLLM stand-ins; the 11 RouterBench experts split across
them), a real redis-server, and the gateway (`switchyard serve`, carrot router, Redis store).
Clients are raw httpx streams, so every stream's ending is seen on the wire.

  soak            N concurrent streams for --duration seconds: none lost, every stream ends
                  in [DONE] or an error event; the gateway's RSS before and after the load
  expert-killed   the server of half the experts is SIGKILLed under load, then restarted:
                  streams on it end with an error event, later requests fall back, health
                  probes take its experts out and put them back
  expert-silent   one expert never answers: named, it is a 504 within the read timeout;
                  routed, the next expert in the ranking answers
  redis-outage    redis-server killed under load and started again (empty): the gateway
                  keeps serving on local state, readiness says degraded, then recovers
  bad-input       malformed, oversized and wrong-typed requests get OpenAI errors (4xx);
                  then schemathesis against /openapi.json: no server errors

    .venv/bin/python -m benchmarks.reliability --out DIR [--duration 180] [--streams 200]

Writes DIR/results.json, DIR/report.md and DIR/rss.png. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.gateway_latency import BenchError, Server, ensure_artifact, free_port  # noqa: E402
from switchyard.demo import expert_config  # noqa: E402
from switchyard.redis_server import RedisServer  # noqa: E402

TARGET = "gpt-4-1106-preview"  # the router's first choice at cost weight 0 for most prompts: faults hit it
BREAKER_COOLDOWN_S = 5.0
READ_TIMEOUT_S = 5.0  # the gateway's read timeout (longest upstream silence) in this suite
HANG_S = 120.0  # a request open longer counts as hung (a loaded 2-core machine queues for tens of seconds)
# Each loopback stream: 6 content chunks 0.3 s apart (~2 s, like a short generation), so 200
# concurrent streams are ~100 new requests/s: what a 2-core machine can route and relay.
STREAM = {"chunks": 6, "chunk_delay_s": 0.3}  # a request still open after this long counts as hung
PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "Write a Python function that reverses a linked list.",
    "Solve for x: 3x + 7 = 22.",
    "Which gas do plants absorb from the air for photosynthesis?\nA) oxygen\nB) carbon dioxide\nC) helium\nD) neon\nAnswer:",
    "Summarise the causes of the First World War in three sentences.",
    "Translate 'good morning, how are you?' into German.",
    "What is the derivative of sin(x) * x^2?",
    "Name three sorting algorithms and their average complexity.",
]


# -- one request, classified by how it ended ------------------------------------------------


@dataclass
class Outcome:
    kind: str  # done | error_event | http_error | lost | hung
    seconds: float
    status: int = 200
    code: str | None = None
    fallback: bool = False
    expert: str | None = None  # who answered
    asked: str = ""  # the request's model


def _error_code(raw: bytes | str) -> str | None:
    try:
        err = json.loads(raw)["error"]
        return str(err["code"]) if isinstance(err, dict) and "message" in err else None
    except (ValueError, KeyError, TypeError):
        return None


async def stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Outcome:
    started = time.monotonic()

    async def run() -> Outcome:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                code = _error_code(await r.aread())
                return Outcome("http_error" if code else "lost", 0.0, r.status_code, code)
            first: dict[str, Any] | None = None
            last = None
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    last = line[6:]
                    if first is None and last != "[DONE]":
                        first = json.loads(last)
            routing = (first or {}).get("routing") or {}
            expert = (first or {}).get("model")
            if last == "[DONE]":
                return Outcome("done", 0.0, expert=expert, fallback="fallback" in routing)
            if last is not None and (code := _error_code(last)):
                return Outcome("error_event", 0.0, code=code, expert=expert, fallback="fallback" in routing)
            return Outcome("lost", 0.0, code="no [DONE] and no error event")

    try:
        out = await asyncio.wait_for(run(), HANG_S)
    except asyncio.TimeoutError:
        out = Outcome("hung", 0.0)
    except (httpx.HTTPError, ValueError) as exc:
        out = Outcome("lost", 0.0, code=type(exc).__name__)
    out.seconds, out.asked = time.monotonic() - started, body["model"]
    return out


COST_WEIGHTS = (0.0, 0.2, 0.5, 1.0)  # spread the load over experts on both servers


def routed(i: int) -> dict[str, Any]:
    return {"model": "carrot", "stream": True, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "routing": {"cost_weight": COST_WEIGHTS[(i // len(PROMPTS)) % len(COST_WEIGHTS)]}}


async def load(
    url: str, streams: int, duration: float, body: Callable[[int], dict[str, Any]] = routed,
    actions: list[tuple[float, Callable[[], Any]]] | None = None, watch: Callable[[], Any] | None = None, desc: str = "",
) -> tuple[list[Outcome], list[Any]]:
    """`streams` clients, each sending one stream after another for `duration` seconds, while
    `actions` (blocking callables) run at their offsets and `watch` samples every 0.5 s."""
    outcomes: list[Outcome] = []
    samples: list[Any] = []
    end = time.monotonic() + duration
    # Idle connections expire before uvicorn's 5 s keep-alive timeout closes them, or a request
    # sent as the server hangs up would fail on the client's side of that race.
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(HANG_S), limits=limits) as client:
        bar = tqdm(total=round(duration), desc=desc, unit="s", leave=False)

        async def worker(w: int) -> None:
            i = w
            while time.monotonic() < end:
                outcomes.append(await stream_once(client, url, body(i)))
                i += streams

        async def timeline() -> None:
            started, pending = time.monotonic(), sorted(actions or [], key=lambda a: a[0])
            while time.monotonic() < end:
                now = time.monotonic() - started
                while pending and pending[0][0] <= now:
                    await asyncio.to_thread(pending.pop(0)[1])
                if watch is not None:
                    samples.append((round(now, 2), await asyncio.to_thread(watch)))
                bar.n = min(round(now), bar.total)
                bar.set_postfix(requests=len(outcomes), refresh=True)
                await asyncio.sleep(0.5)

        await asyncio.gather(timeline(), *(worker(w) for w in range(streams)))
        bar.close()
    return outcomes, samples


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    kinds = Counter(o.kind for o in outcomes)
    secs = sorted(o.seconds for o in outcomes) or [0.0]
    return {
        "requests": len(outcomes),
        **{k: kinds.get(k, 0) for k in ("done", "error_event", "http_error", "lost", "hung")},
        "fallbacks": sum(o.fallback for o in outcomes),
        "codes": dict(Counter(o.code for o in outcomes if o.code)),
        "p50_s": round(secs[len(secs) // 2], 3),
        "p99_s": round(secs[min(len(secs) - 1, int(len(secs) * 0.99))], 3),
        "max_s": round(secs[-1], 3),
    }


# -- the system under test -------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def loopback(log: Path) -> Server:
    return Server("loopback expert", lambda port: [sys.executable, "-m", "experts.loopback", "--port", str(port)], "/health", log)


def restart(server: Server) -> None:
    """Start a killed server again on its old port (the gateway's config points there)."""
    with open(server.log_path, "ab") as log:
        server.proc = subprocess.Popen(server.argv(server.port), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
    server._wait_ready(30)  # noqa: SLF001 - the same readiness wait as its first start


def kill_mid_stream(server: Server, timeout: float = 30.0) -> None:
    """SIGKILL the server once it is sending streams (so some are cut mid-way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.post(f"{server.url}/loopback/faults", json={}, timeout=5).json()["streaming"] >= 3:
            break
        time.sleep(0.1)
    kill(server)


def kill(server: Server) -> None:
    if server.proc is not None:
        server.proc.kill()
        server.proc.wait(10)


def faults(server: Server, body: dict[str, Any]) -> None:
    httpx.post(f"{server.url}/loopback/faults", json=body, timeout=5).raise_for_status()


@dataclass
class System:
    out: Path
    artifact: Path
    models: list[str]
    servers: list[Server] = field(default_factory=list)
    redis: RedisServer | None = None
    a: Server | None = None  # experts [0::2]
    b: Server | None = None  # experts [1::2]
    gw: Server | None = None

    def start(self) -> System:
        self.redis = RedisServer(free_port()).start()
        self.a = loopback(self.out / "expert-a.log").start()
        self.b = loopback(self.out / "expert-b.log").start()
        self.servers = [self.a, self.b]
        experts = expert_config(self.models[0::2], self.a.url) + expert_config(self.models[1::2], self.b.url)
        config = {
            "routers": [{"name": "carrot", "kind": "carrot", "artifact": str(self.artifact.resolve())}],
            "experts": [{**e, "max_concurrency": 256} for e in experts],
            "store_url": self.redis.url,
            "timeouts": {"read": READ_TIMEOUT_S, "connect": 1.0},
            "health": {"interval_s": 1.0, "timeout_s": 1.0, "unhealthy_after": 2},
            "breaker": {"failures": 5, "cooldown_s": BREAKER_COOLDOWN_S},
            "registry_refresh_s": 1.0,
            "store_retry_s": 0.5,
        }
        path = self.out / "gateway.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.gw = Server("gateway", lambda port: [sys.executable, "-m", "switchyard.cli", "serve", "--config", str(path), "--port", str(port)],
                         "/health/ready", self.out / "gateway.log").start()
        self.servers.append(self.gw)
        self.streaming(**STREAM)
        return self

    def streaming(self, **behaviour: Any) -> None:
        for s in (self.a, self.b):
            faults(s, {"healthy": True, "behaviours": {"*": behaviour}})

    def home(self, expert: str) -> Server:
        assert self.a is not None and self.b is not None
        return self.a if expert in self.models[0::2] else self.b

    def settle(self) -> None:
        """Between scenarios: breakers closed again (a cooldown) and readiness back to ready."""
        time.sleep(BREAKER_COOLDOWN_S + 1)
        for i in range(len(PROMPTS)):  # half-open breakers close on their probe request
            httpx.post(f"{self.gw.url}/v1/chat/completions", json={**routed(i), "stream": False}, timeout=HANG_S)
        deadline = time.monotonic() + 20
        while self.ready() != "ready" and time.monotonic() < deadline:
            time.sleep(0.2)

    def ready(self) -> str:
        try:
            return str(httpx.get(f"{self.gw.url}/health/ready", timeout=3).json()["status"])
        except (httpx.HTTPError, ValueError, KeyError):
            return "unreachable"

    def alive(self) -> bool:
        try:
            return httpx.get(f"{self.gw.url}/health/live", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for s in reversed(self.servers):
            s.stop()
        if self.redis is not None:
            self.redis.stop()


RUNNING: list[System] = []  # for the SIGTERM handler


# -- scenarios ----------------------------------------------------------------------------


def check(result: dict[str, Any], name: str, ok: bool) -> None:
    result.setdefault("checks", {})[name] = bool(ok)


UPSTREAM_CODES = {"upstream_error", "upstream_unavailable", "upstream_timeout", "circuit_open", "no_healthy_expert"}


def answered(s: dict[str, Any]) -> bool:
    return s["done"] + s["error_event"] + s["http_error"] == s["requests"]


def no_loss(result: dict[str, Any], s: dict[str, Any]) -> None:
    check(result, "none lost or hung", s["lost"] == 0 and s["hung"] == 0 and s["requests"] > 0)


def soak(sys_: System, streams: int, duration: float) -> dict[str, Any]:
    pid = sys_.gw.pid
    asyncio.run(load(sys_.gw.url, streams, min(10.0, duration / 4), desc="soak warm-up"))
    before = rss_mb(pid)
    outcomes, rss = asyncio.run(load(sys_.gw.url, streams, duration, watch=lambda: rss_mb(pid), desc="soak"))
    time.sleep(2)
    after = rss_mb(pid)
    s = summarise(outcomes)
    result = {"summary": s, "rss_mb": {"before": round(before, 1), "peak": round(max(v for _, v in rss), 1), "after": round(after, 1)},
              "rss_timeline": rss, "streams_per_s": round(s["requests"] / duration, 1)}
    no_loss(result, s)
    check(result, "every request ended in [DONE], an error event or an OpenAI error", answered(s))
    check(result, "RSS after within 10% (+20 MB) of before", after <= before * 1.1 + 20)
    return result


def expert_killed(sys_: System, streams: int, duration: float) -> dict[str, Any]:
    sys_.streaming(chunks=8, chunk_delay_s=0.5)  # 4 s streams: many are in flight when it dies
    victim = sys_.home(TARGET)
    outcomes, ready = asyncio.run(load(sys_.gw.url, streams, duration, actions=[(duration * 0.3, lambda: kill_mid_stream(victim)),
                                                                             (duration * 0.7, lambda: restart(victim))],
                                       watch=sys_.ready, desc="expert killed"))
    sys_.streaming(**STREAM)
    s = summarise(outcomes)
    result = {"summary": s, "ready": ready}
    no_loss(result, s)
    check(result, "streams cut mid-way ended with an error event", s["error_event"] > 0)
    check(result, "later requests fell back to the other server's experts", s["fallbacks"] > 0)
    check(result, "gateway alive", sys_.alive())
    return result


def expert_silent(sys_: System, streams: int, duration: float) -> dict[str, Any]:
    silent = TARGET
    home = sys_.home(silent)
    faults(home, {"behaviours": {silent: {"delay_s": 3600}}})

    def body(i: int) -> dict[str, Any]:  # every fourth request names the silent expert directly
        return {**routed(i), "model": silent} if i % 4 == 0 else routed(i)

    outcomes, _ = asyncio.run(load(sys_.gw.url, streams, duration, body=body, desc="expert silent"))
    faults(home, {"behaviours": {silent: None}})
    s = summarise(outcomes)
    named = [o for o in outcomes if o.asked == silent]
    codes = Counter(o.code for o in named)
    result = {"summary": s, "silent_expert": silent, "named": len(named), "named_codes": dict(codes),
              "slowest_named_s": round(max((o.seconds for o in named), default=0.0), 3)}
    no_loss(result, s)
    check(result, "named requests: 504 upstream_timeout (read timeout) or, once its breaker opened, 503 circuit_open",
          named and codes["upstream_timeout"] + codes["circuit_open"] == len(named) and codes["upstream_timeout"] > 0)
    check(result, "routed requests answered by another expert",
          any(o.kind == "done" and o.expert != silent for o in outcomes) and not any(o.expert == silent and o.kind == "done" for o in outcomes))
    return result


def redis_outage(sys_: System, streams: int, duration: float) -> dict[str, Any]:
    assert sys_.redis is not None
    outcomes, ready = asyncio.run(load(sys_.gw.url, streams, duration, actions=[(duration * 0.25, sys_.redis.stop),
                                                                             (duration * 0.6, sys_.redis.start)],
                                       watch=sys_.ready, desc="redis outage"))
    deadline = time.monotonic() + 10
    while sys_.ready() != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    s = summarise(outcomes)
    states = [st for _, st in ready]
    result = {"summary": s, "ready": ready, "final": sys_.ready()}
    no_loss(result, s)
    check(result, "no request failed for the store's sake (errors only from experts: timeouts, open breakers)",
          set(s["codes"]) <= UPSTREAM_CODES)
    check(result, "readiness said degraded during the outage", "degraded" in states)
    check(result, "readiness back to ready after it", result["final"] == "ready")
    return result


BAD_INPUTS: list[tuple[str, bytes, dict[str, str]]] = [
    ("not JSON", b"{not json", {}),
    ("JSON array", b"[1, 2]", {}),
    ("no messages", b'{"model": "auto"}', {}),
    ("empty messages", b'{"model": "auto", "messages": []}', {}),
    ("messages a string", b'{"model": "auto", "messages": "hi"}', {}),
    ("model a number", b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', {}),
    ("unknown role", b'{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}', {}),
    ("content a dict", b'{"model": "auto", "messages": [{"role": "user", "content": {"a": 1}}]}', {}),
    ("routing.k a string", b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "routing": {"k": "many"}}', {}),
    ("stream_options a list", b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream_options": [1]}', {}),
    ("cost weight out of range", b'{"model": "carrot@7", "messages": [{"role": "user", "content": "x"}]}', {}),
    ("routing not an object", b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "routing": 3}', {}),
    ("stream not a bool", b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": [1]}', {}),
    ("unknown model", b'{"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}', {}),
    ("invalid UTF-8", b'{"model": "auto", "messages": [{"role": "user", "content": "\xff\xfe"}]}', {}),
    ("oversized (5 MB)", b'{"model": "auto", "messages": [{"role": "user", "content": "' + b"x" * 5_000_000 + b'"}]}', {}),
    ("wrong content type", b"model=auto", {"content-type": "application/x-www-form-urlencoded"}),
]


def bad_inputs(url: str) -> list[dict[str, Any]]:
    """Each bad request's status and whether it came back as OpenAI error JSON."""
    rows = []
    with httpx.Client(timeout=30) as c:
        for name, body, headers in BAD_INPUTS:
            r = c.post(f"{url}/v1/chat/completions", content=body, headers={"content-type": "application/json", **headers})
            rows.append({"case": name, "status": r.status_code, "openai_error": _error_code(r.content) is not None
                         or (r.headers.get("content-type", "").startswith("application/json") and "error" in r.json())})
    return rows


def schemathesis(url: str, examples: int, report: Path) -> dict[str, Any]:
    """schemathesis against /openapi.json with the not_a_server_error check alone."""
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(exe).exists():
        raise BenchError("schemathesis is not installed (pip install -e '.[dev]')")
    cmd = [exe, "run", f"{url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", str(examples),
           "--request-timeout", "30", "--generation-deterministic", "--report", "junit", "--report-junit-path", str(report)]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-3:]
    return {"exit_code": proc.returncode, "examples_per_operation": examples, "summary": tail, "report": str(report)}


def bad_input(sys_: System, examples: int) -> dict[str, Any]:
    rows = bad_inputs(sys_.gw.url)
    st = schemathesis(sys_.gw.url, examples, sys_.out / "schemathesis.xml")
    result = {"cases": rows, "schemathesis": st}
    check(result, "every bad request: 4xx with an OpenAI error", all(400 <= r["status"] < 500 and r["openai_error"] for r in rows))
    check(result, "schemathesis: no server errors", st["exit_code"] == 0)
    check(result, "gateway alive", sys_.alive())
    return result


# -- report ---------------------------------------------------------------------------------


def plot_rss(timeline: list[tuple[float, float]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([t for t, _ in timeline], [v for _, v in timeline])
    ax.set_xlabel("seconds into the soak")
    ax.set_ylabel("gateway RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict[str, Any]) -> str:
    lines = ["# Reliability suite", "", f"`{results['command']}`", "",
             "| scenario | requests | [DONE] | error event | OpenAI HTTP error | fallbacks | lost | hung | p99 s | checks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["scenarios"].items():
        s = r.get("summary")
        ok = f"{sum(r['checks'].values())}/{len(r['checks'])}"
        if s:
            lines.append(f"| {name} | {s['requests']} | {s['done']} | {s['error_event']} | {s['http_error']} | {s['fallbacks']} | "
                         f"{s['lost']} | {s['hung']} | {s['p99_s']} | {ok} |")
        else:
            lines.append(f"| {name} | {len(r['cases'])} + schemathesis | | | {len(r['cases'])} | | 0 | 0 | | {ok} |")
    soak_r = results["scenarios"].get("soak")
    if soak_r:
        m = soak_r["rss_mb"]
        lines += ["", f"Soak: {results['streams']} concurrent streams for {results['duration_s']} s, {soak_r['streams_per_s']} streams/s; "
                  f"gateway RSS {m['before']} MB before, {m['peak']} MB peak, {m['after']} MB after (rss.png)."]
    lines += ["", "Checks:", ""]
    for name, r in results["scenarios"].items():
        lines += [f"- {name}: " + "; ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in r["checks"].items())]
    return "\n".join(lines) + "\n"


def run(out: Path, duration: float, streams: int, fault_s: float, examples: int, data: Path, artifact: Path | None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    if artifact is None:
        artifact = out / "carrot.npz"
        models = ensure_artifact(data, artifact)
    else:
        from routers.artifacts import load_router  # noqa: PLC0415

        models = list(load_router(artifact).models)
    sys_ = System(out, artifact, models)
    RUNNING.append(sys_)
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.reliability", *sys.argv[1:]]) if __name__ == "__main__" else "run()",
        "duration_s": duration, "streams": streams, "fault_s": fault_s, "cpus": os.cpu_count(), "scenarios": {},
    }
    try:
        sys_.start()
        sc = results["scenarios"]
        sc["soak"] = soak(sys_, streams, duration)
        sc["expert-killed"] = expert_killed(sys_, streams, fault_s)
        sys_.settle()
        sc["expert-silent"] = expert_silent(sys_, streams, fault_s)
        sys_.settle()
        sc["redis-outage"] = redis_outage(sys_, streams, fault_s)
        sc["bad-input"] = bad_input(sys_, examples)
        check(sc["bad-input"], "gateway never restarted", sys_.gw.proc is not None and sys_.gw.proc.poll() is None)
    finally:
        sys_.stop()
    results["passed"] = all(all(r["checks"].values()) for r in results["scenarios"].values())
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results))
    plot_rss(results["scenarios"]["soak"]["rss_timeline"], out / "rss.png")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/reliability"))
    p.add_argument("--duration", type=float, default=180.0, help="soak seconds")
    p.add_argument("--streams", type=int, default=200, help="concurrent streams")
    p.add_argument("--fault-seconds", type=float, default=20.0, help="seconds of load in each fault scenario")
    p.add_argument("--examples", type=int, default=30, help="schemathesis examples per operation")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("SWITCHYARD_DATA", ROOT.parent / "shared" / "data")) / "routerbench")
    p.add_argument("--artifact", type=Path, default=None, help="a carrot artifact to use instead of training one on --data")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.streams < 1 or args.fault_seconds <= 0:
        print("error: --duration, --streams and --fault-seconds must be positive", file=sys.stderr)
        return 2
    def on_term(*_: Any) -> None:  # stop every child process, even from inside the event loop
        for system in RUNNING:
            system.stop()
        os._exit(130)

    signal.signal(signal.SIGTERM, on_term)
    try:
        results = run(args.out, args.duration, args.streams, args.fault_seconds, args.examples, args.data, args.artifact)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (BenchError, RuntimeError, OSError, ValueError, httpx.HTTPError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    print(report(results))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
