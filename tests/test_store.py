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
    assert result.stats.coverage == pytest.approx(1.0)
    # The fake embedder computed every vector (nothing was pre-filled) and the run cached them.
    assert (result.stats.embeddings_computed, result.stats.embeddings_cached) == (len(blobs.texts), 0)
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
            [(r["text_id"], r["explanation_number"]) for r in result.rows])


@pytest.mark.parametrize("exception", [RuntimeError("boom in explain"), KeyboardInterrupt()])
def test_failed_run_is_marked_failed_and_earlier_runs_stay_intact(exception, copy_db, fake_run_db, monkeypatch, blobs):
    path = copy_db(fake_run_db.db)
    db = Database(path)
    before = _snapshot(db, fake_run_db.run_id)

    def explode(self, *args, **kwargs):
        raise exception

    monkeypatch.setattr("textclust.explain.OfflineExplainer.explain", explode)
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
    assert failed.settings_key == runs[fake_run_db.run_id].settings_key
    assert db.find_complete_run_by_key(failed.settings_key) == fake_run_db.run_id
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

    monkeypatch.setattr("textclust.explain.OfflineExplainer.explain", explode)
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


# --- the store's own interface, without the pipeline ------------------------------------------------
#
# Runs built straight through the Database methods with a hand-made ExplainResult, so that
# these tests say what the store promises whatever the stages above it do.


def _result(n_texts: int):
    """A small ExplainResult over ``n_texts`` texts: three candidates, two selected, two rounds,
    evidence quotes, a failed text and (depth 2) two sub-explanations of the first one."""
    from textclust.interfaces import NOISE, Assignment, Candidate, ExplainResult, RoundRecord, SelectionResult

    rng = np.random.default_rng(1)
    scores = rng.choice([1.0, 0.0], size=(n_texts, 3), p=[0.45, 0.55])
    scores[0] = [1.0, 1.0, 0.0]  # matches both selected explanations
    scores[1] = np.nan  # its judgment failed: fits nothing
    matches = scores == 1.0
    failed = np.zeros(n_texts, dtype=bool)
    failed[1] = True
    evidence = {(int(i), int(j)): f"quote {i}/{j}" for i, j in np.argwhere(matches)}
    candidates = [Candidate(f"name {j}", f"explanation {j}", np.zeros(4, dtype=np.float32), "llm", round=1 + j // 2,
                            source_cluster=j, terms=[f"term{j}"]) for j in range(3)]
    selection = SelectionResult([0, 1], 2.0, "optimal", 0.75)
    labels = np.array([i % 2 for i in range(n_texts)])
    later = np.full(n_texts, NOISE)
    later[-3:] = 0
    members = np.flatnonzero(matches[:, 0])
    child_scores = np.ones((len(members), 2))
    child_scores[::2, 1] = 0.0
    child = ExplainResult(
        [Candidate(f"sub {c}", f"sub-explanation {c}", np.zeros(4, dtype=np.float32), "llm") for c in range(2)],
        Assignment(child_scores, np.full(2, 0.5), child_scores == 1.0,
                   evidence={(0, 0): "a sub quote"}),
        SelectionResult([0, 1], 0.0, "optimal", 1.0))
    result = ExplainResult(
        candidates, Assignment(scores, np.full(3, 0.5), matches, failed=failed, evidence=evidence), selection,
        rounds=[RoundRecord(1, labels, 2, SelectionResult([0, 1], 2.0, "optimal", 0.7)),
                RoundRecord(2, later, 1, selection)],
        children={0: child}, child_members={0: members})
    return result, labels


