#!/usr/bin/env python
"""How many milliseconds does the gateway add per request over calling an expert directly?

Starts the loopback expert (instant answers) and the gateway (`switchyard serve`, carrot router
plus the 11 RouterBench experts, all pointing at the loopback) in their own processes on free
127.0.0.1 ports, then sends N sequential requests per mode through the official `openai` client,
the modes interleaved in a shuffled order each iteration so that noise hits them all alike:

  direct          straight to the loopback expert
  gw-expert       through the gateway, naming an expert (model="gpt-4-1106-preview"): no routing
  gw-routed       through the gateway, routed (model="carrot"); one fixed prompt, so its query
                  embedding is cached after the first request and the figure is the routing
                  step itself, not the embedding model
  (and the same three streaming, timed to the end of the stream, unless --no-stream)

The gateway's added latency is the difference of percentiles against `direct` (and, less noisy,
the median of the per-iteration paired differences). A second part times the upstream clients
in-process against the same loopback expert (measure before you choose the upstream client):
the gateway's own backend, a pooled httpx.AsyncClient, openai.AsyncOpenAI, and litellm when it
is importable.

    .venv/bin/python benchmarks/gateway_latency.py [--requests N] [--out DIR] [--data PATH]

Writes DIR/latency.json (summary and raw samples) and DIR/latency.png (CDF per mode). Both
servers run on one machine with the client, so the figures include CPU contention between
three processes; compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import openai  # noqa: E402
from tqdm import tqdm  # noqa: E402

EXPERT = "gpt-4-1106-preview"  # a RouterBench model: the gateway's config has an expert of that name
ROUTER = "carrot"
PROMPT = "What is the capital of France? Answer in one word."
MESSAGES = [{"role": "user", "content": PROMPT}]
BUDGET_MS = {"p50": 3.0, "p99": 10.0}  # what the gateway may add before it is worth a look
READY_TIMEOUT_S = 180.0  # the gateway loads the embedding model before it is ready


class BenchError(Exception):
    """A failure worth one line to the user (bad input, a server that did not start, ...)."""


# -- servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One uvicorn server in its own process, its output in a log file; stop() always kills it."""

    def __init__(self, name: str, argv: Callable[[int], list[str]], health_path: str, log_path: Path) -> None:
        self.name, self.argv, self.health_path, self.log_path = name, argv, health_path, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:  # to attach a profiler (py-spy record -p PID)
        return self.proc.pid if self.proc else None

    def _log_tail(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def start(self, timeout: float = READY_TIMEOUT_S, attempts: int = 3) -> Server:
        for attempt in range(attempts):
            self.port = free_port()
            with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(
                    self.argv(self.port), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it
                )
            try:
                self._wait_ready(timeout)
                return self
            except BenchError:
                self.stop()
                if "address already in use" in self._log_tail().lower() and attempt + 1 < attempts:
                    continue  # lost the race for the free port: try another
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    tail = self._log_tail()
                    raise BenchError(f"{self.name} exited with status {self.proc.returncode} before it was ready"
                                     + (f": {tail}" if tail else f" (log: {self.log_path})"))
                try:
                    if client.get(self.url + self.health_path).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.name} not ready after {timeout:.0f}s (log: {self.log_path})")
                time.sleep(0.1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully (and cProfile writes its file)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def loopback_server(log_path: Path) -> Server:
    return Server(
        "loopback expert",
        lambda port: [sys.executable, "-m", "uvicorn", "experts.loopback:build_loopback_app", "--factory",
                      "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
        "/health",
        log_path,
    )


def gateway_server(config: Path, log_path: Path, profile: Path | None) -> Server:
    prefix = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    return Server(
        "gateway",
        lambda port: prefix + ["-m", "switchyard.cli", "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        "/health/ready",
        log_path,
    )


# -- the gateway's config -------------------------------------------------------------------


def ensure_artifact(data: Path, artifact: Path) -> list[str]:
    """The carrot artifact trained on `data` (trained here if missing or trained on other data)."""
    from routers.artifacts import ArtifactError, load_router  # noqa: PLC0415

    if artifact.exists():
        try:
            router = load_router(artifact)
            header = getattr(router, "header", {})
            trained_on = header.get("trained_on")
            if header.get("kind") == ROUTER and trained_on and Path(trained_on).resolve() == data.resolve():
                return list(router.models)
        except ArtifactError:
            pass  # unreadable or foreign: train over it
    from switchyard.training import train_router  # noqa: PLC0415 - loads torch

    print(f"training {ROUTER} on {data} -> {artifact} (embeddings are cached on disk after the first time)", flush=True)
    summary = train_router(ROUTER, data, artifact)
    print(f"  {summary['rows']} prompts, {len(summary['models'])} models, {summary['seconds']}s", flush=True)
    return list(summary["models"])


def write_gateway_config(out: Path, artifact: Path, models: list[str], expert_url: str) -> Path:
    from switchyard.demo import write_config  # noqa: PLC0415 - the demo's config: 11 priced experts

    if EXPERT not in models:
        raise BenchError(f"the data has no model {EXPERT!r} to name as an expert (models: {', '.join(models)})")
    return write_config(out, artifact, models, expert_url)


# -- statistics -----------------------------------------------------------------------------


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


def added(mode: list[float], base: list[float]) -> dict[str, float]:
    s, b = stats(mode), stats(base)
    paired = np.asarray(mode) - np.asarray(base)  # same iteration, so the same moment's noise
    return {"p50": s["p50"] - b["p50"], "p90": s["p90"] - b["p90"], "p99": s["p99"] - b["p99"],
            "mean": s["mean"] - b["mean"], "paired_median": float(np.median(paired))}


# -- part 1: through the gateway vs direct --------------------------------------------------


class Mode:
    def __init__(self, key: str, label: str, client: openai.OpenAI, model: str, stream: bool, baseline: str | None,
                 routed: bool) -> None:
        self.key, self.label, self.client, self.model = key, label, client, model
        self.stream, self.baseline, self.routed = stream, baseline, routed
        self.samples: list[float] = []
        self.route_ms: list[float] = []

    def call(self) -> float:
        """One request; returns its latency in ms (the check of the answer is outside the timing)."""
        if not self.stream:
            t0 = time.perf_counter()
            resp = self.client.chat.completions.create(model=self.model, messages=MESSAGES)
            elapsed = time.perf_counter() - t0
            text, extra = resp.choices[0].message.content, resp.model_extra or {}
        else:
            t0 = time.perf_counter()
            chunks = list(self.client.chat.completions.create(model=self.model, messages=MESSAGES, stream=True))
            elapsed = time.perf_counter() - t0  # to the end of the stream
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            extra = (chunks[0].model_extra or {}) if chunks else {}
        if not text:
            raise BenchError(f"{self.label}: empty answer")
        if self.routed:
            routing = extra.get("routing") or {}
            if routing.get("router") != ROUTER:
                raise BenchError(f"{self.label}: the answer carries no routing by {ROUTER!r}")
            self.route_ms.append(float(routing.get("route_ms", float("nan"))))
        return elapsed * 1000


def run_modes(modes: list[Mode], n: int, warmup: int, seed: int) -> None:
    rng = random.Random(seed)
    order = list(modes)
    for m in modes:  # one request each first: a broken setup fails here, not after the warm-up
        m.call()
    for _ in tqdm(range(warmup), desc="warm-up", unit="iter", leave=False):
        rng.shuffle(order)
        for m in order:
            m.call()
    for m in modes:
        m.route_ms.clear()
    for _ in tqdm(range(n), desc=f"{len(modes)} modes interleaved", unit="iter"):
        rng.shuffle(order)
        for m in order:
            m.samples.append(m.call())


# -- part 2: upstream clients, in-process ---------------------------------------------------


def _event_loop_runner() -> tuple[Callable[[Awaitable[Any]], Any], str]:
    try:
        import uvloop  # noqa: PLC0415 - the gateway runs on uvloop when it is installed

        return uvloop.run, f"uvloop {uvloop.__version__}"
    except ImportError:
        return asyncio.run, "asyncio"


async def compare_clients(expert_url: str, m: int, warmup: int, seed: int) -> dict[str, Any]:
    from experts.backends.openai_http import OpenAIHTTPBackend  # noqa: PLC0415
    from experts.spec import ExpertSpec  # noqa: PLC0415

    base = f"{expert_url}/v1"
    payload = {"model": EXPERT, "messages": MESSAGES}
    calls: dict[str, tuple[str, Callable[[], Awaitable[str | None]]]] = {}
    closers: list[Callable[[], Awaitable[Any]]] = []
    notes: dict[str, str] = {}
    versions = {"httpx": httpx.__version__, "openai": openai.__version__}

    backend = OpenAIHTTPBackend()
    spec = ExpertSpec(name=EXPERT, base_url=base)
    closers.append(backend.aclose)

    async def gateway_backend() -> str | None:
        data = await backend.complete(spec, {"messages": MESSAGES})
        return data["choices"][0]["message"]["content"]

    calls["gateway-backend"] = ("gateway's OpenAIHTTPBackend (httpx)", gateway_backend)

    hx = httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))
    closers.append(hx.aclose)

    async def httpx_json() -> str | None:
        resp = await hx.post(f"{base}/chat/completions", json=payload)
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"]

    calls["httpx"] = ("httpx.AsyncClient, pooled, JSON", httpx_json)

    oa = openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0, timeout=30.0)
    closers.append(oa.close)

    async def openai_async() -> str | None:
        resp = await oa.chat.completions.create(model=EXPERT, messages=MESSAGES)
        return resp.choices[0].message.content

    calls["openai"] = ("openai.AsyncOpenAI", openai_async)

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price list at import
    try:
        import litellm  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001 - optional: any import failure means "skip"
        notes["litellm"] = f"skipped: litellm is not importable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    else:
        litellm.suppress_debug_info = True
        litellm.telemetry = False
        try:
            from importlib.metadata import version  # noqa: PLC0415

            versions["litellm"] = version("litellm")
        except Exception:  # noqa: BLE001
            versions["litellm"] = "?"

        async def via_litellm() -> str | None:
            resp = await litellm.acompletion(model=f"openai/{EXPERT}", messages=MESSAGES, api_base=base, api_key="x")
            return resp.choices[0].message.content

        calls["litellm"] = ("litellm.acompletion", via_litellm)

    rng = random.Random(seed)
    order = list(calls)
    samples: dict[str, list[float]] = {k: [] for k in calls}
    try:
        for key in order:
            if not await calls[key][1]():
                raise BenchError(f"{calls[key][0]}: empty answer")
        for _ in tqdm(range(warmup), desc="clients warm-up", unit="iter", leave=False):
            rng.shuffle(order)
            for key in order:
                await calls[key][1]()
        for _ in tqdm(range(m), desc=f"{len(calls)} upstream clients interleaved", unit="iter"):
            rng.shuffle(order)
            for key in order:
                t0 = time.perf_counter()
                await calls[key][1]()
                samples[key].append((time.perf_counter() - t0) * 1000)
    finally:
        for close in closers:
            try:
                await close()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass
    return {"labels": {k: v[0] for k, v in calls.items()}, "samples": samples, "notes": notes, "versions": versions}


