"""Query embeddings on the request path: an LRU by text hash, then the store's shared cache
(Redis: a query one replica embedded is not embedded again by the others), then a
micro-batcher that embeds the queries arriving within `window_s` (or `max_batch` of them) in
one model call. What the model computes goes into both caches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np

from gateway.store import StoreError
from gateway.window import Window
from routers.embedder import Embedder, EmbeddingLRU, text_key

log = logging.getLogger("switchyard.embedding")

Lookup = Callable[[str, int], None]  # (source: "local" | "shared" | "computed", how many)


class VectorCache(Protocol):
    """The store's side (gateway/store.py; the degradable wrapper passes it through)."""

    async def get_vectors(self, keys: list[str]) -> list[bytes | None]: ...

    async def put_vectors(self, vectors: dict[str, bytes], ttl_s: float) -> None: ...


class QueryEmbedder:
    def __init__(self, embedder: Embedder, cache_size: int = 100_000, window_s: float = 0.002, max_batch: int = 64,
                 shared: VectorCache | None = None, shared_ttl_s: float = 86_400.0, on_lookup: Lookup | None = None) -> None:
        self.embedder = embedder
        self.cache = EmbeddingLRU(cache_size)
        self.window_s = window_s
        self.max_batch = max_batch
        self.shared, self.shared_ttl_s = shared, shared_ttl_s
        self.on_lookup = on_lookup or (lambda _source, _n: None)
        self._window: Window[tuple[str, str, asyncio.Future[np.ndarray]]] = Window(window_s, max_batch, self._run)
        self._writes: set[asyncio.Task[None]] = set()  # shared-cache writes in the background, held until done

    async def embed(self, text: str) -> np.ndarray:
        key = text_key(self.embedder.cache_id, text)
        vec = self.cache.get(key)
        if vec is not None:
            self.on_lookup("local", 1)
            return vec
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        self._window.add((key, text, fut))
        return await fut

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        """[n, D] for a batch the caller already gathered (online grouping): the LRU, then one
        lookup in the shared cache and one model call for the misses, with no window of its own."""
        keys = [text_key(self.embedder.cache_id, t) for t in texts]
        found = [self.cache.get(k) for k in keys]
        self.on_lookup("local", sum(v is not None for v in found))
        missing = {k: t for k, t, v in zip(keys, texts, found) if v is None}
        if missing:
            fresh = await self._fill(missing)
            found = [fresh[k] if v is None else v for k, v in zip(keys, found)]
        return np.stack(found)

    async def _fill(self, missing: dict[str, str]) -> dict[str, np.ndarray]:
        """Vectors for LRU misses (key -> text): the shared cache first, the model for the rest."""
        out = await self._from_shared(list(missing))
        todo = {k: t for k, t in missing.items() if k not in out}
        if todo:
            vecs = await asyncio.to_thread(self.embedder.encode, list(todo.values()))
            computed = dict(zip(todo, vecs))
            out |= computed
            self.on_lookup("computed", len(computed))
            if self.shared is not None:  # the waiters need not wait for Redis to take a copy
                task = asyncio.get_running_loop().create_task(self._to_shared(computed))
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
        for key, vec in out.items():
            self.cache.put(key, vec)
        return out

    async def _from_shared(self, keys: list[str]) -> dict[str, np.ndarray]:
        if self.shared is None:
            return {}
        try:
            blobs = await self.shared.get_vectors(keys)
        except StoreError as exc:  # a cache: a failed lookup is a miss, never a failed request
            log.warning("shared embedding cache: %s", exc)
            return {}
        size = self.embedder.dim * 4
        out = {k: np.frombuffer(b, dtype=np.float32).copy() for k, b in zip(keys, blobs) if b is not None and len(b) == size}
        self.on_lookup("shared", len(out))
        return out

    async def _to_shared(self, vectors: dict[str, np.ndarray]) -> None:
        assert self.shared is not None
        try:
            await self.shared.put_vectors({k: np.asarray(v, dtype=np.float32).tobytes() for k, v in vectors.items()}, self.shared_ttl_s)
        except StoreError as exc:
            log.warning("shared embedding cache: %s", exc)

    async def _run(self, batch: list[tuple[str, str, asyncio.Future[np.ndarray]]]) -> None:
        unique = {key: text for key, text, _ in batch}
        try:
            by_key = await self._fill(unique)
        except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for key, _, fut in batch:
            if not fut.done():
                fut.set_result(by_key[key])
