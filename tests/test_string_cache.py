"""A fully cached re-run loads no embedding model (issue 11, item 5): the goal's, the candidate
terms' and the user's explanations' vectors are cached in the database like the texts'."""

from __future__ import annotations

import csv
import hashlib
import sqlite3

import numpy as np
import pytest

from conftest import GOAL, SAMPLE
from tests.fakes import FakeEmbedder
from textclust.config import RunConfig
from textclust.embed import SentenceTransformerEmbedder, cached_or_encoded, string_key
from textclust.ingest import corpus_from_texts
from textclust.pipeline import Pipeline
from textclust.store import Database


def sample_texts(n=60) -> list[str]:
    with SAMPLE.open(encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f) if row["text"].strip()][:n]


def test_a_second_run_of_cached_texts_never_loads_the_model(tmp_path):
    corpus = corpus_from_texts(sample_texts(), name="sample")
    config = RunConfig.from_flat(k=3, candidates=[{"name": "refund", "explanation": "asks for money back"}])
    db = Database(tmp_path / "t.db")
    try:
        first = SentenceTransformerEmbedder()
        Pipeline(db, config, embedder=first).run(corpus, GOAL)
        assert first._model is not None  # the first run had to load it
        again = SentenceTransformerEmbedder()
        Pipeline(db, config, embedder=again).run(corpus, GOAL)
        assert again._model is None, "a fully cached re-run loaded the embedding model"
        runs = [db.get_run(r) for r in (1, 2)]
        assert [r.status for r in runs] == ["complete", "complete"]
    finally:
        db.close()
    con = sqlite3.connect(tmp_path / "t.db")
    (n,) = con.execute("SELECT count(*) FROM string_embeddings WHERE model = 'all-MiniLM-L6-v2'").fetchone()
    con.close()
    assert n > 3  # the goal, the seed's explanation and candidate terms


def test_cached_strings_are_the_vectors_the_model_gives(tmp_path, blobs):
    db = Database(tmp_path / "s.db")
    try:
        embedder = FakeEmbedder(blobs.texts, blobs.X, vectors_for_unknown=True)
        strings = ["the goal", "refund", "the goal", "late delivery"]
        first = cached_or_encoded(db, embedder, strings)
        assert embedder.calls == 3  # each distinct string once
        second = cached_or_encoded(db, embedder, list(reversed(strings)))
        assert embedder.calls == 3  # nothing computed again
        assert np.array_equal(second, first[::-1])
        assert np.array_equal(first[0], embedder.encode(["the goal"])[0])
        other = FakeEmbedder(blobs.texts, blobs.X, model="another-model", vectors_for_unknown=True)
        cached_or_encoded(db, other, ["the goal"])
        assert other.calls == 1  # vectors of two models never mix
        assert cached_or_encoded(db, embedder, []).shape[0] == 0
    finally:
        db.close()


@pytest.mark.parametrize("one, other", [("cafe\u0301", "caf\u00e9"), (" padded ", "padded"), ("two\nlines", "two lines"),
                                        ("Refund", "refund")])
def test_the_key_is_the_exact_string_the_model_reads(one, other):
    # Unlike a corpus text's id, the key does not normalise: the model is given the string as it is.
    assert string_key(one) != string_key(other)
    assert string_key(one) == hashlib.sha256(one.encode("utf-8")).hexdigest()
