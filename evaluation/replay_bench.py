"""A whole test split through the real HTTP path: the gateway (a child process) in front of
replay experts, driven by the official openai client at a fixed concurrency.

Replay experts answer with the dataset's recorded response of the model they stand for and
report its recorded cost, so the run checks, prompt by prompt, that the gateway routed as the
offline evaluation does and accounted exactly the dataset's cost, and it measures the
gateway's own latency and throughput (the replay upstream is in-process and instant, so all
of the latency is the gateway's: HTTP, parsing, embedding, routing, accounting).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import openai
import yaml
from tqdm import tqdm

from evaluation.loaders import load_dataset
from evaluation.metrics import choose
from routers.artifacts import load_router
from routers.embedder import Embedder, embed_cached
from switchyard.process import GatewayProcess


def replay_config(out: Path, artifact: Path, data: Path, models: list[str], router: str) -> Path:
    """One replay expert per dataset model, unpriced: the router's own cost estimate decides,
    as in the offline evaluation, and the recorded cost is what gets accounted."""
    experts = [{"name": f"replay:{m}", "backend": "replay", "replay_data": str(data.resolve()), "stands_for": m,
                "max_concurrency": 64} for m in models]
    config = {"routers": [{"name": router, "kind": router, "artifact": str(artifact.resolve())}], "experts": experts}
    path = out / "replay-gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def _drive(url: str, prompts: list[str], router: str, w: float, concurrency: int, label: str) -> tuple[list[dict[str, Any]], list[float], float]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    sem = asyncio.Semaphore(concurrency)
    results: list[dict[str, Any]] = [{}] * len(prompts)
    latency = [0.0] * len(prompts)
    bar = tqdm(total=len(prompts), desc=label, unit="req")

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            r = await client.chat.completions.create(model=router, messages=[{"role": "user", "content": prompts[i]}],
                                                     extra_body={"routing": {"cost_weight": w}})
            latency[i] = (time.perf_counter() - t0) * 1000
            results[i] = {"model": r.model, "routing": r.model_extra["routing"], "content": r.choices[0].message.content}
            bar.update()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(prompts))))
    wall = time.perf_counter() - started
    bar.close()
    await client.close()
    return results, latency, wall


def run_replay(data: Path, artifact: Path, out: Path, cost_weight: float = 0.1, concurrency: int = 16,
               split: str = "test", limit: int | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    router = load_router(artifact)
    dataset = load_dataset(data)
    test = dataset.split(split) if split != "all" else dataset
    if limit:
        test = test.subset(np.arange(min(limit, len(test))))
    kind = router.kind
    # Offline: the same decision the gateway should make.
    embedder = Embedder.from_cache_id(getattr(router, "header", {}).get("embedding_model"))
    offline = choose(router, embed_cached(embedder, test.prompts), cost_weight)
    config = replay_config(out, artifact, data, router.models, kind)
    with GatewayProcess(config, out / "gateway.log", ready_timeout=300) as gw:  # a loaded machine starts it slowly
        # Cold: embeddings computed on the request path; warm: the gateway's embedding cache hit.
        cold, cold_ms, cold_wall = asyncio.run(_drive(gw.url, test.prompts, kind, cost_weight, concurrency, "replay (cold)"))
        warm, warm_ms, warm_wall = asyncio.run(_drive(gw.url, test.prompts, kind, cost_weight, concurrency, "replay (warm)"))
    rows = np.arange(len(test))
    chosen = np.array([router.models.index(r["model"].removeprefix("replay:")) for r in warm])
    accounted = np.array([r["routing"]["cost_usd"] for r in warm])
    recorded = test.costs[rows, chosen].astype(np.float64)  # sum in float64, as the gateway accounts
    same_answer = sum(r["content"] == test.responses[i][chosen[i]] for i, r in enumerate(warm))

    def pct(ms: list[float]) -> dict[str, float]:
        return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}

    result = {
        "data": str(data), "split": split, "router": kind, "cost_weight": cost_weight, "concurrency": concurrency,
        "requests": len(test),
        "cold": pct(cold_ms) | {"throughput_rps": round(len(test) / cold_wall, 1)},
        "warm": pct(warm_ms) | {"throughput_rps": round(len(test) / warm_wall, 1)},
        "decisions_equal_offline": int((chosen == offline).sum()),
        "answers_are_recorded": int(same_answer),
        "accounted_cost_usd": float(accounted.sum()),
        "dataset_cost_usd": float(np.nansum(recorded)),
        "max_abs_cost_diff_usd": float(np.nanmax(np.abs(accounted - recorded))) if len(test) else 0.0,
        "mean_quality": float(np.nanmean(test.scores[rows, chosen])) if len(test) else 0.0,
        "replay_labelled": all(r["routing"].get("replay") == [r["model"]] for r in warm),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(report(result))
    plot_latency({"cold (embedding on the request path)": cold_ms, "warm (embedding cached)": warm_ms}, out / "latency.png",
                 f"{len(test)} requests at concurrency {concurrency} through the gateway to replay experts")
    return result


def report(r: dict[str, Any]) -> str:
    rows = [f"| {label} | {r[k]['p50_ms']:.2f} | {r[k]['p99_ms']:.2f} | {r[k]['throughput_rps']:.1f} |"
            for label, k in (("cold: embedding on the request path", "cold"), ("warm: embedding cached", "warm"))]
    n = r["requests"]
    return "\n".join([
        "# Replay through the gateway", "",
        f"`{r['data']}` split `{r['split']}`: {n} requests, router `{r['router']}` at cost weight {r['cost_weight']}, "
        f"concurrency {r['concurrency']}, official openai client -> gateway (child process) -> replay experts (recorded "
        "answers, instant: the latency is the gateway's own, HTTP both ways included).", "",
        "| pass | p50 ms | p99 ms | requests/s |", "|---|---:|---:|---:|", *rows, "",
        f"- decisions equal to the offline evaluation: {r['decisions_equal_offline']} / {n}",
        f"- answers equal to the recorded ones: {r['answers_are_recorded']} / {n}; labelled replay: {r['replay_labelled']}",
        f"- accounted cost ${r['accounted_cost_usd']:.6f} vs the dataset's ${r['dataset_cost_usd']:.6f} for the same picks "
        f"(largest per-request difference ${r['max_abs_cost_diff_usd']:.2g})",
        f"- mean quality of the picks (dataset): {r['mean_quality']:.4f}", "", "![latency](latency.png)", ""])


def plot_latency(series: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, ms in series.items():
        xs = np.sort(np.asarray(ms))
        line, = ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=label)
        for q in (50, 99):
            ax.axvline(np.percentile(xs, q), color=line.get_color(), ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("latency per request, ms (log; dotted: p50 and p99)")
    ax.set_ylabel("share of requests")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
