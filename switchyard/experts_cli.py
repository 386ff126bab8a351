"""`switchyard experts ...`: bring an expert into a trained router without retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from switchyard.cli_errors import fail

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Experts the routers were not trained on.")


@app.command()
def calibrate(
    name: Annotated[str, typer.Argument(help="the expert's name (its `stands_for` in the gateway config)")],
    data: Annotated[Path, typer.Option(help="labelled calibration set in any supported format, with a score column for the expert")],
    artifact: Annotated[Path, typer.Option(help="router artifact to add the expert's profile to")],
    out: Annotated[Optional[Path], typer.Option(help="write here instead of updating the artifact in place")] = None,
    column: Annotated[Optional[str], typer.Option(help="the data's model column holding the expert's scores (default: NAME)")] = None,
    split: Annotated[str, typer.Option(help="rows to use: all, train or test")] = "all",
    prices: Annotated[Optional[Path], typer.Option(help="JSON prices for data without costs")] = None,
) -> None:
    """Give expert NAME a profile from its outcomes on a labelled set; gateways started on the
    artifact afterwards route to it where its profile is strong."""
    from switchyard.training import calibrate_expert  # noqa: PLC0415 - keep `--help` fast

    try:
        summary = calibrate_expert(artifact, name, data, out, column=column, split=split, prices=prices)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(summary, indent=2))