def _stored_run(db: Database, corpus, settings: dict | None = None, status: str = "complete") -> int:
    """A run stored through the Database methods only (settings default to the tree's defaults)."""
    from textclust.config import RunConfig
    from textclust.stats import RunStats
    from textclust.store import settings_key

    settings = RunConfig().to_dict() if settings is None else settings
    corpus_id = db.save_corpus(corpus)
    run_id = db.start_run(corpus_id, "the goal", "llm", settings, settings_key(corpus_id, "the goal", settings),
                          {"textclust": "test"})
    result, labels = _result(corpus.n_texts)
    position = {t: i for i, t in enumerate(corpus.text_ids)}
    weights = np.bincount([position[t] for t in corpus.row_text_ids if t is not None],
                          minlength=corpus.n_texts).astype(float)
    db.write_result(run_id, text_ids=corpus.text_ids, labels=labels, weights=weights, result=result, k=None,
                    stats=RunStats(n_rows=corpus.n_rows, n_texts=corpus.n_texts, coverage=0.75, notice="a notice",
                                   n_user_candidates=0, notes=["a note"]),
                    timings={"explain": 1.5}, status=status)
    return run_id


STORE_TEXTS = [f"text number {i} about {['refunds', 'passwords', 'delivery'][i % 3]}" for i in range(12)] + [
    "", "text number 0 about refunds"]


def test_load_corpus_gives_back_what_was_saved(tmp_path):
    db = Database(tmp_path / "corpus.db")
    texts = [f"distinct text {i}" for i in range(2000)] + ["", "distinct text 5", "  distinct  text 7 "]  # > 900 ids
    corpus = corpus_from_texts(texts, name="many")
    corpus_id = db.save_corpus(corpus)
    loaded = db.load_corpus(corpus_id)
    assert (loaded.name, loaded.source, loaded.format, loaded.text_column, loaded.id_column) == (
        corpus.name, corpus.source, corpus.format, corpus.text_column, corpus.id_column)
    assert loaded.row_keys == corpus.row_keys and loaded.row_text_ids == corpus.row_text_ids
    assert list(loaded.texts.items()) == list(corpus.texts.items())  # first-seen order too
    assert loaded.fingerprint == corpus.fingerprint
    with pytest.raises(NotFoundError, match="no corpus with id 99"):
        db.load_corpus(99)
    db.close()


def test_start_run_is_claimed_at_once(tmp_path):
    import os
    import socket

    from textclust.store import settings_key

    db = Database(tmp_path / "start.db")
    corpus_id = db.save_corpus(corpus_from_texts(STORE_TEXTS))
    key = settings_key(corpus_id, "g", {"k": 2})
    run_id = db.start_run(corpus_id, "g", "offline-extractive", {"version": 2}, key, {"textclust": "x"})
    run = db.get_run(run_id)
    assert (run.status, run.explainer, run.settings, run.settings_key, run.versions, run.stats) == (
        "running", "offline-extractive", {"version": 2}, key, {"textclust": "x"}, {})
    assert run.claimed_by == {"pid": os.getpid(), "host": socket.gethostname()}
    assert db.claim_unfinished_run(key) is None  # this (live) process works on it
    db.close()


def _set_run(path, run_id: int, **columns) -> None:
    con = sqlite3.connect(path)
    try:
        for column, value in columns.items():
            con.execute(f"UPDATE runs SET {column} = ? WHERE id = ?",
                        (json.dumps(value) if isinstance(value, dict) else value, run_id))
        con.commit()
    finally:
        con.close()


def test_claim_unfinished_run_takes_the_newest_unfinished_one(tmp_path):
    import os

    from textclust.store import settings_key

    path = tmp_path / "claim.db"
    db = Database(path)
    corpus_id = db.save_corpus(corpus_from_texts(STORE_TEXTS))
    key = settings_key(corpus_id, "g", {})
    first, second = (db.start_run(corpus_id, "g", "x", {}, key, {}) for _ in range(2))
    dead = {"pid": 2**22 + 12345, "host": __import__("socket").gethostname()}  # above any pid_max: never alive
    _set_run(path, second, claimed_by=dead)
    assert db.claim_unfinished_run(key) == second  # running, but its process is gone: interrupted
    run = db.get_run(second)
    assert run.status == "running" and run.claimed_by["pid"] == os.getpid() and run.error is None
    assert db.claim_unfinished_run(key) is None  # now this process holds it (and the older one is live too)
    for status in ("failed", "incomplete"):
        _set_run(path, second, status=status, error="something", stats={"coverage": 0.5})
        assert db.claim_unfinished_run(key) == second
        run = db.get_run(second)
        assert (run.status, run.error, run.finished_at, run.stats) == ("running", None, None, {})
    _set_run(path, second, status="complete")
    _set_run(path, first, status="failed")
    assert db.claim_unfinished_run(key) is None  # a complete run is newer than the failed one: start afresh
    assert db.claim_unfinished_run("another key") is None
    another_host = {"pid": 1, "host": "some-other-machine"}
    _set_run(path, second, status="running", claimed_by=another_host)
    assert db.claim_unfinished_run(key) == first  # cannot check another machine's process: left alone
    assert db.get_run(second).claimed_by == another_host
    db.close()


