"""`switchyard`: train routers, serve the gateway, print decisions, run the demo."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Switchyard: a model-level routing gateway for LLMs.")


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


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
) -> None:
    """Run the gateway."""
    import uvicorn  # noqa: PLC0415

    from gateway.app import create_app  # noqa: PLC0415
    from gateway.settings import load_settings  # noqa: PLC0415

    try:
        api = create_app(load_settings(config))
    except (ValueError, OSError) as exc:
        fail(str(exc))
    uvicorn.run(api, host=host, port=port, log_level="info", access_log=False)  # per-request logs cost ~2% CPU; /metrics counts requests


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


if __name__ == "__main__":
    app()
