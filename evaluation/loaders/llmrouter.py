"""LLMRouter (ulab-uiuc/LLMRouter) data: a folder with `default_llm.json`.

- `train.json` / `test.json`: `[{"question": str, "scores": {model: float}}]` (split from the
  file name). A single one of them loads alone when `default_llm.json` lies beside it.
- Tasks: joined on the question text from `default_query_{split}.jsonl` (`query` ->
  `task_name`), then from the other `default_query_*.jsonl` files. A question listed under
  two tasks (six in the train file: mmlu and openbook_qa/arc_challenge) takes the first
  line's task. With no query file the tasks are ''; with one, a question it lacks is an error.
- Prices: `default_llm.json` gives each model `input_price` and `output_price` in USD per
  million tokens; a `prices` file overrides entries.
- Costs: the source has per-model prices but no token counts, so each response costs
  (estimated prompt tokens * input_price + typical answer tokens for the task * output_price) / 1e6,
  with both estimates from `evaluation.loaders.prices` (ASCII chars / 4 for the prompt; 8
  tokens for multiple choice, 16 short-answer QA, 32 CommonGen, 256 math, logic and code).
"""

from __future__ import annotations

from pathlib import Path

from evaluation.loaders.errors import DatasetError
from evaluation.loaders.jsonl import json_lines
from evaluation.loaders.prices import read_prices
from evaluation.loaders.routerdc import price_table, read_rows, scored_dataset
from routers.dataset import RoutingDataset

PRICES_FILE = "default_llm.json"
SPLIT_FILES = ("train.json", "test.json")


def is_llmrouter(path: Path) -> bool:
    if path.is_dir():
        return (path / PRICES_FILE).exists()
    return path.suffix == ".json" and (path.parent / PRICES_FILE).exists()


def _query_tasks(path: Path) -> dict[str, str]:
    tasks: dict[str, str] = {}
    for i, row in json_lines(path):
        for name in ("query", "task_name"):
            if not isinstance(row.get(name), str):
                raise DatasetError(f"{path}: row {i}: field {name!r}: expected text")
        tasks.setdefault(row["query"], row["task_name"])  # first line wins for duplicates
    return tasks


def _task_index(folder: Path, split: str) -> dict[str, str] | None:
    files = sorted(folder.glob("default_query_*.jsonl"), key=lambda p: p.stem != f"default_query_{split}")
    if not files:
        return None
    index: dict[str, str] = {}
    for f in files:
        for query, task in _query_tasks(f).items():
            index.setdefault(query, task)
    return index


def load_llmrouter(path: str | Path, prices: str | Path | None = None) -> RoutingDataset:
    path = Path(path)
    if path.name == PRICES_FILE:
        path = path.parent
    folder = path if path.is_dir() else path.parent
    files = [folder / n for n in SPLIT_FILES if (folder / n).exists()] if path.is_dir() else [path]
    if not files:
        raise DatasetError(f"{path}: no LLMRouter train.json or test.json")
    prompts: list[str] = []
    tasks: list[str] = []
    splits: list[str] = []
    ids: list[str] = []
    score_rows: list[dict[str, float]] = []
    for f in files:
        split = f.stem if f.stem in ("train", "test") else ""
        index = _task_index(folder, split)
        for i, (question, scores) in enumerate(read_rows(f)):
            if index is not None and question not in index:
                raise DatasetError(f"{f}: row {i + 1}: field 'question': not found in {folder}/default_query_*.jsonl")
            prompts.append(question)
            score_rows.append(scores)
            tasks.append("" if index is None else index[question])
            splits.append(split)
            ids.append(f"{f.stem}:{i}")
    return scored_dataset(path, prompts, score_rows, tasks, splits, ids,
                          lambda models: price_table(models, prices, read_prices(folder / PRICES_FILE), folder / PRICES_FILE))
