"""Query embeddings on the request path: an LRU by text hash, then a micro-batcher that
embeds the queries arriving within `window_s` (or `max_batch` of them) in one model call."""

from __future__ import annotations

import asyncio

import numpy as np

from gateway.window import Window
from routers.embedder import Embedder, EmbeddingLRU, text_key


class QueryEmbedder:
    def __init__(self, embedder: Embedder, cache_size: int = 100_000, window_s: float = 0.002, max_batch: int = 64) -> None:
        self.embedder = embedder
        self.cache = EmbeddingLRU(cache_size)
        self.window_s = window_s
        self.max_batch = max_batch
        self._window: Window[tuple[str, str, asyncio.Future[np.ndarray]]] = Window(window_s, max_batch, self._run)
        self.hits = 0
        self.misses = 0

    async def embed(self, text: str) -> np.ndarray:
        key = text_key(self.embedder.cache_id, text)
        vec = self.cache.get(key)
        if vec is not None:
            self.hits += 1
            return vec
        self.misses += 1
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        self._window.add((key, text, fut))
        return await fut

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        """[n, D] for a batch the caller already gathered (online grouping): the LRU, then one
        model call for the misses, with no window of its own."""
        keys = [text_key(self.embedder.cache_id, t) for t in texts]
        found = [self.cache.get(k) for k in keys]
        missing = {k: t for k, t, v in zip(keys, texts, found) if v is None}
        misses = sum(v is None for v in found)
        self.hits += len(texts) - misses
        self.misses += misses
        if missing:
            vecs = await asyncio.to_thread(self.embedder.encode, list(missing.values()))
            for key, vec in zip(missing, vecs):
                self.cache.put(key, vec)
            fresh = dict(zip(missing, vecs))
            found = [fresh[k] if v is None else v for k, v in zip(keys, found)]
        return np.stack(found)

    async def _run(self, batch: list[tuple[str, str, asyncio.Future[np.ndarray]]]) -> None:
        unique = {key: text for key, text, _ in batch}
        try:
            vecs = await asyncio.to_thread(self.embedder.encode, list(unique.values()))
        except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        by_key = dict(zip(unique, vecs))
        for key, vec in by_key.items():
            self.cache.put(key, vec)
        for key, _, fut in batch:
            if not fut.done():
                fut.set_result(by_key[key])