def test_claim_run_refuses_a_takeover_from_a_live_process(tmp_path):
    from textclust.errors import SettingsError
    from textclust.store import settings_key

    path = tmp_path / "takeover.db"
    db = Database(path)
    corpus_id = db.save_corpus(corpus_from_texts(STORE_TEXTS))
    run_id = db.start_run(corpus_id, "g", "x", {}, settings_key(corpus_id, "g", {}), {})
    _set_run(path, run_id, claimed_by={"pid": 1, "host": "some-other-machine"})
    with pytest.raises(SettingsError, match=f"^run {run_id} is being worked on by process 1$"):
        db.claim_run(run_id, takeover=True)
    db.claim_run(run_id)  # without takeover: claimed regardless
    assert db.get_run(run_id).claimed_by["host"] != "some-other-machine"
    db.fail_run(run_id, "boom")
    db.claim_run(run_id, takeover=True)  # a failed run is free to take
    assert db.get_run(run_id).status == "running"
    with pytest.raises(NotFoundError, match="no run with id 777"):
        db.claim_run(777)
    db.close()


def test_write_and_read_a_result_through_the_store(tmp_path):
    from textclust.config import RunConfig
    from textclust.results import ROW_COLUMNS
    from textclust.stats import RunStats

    path = tmp_path / "result.db"
    db = Database(path)
    corpus = corpus_from_texts(STORE_TEXTS)
    settings = RunConfig.from_flat(k=2, rounds=2).to_dict()
    run_id = _stored_run(db, corpus, settings)
    result = load_run(db, run_id)
    assert result.status == "complete" and result.settings == settings
    assert result.config == RunConfig.from_dict(settings) and result.config.explaining.k == 2
    assert isinstance(result.stats, RunStats) and result.stats.notes == ["a note"]
    assert (result.notice, result.coverage) == ("a notice", 0.75)
    stored = json.loads(_rows(path, f"SELECT stats FROM runs WHERE id = {run_id}")[0][0])
    assert result.to_dict()["stats"] == stored == result.stats.to_dict()  # the stored form, as `show --json` prints
    assert "n_seeds" in stored and "llm_notes" in stored  # the keys earlier versions wrote
    assert list(result.to_dataframe().columns) == ROW_COLUMNS and len(result.rows) == corpus.n_rows
    by_status = {}
    for row in result.rows:
        by_status.setdefault(row["status"], []).append(row)
    assert set(by_status) <= {"covered", "uncovered", "unparsed", "empty"}
    assert len(by_status["empty"]) == 1 and [r["text"] for r in by_status["unparsed"]] == [STORE_TEXTS[1]]
    first = result.rows[0]
    assert first["also_matches"] and first["status"] == "covered"  # matches both selected explanations
    assert {c.name for c in result.clusters} == {"name 0", "name 1"}
    assert all(c.evidence and len(c.evidence) <= 3 for c in result.clusters)
    # depth 2: the sub-explanations are stored under their parent and are not clusters
    parents = _rows(path, f"SELECT e.name, p.name FROM explanations e JOIN explanations p ON e.parent_id = p.id "
                          f"WHERE e.run_id = {run_id} ORDER BY e.position")
    assert parents == [("sub 0", "name 0"), ("sub 1", "name 0")]
    assert _rows(path, "SELECT count(*) FROM assignments WHERE evidence = 'a sub quote'") == [(1,)]
    # everything is replaced when the run is written again (a resume in place): no duplicates
    before = table_counts(path, ("explanations", "assignments", "text_results", "clusters", "cluster_members",
                                 "selections"))
    db.claim_run(run_id)
    result_again, labels = _result(corpus.n_texts)
    db.write_result(run_id, text_ids=corpus.text_ids, labels=labels, weights=np.ones(corpus.n_texts),
                    result=result_again, k=None, stats=RunStats(), timings={}, status="incomplete",
                    error="budget")
    assert table_counts(path, tuple(before)) == before
    assert load_run(db, run_id).status == "incomplete" and len(load_run(db, run_id).clusters) == 2
    db.close()


