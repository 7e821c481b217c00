"""A persistent embedding cache for the benchmarks, shared across processes.

Why not textclust's own database: its cache (``embeddings``, keyed by model and text id, a
SHA-256 of the normalised text) only holds texts of a stored corpus (a foreign key to
``texts``), so the strings a run also encodes (the goal, the offline explainer's candidate
phrases) are never cached and every process loads the model for them; and every run
stored there would pile up in a file meant to live for months. Here any string is cached,
keyed by model name and the SHA-256 of the exact string the model is given, so a warm
benchmark never loads the model; the runs themselves go to a throw-away database.

Default folder ``~/.cache/textclust/bench`` (``TEXTCLUST_BENCH_CACHE`` overrides it).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np

from textclust.embed import SentenceTransformerEmbedder

CACHE_ENV = "TEXTCLUST_BENCH_CACHE"
CACHE_FILE = "embeddings.sqlite"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "textclust" / "bench")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """(model, SHA-256 of text) → float32 vector, in one SQLite file under ``folder``."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / CACHE_FILE
        # A second benchmark process may write at the same time: WAL and a generous timeout.
        self.conn = sqlite3.connect(self.path, timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, vector BLOB, "
                          "PRIMARY KEY (model, key))")

    def get(self, model: str, texts: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors of ``texts``, by text (missing ones left out)."""
        by_key = {_key(t): t for t in texts}
        keys, found = list(by_key), {}
        for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = keys[start:start + 500]
            rows = self.conn.execute(
                f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({','.join('?' * len(chunk))})",
                [model, *chunk])
            for key, blob in rows:
                found[by_key[key]] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, model: str, texts: list[str], vectors: np.ndarray) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?, ?)",
                                  [(model, _key(t), np.asarray(v, np.float32).tobytes())
                                   for t, v in zip(texts, vectors)])

    def close(self) -> None:
        self.conn.close()


class CachedEmbedder(SentenceTransformerEmbedder):
    """textclust's sentence-transformers embedder, reading and filling an :class:`EmbeddingCache`.

    The model is loaded only when a string is missing from the cache. ``computed`` counts
    the strings actually encoded in this process."""

    def __init__(self, cache: EmbeddingCache, **kwargs):
        super().__init__(**kwargs)
        self.cache = cache
        self.computed = 0
        self._dim = None  # known from the first vector seen; an empty call then needs no model

    def encode(self, texts: list[str], bar=None) -> np.ndarray:
        texts = list(texts)
        if not texts:  # the model's answer needs its dimension: known once a vector was seen
            return np.zeros((0, self._dim), np.float32) if self._dim else super().encode(texts)
        found = self.cache.get(self.model, texts)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            vectors = super().encode(missing, bar=bar)
            self.cache.put(self.model, missing, vectors)
            found.update(zip(missing, vectors))
            self.computed += len(missing)
        if bar is not None:
            bar.update(len(texts) - len(missing))  # the model's loop advanced it for the rest
        matrix = np.vstack([found[t] for t in texts]).astype(np.float32)
        self._dim = matrix.shape[1]
        return matrix

    def encode_uncached(self, texts: list[str]) -> np.ndarray:
        """Encoded by the model whatever the cache holds (to time the model)."""
        return super().encode(list(texts))
