"""Fit a router on a dataset file and save its artifact (the `switchyard train` command)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evaluation.loaders import load_dataset
from routers.artifacts import build_router, save_router
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
