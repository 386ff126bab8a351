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
    typer.echo((out / "report.md").read_text())
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'latency.png'}")
    if result["decisions_equal_offline"] != result["requests"] or result["max_abs_cost_diff_usd"] > 1e-9:
        fail("the gateway's routing or accounting differs from the dataset's (see report.md)")


def router_kinds(routers: str | None, default: list[str]) -> list[str]:
    from routers.artifacts import ROUTER_KINDS  # noqa: PLC0415

    kinds = [k.strip() for k in routers.split(",") if k.strip()] if routers else default
    if unknown := [k for k in kinds if k not in ROUTER_KINDS]:
        fail(f"unknown router kind(s) {unknown}; known: {', '.join(sorted(ROUTER_KINDS))}")
    return kinds


@app.command()
def quality(
    data: Annotated[Path, typer.Option(help="routing data (any supported format) with costs")],
    routers: Annotated[Optional[str], typer.Option(help="comma-separated router kinds")] = None,
    out: Annotated[Path, typer.Option()] = Path("out/quality"),
    weak: Annotated[Optional[str], typer.Option(help="RouteLLM's weak model (default: see report)")] = None,
    strong: Annotated[Optional[str], typer.Option(help="RouteLLM's strong model (default: the best on train)")] = None,
    folds: Annotated[int, typer.Option(min=2, max=50, help="k for k-fold when the data has no splits")] = 5,
    prices: Annotated[Optional[Path], typer.Option(help="prices JSON for formats without per-response costs")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Cost/quality sweep per router: AIQ, APGR, CPT(50%), CPT(80%), best quality, the cost of
    matching the best single model; single models and the oracle as references."""
    from evaluation.loaders import load_dataset  # noqa: PLC0415
    from evaluation.quality import print_table, run_quality  # noqa: PLC0415

    kinds = router_kinds(routers, QUALITY_ROUTERS)
    try:
        dataset = load_dataset(data, prices=prices)
        results = run_quality(dataset, kinds, out, weak=weak, strong=strong, folds=folds, seed=seed,
                              log=lambda m: typer.echo(m, err=True))
    except (ValueError, OSError) as exc:
        fail(str(exc))
    print_table(results)
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'curves.png'}, {out / 'pgr.png'}")


QUALITY_ROUTERS = ["carrot", "carrot-linear", "knn", "mlp", "mf", "skills", "glider", "random"]


def _description(data: Path, model: str | None) -> str:
    """LLMRouter's default_llm.json describes each model (`feature`): use it when it is there."""
    meta = (data if data.is_dir() else data.parent) / "default_llm.json"
    if model and meta.exists():
        return str(json.loads(meta.read_text()).get(model, {}).get("feature", ""))
    return ""


@app.command()
def generalization(
    data: Annotated[Path, typer.Option(help="routing data (any supported format)")],
    routers: Annotated[Optional[str], typer.Option(help="comma-separated router kinds")] = None,
    model: Annotated[Optional[str], typer.Option(help="the model to hold out and add back (default: the best on average)")] = None,
    description: Annotated[Optional[str], typer.Option(help="its description (default: LLMRouter's `feature` when present)")] = None,
    skills: Annotated[str, typer.Option(help="its skills, comma-separated")] = "",
    calibration: Annotated[int, typer.Option(min=1, help="train prompts in its calibration set")] = 200,
    cost_weight: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.0,
    out: Annotated[Path, typer.Option()] = Path("out/generalization"),
) -> None:
    """Unseen tasks (held out vs held in) and a new expert (held out, then added by description
    and by a calibration set)."""
    from evaluation.generalization import run_generalization  # noqa: PLC0415
    from evaluation.loaders import load_dataset  # noqa: PLC0415

    kinds = router_kinds(routers, ["carrot", "carrot-linear", "knn", "mlp", "mf", "skills", "glider"])
    try:
        dataset = load_dataset(data)
        if model is not None and model not in dataset.models:
            fail(f"{data}: no model {model!r} (it has: {', '.join(dataset.models)})")
        text = description if description is not None else _description(data, model)
        result = run_generalization(dataset, kinds, out, model=model, description=text,
                                    skills=tuple(s.strip() for s in skills.split(",") if s.strip()), calibration=calibration,
                                    cost_weight=cost_weight, log=lambda m: typer.echo(m, err=True))
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo((out / "report.md").read_text())
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'}" + (", unseen_tasks.png" if result["unseen_tasks"] else "") + (", new_expert.png" if result["new_expert"]["rows"] else ""))


@app.command()
def robustness(
    data: Annotated[Optional[Path], typer.Option(help="RouterBench folder to train on and take expert roles from (default: $SWITCHYARD_DATA/routerbench)")] = None,
    routers: Annotated[Optional[str], typer.Option(help="comma-separated router kinds")] = None,
    cost_weight: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.1,
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option()] = Path("out/robustness"),
) -> None:
    """Per-category routing, perturbation flip rates, confounder gadgets and the prefix defence."""
    from evaluation.robustness.suite import run_robustness  # noqa: PLC0415
    from routers.artifacts import load_router  # noqa: PLC0415
    from routers.embedder import Embedder  # noqa: PLC0415
    from switchyard.cli import default_data  # noqa: PLC0415
    from switchyard.training import train_router  # noqa: PLC0415

    kinds = router_kinds(routers, ["carrot", "carrot-linear", "knn", "mlp", "mf"])
    folder = data or default_data() / "routerbench"
    try:
        embedder = Embedder()
        fitted = {}
        for kind in kinds:
            path = out / "artifacts" / f"{kind}.npz"
            train_router(kind, folder, path, embedder=embedder)
            fitted[kind] = load_router(path)
        run_robustness(fitted, embedder, out, seed=seed, log=typer.echo, cost_weight=cost_weight, data=folder)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots")



@app.command()
def vote(
    data: Annotated[Path, typer.Option(help="routing data with recorded responses (RouterBench)")],
    artifact: Annotated[Path, typer.Option(help="router artifact trained on the data's train split")],
    ks: Annotated[str, typer.Option(help="comma-separated numbers of experts")] = "1,3,5",
    cost_weight: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.0,
    out: Annotated[Path, typer.Option()] = Path("out/vote"),
) -> None:
    """Majority vote over k recruited experts' recorded answers (multiple-choice test rows) vs k = 1."""
    from evaluation.loaders import load_dataset  # noqa: PLC0415
    from evaluation.vote import vote_eval, write_vote_report  # noqa: PLC0415
    from routers.artifacts import load_router  # noqa: PLC0415
    from routers.embedder import Embedder, embed_cached  # noqa: PLC0415

    try:
        router = load_router(artifact)
        test = load_dataset(data).split("test")
        x = embed_cached(Embedder.from_cache_id(getattr(router, "header", {}).get("embedding_model")), test.prompts)
        rows = vote_eval(router, x, test, ks=tuple(int(k) for k in ks.split(",")), cost_weight=cost_weight)
        write_vote_report(rows, out, {"data": str(data), "artifact": str(artifact), "router": router.kind, "cost_weight": cost_weight})
    except (ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo((out / "report.md").read_text())
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'vote.png'}")
