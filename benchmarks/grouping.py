#!/usr/bin/env python
"""Online grouping off, on with a fixed window, and on with the adaptive window: requests per
second and the latency the gateway adds, at concurrency 1, 16 and 64, against loopback experts.

Starts the loopback expert and three gateways (`switchyard serve`, carrot over the 11
RouterBench experts): grouping off (per-request routing), grouping on with a fixed window
(`grouping.window_ms`, `grouping.max_batch`, `adaptive: false`) and grouping on with the
adaptive window (no wait when no other request is on its way to routing), each in its own process on a free
127.0.0.1 port. For each concurrency, closed-loop workers send routed requests (model="carrot")
with an asyncio httpx client; the four modes (direct to the loopback expert and the three
gateways) run one
after another in a shuffled order, `--rounds` times, so that noise hits them alike. By
default the routed requests cycle through a warmed pool of 64 RouterBench prompts, so their
embeddings are cached and the figures are routing and dispatch; with `--fresh` every request
carries a prompt the gateway has not seen (every gateway gets the same sequence), so each one is
embedded as live traffic is (on a busy CPU the embedding model then dominates).

Added latency = the gateway's percentile minus the direct call's at the same concurrency. The
mean route batch (queries per router.predict) comes from each gateway's /metrics.

    .venv/bin/python benchmarks/grouping.py [--requests N] [--rounds R] [--out DIR] [--fresh]

Writes DIR/grouping.json and DIR/grouping.png. Everything runs on one machine (client,
gateways, expert): compare the modes within a run, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.gateway_latency import (  # noqa: E402
    EXPERT,
    ROUTER,
    BenchError,
    Server,
    default_data,
    ensure_artifact,
    gateway_server,
    guarded,
    loopback_server,
    stats,
    write_gateway_config,
)

CONCURRENCY = (1, 16, 64)
MODES = ("direct", "grouping off", "grouping on", "grouping adaptive")


def write_configs(out: Path, artifact: Path, models: list[str], expert_url: str, window_ms: float, max_batch: int) -> dict[str, Path]:
    paths = {}
    on = {"enabled": True, "window_ms": window_ms, "max_batch": max_batch}
    for mode, grouping in (("grouping off", {"enabled": False}), ("grouping on", {**on, "adaptive": False}),
                           ("grouping adaptive", {**on, "adaptive": True})):
        folder = out / mode.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        path = write_gateway_config(folder, artifact, models, expert_url)
        config = yaml.safe_load(path.read_text())
        config["grouping"] = grouping
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths[mode] = path.resolve()
    return paths


def start_all(servers: list[Server]) -> None:
    """Start the servers side by side (each gateway loads the embedding model first)."""
    errors: list[BaseException] = []

    def start(s: Server) -> None:
        try:
            s.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def batch_totals(url: str) -> tuple[float, float]:
    """(predict calls, queries routed) so far, from the gateway's route batch histogram."""
    count = total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f'switchyard_route_batch_size_count{{router="{ROUTER}"}}'):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f'switchyard_route_batch_size_sum{{router="{ROUTER}"}}'):
            total = float(line.rsplit(" ", 1)[1])
    return count, total


