#!/usr/bin/env python
"""What does the gateway's routing step cost per request on this machine, embedding excluded?

Fits each router on the RouterBench train split (embeddings from the on-disk cache), builds
the gateway's candidate experts (one per model, priced at list price), then for each of N test
prompts, one request at a time (B = 1, as the gateway routes), times the gateway's own code:

  step     gateway.pipeline.estimate_candidates (router.predict on the query embedding, then
           pricing) + routers.base.decide (utility, ranking): everything `plan` does between
           the embedding and the dispatch
  predict  router.predict alone, timed in the same iteration (kNN via kernels.score_topk for
           carrot, knn, skills and glider)

score_topk runs whatever the dispatcher picks (the reference on a CPU machine; set
SWITCHYARD_SCORE_TOPK to force one).

    .venv/bin/python benchmarks/route_step.py [--requests N] [--routers carrot,knn,...] [--data PATH] [--out DIR]

Prints a markdown table (microseconds; p50, p99, mean); with --out, writes route_step.json and
route_step.png (p50 and p99 per router).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

ROUTERS = ("carrot", "knn", "carrot-linear", "skills", "glider", "mf")
COST_WEIGHT = 0.3


def default_data() -> Path:
    return Path(os.environ.get("SWITCHYARD_DATA", ROOT.parent / "shared" / "data")) / "routerbench"


def percentiles(us: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)), "mean": float(us.mean())}


def time_router(kind: str, train_vecs: np.ndarray, train: Any, queries: list[str], vecs: np.ndarray) -> dict[str, Any]:
    from experts.spec import ExpertSpec  # noqa: PLC0415 - after sys.path is set
    from gateway.pipeline import estimate_candidates  # noqa: PLC0415
    from routers.artifacts import build_router  # noqa: PLC0415
    from routers.base import decide  # noqa: PLC0415
    from switchyard.demo import expert_config  # noqa: PLC0415

    started = time.perf_counter()
    router = build_router(kind, train.models).fit(train_vecs, train)
    fit_s = time.perf_counter() - started
    candidates = [ExpertSpec(**e) for e in expert_config(train.models, "http://127.0.0.1:9")]
    step, predict = np.zeros(len(queries)), np.zeros(len(queries))
    for i in range(-20, len(queries)):  # 20 warm-up requests, not recorded
        j = i % len(queries)
        t0 = time.perf_counter()
        quality, cost = estimate_candidates(router, vecs[j], candidates, queries[j], None)
        decide(quality, cost, COST_WEIGHT, router.cost_ref)
        t1 = time.perf_counter()
        router.predict(vecs[j][None, :])
        t2 = time.perf_counter()
        if i >= 0:
            step[i], predict[i] = (t1 - t0) * 1e6, (t2 - t1) * 1e6
    return {"router": kind, "fit_s": round(fit_s, 2), "step_us": percentiles(step), "predict_us": percentiles(predict)}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| router | step p50 (µs) | step p99 (µs) | step mean (µs) | predict p50 (µs) |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        s, p = r["step_us"], r["predict_us"]
        lines.append(f"| {r['router']} | {s['p50']:.0f} | {s['p99']:.0f} | {s['mean']:.0f} | {p['p50']:.0f} |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = [r["router"] for r in results]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(x - 0.2, [r["step_us"]["p50"] for r in results], 0.4, label="p50")
    ax.bar(x + 0.2, [r["step_us"]["p99"] for r in results], 0.4, label="p99")
    ax.set_xticks(x, names)
    ax.set_ylabel("routing step per request (µs)")
    ax.set_title("gateway routing step, embedding excluded (B = 1, CPU)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--routers", default=",".join(ROUTERS))
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.routers.split(",") if k.strip()]
    data = args.data or default_data()
    if args.requests < 1:
        print("error: --requests must be >= 1", file=sys.stderr)
        return 2
    if not data.exists():
        print(f"error: routing data not found at {data}: pass --data or set SWITCHYARD_DATA", file=sys.stderr)
        return 2
    from evaluation.loaders import load_dataset  # noqa: PLC0415 - after sys.path is set
    from routers.artifacts import ROUTER_KINDS  # noqa: PLC0415
    from routers.embedder import Embedder, embed_cached  # noqa: PLC0415

    unknown = [k for k in kinds if k not in ROUTER_KINDS]
    if unknown:
        print(f"error: unknown router kinds {unknown} (known: {', '.join(ROUTER_KINDS)})", file=sys.stderr)
        return 2
    dataset = load_dataset(data)
    train, test = dataset.split("train"), dataset.split("test")
    embedder = Embedder()
    train_vecs = embed_cached(embedder, train.prompts)
    rows = np.random.default_rng(0).permutation(len(test))[: args.requests]
    queries = [test.prompts[r] for r in rows]
    vecs = embed_cached(embedder, test.prompts)[rows]
    results = [time_router(k, train_vecs, train, queries, vecs) for k in tqdm(kinds, desc="routers")]
    print(f"\n{len(queries)} requests per router, B = 1, {len(train)} training prompts, {len(train.models)} experts; "
          f"{platform.machine()} x {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n")
    print(table(results))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "route_step.json").write_text(json.dumps(results, indent=2))
        plot(results, args.out / "route_step.png")
        print(f"\nwrote {args.out / 'route_step.json'} and {args.out / 'route_step.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
