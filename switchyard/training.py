"""Fit a router on a dataset file and save its artifact (`switchyard train`); give an expert a
profile in an existing artifact from labelled outcomes (`switchyard experts calibrate`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.loaders import load_dataset
from routers.artifacts import build_router, load_router, save_router
from routers.embedder import Embedder, embed_cached


def train_router(kind: str, data: Path, out: Path, split: str = "train", embedding_model: str = "all-MiniLM-L6-v2",
                 embedder: Embedder | None = None, prices: Path | None = None) -> dict[str, Any]:
    dataset = load_dataset(data, prices=prices)
    if split != "all":
        dataset = dataset.split(split)
    if len(dataset) == 0:
        raise ValueError(f"{data}: no rows in split {split!r}")
    embedder = embedder or Embedder(embedding_model)
    started = time.perf_counter()
    vecs = embed_cached(embedder, dataset.prompts)
    router = build_router(kind, dataset.models).fit(vecs, dataset)
    save_router(router, out, extra={"embedding_model": embedder.cache_id, "trained_on": str(data), "rows": len(dataset)})
    return {"artifact": str(out), "router": kind, "rows": len(dataset), "models": dataset.models,
            "params": router.params, "cost_ref": router.cost_ref, "seconds": round(time.perf_counter() - started, 2)}


def calibrate_expert(artifact: Path, name: str, data: Path, out: Path | None = None, column: str | None = None,
                     split: str = "all", embedder: Embedder | None = None, prices: Path | None = None) -> dict[str, Any]:
    """Give expert `name` a profile in a router artifact from labelled outcomes, no retraining.

    `data` is any routing dataset with a score column for the expert (`column`, default
    `name`); its costs, when present, become the profile's cost estimate, otherwise the gateway
    prices the expert from its spec. Writes `out` (default: the artifact itself, atomically).
    """
    router = load_router(artifact)
    dataset = load_dataset(data, prices=prices)
    if split != "all":
        dataset = dataset.split(split)
    column = column or name
    if column not in dataset.models:
        raise ValueError(f"{data}: no scores for model {column!r} (it has: {', '.join(dataset.models)})")
    m = dataset.models.index(column)
    embedder = embedder or Embedder.from_cache_id(getattr(router, "header", {}).get("embedding_model"))
    vecs = embed_cached(embedder, dataset.prompts)
    costs = None if dataset.costs is None else dataset.costs[:, m]
    router.calibrate_expert(name, vecs, dataset.scores[:, m], costs)
    header = {k: v for k, v in getattr(router, "header", {}).items() if k not in router.meta() and k not in ("format", "version")}
    save_router(router, out or artifact, extra=header)
    profile = router.profiles[name]
    return {"artifact": str(out or artifact), "expert": name, "prompts": int(len(profile.scores)),
            "mean_score": round(float(profile.scores.mean()), 4),
            "mean_cost_usd": None if np.isnan(profile.costs).all() else float(np.nanmean(profile.costs)),
            "models": router.all_models}