async def burst(url: str, model: str, prompts: list[str], concurrency: int) -> tuple[list[float], float, list[str]]:
    """`len(prompts)` requests from `concurrency` closed-loop workers: latencies (ms) of the
    answered ones, wall time (s), and the transport failures (a dropped connection is counted,
    not retried, so it cannot hide in the figures; each as "ExceptionType: message")."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    dropped: list[str] = []
    queue = iter(prompts)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:

        async def worker() -> None:
            for prompt in queue:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": prompt}]})
                except httpx.TransportError as exc:
                    dropped.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                elapsed = time.perf_counter() - t0
                if r.status_code != 200 or not r.json()["choices"][0]["message"]["content"]:
                    raise BenchError(f"{url} answered {r.status_code}: {r.text[:200]}")
                latencies.append(elapsed * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started, dropped


def prompt_source(data: Path, cached: bool, seed: int) -> tuple[list[str], bool]:
    """A pool of 64 prompts to repeat (cached), or every distinct prompt once, shuffled."""
    from evaluation.loaders import load_dataset  # noqa: PLC0415

    prompts = list(dict.fromkeys(load_dataset(data).prompts))  # train and test: speed, not accuracy, is measured
    random.Random(seed).shuffle(prompts)
    return (prompts[:64] if cached else prompts), cached


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    data = (args.data or default_data()).expanduser().resolve()
    if not data.exists():
        raise BenchError(f"{data}: no such data folder (pass --data or set SWITCHYARD_DATA)")
    out.mkdir(parents=True, exist_ok=True)
    models = ensure_artifact(data, out / f"{ROUTER}.npz")
    pool, cached = prompt_source(data, not args.fresh, args.seed)
    per_c = {c: max(c, args.requests * c // 16) if c > 1 else max(1, args.requests // 4) for c in CONCURRENCY}
    need = sum(per_c.values()) * args.rounds
    if not cached and len(pool) < need + 64:
        raise BenchError(f"the data has {len(pool)} distinct prompts, fewer than the {need + 64} this run needs: "
                         f"lower --requests or --rounds, or drop --fresh")
    started = time.perf_counter()
    expert = loopback_server(out / "loopback.log")
    gateways: dict[str, Server] = {}
    samples: dict[tuple[int, str], list[float]] = {}
    walls: dict[tuple[int, str], float] = {}
    batches: dict[tuple[int, str], list[float]] = {}
    dropped: dict[tuple[int, str], list[str]] = {}
    # The seeded shuffle gives each position in `modes` its own place in every round's order, and
    # on 2 shared cores that place alone moved throughput by 10-20% (two identical gateways
    # differed that much); --swap exchanges the two grouping modes' positions, the control.
    modes = list(MODES)
    if args.swap:
        i, j = modes.index("grouping on"), modes.index("grouping adaptive")
        modes[i], modes[j] = modes[j], modes[i]
    try:
        expert.start(timeout=60)
        configs = write_configs(out, out / f"{ROUTER}.npz", models, expert.url, args.window_ms, args.max_batch)
        gateways = {m: gateway_server(configs[m], out / f"{m.replace(' ', '-')}.log", None) for m in modes[1:]}
        print(f"starting {len(gateways)} gateways (each loads the embedding model first) ...", flush=True)
        start_all(list(gateways.values()))
        urls = {"direct": expert.url, **{m: s.url for m, s in gateways.items()}}
        model = {m: ROUTER for m in modes} | {"direct": EXPERT}
        warm = pool[:64]
        for m in modes:  # warm-up: connections, code paths; with --cached also every pooled prompt's embedding
            asyncio.run(burst(urls[m], model[m], warm, 8))
        fresh = iter(pool[64:] if not cached else [])
        rng = random.Random(args.seed)
        cells = [(c, r) for c in CONCURRENCY for r in range(args.rounds)]
        with tqdm(total=len(cells) * len(modes), desc="cells (concurrency x round x mode)", unit="cell") as bar:
            for c, _ in cells:
                n = per_c[c]
                prompts = [pool[i % len(pool)] for i in range(n)] if cached else [next(fresh) for _ in range(n)]
                order = list(modes)
                rng.shuffle(order)
                for m in order:
                    before = batch_totals(urls[m]) if m != "direct" else (0.0, 0.0)
                    lat, wall, lost = asyncio.run(burst(urls[m], model[m], prompts, c))
                    dropped.setdefault((c, m), []).extend(lost)
                    samples.setdefault((c, m), []).extend(lat)
                    walls[(c, m)] = walls.get((c, m), 0.0) + wall
                    if m != "direct":
                        after = batch_totals(urls[m])
                        batches.setdefault((c, m), []).extend([after[0] - before[0], after[1] - before[1]])
                    bar.update()
    finally:
        for s in gateways.values():
            s.stop()
        expert.stop()

    rows = []
    for c in CONCURRENCY:
        base = stats(samples[(c, "direct")])
        for m in MODES:
            s = stats(samples[(c, m)])
            calls = sum(batches.get((c, m), [0.0, 0.0])[0::2])
            queries = sum(batches.get((c, m), [0.0, 0.0])[1::2])
            rows.append({"concurrency": c, "mode": m, "requests": s["n"], "dropped": len(dropped[(c, m)]), "dropped_why": sorted(set(dropped[(c, m)])),
                         "rps": s["n"] / walls[(c, m)], "p50_ms": s["p50"],
                         "p99_ms": s["p99"], "added_p50_ms": None if m == "direct" else s["p50"] - base["p50"],
                         "added_p99_ms": None if m == "direct" else s["p99"] - base["p99"],
                         "mean_route_batch": None if m == "direct" or not calls else queries / calls})
    result = {"benchmark": "grouping", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
              "config": {"requests_at_16": args.requests, "rounds": args.rounds, "window_ms": args.window_ms, "max_batch": args.max_batch,
                         "cached_prompts": cached, "data": str(data), "per_concurrency": per_c},
              "rows": rows, "seconds": round(time.perf_counter() - started, 1)}
    show(rows, cached, args)
    (out / "grouping.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, out / "grouping.png", cached)
    print(f"\nwrote {out / 'grouping.json'} and {out / 'grouping.png'} ({result['seconds']}s)")
    return result


def show(rows: list[dict[str, Any]], cached: bool, args: argparse.Namespace) -> None:
    def f(x: float | None, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    print(f"\nrouted requests, {'a warmed pool of 64 prompts' if cached else 'every prompt new to the gateway (embedded)'}; "
          f"grouping on: window {args.window_ms:g} ms, max batch {args.max_batch}")
    print(f"{'concurrency':>11}  {'mode':<19}{'n':>6}{'lost':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}{'added p99':>11}"
          f"{'route batch':>13}")
    for r in rows:
        print(f"{r['concurrency']:>11}  {r['mode']:<19}{r['requests']:>6}{r['dropped']:>5}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{f(r['added_p50_ms'], '11.2f'):>11}{f(r['added_p99_ms'], '11.2f'):>11}{f(r['mean_route_batch'], '13.1f'):>13}")


def plot(rows: list[dict[str, Any]], path: Path, cached: bool) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m, style in zip(MODES, ("k:o", "C0-s", "C1-^", "C2-d")):
        rs = [r for r in rows if r["mode"] == m]
        a.plot([r["concurrency"] for r in rs], [r["rps"] for r in rs], style, label=m)
        if m != "direct":
            b.plot([r["concurrency"] for r in rs], [r["added_p50_ms"] for r in rs], style, label=f"{m}, p50")
            b.plot([r["concurrency"] for r in rs], [r["added_p99_ms"] for r in rs], style.replace("-", "--"), alpha=0.6,
                   label=f"{m}, p99")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        ax.set_xlabel("concurrent clients")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a.set_ylabel("requests per second")
    a.set_title("throughput" + (" (cached prompts)" if cached else " (new prompts, embedded)"))
    b.set_ylabel("ms over the direct call")
    b.set_title("latency added by the gateway")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=128,
                   help="requests per mode and round at concurrency 16 (x4 at 64, /4 at 1; default 128)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per concurrency, the modes shuffled in each (default 2)")
    p.add_argument("--window-ms", type=float, default=2.0, help="grouping window of the grouping-on gateway (default 2)")
    p.add_argument("--max-batch", type=int, default=64, help="grouping max batch of the grouping-on gateway (default 64)")
    p.add_argument("--fresh", action="store_true", help="a new prompt per request, so each is embedded (default: a warmed pool of 64)")
    p.add_argument("--swap", action="store_true",
                   help="exchange the fixed and adaptive gateways' places in the shuffled order (a control for order effects)")
    p.add_argument("--out", type=Path, default=Path("out/grouping"), help="folder for grouping.json/png and logs (default out/grouping)")
    p.add_argument("--data", type=Path, default=None, help="RouterBench folder (default $SWITCHYARD_DATA/routerbench)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.requests < 1 or args.rounds < 1 or args.max_batch < 1 or args.window_ms < 0:
        p.error("--requests, --rounds and --max-batch must be at least 1, --window-ms not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return guarded(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
