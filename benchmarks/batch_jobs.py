#!/usr/bin/env python
"""What does grouping by expert buy a batch job with in-process engines?

Trains carrot on a RouterBench slice (80 train rows per task), builds two tiny random
transformers models (2-layer GPT-2 and Llama, experts/engines/tiny.py) standing for
mistral-7b and mixtral-8x7b, and runs the same N RouterBench test questions (their last 300
characters, cost weights alternating 0 and 1 so both experts get lines) three ways, side by
side in one run:

  grouped          `switchyard batch` as shipped: one load per expert, batches of 16
  grouped-batch1   the same with max_concurrency 1: one load per expert, one prompt per generate
  load-per-prompt  the naive loop: load the routed expert's model, answer one prompt, drop it

    .venv/bin/python benchmarks/batch_jobs.py [--lines N] [--out DIR] [--data PATH]

Writes DIR/results.json and DIR/batch_jobs.png (lines per second per mode). The models are
tiny, so a load costs ~0.1 s here; a real 7B model takes tens of seconds to load, which is
what `load-per-prompt` pays N times and the grouped modes pay once per expert.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from experts.engines.base import model_loads  # noqa: E402
from experts.engines.tiny import build_tiny_model  # noqa: E402
from experts.engines.transformers_engine import TransformersEngine  # noqa: E402
from experts.spec import ExpertSpec  # noqa: E402
from routers.embedder import Embedder  # noqa: E402
from switchyard.batch import run_batch  # noqa: E402
from switchyard.demo import ROUTERBENCH_PRICES  # noqa: E402
from switchyard.training import train_router  # noqa: E402

EXPERTS = {"tiny-gpt2": ("gpt2", "mistralai/mistral-7b-chat"), "tiny-llama": ("llama", "mistralai/mixtral-8x7b-chat")}
MAX_TOKENS = 8


def setup(data: Path, work: Path, n: int) -> tuple[Path, list[str], dict[str, Path]]:
    sliced = work / "slice"
    sliced.mkdir(parents=True, exist_ok=True)
    tests = []
    for f in sorted(data.glob("*.csv")):
        frame = pd.read_csv(f)
        if f.stem.endswith("_train"):
            frame.head(80).to_csv(sliced / f.name, index=False)
        else:
            tests.append(frame)
    artifact = work / "carrot.npz"
    if not artifact.exists():
        train_router("carrot", sliced, artifact)
    questions = [str(p)[-300:] for p in pd.concat(tests).sample(n=n, random_state=0)["prompt"]]
    models = {name: build_tiny_model(work / name, questions, arch) for name, (arch, _) in EXPERTS.items()}
    return artifact, questions, models


def write_config(work: Path, artifact: Path, models: dict[str, Path], batch: int) -> Path:
    experts = []
    for name, (_, stands_for) in EXPERTS.items():
        pin, pout = ROUTERBENCH_PRICES[stands_for]
        experts.append({"name": name, "backend": "transformers", "model": str(models[name]), "stands_for": stands_for,
                        "input_price": pin, "output_price": pout, "max_concurrency": batch})
    path = work / f"batch{batch}.yaml"
    path.write_text(yaml.safe_dump({"routers": [{"name": "carrot", "artifact": str(artifact)}], "experts": experts}))
    return path


def body(question: str, i: int) -> dict[str, Any]:
    return {"model": f"carrot@{i % 2}", "messages": [{"role": "user", "content": question}], "max_tokens": MAX_TOKENS, "temperature": 0}


def grouped(work: Path, questions: list[str], config: Path, embedder: Embedder, name: str) -> tuple[dict[str, Any], list[str]]:
    src = work / "in.jsonl"
    src.write_text("".join(json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                                       "body": body(q, i)}) + "\n" for i, q in enumerate(questions)))
    out = work / f"{name}.jsonl"
    out.unlink(missing_ok=True)
    summary = run_batch(src, config, out, embedder=embedder, progress=False)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(r["response"]["status_code"] == 200 for r in records), "a benchmark line failed"
    return summary, [r["response"]["body"]["model"] for r in records]


def per_prompt(questions: list[str], routed: list[str], models: dict[str, Path]) -> dict[str, Any]:
    before = sum(model_loads.values())
    started = time.perf_counter()
    for i, (q, name) in enumerate(zip(questions, routed)):
        engine = TransformersEngine(ExpertSpec(name=name, backend="transformers", model=str(models[name])))
        result = engine.generate([body(q, i)])[0]
        assert isinstance(result, dict), result
        engine.close()
    seconds = time.perf_counter() - started
    return {"model_loads": sum(model_loads.values()) - before, "run_seconds": round(seconds, 3),
            "lines_per_second": round(len(questions) / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("out/batch_bench"))
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SWITCHYARD_DATA", ROOT.parent / "shared" / "data")) / "routerbench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    artifact, questions, models = setup(args.data, args.out, args.lines)
    embedder = Embedder()
    rows: dict[str, dict[str, Any]] = {}
    routed: list[str] = []
    for name, batch in (("grouped", 16), ("grouped-batch1", 1)):
        summary, routed = grouped(args.out, questions, write_config(args.out, artifact, models, batch), embedder, name)
        rows[name] = {"model_loads": sum(summary["model_loads"].values()), "run_seconds": summary["run_seconds"],
                      "lines_per_second": summary["lines_per_second"], "route_seconds": summary["route_seconds"]}
    rows["load-per-prompt"] = per_prompt(questions, routed, models)
    split = {n: routed.count(n) for n in EXPERTS}
    print(f"{len(questions)} lines ({', '.join(f'{n}: {c}' for n, c in split.items())}), max_tokens {MAX_TOKENS}, {os.cpu_count()} CPUs")
    print("| mode | model loads | run seconds | lines/s |\n|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['model_loads']} | {r['run_seconds']:.2f} | {r['lines_per_second']:.2f} |")
    (args.out / "results.json").write_text(json.dumps({"lines": len(questions), "split": split, "modes": rows}, indent=2))
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(list(rows), [r["lines_per_second"] for r in rows.values()], color=["#2a7", "#7a2", "#c44"])
    for i, r in enumerate(rows.values()):
        ax.text(i, r["lines_per_second"], f"{r['model_loads']} loads", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("lines per second")
    ax.set_title(f"batch job, {len(questions)} lines over 2 tiny transformers experts (CPU)")
    fig.tight_layout()
    fig.savefig(args.out / "batch_jobs.png", dpi=120)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'batch_jobs.png'}")


if __name__ == "__main__":
    main()
