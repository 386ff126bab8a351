"""Dataset embeddings for the suites, cached one file per split.

The on-disk cache (routers.embedder.embed_cached) is keyed by the exact list of texts; training
(`switchyard train`) and `switchyard targets` embed each split on its own, so embedding a
dataset split by split here reuses their files instead of embedding every prompt again."""

from __future__ import annotations

from typing import Any

import numpy as np

from routers.dataset import RoutingDataset


def embed_by_split(embedder: Any, data: RoutingDataset) -> np.ndarray:
    """[N, D] embeddings of `data.prompts`, computed (or read) per split: train, test, then the rest."""
    from routers.embedder import embed_cached  # noqa: PLC0415 - heavy import

    marks = np.asarray(data.splits)
    x = np.zeros((len(data), embedder.dim), np.float32)
    for name in dict.fromkeys(["train", "test", *marks.tolist()]):
        rows = np.flatnonzero(marks == name)
        if len(rows):
            x[rows] = embed_cached(embedder, [data.prompts[i] for i in rows])
    return x