def test_an_unfinished_run_reads_without_results(tmp_path):
    db = Database(tmp_path / "unfinished.db")
    corpus = corpus_from_texts(STORE_TEXTS)
    run_id = _stored_run(db, corpus)
    db.claim_run(run_id)
    result = load_run(db, run_id)
    assert result.status == "running" and result.rows == [] and result.clusters == []
    assert result.stats.to_dict() == __import__("textclust.stats", fromlist=["RunStats"]).RunStats().to_dict()
    assert "pid" not in result.to_dict()["stats"]  # the claim is not part of the stats any more
    with pytest.raises(NotFoundError, match="no run with id 4242"):
        load_run(db, 4242)
    db.close()


def test_find_complete_run_by_settings(tmp_path):
    from textclust.store import settings_key

    db = Database(tmp_path / "find.db")
    corpus = corpus_from_texts(STORE_TEXTS)
    run_id = _stored_run(db, corpus, settings={"k": 3})
    corpus_id = db.get_run(run_id).corpus_id
    assert db.get_run(run_id).settings_key == settings_key(corpus_id, "the goal", {"k": 3})
    assert db.find_complete_run_by_key(settings_key(corpus_id, "the goal", {"k": 3})) == run_id
    assert db.find_complete_run_by_key(settings_key(corpus_id, "the goal", {"k": 4})) is None
    db.fail_run(run_id, "x")
    assert db.find_complete_run_by_key(settings_key(corpus_id, "the goal", {"k": 3})) is None
    db.close()


def test_the_language_model_record(tmp_path):
    from textclust.llm.record import CallRow, Recorder, calls_for_run, capability_key, usage_for_run
    from textclust.llm.transport import ChatResponse

    db = Database(tmp_path / "record.db")
    run_id = _stored_run(db, corpus_from_texts(STORE_TEXTS))
    recorder = Recorder(db, secrets=["sk-very-secret"])
    answer = ChatResponse("the answer sk-very-secret", 10, 5, "stop")
    call = CallRow("propose", "m", "http://server/v1", [{"role": "user", "content": "key sk-very-secret"}],
                   "json_object", "ok", "key-1", run_id=run_id, response=answer.content, prompt_tokens=10,
                   completion_tokens=5, retries=1)
    first = recorder.log(call, answer)
    second = recorder.log(CallRow("propose", "m", "http://server/v1", [], "json_object", "cached", "key-1",
                                  run_id=run_id))
    recorder.log(CallRow("assign", "m", "http://server/v1", [], "json_schema", "error", "key-2", run_id=run_id,
                         error="HTTP 500 sk-very-secret", prompt_tokens=3))
    assert second == first + 1
    cached = recorder.cached("key-1")
    assert cached == ChatResponse("the answer ***", 10, 5, "stop")
    assert recorder.cached("key-2") is None
    assert recorder.capability("http://server/v1", "m") is None
    recorder.remember_capability("http://server/v1", "m", "json_object")
    recorder.remember_capability("http://server/v1", "m", "none")
    assert recorder.capability("http://server/v1", "m") == "none"
    assert recorder.cached(capability_key("http://server/v1", "m")) is None  # a memo, not an answer
    calls = calls_for_run(db, run_id)
    assert [c.status for c in calls] == ["ok", "cached", "error"]
    assert calls[0].messages == [{"role": "user", "content": "key ***"}] and "sk-very" not in calls[2].error
    assert usage_for_run(db, run_id) == {"calls": 2, "cached_calls": 1, "failed_calls": 1, "prompt_tokens": 13,
                                         "completion_tokens": 5, "retries": 1}
    assert db.recorded_structured_mode(run_id) == "json_object"  # the last call with an answer
    assert db.recorded_structured_mode(run_id + 1) is None
    db.close()


