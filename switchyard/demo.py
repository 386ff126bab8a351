"""The main job on the embedded default (memory store, loopback experts): train carrot on
RouterBench, serve its 11 models behind the gateway, and watch the cost weight move traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from openai import OpenAI
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from evaluation.loaders import load_dataset
from experts.loopback import build_loopback_app
from gateway.app import create_app
from gateway.settings import load_settings
from routers.embedder import Embedder
from switchyard.threaded import ThreadedServer
from switchyard.training import train_router

# USD per million (input, output) tokens: the list prices RouterBench's models had when it was
# recorded (OpenAI, Anthropic, and Together AI for the open models).
ROUTERBENCH_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "claude-v2": (8.0, 24.0),
    "claude-v1": (8.0, 24.0),
    "claude-instant-v1": (0.8, 2.4),
    "meta/llama-2-70b-chat": (0.9, 0.9),
    "meta/code-llama-instruct-34b-chat": (0.776, 0.776),
    "mistralai/mixtral-8x7b-chat": (0.6, 0.6),
    "mistralai/mistral-7b-chat": (0.2, 0.2),
    "WizardLM/WizardLM-13B-V1.2": (0.3, 0.3),
    "zero-one-ai/Yi-34B-Chat": (0.8, 0.8),
}
COST_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
STRONG = "gpt-4-1106-preview"


def expert_config(models: list[str], base_url: str) -> list[dict[str, Any]]:
    """One loopback expert per dataset model, named after it and priced at its list price."""
    out = []
    for m in models:
        pin, pout = ROUTERBENCH_PRICES.get(m, (1.0, 1.0))
        out.append({"name": m, "base_url": f"{base_url}/v1", "model": m, "input_price": pin, "output_price": pout,
                    "max_concurrency": 32, "description": f"{m} (loopback stand-in for a vllm serve endpoint)"})
    return out


def write_config(out: Path, artifact: Path, models: list[str], base_url: str) -> Path:
    config = {
        "routers": [{"name": "carrot", "kind": "carrot", "artifact": str(artifact.resolve())}],
        "default_router": "carrot",
        "experts": expert_config(models, base_url),
    }
    path = out / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_demo(data: Path, n_requests: int, out: Path) -> dict[str, Any]:
    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    embedder = Embedder()
    console.print(f"[bold]1/3[/] training carrot on {data} (train split; embeddings cached on disk)")
    summary = train_router("carrot", data, out / "carrot.npz", embedder=embedder)
    console.print(f"    {summary['rows']} prompts, {len(summary['models'])} models, k={summary['params']['k']}")
    test = load_dataset(data).split("test")
    rows = np.random.default_rng(0).permutation(len(test))[: min(n_requests, len(test))]
    col = {m: i for i, m in enumerate(test.models)}

    with ThreadedServer(build_loopback_app()) as experts:
        settings = load_settings(write_config(out, out / "carrot.npz", test.models, experts.url))
        with ThreadedServer(create_app(settings, embedder=embedder)) as gw:
            console.print(f"[bold]2/3[/] gateway on {gw.url} in front of {len(test.models)} loopback experts on {experts.url}")
            client = OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
            results = []
            console.print(f"[bold]3/3[/] {len(rows)} test prompts per cost weight through the openai client")
            for w in COST_WEIGHTS:
                chosen, predicted, actual, quality, data_cost = [], [], [], [], []
                for r in tqdm(rows, desc=f"cost_weight={w}", leave=False):
                    resp = client.chat.completions.create(
                        model="carrot", messages=[{"role": "user", "content": test.prompts[r]}],
                        extra_body={"routing": {"cost_weight": w}},
                    )
                    routing = resp.model_extra["routing"]
                    chosen.append(resp.model)
                    predicted.append(routing["predicted"][resp.model]["cost_usd"])
                    actual.append(routing["cost_usd"])
                    quality.append(test.scores[r, col[resp.model]])
                    data_cost.append(test.costs[r, col[resp.model]])
                results.append({
                    "cost_weight": w,
                    "share_strong": float(np.mean([c == STRONG for c in chosen])),
                    "experts_used": len(set(chosen)),
                    "mean_predicted_cost_usd": float(np.mean(predicted)),
                    "mean_dataset_quality": float(np.nanmean(quality)),
                    "mean_dataset_cost_usd": float(np.nanmean(data_cost)),
                    "mean_accounted_cost_usd": float(np.mean(actual)),
                })
    strong = test.models.index(STRONG)
    reference = {"quality": float(np.nanmean(test.scores[rows, strong])), "cost": float(np.nanmean(test.costs[rows, strong]))}
    show(console, results, reference)
    plot(results, reference, out / "demo.png")
    console.print(f"plot: {out / 'demo.png'}")
    return {"results": results, "reference": reference}


def show(console: Console, results: list[dict[str, Any]], reference: dict[str, float]) -> None:
    table = Table(title="carrot through the gateway, per cost weight w",
                  caption=f"quality and dataset $: RouterBench's recorded outcome of the chosen model; accounted $: loopback usage x list "
                          f"prices. Always {STRONG}: quality {reference['quality']:.3f}, ${reference['cost']:.6f} per prompt.")
    for head in ("w", "to gpt-4", "experts", "predicted $", "quality", "dataset $", "accounted $"):
        table.add_column(head, justify="right")
    for r in results:
        table.add_row(f"{r['cost_weight']:.2f}", f"{r['share_strong']:.1%}", str(r["experts_used"]), f"{r['mean_predicted_cost_usd']:.6f}",
                      f"{r['mean_dataset_quality']:.3f}", f"{r['mean_dataset_cost_usd']:.6f}", f"{r['mean_accounted_cost_usd']:.6f}")
    console.print(table)


def plot(results: list[dict[str, Any]], reference: dict[str, float], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    w = [r["cost_weight"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(w, [r["share_strong"] for r in results], "o-", label=f"share to {STRONG}")
    a.set_xlabel("cost_weight")
    a.set_ylabel("share")
    a2 = a.twinx()
    a2.plot(w, [r["mean_predicted_cost_usd"] for r in results], "s--", color="tab:red", label="mean predicted $")
    a2.set_ylabel("USD per request")
    a.set_title("routing vs cost weight")
    b.plot([r["mean_dataset_cost_usd"] for r in results], [r["mean_dataset_quality"] for r in results], "o-", label="carrot")
    b.plot([reference["cost"]], [reference["quality"]], "r*", markersize=12, label=STRONG)
    b.set_xscale("log")
    b.set_xlabel("dataset cost per prompt (USD)")
    b.set_ylabel("dataset quality")
    b.set_title("quality vs cost (RouterBench test)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
