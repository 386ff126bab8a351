"""`switchyard`: train routers, serve the gateway, print decisions, run the demo."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from switchyard.bench_cli import app as bench_app
from switchyard.bench_cli import router_kinds
from switchyard.cli_errors import fail
from switchyard.experts_cli import app as experts_app
from switchyard.keys_cli import app as keys_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Switchyard: a model-level routing gateway for LLMs.")


def default_data() -> Path:
    return Path(os.environ.get("SWITCHYARD_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


@app.command()
def train(
    router: Annotated[str, typer.Option(help="router kind")] = "carrot",
    data: Annotated[Path, typer.Option(help="routing data file or folder: RouterBench .csv/.pkl, RouterDC or LLMRouter JSON, or JSONL")] = ...,
    out: Annotated[Path, typer.Option(help="artifact file to write (.npz)")] = ...,
    split: Annotated[str, typer.Option(help="rows to fit on: train, test or all")] = "train",
    embedding_model: Annotated[str, typer.Option()] = "all-MiniLM-L6-v2",
    prices: Annotated[Optional[Path], typer.Option(help="JSON {model: {input_price, output_price}} (USD per 1M tokens) for data without costs")] = None,
) -> None:
    """Fit a router on a routing dataset and write its artifact."""
    from switchyard.training import train_router  # noqa: PLC0415 - keep `--help` fast

    try:
        summary = train_router(router, data, out, split=split, embedding_model=embedding_model, prices=prices)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def serve(
    config: Annotated[Path, typer.Option(help="gateway YAML config")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="worker processes (more than 1 needs a Redis store_url)")] = 1,
) -> None:
    """Run the gateway (JSON logs on stderr, one line per request)."""
    from switchyard.serve import serve as run_server  # noqa: PLC0415

    try:
        run_server(config, host, port, workers)
    except (ValueError, OSError) as exc:
        fail(str(exc))


@app.command()
def route(
    prompt: Annotated[str, typer.Argument(help="the query text")],
    config: Annotated[Path, typer.Option(help="gateway YAML config")],
    cost_weight: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="0 = best quality, 1 = cheapest")] = None,
    router: Annotated[Optional[str], typer.Option(help="router name (default: the config's)")] = None,
) -> None:
    """Print the routing decision for a prompt without calling any expert."""
    from switchyard.offline import route_once  # noqa: PLC0415

    try:
        decision = route_once(config, prompt, cost_weight, router)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(decision, indent=2))


@app.command()
def batch(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT.jsonl", help="OpenAI batch input: custom_id, method, url, body per line")],
    config: Annotated[Path, typer.Option(help="gateway YAML config (routers and experts)")],
    out: Annotated[Path, typer.Option(help="OpenAI batch output, in input order; OUT.progress holds a running job's finished lines")],
    retry_failed: Annotated[bool, typer.Option(help="run again the lines that failed with a 5xx (of a resumed or a finished job)")] = False,
    overwrite: Annotated[bool, typer.Option(help="run again when OUT already holds a finished job")] = False,
) -> None:
    """Route every line first, run them grouped by expert (engines load each model once), write results."""
    from switchyard.batch import interruptible, run_batch  # noqa: PLC0415

    try:
        with interruptible():
            summary = run_batch(input_path, config, out, retry_failed=retry_failed, overwrite=overwrite)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail(f"interrupted: finished lines are kept in {out}.progress; rerun the same command to resume")
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def demo(
    data: Annotated[Optional[Path], typer.Option(help="RouterBench folder (default: $SWITCHYARD_DATA/routerbench)")] = None,
    requests: Annotated[int, typer.Option(help="test prompts sent per cost weight")] = 200,
    out: Annotated[Path, typer.Option(help="folder for the artifact, config, table and plot")] = Path("out/demo"),
) -> None:
    """The main job end to end: train carrot on RouterBench, serve 11 loopback experts behind the
    gateway, and send test prompts through the openai client at cost weights 0 .. 1."""
    from switchyard.demo import run_demo  # noqa: PLC0415

    folder = data or default_data() / "routerbench"
    try:
        run_demo(folder, requests, out)
    except (ValueError, OSError) as exc:
        fail(str(exc))


@app.command()
def calibrate(
    artifact: Annotated[Path, typer.Option(help="router artifact (.npz)")],
    data: Annotated[Path, typer.Option(help="labelled routing data (any format `train` reads)")],
    target: Annotated[str, typer.Option(help="strong-share=0.2 | budget-usd-per-1k=0.5 | quality=0.95")],
    split: Annotated[str, typer.Option(help="rows to measure on: test (a seeded holdout for data without splits), train or all")] = "test",
    prices: Annotated[Optional[Path], typer.Option(help="JSON {model: {input_price, output_price}} (USD per 1M tokens) for data without costs")] = None,
) -> None:
    """Find the cost weight that meets a target (traffic share, budget or quality) on labelled data."""
    from routers.calibration import calibrate_artifact  # noqa: PLC0415

    try:
        result = calibrate_artifact(artifact, data, target, split=split, prices=prices)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(result, indent=2))


@app.command()
def targets(
    data: Annotated[Optional[Path], typer.Option(help="folder with routerbench/, routerdc7/, llmrouter/ (default: $SWITCHYARD_DATA)")] = None,
    routers: Annotated[Optional[str], typer.Option(help="comma-separated router kinds (default: all)")] = None,
    out: Annotated[Path, typer.Option(help="folder for results.json, report.md and the plot")] = Path("out/targets"),
    seeds: Annotated[int, typer.Option(help="RouterBench: refit each seeded kind with this many seeds and report the spread")] = 1,
) -> None:
    """Fit every router kind and print the targets table (RouterBench AIQ, RouterDC, LLMRouter)."""
    from evaluation.targets import print_tables, run_targets  # noqa: PLC0415
    from routers.artifacts import ROUTER_KINDS  # noqa: PLC0415

    kinds = router_kinds(routers, list(ROUTER_KINDS))
    try:
        results = run_targets(data or default_data(), kinds, out, log=lambda m: typer.echo(m, err=True), seeds=seeds)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    print_tables(results)
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'}" + (
        f", {out / 'routerbench_curves.png'}" if "routerbench" in results["sections"] else ""))


app.add_typer(experts_app, name="experts")
app.add_typer(bench_app, name="bench")
app.add_typer(keys_app, name="keys")

if __name__ == "__main__":
    app()
