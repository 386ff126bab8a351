"""`switchyard bench ...`: the router benchmark suites, each one command that prints a table and
writes results.json, report.md and plots into --out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from switchyard.cli_errors import fail

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Router benchmark suites.")


@app.command()
def replay(
    data: Annotated[Path, typer.Option(help="routing data with recorded responses (RouterBench)")],
    artifact: Annotated[Path, typer.Option(help="router artifact trained on the data's train split")],
    out: Annotated[Path, typer.Option(help="folder for results.json and the gateway log")] = Path("out/replay"),
    cost_weight: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.1,
    concurrency: Annotated[int, typer.Option(min=1, max=1024)] = 16,
    split: Annotated[str, typer.Option(help="rows to send: test, train or all")] = "test",
    limit: Annotated[Optional[int], typer.Option(min=1, help="send only the first N rows")] = None,
) -> None:
    """Push a split through the real gateway (child process) to replay experts with the openai
    client: latency, throughput, and routing and cost checked against the dataset."""
    from evaluation.replay_bench import run_replay  # noqa: PLC0415 - keep `--help` fast

    try:
        result = run_replay(data, artifact, out, cost_weight=cost_weight, concurrency=concurrency, split=split, limit=limit)
    except (ValueError, OSError, RuntimeError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(result, indent=2))
