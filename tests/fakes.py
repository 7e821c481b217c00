"""Fake components for tests (as simonw/llm's tests use fake models): handed to the pipeline
through its interfaces, so tests need neither a real model nor a pre-filled cache."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from textclust.errors import SettingsError

FAKE_MODEL = "test-fake-8d"  # never a real model name


class FakeEmbedder:
    """A :class:`textclust.interfaces.Embedder` that knows the vectors of a fixed set of texts.

    Any other string (the goal, a user candidate's explanation, a word) is refused the way a
    model that cannot be loaded refuses it, unless ``vectors_for_unknown`` is set: then it gets
    a deterministic unit vector derived from its characters (so the goal steers, as with a
    real model). ``calls`` counts the texts encoded, to show what was computed or cached.
    """

    def __init__(self, texts, vectors, model: str = FAKE_MODEL, vectors_for_unknown: bool = False):
        self.model = model
        self.known = {t: np.asarray(v, dtype=np.float32) for t, v in zip(texts, vectors)}
        self.dim = len(next(iter(self.known.values()))) if self.known else 8
        self.vectors_for_unknown = vectors_for_unknown
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            if text in self.known:
                out.append(self.known[text])
            elif self.vectors_for_unknown:
                out.append(_hash_vector(text, self.dim))
            else:
                raise SettingsError(f"cannot load embedding model '{self.model}': the fake knows only its texts")
        self.calls += len(texts)
        return np.vstack(out).astype(np.float32) if out else np.zeros((0, self.dim), dtype=np.float32)


def _hash_vector(text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(text.encode("utf-8")[:64].ljust(8, b"\0")[:8], "little") ^ len(text)
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def hashed_words(strings: list[str], dim: int = 256, stop=frozenset()) -> np.ndarray:
    """A deterministic embedding for model-stage tests: a hashed bag of words (``stop`` left out),
    unit length, so a text and an explanation sharing a keyword are close."""
    out = np.full((len(strings), dim), 1e-3)
    for i, s in enumerate(strings):
        for word in re.findall(r"[a-z]+", s.lower()):
            if word not in stop:
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