# --- migration 4: the settings tree and runs.claimed_by ---------------------------------------------

FLAT_V3_SETTINGS = {  # what Settings.to_dict() stored up to schema version 3 (a run with a model)
    "k": 4, "clusterer": "kmeans", "reduction": "pca", "n_components": 5, "min_cluster_size": None,
    "min_samples": 5, "max_cluster_share": 0.5, "embedding_model": "some-model", "rounds": 2, "min_share": 0.01,
    "lambda_miss": 1.0, "lambda_overlap": 0.25, "random_state": 3,
    "seeds": [{"name": "refund", "explanation": "the refund never came"}], "only_candidates": False,
    "llm": {"model": "gpt-x", "server": "http://127.0.0.1:8080/v1", "temperature": 0.0, "seed": 7,
            "max_output_tokens": 900, "api_key_env": "MY_KEY"},
    "examples": ["an example"], "depth": 2, "n_samples": 30, "n_explanations": 6, "batch_size": 8, "prefilter": 4,
    "escalations": 2, "merge_threshold": 0.85, "max_candidate_share": None, "max_chars": 500,
}


def _downgrade_to_v3(path, flat_settings: dict, claims: dict) -> None:
    """What a version-3 textclust left: flat settings, the claim inside stats, no claimed_by,
    stamps 1 to 3. ``claims``: run id -> {"pid", "host"} written into its stats."""
    con = sqlite3.connect(path)
    try:
        con.execute("UPDATE runs SET settings = ?", (json.dumps(flat_settings),))
        for run_id, claim in claims.items():
            stats = json.loads(con.execute("SELECT stats FROM runs WHERE id = ?", (run_id,)).fetchone()[0])
            con.execute("UPDATE runs SET stats = ? WHERE id = ?", (json.dumps({**stats, **claim}), run_id))
        con.execute("ALTER TABLE runs DROP COLUMN claimed_by")
        con.execute("DELETE FROM schema_migrations WHERE version >= 4")
        con.commit()
    finally:
        con.close()


def _make_v3_database(path, claims_for_second: dict | None = None):
    """Two runs of a version-3 database: a complete one, and a 'running' one claimed (in its
    stats) as ``claims_for_second`` says. Returns (run ids, their settings keys)."""
    db = Database(path)
    corpus = corpus_from_texts(STORE_TEXTS)
    complete = _stored_run(db, corpus, FLAT_V3_SETTINGS)
    running = _stored_run(db, corpus, FLAT_V3_SETTINGS)
    db.claim_run(running)
    keys = [db.get_run(r).settings_key for r in (complete, running)]
    db.close()
    claim = claims_for_second or {"pid": 2**22 + 4321, "host": __import__("socket").gethostname()}
    _downgrade_to_v3(path, FLAT_V3_SETTINGS, {running: claim})
    con = sqlite3.connect(path)
    stats = json.loads(con.execute("SELECT stats FROM runs WHERE id = ?", (running,)).fetchone()[0])
    con.close()
    assert stats == claim  # what claims.claim used to leave in a running run's stats
    return (complete, running), keys


