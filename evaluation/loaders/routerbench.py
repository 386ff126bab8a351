"""RouterBench (arXiv 2403.12031): CSV slices and the original routerbench_0shot.pkl.

Columns: sample_id, prompt (a Python list literal of strings), eval_name, one 0/1 score
column per model, `<model>|model_response`, `<model>|total_cost` (USD).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.loaders.errors import DatasetError
from routers.dataset import RoutingDataset

SUFFIXES = (".csv", ".pkl")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
    return [path] if path.suffix in SUFFIXES else []


def is_routerbench(path: Path) -> bool:
    return bool(_files(path))


def _read(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".pkl":
            # RouterBench ships a pandas pickle; only load files you trust.
            frame = pd.read_pickle(path)
        else:
            frame = pd.read_csv(path, keep_default_na=True)
    except Exception as exc:  # noqa: BLE001 - any parser failure becomes one line
        raise DatasetError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    for col in ("prompt", "eval_name"):
        if col not in frame.columns:
            raise DatasetError(f"{path}: missing column {col!r}")
    return frame


def _models(frame: pd.DataFrame) -> list[str]:
    return sorted(c.split("|")[0] for c in frame.columns if c.endswith("|total_cost"))


def _prompt(path: Path, row: int, raw: object) -> str:
    if isinstance(raw, list):
        parts = raw
    elif isinstance(raw, str) and raw.startswith("["):
        try:
            parts = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            raise DatasetError(f"{path}: row {row}: field 'prompt': not a Python list literal") from None
    elif isinstance(raw, str):
        parts = [raw]
    else:
        raise DatasetError(f"{path}: row {row}: field 'prompt': expected text, got {type(raw).__name__}")
    return "\n\n".join(str(p) for p in parts)


def _numeric(path: Path, frame: pd.DataFrame, col: str) -> np.ndarray:
    values = pd.to_numeric(frame[col], errors="coerce")
    bad = values.isna() & frame[col].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{path}: row {row + 1}: field {col!r}: not a number: {frame[col].iloc[row]!r}")
    return values.to_numpy(dtype=np.float64)


def load_routerbench(path: str | Path) -> RoutingDataset:
    path = Path(path)
    files = _files(path)
    if not files:
        raise DatasetError(f"{path}: no RouterBench .csv or .pkl files")
    frames = [(f, _read(f)) for f in files]
    models = _models(frames[0][1])
    if not models:
        raise DatasetError(f"{files[0]}: no '<model>|total_cost' columns")
    prompts, tasks, splits, ids, scores, costs, responses = [], [], [], [], [], [], []
    for f, frame in frames:
        for m in models:
            for col in (m, f"{m}|total_cost"):
                if col not in frame.columns:
                    raise DatasetError(f"{f}: missing column {col!r}")
        split = "train" if f.stem.endswith("_train") else "test" if f.stem.endswith("_test") else ""
        prompts += [_prompt(f, i + 1, raw) for i, raw in enumerate(frame["prompt"])]
        tasks += [str(t) for t in frame["eval_name"]]
        splits += [split] * len(frame)
        ids += [str(s) for s in frame.get("sample_id", pd.Series(range(len(frame))))]
        scores.append(np.stack([_numeric(f, frame, m) for m in models], axis=1))
        costs.append(np.stack([_numeric(f, frame, f"{m}|total_cost") for m in models], axis=1))
        resp_cols = [f"{m}|model_response" for m in models]
        if all(c in frame.columns for c in resp_cols):
            responses += [[None if pd.isna(v) else str(v) for v in row] for row in frame[resp_cols].itertuples(index=False)]
    return RoutingDataset(
        prompts=prompts,
        models=models,
        scores=np.concatenate(scores).astype(np.float32),
        costs=np.concatenate(costs).astype(np.float32),
        tasks=tasks,
        splits=splits,
        sample_ids=ids,
        responses=responses if len(responses) == len(prompts) else None,
        source=str(path),
    )
