"""RouterDC (arXiv 2409.19886) JSON: one list per task and split.

Each file is `[{"question": str, "scores": {model: float}}, ...]` (extra keys such as
`cluster_id` are ignored). A folder loads every `.json` file in it. The task and split come
from the file name: `mmlu_train.json` -> mmlu/train, `gsm8k-test.json` -> gsm8k/test, and a
file without a `_train`/`_test` suffix (`ceval.json`, RouterDC's out-of-distribution tasks)
-> split '' (`RoutingDataset.split` then leaves those rows out of both splits).

The source has no costs. Each response is charged the token-estimated cost of
`evaluation.loaders.prices`: the prompt's estimated tokens plus the task's typical answer
length, at a default price of $0.20 per million tokens for 7B models scaled by size (the
three 8B models: $0.2286), unless a `prices` JSON file names the model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from evaluation.loaders.errors import DatasetError
from evaluation.loaders.prices import Price, default_price, estimated_costs, read_prices
from routers.dataset import RoutingDataset

_SPLIT_SUFFIX = re.compile(r"^(.+?)[_-](train|test)$")
# How much of a file to read when sniffing its format: enough for the first row.
_SNIFF_BYTES = 65536


def task_and_split(stem: str) -> tuple[str, str]:
    match = _SPLIT_SUFFIX.match(stem)
    return (match.group(1), match.group(2)) if match else (stem, "")


def number_map(path: Path, row: int, name: str, value: object) -> dict[str, float]:
    """A `{model: number}` object; null becomes NaN (missing), as elsewhere in the data."""
    bad = f"{path}: row {row}: field {name!r}: expected an object of numbers"
    if not isinstance(value, dict) or not value:
        raise DatasetError(f"{bad}, got {type(value).__name__}")
    out = {}
    for model, x in value.items():
        if x is None:
            out[model] = math.nan
        elif isinstance(x, bool) or not isinstance(x, (int, float)):
            raise DatasetError(f"{bad}, got {x!r} for {model!r}")
        else:
            out[model] = float(x)
    return out


def read_rows(path: Path) -> list[tuple[str, dict[str, float]]]:
    """(question, scores) for each row of a RouterDC/LLMRouter JSON list."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, list):
        raise DatasetError(f"{path}: expected a JSON list of {{question, scores}} rows, got {type(raw).__name__}")
    rows = []
    for i, row in enumerate(raw, start=1):
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
        question = row.get("question")
        if not isinstance(question, str):
            raise DatasetError(f"{path}: row {i}: field 'question': expected text, got {type(question).__name__}")
        rows.append((question, number_map(path, i, "scores", row.get("scores"))))
    return rows


def looks_like_rows(path: Path) -> bool:
    """A cheap sniff (the loader validates fully): a JSON list whose first row has question + scores."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    return head.lstrip().startswith("[") and '"question"' in head and '"scores"' in head


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
    return [path] if path.suffix == ".json" else []


def is_routerdc(path: Path) -> bool:
    folder = path if path.is_dir() else path.parent
    files = _files(path)
    # default_llm.json beside the files marks LLMRouter data, which shares this row format.
    return bool(files) and not (folder / "default_llm.json").exists() and looks_like_rows(files[0])


def price_table(models: list[str], prices: str | Path | None, defaults: dict[str, Price], source: Path) -> dict[str, Price]:
    """defaults overridden by the prices file; every model must end up with a price."""
    table = {**defaults, **(read_prices(prices) if prices is not None else {})}
    missing = [m for m in models if m not in table]
    if missing:
        raise DatasetError(f"{source}: no price for model {missing[0]!r}: pass a prices file "
                           '{model: {"input_price": x, "output_price": y}} (USD per million tokens)')
    return table


def load_routerdc(path: str | Path, prices: str | Path | None = None) -> RoutingDataset:
    path = Path(path)
    files = _files(path)
    if not files:
        raise DatasetError(f"{path}: no RouterDC .json files")
    prompts: list[str] = []
    tasks: list[str] = []
    splits: list[str] = []
    ids: list[str] = []
    score_rows: list[dict[str, float]] = []
    for f in files:
        task, split = task_and_split(f.stem)
        for i, (question, scores) in enumerate(read_rows(f)):
            prompts.append(question)
            score_rows.append(scores)
            tasks.append(task)
            splits.append(split)
            ids.append(f"{f.stem}:{i}")
    return scored_dataset(path, prompts, score_rows, tasks, splits, ids, lambda models: price_table(
        models, prices, {m: p for m in models if (p := default_price(m)) is not None}, path))


def scored_dataset(source: Path, prompts: list[str], score_rows: list[dict[str, float]], tasks: list[str], splits: list[str],
                   ids: list[str], table_for: Callable[[list[str]], dict[str, Price]]) -> RoutingDataset:
    """The dataset of {question, scores} rows (RouterDC, LLMRouter): models are every name any
    row scores (NaN where a row lacks one), costs token-estimated at `table_for(models)`."""
    if not prompts:
        raise DatasetError(f"{source}: no rows")
    models = sorted({m for s in score_rows for m in s})
    scores = np.array([[s.get(m, math.nan) for m in models] for s in score_rows], dtype=np.float32)
    return RoutingDataset(prompts=prompts, models=models, scores=scores,
                          costs=estimated_costs(prompts, tasks, models, table_for(models)),
                          tasks=tasks, splits=splits, sample_ids=ids, responses=None, source=str(source))