def test_version_3_database_is_migrated_to_4(tmp_path):
    from textclust.config import RunConfig, upgrade_flat_settings

    path = tmp_path / "v3.db"
    (complete, running), keys = _make_v3_database(path)
    db = Database(path)  # opening migrates
    before = load_run(db, complete)
    db.close()
    versions = _rows(path, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert [v for v, _ in versions] == [1, 2, 3, 4, 5, 6] == list(range(1, SCHEMA_VERSION + 1))
    assert "claimed_by" in versions[3][1]
    stored = {run_id: (json.loads(s), key, json.loads(st), json.loads(c) if c else None)
              for run_id, s, key, st, c in _rows(path, "SELECT id, settings, settings_key, stats, claimed_by FROM runs")}
    tree = upgrade_flat_settings(FLAT_V3_SETTINGS)
    for run_id, key in zip((complete, running), keys):
        settings, settings_key, _, _ = stored[run_id]
        assert settings == tree and "explaining" in settings
        assert settings_key == key  # untouched: the run is still found by the same command
    assert stored[running][2] == {} and stored[running][3]["pid"] == 2**22 + 4321  # the claim moved
    assert stored[complete][3] is None and "pid" not in stored[complete][2]
    # the settings read back as the tree, with every flat value in its place
    config = before.config
    assert isinstance(config, RunConfig) and config.flat()["k"] == 4
    assert (config.clustering.algorithm, config.clustering.reduction, config.embedding.model) == (
        "kmeans", "pca", "some-model")
    assert config.explaining.user_candidates == FLAT_V3_SETTINGS["seeds"] and config.explaining.depth == 2
    assert (config.model.model, config.model.base_url, config.model.seed, config.model.api_key_env) == (
        "gpt-x", "http://127.0.0.1:8080/v1", 7, "MY_KEY")
    assert config.random_state == 3
    assert before.status == "complete" and len(before.rows) == len(STORE_TEXTS) and len(before.clusters) == 2
    # the interrupted run (its process is gone) is resumed by the same command
    db = Database(path)
    assert db.claim_unfinished_run(keys[1]) == running
    db.close()


def test_migration_4_keeps_a_live_claim(tmp_path):
    import os
    import socket

    path = tmp_path / "live.db"
    (_, running), keys = _make_v3_database(path, {"pid": os.getpid(), "host": socket.gethostname()})
    db = Database(path)
    assert db.get_run(running).claimed_by == {"pid": os.getpid(), "host": socket.gethostname()}
    assert db.claim_unfinished_run(keys[1]) is None  # a live process works on it
    db.close()


def test_migration_4_leaves_settings_already_in_the_tree_alone(tmp_path):
    from textclust.config import RunConfig

    path = tmp_path / "tree.db"
    db = Database(path)
    tree = RunConfig.from_flat(k=5).to_dict()
    run_id = _stored_run(db, corpus_from_texts(STORE_TEXTS), tree)
    db.close()
    con = sqlite3.connect(path)
    con.execute("DELETE FROM schema_migrations WHERE version >= 4")  # claimed_by kept: the step skips adding it
    con.commit()
    con.close()
    db = Database(path)
    assert db.get_run(run_id).settings == tree
    db.close()
    assert [v for (v,) in _rows(path, "SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3, 4, 5, 6]


def test_version_1_database_is_migrated_to_the_latest(tmp_path):
    """Every step in order: a version-1 database (no reason column, flat settings) opens and reads."""
    path = tmp_path / "v1.db"
    (complete, _), _ = _make_v3_database(path)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE text_results DROP COLUMN reason")
    con.execute("DELETE FROM schema_migrations WHERE version >= 2")
    con.commit()
    con.close()
    db = Database(path)
    result = load_run(db, complete)
    db.close()
    assert [v for (v,) in _rows(path, "SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3, 4, 5, 6]
    assert result.config.explaining.k == 4 and len(result.rows) == len(STORE_TEXTS)


def test_a_failure_while_writing_a_result_leaves_none_of_it(tmp_path, monkeypatch):
    from textclust.stats import RunStats

    path = tmp_path / "partial.db"
    db = Database(path)
    corpus = corpus_from_texts(STORE_TEXTS)
    kept = _stored_run(db, corpus)
    counts = table_counts(path, ("explanations", "assignments", "text_results", "clusters", "cluster_members",
                                 "selections"))
    run_id = db.start_run(db.get_run(kept).corpus_id, "another goal", "x", {}, "key", {})

    def fail(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr("textclust.store.write.utcnow", fail)  # at the very end of the transaction
    result, labels = _result(corpus.n_texts)
    with pytest.raises(RuntimeError, match="disk full"):
        db.write_result(run_id, text_ids=corpus.text_ids, labels=labels, weights=np.ones(corpus.n_texts),
                        result=result, k=None, stats=RunStats(), timings={})
    assert table_counts(path, tuple(counts)) == counts
    assert db.get_run(run_id).status == "running" and db.get_run(kept).status == "complete"
    db.close()
