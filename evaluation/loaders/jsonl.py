"""Switchyard's own routing-data format: JSON Lines, one prompt per line.

    {"prompt": "...", "scores": {"model-a": 1.0, "model-b": 0.0},
     "costs": {"model-a": 0.0021, "model-b": 0.0001},      optional, USD for that response
     "task": "gsm8k",                                       optional, default ''
     "split": "train",                                      optional: train | test | ''
     "id": "gsm8k-17",                                      optional, default <file>:<line>
     "responses": {"model-a": "...", "model-b": "..."}}     optional, the answer texts

- `path` is a `.jsonl` file or a folder of them. Other keys are ignored; blank lines are
  skipped; rows are numbered by line (1-based) in error messages.
- Models are every key seen under `scores`, sorted; a score that is absent or null is NaN
  (missing). A `costs` key that never appears under `scores` is an error (likely a typo).
- A row without `split` takes it from the file name (`x_train.jsonl` -> train, `x-test.jsonl`
  -> test), else ''.
- Costs: a cost given in the row is used as is. A missing one is estimated from a `prices`
  file (`{model: {"input_price": x, "output_price": y}}`, USD per million tokens) as
  (estimated prompt tokens * input_price + typical answer tokens for the task * output_price)
  / 1e6, with the estimates of `evaluation.loaders.prices` (ASCII chars / 4; 8 tokens for
  multiple-choice tasks, 256 for math and code, 256 for unknown tasks). Without a prices
  file a missing cost is an error, because cost-aware routers cannot fit without one; the
  exception is a model with neither score nor cost in that row, whose cost is NaN.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.loaders.errors import DatasetError
from evaluation.loaders.prices import estimate_tokens, output_tokens, read_prices
from evaluation.loaders.routerdc import number_map, task_and_split
from routers.dataset import RoutingDataset

SPLITS = ("train", "test", "")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == ".jsonl" and p.is_file())
    return [path] if path.suffix == ".jsonl" else []


def is_jsonl(path: Path) -> bool:
    """The first non-blank line of the first file is an object with prompt and scores."""
    files = _files(path)
    if not files:
        return False
    try:
        with files[0].open(encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), "")
        row = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and "prompt" in row and "scores" in row


def _text(path: Path, row: int, name: str, value: object, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(f"{path}: row {row}: field {name!r}: expected text, got {type(value).__name__}")
    return str(value)


def _responses(path: Path, row: int, value: object) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(v is None or isinstance(v, str) for v in value.values()):
        raise DatasetError(f"{path}: row {row}: field 'responses': expected an object of texts")
    return value


def json_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file, or a one-line error."""
    try:
        # "\n" only: str.splitlines would also break at U+2028 and other separators that JSON
        # strings may hold unescaped (LLMRouter's query files do).
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    out = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{path}: row {i}: not valid JSON: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise DatasetError(f"{path}: row {i}: expected an object, got {type(raw).__name__}")
        out.append((i, raw))
    return out


def _read(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, parsed row with validated fields) for each non-blank line."""
    _, file_split = task_and_split(path.stem)
    rows = []
    for i, raw in json_lines(path):
        if not isinstance(raw.get("prompt"), str):
            raise DatasetError(f"{path}: row {i}: field 'prompt': expected text, got {type(raw.get('prompt')).__name__}")
        costs = number_map(path, i, "costs", raw["costs"]) if raw.get("costs") is not None else {}
        costs = {m: c for m, c in costs.items() if not math.isnan(c)}  # null: no cost given, estimate it
        negative = [m for m, c in costs.items() if not c >= 0]
        if negative:
            raise DatasetError(f"{path}: row {i}: field 'costs': expected USD >= 0 for {negative[0]!r}, got {costs[negative[0]]}")
        split = _text(path, i, "split", raw.get("split"), file_split)
        if split not in SPLITS:
            raise DatasetError(f"{path}: row {i}: field 'split': expected 'train', 'test' or '', got {split!r}")
        rows.append((i, {
            "prompt": raw["prompt"],
            "scores": number_map(path, i, "scores", raw.get("scores")),
            "costs": costs,
            "task": _text(path, i, "task", raw.get("task"), ""),
            "split": split,
            "id": _text(path, i, "id", raw.get("id"), f"{path.stem}:{i}"),
            "responses": _responses(path, i, raw.get("responses")),
        }))
    return rows


def load_jsonl(path: str | Path, prices: str | Path | None = None) -> RoutingDataset:
    path = Path(path)
    files = _files(path)
    if not files:
        raise DatasetError(f"{path}: no .jsonl files")
    rows = [(f, i, row) for f in files for i, row in _read(f)]
    if not rows:
        raise DatasetError(f"{path}: no rows")
    models = sorted({m for _, _, r in rows for m in r["scores"]})
    for f, i, r in rows:
        stray = [m for m in r["costs"] if m not in models]
        if stray:
            raise DatasetError(f"{f}: row {i}: field 'costs': model {stray[0]!r} has no scores in any row")
    table = read_prices(prices) if prices is not None else None
    costs = np.full((len(rows), len(models)), np.nan, dtype=np.float64)
    for n, (f, i, r) in enumerate(rows):
        for m_idx, m in enumerate(models):
            if m in r["costs"]:
                costs[n, m_idx] = r["costs"][m]
            elif table is not None:
                if m not in table:
                    raise DatasetError(f"{prices}: no price for model {m!r} (needed for {f}: row {i})")
                price = table[m]
                costs[n, m_idx] = (estimate_tokens(r["prompt"]) * price.input + output_tokens(r["task"]) * price.output) / 1e6
            elif m in r["scores"]:
                raise DatasetError(f"{f}: row {i}: field 'costs': no cost for model {m!r} and no prices file given "
                                   '(add costs, or pass prices={model: {"input_price": x, "output_price": y}})')
    has_responses = any(r["responses"] for _, _, r in rows)
    return RoutingDataset(
        prompts=[r["prompt"] for _, _, r in rows],
        models=models,
        scores=np.array([[r["scores"].get(m, math.nan) for m in models] for _, _, r in rows], dtype=np.float32),
        costs=costs.astype(np.float32),
        tasks=[r["task"] for _, _, r in rows],
        splits=[r["split"] for _, _, r in rows],
        sample_ids=[r["id"] for _, _, r in rows],
        responses=[[r["responses"].get(m) for m in models] for _, _, r in rows] if has_responses else None,
        source=str(path),
    )
