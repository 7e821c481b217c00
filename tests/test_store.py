"""Stage 7 — the SQLite store: schema versions, corpora, embedding cache, runs and failures."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from sqlalchemy import select

from conftest import FAKE_MODEL, build_fake_run, copy_sqlite, file_sha256, table_counts
from textclust.errors import NotFoundError, TextclustError
from textclust.ingest import corpus_from_texts
from textclust.pipeline import Pipeline
from textclust.results import load_run
from textclust.store import Database
from textclust.store.schema import SCHEMA_VERSION, Cluster, ClusterMember, Explanation, Run, TextResult


def _rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- schema and migrations ---------------------------------------------------------------------


def test_new_database_is_stamped_with_every_schema_version(tmp_path):
    path = tmp_path / "new.db"
    Database(path).close()
    versions = _rows(path, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert [v for v, _ in versions] == list(range(1, SCHEMA_VERSION + 1))
    assert versions[0][1] == "initial schema"
    tables = {r[0] for r in _rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"texts", "corpora", "input_rows", "embeddings", "runs", "clusters", "cluster_members",
            "explanations", "assignments", "selections", "text_results", "schema_migrations"} <= tables


def test_reopening_is_a_no_op(tmp_path, blobs):
    path = tmp_path / "reopen.db"
    db = Database(path)
    db.save_corpus(corpus_from_texts(blobs.texts[:5]))
    db.close()
    before = (_rows(path, "SELECT * FROM schema_migrations"), table_counts(path))
    for _ in range(2):
        Database(path).close()
    assert (_rows(path, "SELECT * FROM schema_migrations"), table_counts(path)) == before


def test_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "future.db"
    Database(path).close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', '2099-01-01')",
                (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(TextclustError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this textclust"):
        Database(path)


def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('Ada')")
    con.commit()
    con.close()
    with pytest.raises(TextclustError, match="not created by textclust"):
        Database(path)
    assert _rows(path, "SELECT name FROM sqlite_master WHERE type='table'") == [("customers",)]
    assert _rows(path, "SELECT name FROM customers") == [("Ada",)]


def test_foreign_sqlite_database_is_not_modified(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    digest = file_sha256(path)
    with pytest.raises(TextclustError, match="not created by textclust"):
        Database(path)
    assert _rows(path, "PRAGMA journal_mode") == [("delete",)]
    assert file_sha256(path) == digest


def test_non_sqlite_file_is_a_clean_error(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"These are my notes, not a database.\n" * 50)
    digest = file_sha256(path)
    with pytest.raises(TextclustError, match="not a usable SQLite database"):
        Database(path)
    assert file_sha256(path) == digest


@pytest.mark.parametrize("command", ["runs", "run"])
def test_non_sqlite_file_as_db_through_the_cli(command, cli_invoke, make_file, tmp_path):
    db = tmp_path / "dbdir" / "notes.db"
    db.parent.mkdir()
    db.write_bytes(b"These are my notes, not a database.\n" * 50)
    digest = file_sha256(db)
    args = ["runs"] if command == "runs" else [
        "run", make_file("in.csv", "text\nfirst text here\nsecond text here\n"), "--goal", "topic"]
    result = cli_invoke(*args, "--db", db)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"textclust: error: --db {db}: not a usable SQLite database (file is not a database)")
    assert file_sha256(db) == digest
    assert [p.name for p in db.parent.iterdir()] == ["notes.db"]


def test_db_path_problems(tmp_path):
    with pytest.raises(TextclustError, match="is a directory"):
        Database(tmp_path)
    with pytest.raises(TextclustError, match="does not exist"):
        Database(tmp_path / "missing" / "x.db")
    assert not (tmp_path / "missing").exists()


# --- corpora and texts --------------------------------------------------------------------------


def test_save_corpus_is_idempotent_and_shares_texts(tmp_path):
    db = Database(tmp_path / "corpora.db")
    first = corpus_from_texts(["alpha beta", "gamma delta", "alpha  beta", ""], name="first")
    again = corpus_from_texts(["alpha beta", "gamma delta", "alpha  beta", ""], name="renamed")
    other = corpus_from_texts(["gamma delta", "epsilon zeta"], name="other")
    id1 = db.save_corpus(first)
    assert db.save_corpus(again) == id1  # same content -> the same stored corpus
    id2 = db.save_corpus(other)
    assert id2 != id1
    db.close()
    path = tmp_path / "corpora.db"
    counts = table_counts(path)
    assert counts["corpora"] == 2
    assert counts["texts"] == 3  # alpha beta, gamma delta, epsilon zeta: shared, stored once
    assert counts["input_rows"] == 4 + 2
    stored = _rows(path, f"SELECT name, n_rows, n_texts, n_empty, n_duplicate_rows FROM corpora WHERE id = {id1}")
    assert stored == [("first", 4, 2, 1, 1)]
    rows = _rows(path, f"SELECT row_index, text_id FROM input_rows WHERE corpus_id = {id1} ORDER BY row_index")
    assert [t for _, t in rows] == first.row_text_ids


# --- embedding cache -----------------------------------------------------------------------------


def test_embedding_cache_round_trips_vectors_exactly(tmp_path):
    db = Database(tmp_path / "emb.db")
    texts = [f"text number {w}" for w in ["one", "two", "three", "four"]]
    corpus = corpus_from_texts(texts)
    db.save_corpus(corpus)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(4, 384)).astype(np.float32)
    vectors[0, :3] = [np.float32(1e-42), np.float32(-0.0), np.finfo(np.float32).max]  # awkward values too
    ids = corpus.text_ids
    db.store_embeddings("model-a", ids[:3], vectors[:3])
    found = db.cached_embeddings("model-a", ids)
    assert set(found) == set(ids[:3])  # the fourth was never stored
    for i, tid in enumerate(ids[:3]):
        assert found[tid].dtype == np.float32
        np.testing.assert_array_equal(found[tid], vectors[i])
        assert found[tid].tobytes() == vectors[i].tobytes()
    # The cache is per model.
    assert db.cached_embeddings("model-b", ids) == {}
    # Storing again is harmless and does not overwrite.
    db.store_embeddings("model-a", ids[:1], np.zeros((1, 384), dtype=np.float32))
    np.testing.assert_array_equal(db.cached_embeddings("model-a", ids[:1])[ids[0]], vectors[0])
    db.close()


def test_embed_texts_uses_the_cache_without_loading_the_model(tmp_path, blobs, monkeypatch):
    from textclust.embed import Embedder, embed_texts

    db = Database(tmp_path / "cache.db")
    corpus = corpus_from_texts(blobs.texts)
    db.save_corpus(corpus)
    db.store_embeddings(FAKE_MODEL, corpus.text_ids, blobs.X)
    monkeypatch.setattr(Embedder, "_load", lambda self: pytest.fail("the model must not be loaded"))
    X, report = embed_texts(db, Embedder(FAKE_MODEL, progress=False), corpus.text_ids,
                            [corpus.texts[t] for t in corpus.text_ids])
    assert (report.computed, report.cached) == (0, len(blobs.texts))
    np.testing.assert_array_equal(X, blobs.X)
    db.close()


def test_embed_texts_computes_only_missing_vectors(tmp_path, blobs, monkeypatch):
    from textclust.embed import Embedder, embed_texts

    db = Database(tmp_path / "partial.db")
    corpus = corpus_from_texts(blobs.texts)
    ids = corpus.text_ids
    db.save_corpus(corpus)
    db.store_embeddings(FAKE_MODEL, ids[:50], blobs.X[:50])
    asked = []

    def fake_encode(self, texts, bar=None):
        asked.extend(texts)
        if bar is not None:
            bar.update(len(texts))
        return np.vstack([blobs.X[blobs.texts.index(t)] for t in texts])

    monkeypatch.setattr(Embedder, "encode", fake_encode)
    X, report = embed_texts(db, Embedder(FAKE_MODEL, progress=False), ids, [corpus.texts[t] for t in ids])
    assert (report.computed, report.cached) == (10, 50)
    assert asked == [corpus.texts[t] for t in ids[50:]]
    np.testing.assert_array_equal(X, blobs.X)
    assert len(db.cached_embeddings(FAKE_MODEL, ids)) == 60  # the new vectors were stored
    db.close()


# --- runs: complete and failed ---------------------------------------------------------------------


def test_fake_run_is_complete_and_loadable(fake_run_db, blobs):
    db = Database(fake_run_db.db)
    result = load_run(db, fake_run_db.run_id)
    db.close()
    assert result.status == "complete"
    assert len(result.clusters) == 3
    assert result.stats["coverage"] == pytest.approx(1.0)
    assert result.stats["embeddings_computed"] == 0
    assert result.settings == fake_run_db.settings.to_dict()
    assert len(result.rows) == len(blobs.texts)
    assert sorted(c.size for c in result.clusters) == [20, 20, 20]


def test_load_run_unknown_id(fake_run_db):
    db = Database(fake_run_db.db)
    with pytest.raises(NotFoundError, match="no run with id 12345"):
        load_run(db, 12345)
    with pytest.raises(NotFoundError):
        db.get_run(12345)
    db.close()


def _snapshot(db: Database, run_id: int):
    result = load_run(db, run_id)
    return (result.status, [(c.name, c.size, c.explanation) for c in result.clusters],
            [(r["text_id"], r["explanation_id"]) for r in result.rows])


@pytest.mark.parametrize("exception", [RuntimeError("boom in explain"), KeyboardInterrupt()])
def test_failed_run_is_marked_failed_and_earlier_runs_stay_intact(exception, copy_db, fake_run_db, monkeypatch, blobs):
    path = copy_db(fake_run_db.db)
    db = Database(path)
    before = _snapshot(db, fake_run_db.run_id)

    def explode(self, *args, **kwargs):
        raise exception

    monkeypatch.setattr("textclust.pipeline.OfflineExplainer.explain", explode)
    with pytest.raises(type(exception)):
        Pipeline(db, fake_run_db.settings).run(fake_run_db.corpus, "which topic the text is about")

    runs = {run.id: run for run, _ in db.list_runs()}
    assert len(runs) == 2
    failed = runs[max(runs)]
    assert failed.status == "failed"
    assert failed.error.startswith(type(exception).__name__)
    if isinstance(exception, RuntimeError):
        assert "boom in explain" in failed.error
    assert failed.finished_at is not None
    assert runs[fake_run_db.run_id].status == "complete"
    assert _snapshot(db, fake_run_db.run_id) == before
    # The failed run loads (no clusters, its error kept) and is never reused.
    loaded = load_run(db, failed.id)
    assert loaded.status == "failed" and loaded.clusters == [] and loaded.rows == []
    corpus_id = runs[fake_run_db.run_id].corpus_id
    assert db.find_complete_run(corpus_id, "which topic the text is about",
                                fake_run_db.settings.to_dict()) == fake_run_db.run_id
    db.close()


def test_failure_while_storing_leaves_no_partial_results(copy_db, fake_run_db, monkeypatch):
    path = copy_db(fake_run_db.db)
    db = Database(path)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    # utcnow is called at the very end of the storing transaction.
    monkeypatch.setattr("textclust.store.write.utcnow", fail)
    with pytest.raises(RuntimeError):
        Pipeline(db, fake_run_db.settings).run(fake_run_db.corpus, "which topic the text is about")
    failed_id = max(run.id for run, _ in db.list_runs())
    assert db.get_run(failed_id).status == "failed"
    with db.transaction() as s:
        for model in (Cluster, ClusterMember, Explanation, TextResult):
            assert s.scalars(select(model).where(model.run_id == failed_id)).all() == [], model.__name__
        assert s.get(Run, fake_run_db.run_id).status == "complete"
    db.close()


def test_failed_run_through_the_cli(cli_invoke, copy_db, fake_run_db, monkeypatch, tmp_path):
    path = copy_db(fake_run_db.db)
    db = Database(path)
    def explode(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("textclust.pipeline.OfflineExplainer.explain", explode)
    with pytest.raises(RuntimeError):
        Pipeline(db, fake_run_db.settings).run(fake_run_db.corpus, "which topic the text is about")
    failed_id = max(run.id for run, _ in db.list_runs())
    db.close()

    shown = cli_invoke("show", failed_id, "--db", path)
    assert shown.exit_code == 0
    assert "status failed" in shown.stdout
    assert "RuntimeError: boom" in shown.stdout

    listed = cli_invoke("runs", "--json", "--db", path)
    statuses = {r["id"]: r["status"] for r in json.loads(listed.stdout)}
    assert statuses == {fake_run_db.run_id: "complete", failed_id: "failed"}

    out = tmp_path / "failed.csv"
    exported = cli_invoke("export", failed_id, "-o", out, "--db", path)
    assert exported.exit_code == 2
    assert exported.stderr.strip() == f"textclust: error: run {failed_id} is failed; only complete (or budget-stopped) runs can be exported"
    assert not out.exists()


def test_second_corpus_shares_the_database(tmp_path, blobs):
    """Two runs on different corpora in one database: both complete and independent."""
    path = tmp_path / "two.db"
    first = build_fake_run(path, blobs)
    half = type(blobs)(blobs.texts[::2], blobs.X[::2], blobs.groups[::2], blobs.topics)
    second = build_fake_run(path, half)
    counts = table_counts(path)
    assert counts["corpora"] == 2 and counts["runs"] == 2
    assert counts["texts"] == len(blobs.texts)  # the second corpus's texts were already stored
    assert counts["embeddings"] == len(blobs.texts)
    db = Database(path)
    assert len(load_run(db, first.run_id).rows) == 60
    assert len(load_run(db, second.run_id).rows) == 30
    db.close()


def test_copy_of_database_is_byte_stable(fake_run_db, tmp_path):
    # Sanity check of the helper the bad-input tests rely on: reading does not change bytes.
    path = copy_sqlite(fake_run_db.db, tmp_path / "c.db")
    digest = file_sha256(path)
    table_counts(path)
    assert file_sha256(path) == digest
