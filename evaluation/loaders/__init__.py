"""Loaders: routing data files in public formats -> RoutingDataset."""

from __future__ import annotations

from pathlib import Path

from evaluation.loaders.errors import DatasetError
from evaluation.loaders.jsonl import is_jsonl, load_jsonl
from evaluation.loaders.llmrouter import is_llmrouter, load_llmrouter
from evaluation.loaders.routerbench import is_routerbench, load_routerbench
from evaluation.loaders.routerdc import is_routerdc, load_routerdc
from routers.dataset import RoutingDataset

FORMATS = ("RouterBench .csv/.pkl, RouterDC .json lists, an LLMRouter folder (default_llm.json), "
           "or Switchyard .jsonl (prompt + scores)")


def load_dataset(path: str | Path, *, prices: Path | None = None) -> RoutingDataset:
    """Load a file or folder, detecting its format.

    `prices` ({model: {"input_price", "output_price"}}, USD per million tokens) feeds the
    token-estimated costs of formats without per-response costs; RouterBench ignores it.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if is_routerbench(path):
        return load_routerbench(path)
    # LLMRouter before RouterDC: they share the JSON row format and default_llm.json tells them apart.
    if is_llmrouter(path):
        return load_llmrouter(path, prices=prices)
    if is_routerdc(path):
        return load_routerdc(path, prices=prices)
    if is_jsonl(path):
        return load_jsonl(path, prices=prices)
    raise DatasetError(f"{path}: not a recognised routing dataset (expected {FORMATS})")


__all__ = ["DatasetError", "load_dataset"]
