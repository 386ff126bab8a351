#!/usr/bin/env python
"""What does a key with limits cost per request? Keys, rate limits and budgets are one Lua
script in Redis before the request and one after it; this measures them side by side.

Starts a Redis server, the loopback expert and three gateways (`switchyard serve`, one expert,
no router) in their own processes, then sends N sequential requests per mode through the
official `openai` client, the modes interleaved in a shuffled order each iteration:

  direct         straight to the loopback expert
  memory-open    gateway, memory store, no keys (no store round trip)
  redis-open     gateway, Redis store, no keys (one Lua script before: "any keys?"; one after:
                 the usage ledger)
  redis-limited  gateway, Redis store, a key with rpm, tpm and a budget (the same two scripts,
                 now reading and counting the key's windows and spend)

    .venv/bin/python benchmarks/limits_overhead.py [--requests N] [--out DIR]

Prints the table, writes DIR/limits.json and DIR/limits.png (CDF per mode). Everything runs on
one machine, so compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402
import yaml  # noqa: E402

from benchmarks.gateway_latency import EXPERT, BenchError, Mode, Server, added, gateway_server, loopback_server, run_modes, stats  # noqa: E402
from switchyard.redis_server import redis_server  # noqa: E402

LIMITS = {"rpm": 1_000_000, "tpm": 1_000_000_000, "budget_usd": 1_000_000.0}  # never reached: the cost of checking them


def config(out: Path, name: str, expert_url: str, store_url: str | None) -> Path:
    body = {"experts": [{"name": EXPERT, "base_url": f"{expert_url}/v1", "input_price": 10.0, "output_price": 30.0}],
            "admin_key": "bench-admin", "logging": {"access": False}, **({"store_url": store_url} if store_url else {})}
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def measure(args: argparse.Namespace, out: Path, redis_url: str) -> list[Mode]:
    servers: list[Server] = []
    try:
        expert = loopback_server(out / "loopback.log").start()
        servers.append(expert)
        gws = {}
        for name, store in (("memory-open", None), ("redis-open", f"{redis_url}/0"), ("redis-limited", f"{redis_url}/1")):
            gws[name] = gateway_server(config(out, name, expert.url, store), out / f"{name}.log", None).start()
            servers.append(gws[name])
        made = httpx.post(f"{gws['redis-limited'].url}/admin/keys", json={"name": "bench", **LIMITS},
                          headers={"authorization": "Bearer bench-admin"}).json()

        def client(url: str, key: str = "none") -> openai.OpenAI:
            return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)

        modes = [Mode("direct", "direct (loopback expert)", client(expert.url), EXPERT, False, None, False)]
        modes += [Mode(name, name, client(gw.url, made["key"] if name == "redis-limited" else "none"), EXPERT, False, "direct", False)
                  for name, gw in gws.items()]
        run_modes(modes, args.requests, args.warmup, args.seed)
        return modes
    finally:
        for s in reversed(servers):
            s.stop()


def run(args: argparse.Namespace) -> dict:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        with redis_server() as url:
            modes = measure(args, out, url.removesuffix("/0"))
    except RuntimeError as exc:
        raise BenchError(str(exc)) from None
    by = {m.key: m.samples for m in modes}
    summary = {m.key: {**stats(m.samples), "added_vs_direct": added(m.samples, by["direct"]) if m.key != "direct" else None}
               for m in modes}
    summary["limits_cost_ms"] = added(by["redis-limited"], by["redis-open"])  # the same store, with and without a key's limits
    (out / "limits.json").write_text(json.dumps({"summary": summary, "samples": by}, indent=1))
    print(f"\n{args.requests} requests per mode, interleaved (ms)")
    print("| mode | p50 | p90 | p99 | added p50 vs direct | paired median vs direct |\n|---|---:|---:|---:|---:|---:|")
    for m in modes:
        s, a = summary[m.key], summary[m.key]["added_vs_direct"]
        extra = ("", "") if a is None else (f"{a['p50']:+.2f}", f"{a['paired_median']:+.2f}")
        print(f"| {m.key} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {extra[0]} | {extra[1]} |")
    c = summary["limits_cost_ms"]
    print(f"\nlimits (redis-limited - redis-open): p50 {c['p50']:+.2f} ms, p99 {c['p99']:+.2f} ms, paired median {c['paired_median']:+.2f} ms")
    plot(out / "limits.png", modes)
    print(f"wrote {out / 'limits.json'}, {out / 'limits.png'}")
    return summary


def plot(path: Path, modes: list[Mode]) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    for m in modes:
        x = np.sort(m.samples)
        ax.plot(x, np.arange(1, x.size + 1) / x.size, label=m.key)
    ax.set_xscale("log")
    ax.set_xlabel("latency per request (ms, log)")
    ax.set_ylabel("share of requests")
    ax.set_title("Keys with limits: gateway latency by store")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=500, help="timed requests per mode")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("out/limits"))
    args = p.parse_args(argv)
    if args.requests < 1 or args.warmup < 0:
        print("error: --requests must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    try:
        run(args)
    except (BenchError, OSError, httpx.HTTPError, openai.OpenAIError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