# -- output ---------------------------------------------------------------------------------


def print_modes(modes: list[Mode], summary: dict[str, Any]) -> None:
    w = max([len(m.label) for m in modes] + [len("added by the gateway (ms)")]) + 2
    print()
    print(f"{'mode (ms per request)':<{w}}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for m in modes:
        s = summary["modes"][m.key]
        print(f"{m.label:<{w}}{s['n']:>6}{s['p50']:>9.3f}{s['p90']:>9.3f}{s['p99']:>9.3f}{s['mean']:>9.3f}")
    print()
    print(f"{'added by the gateway (ms)':<{w}}{'over':>14}{'Δp50':>9}{'Δp99':>9}{'Δmean':>9}{'paired Δp50':>13}  budget")
    for m in modes:
        if m.baseline is None:
            continue
        a = summary["added"][m.key]
        ok = a["p50"] <= BUDGET_MS["p50"] and a["p99"] <= BUDGET_MS["p99"]
        print(f"{m.label:<{w}}{m.baseline:>14}{a['p50']:>9.3f}{a['p99']:>9.3f}{a['mean']:>9.3f}{a['paired_median']:>13.3f}  "
              f"{'ok' if ok else 'OVER'} (<= {BUDGET_MS['p50']:g} / {BUDGET_MS['p99']:g})")
    for m in modes:
        if m.routed and m.route_ms:
            print(f"  {m.label}: the gateway's own route_ms (plan step) median {np.nanmedian(m.route_ms):.3f}, "
                  f"p99 {np.nanpercentile(m.route_ms, 99):.3f}")


def print_clients(clients: dict[str, Any]) -> None:
    labels = clients["labels"]
    head = "upstream client, in-process (ms per call)"
    w = max([len(v) for v in labels.values()] + [len(head)]) + 2
    print()
    print(f"{head:<{w}}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for key, label in labels.items():
        s = clients["stats"][key]
        print(f"{label:<{w}}{s['n']:>6}{s['p50']:>9.3f}{s['p90']:>9.3f}{s['p99']:>9.3f}{s['mean']:>9.3f}")
    for key, note in clients["notes"].items():
        print(f"  {key}: {note}")


def plot(path: Path, modes: list[Mode], clients: dict[str, Any] | None) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    groups: list[tuple[str, list[tuple[str, list[float]]]]] = []
    plain = [(m.label, m.samples) for m in modes if not m.stream and m.samples]
    stream = [(m.label, m.samples) for m in modes if m.stream and m.samples]
    if plain:
        groups.append(("non-streaming, openai client", plain))
    if stream:
        groups.append(("streaming (to the end of the stream)", stream))
    if clients:
        groups.append(("upstream clients, in-process", [(clients["labels"][k], v) for k, v in clients["samples"].items()]))
    if not groups:
        return
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    for ax, (title, series) in zip(axes[0], groups):
        hi = max(np.percentile(v, 99.5) for _, v in series) * 1.1
        for label, v in series:
            x = np.sort(np.asarray(v))
            ax.plot(x, np.arange(1, x.size + 1) / x.size, label=label)
        ax.set_xlim(0, hi)
        ax.set_ylim(0, 1)
        ax.set_xlabel("latency (ms); x cut at the p99.5")
        ax.set_ylabel("fraction of requests")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def show_profile(path: Path, top: int = 25) -> None:
    import pstats  # noqa: PLC0415

    if not path.exists():
        print(f"no profile was written to {path}")
        return
    print(f"\ngateway profile ({path}), top {top} by own time:")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)
    print(f"gateway profile, top {top} by cumulative time:")
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(top)


# -- main -----------------------------------------------------------------------------------


def default_data() -> Path:
    return Path(os.environ.get("SWITCHYARD_DATA", ROOT.parent / "shared" / "data")) / "routerbench"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000, help="measured requests per mode (default 1000)")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured requests per mode first (default 50)")
    p.add_argument("--client-calls", type=int, default=1000, help="measured calls per upstream client (default 1000; 0 skips)")
    p.add_argument("--out", type=Path, default=Path("out/bench"), help="folder for latency.json, latency.png, logs (default out/bench)")
    p.add_argument("--data", type=Path, default=None, help="RouterBench folder (default $SWITCHYARD_DATA/routerbench)")
    p.add_argument("--no-stream", action="store_true", help="skip the three streaming modes")
    p.add_argument("--clients-only", action="store_true", help="only the upstream-client comparison (no gateway, no data)")
    p.add_argument("--profile-gateway", action="store_true",
                   help="run the gateway under cProfile and print its top costs (inflates the gateway's figures)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.requests < 1:
        p.error("--requests must be at least 1")
    if args.warmup < 0 or args.client_calls < 0:
        p.error("--warmup and --client-calls must not be negative")
    if args.clients_only and args.client_calls == 0:
        p.error("--clients-only needs --client-calls > 0")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    data: Path = (args.data or default_data()).expanduser().resolve()
    if not args.clients_only:
        if not data.exists():
            raise BenchError(f"{data}: no such data folder (pass --data or set SWITCHYARD_DATA)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create the output folder {out}: {exc.strerror}") from None

    models: list[str] = []
    if not args.clients_only:
        models = ensure_artifact(data, out / f"{ROUTER}.npz")

    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "gateway_latency",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "config": {"requests": args.requests, "warmup": args.warmup, "client_calls": args.client_calls, "prompt": PROMPT,
                   "expert": EXPERT, "router": ROUTER, "stream": not args.no_stream, "data": str(data),
                   "gateway_profiled": bool(args.profile_gateway), "budget_ms": BUDGET_MS},
    }
    profile = (out / "gateway.prof").resolve() if args.profile_gateway else None
    expert = loopback_server(out / "loopback.log")
    gateway: Server | None = None
    modes: list[Mode] = []
    clients: dict[str, Any] | None = None
    try:
        expert.start(timeout=60)
        print(f"loopback expert on {expert.url}", flush=True)
        if not args.clients_only:
            config = write_gateway_config(out, out / f"{ROUTER}.npz", models, expert.url)
            gateway = gateway_server(config.resolve(), out / "gateway.log", profile)
            print("starting the gateway (it loads the embedding model first) ...", flush=True)
            gateway.start()
            print(f"gateway on {gateway.url} (pid {gateway.pid}, {len(models)} experts, router {ROUTER}); its log: {out / 'gateway.log'}",
                  flush=True)
            direct = openai.OpenAI(base_url=f"{expert.url}/v1", api_key="x", max_retries=0, timeout=30.0)
            via = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0, timeout=30.0)
            modes = [
                Mode("direct", "direct (loopback expert)", direct, EXPERT, False, None, False),
                Mode("gw-expert", f"gateway, model={EXPERT}", via, EXPERT, False, "direct", False),
                Mode("gw-routed", f"gateway, model={ROUTER} (routed)", via, ROUTER, False, "direct", True),
            ]
            if not args.no_stream:
                modes += [
                    Mode("direct-stream", "direct, stream", direct, EXPERT, True, None, False),
                    Mode("gw-expert-stream", f"gateway, model={EXPERT}, stream", via, EXPERT, True, "direct-stream", False),
                    Mode("gw-routed-stream", f"gateway, model={ROUTER}, stream", via, ROUTER, True, "direct-stream", True),
                ]
            try:
                run_modes(modes, args.requests, args.warmup, args.seed)
            finally:
                direct.close()
                via.close()
            # The gateway's work is done: stop it so it is idle and the client comparison has the CPU.
            gateway.stop()
        if args.client_calls:
            runner, loop_name = _event_loop_runner()
            clients = runner(compare_clients(expert.url, args.client_calls, args.warmup, args.seed))
            clients["event_loop"] = loop_name
    finally:
        if gateway is not None:
            gateway.stop()
        expert.stop()

    if modes:
        by_key = {m.key: m for m in modes}
        result["modes"] = {m.key: {"label": m.label, "stream": m.stream, **stats(m.samples)} for m in modes}
        result["added"] = {m.key: {"over": m.baseline, **added(m.samples, by_key[m.baseline].samples)}
                           for m in modes if m.baseline}
        result["route_ms"] = {m.key: {"median": float(np.nanmedian(m.route_ms)), "p99": float(np.nanpercentile(m.route_ms, 99))}
                              for m in modes if m.routed and m.route_ms}
        result["versions"] = {"openai": openai.__version__, "httpx": httpx.__version__}
        print_modes(modes, result)
    if clients is not None:
        clients["stats"] = {k: stats(v) for k, v in clients["samples"].items()}
        print_clients(clients)
        result["clients"] = {"event_loop": clients["event_loop"], "versions": clients["versions"], "notes": clients["notes"],
                             "stats": {k: {"label": clients["labels"][k], **v} for k, v in clients["stats"].items()}}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["samples_ms"] = {
        **{m.key: [round(x, 4) for x in m.samples] for m in modes},
        **({f"client:{k}": [round(x, 4) for x in v] for k, v in clients["samples"].items()} if clients else {}),
    }
    json_path, png_path = out / "latency.json", out / "latency.png"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    plot(png_path, modes, clients)
    print(f"\nwrote {json_path} and {png_path} ({result['seconds']}s)")
    if profile is not None:
        show_profile(profile)
    return result


def guarded(work: Callable[[], object]) -> int:
    """Run a benchmark: servers stopped on Ctrl-C or SIGTERM, failures as one line and an exit
    status (benchmarks/grouping.py runs through it too)."""

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # so the finally blocks stop the servers

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the parent shell ignores it
    try:
        work()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (BenchError, ValueError, OSError, openai.OpenAIError, httpx.HTTPError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return guarded(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
