"""Schema version 3: the language-model record (llm_calls, llm_responses) and the new
explanation/assignment columns; a version-2 database is upgraded in place."""

from __future__ import annotations

import sqlite3

from conftest import table_counts
from textclust.store import Database
from textclust.store.schema import SCHEMA_VERSION

V3_TABLES = {"llm_calls", "llm_responses"}
V3_COLUMNS = {"explanations": {"parent_id", "goal_similarity"}, "assignments": {"evidence"}}


def _schema(path) -> dict:
    """Columns (name, type, not null, default, pk), foreign keys and indexes of every table."""
    con = sqlite3.connect(path)
    try:
        tables = sorted(n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"))
        out = {}
        for t in tables:
            columns = sorted(tuple(r[1:]) for r in con.execute(f"PRAGMA table_info({t})"))
            keys = sorted(tuple(r[2:]) for r in con.execute(f"PRAGMA foreign_key_list({t})"))
            indexes = sorted(
                (r[1], tuple(c[2] for c in con.execute(f"PRAGMA index_info({r[1]})")))
                for r in con.execute(f"PRAGMA index_list({t})") if not r[1].startswith("sqlite_autoindex")
            )
            out[t] = (columns, keys, indexes)
        return out
    finally:
        con.close()


def _downgrade_to_v2(path) -> None:
    """What a version-2 textclust created: no llm tables, no v3 columns, stamps 1 and 2."""
    con = sqlite3.connect(path)
    for table in V3_TABLES:
        con.execute(f"DROP TABLE {table}")
    con.execute("ALTER TABLE assignments DROP COLUMN evidence")
    con.execute("ALTER TABLE explanations DROP COLUMN goal_similarity")
    # parent_id is in a table-level FOREIGN KEY, which DROP COLUMN refuses: rebuild the
    # table from its own CREATE statement without the parent_id lines.
    create = con.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='explanations'").fetchone()[0]
    lines = [line for line in create.splitlines() if "parent_id" not in line]
    lines[-2] = lines[-2].rstrip().rstrip(",")  # the constraint before ")" may now end with a comma
    indexes = [sql for (sql,) in con.execute(
        "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='explanations' AND sql IS NOT NULL")]
    columns = [row[1] for row in con.execute("PRAGMA table_info(explanations)") if row[1] != "parent_id"]
    con.execute("\n".join(lines).replace("CREATE TABLE explanations", "CREATE TABLE explanations_v2", 1))
    con.execute(f"INSERT INTO explanations_v2 ({', '.join(columns)}) SELECT {', '.join(columns)} FROM explanations")
    con.execute("DROP TABLE explanations")
    con.execute("ALTER TABLE explanations_v2 RENAME TO explanations")
    for sql in indexes:
        con.execute(sql)
    con.execute("DELETE FROM schema_migrations WHERE version >= 3")
    con.commit()
    con.close()


def test_new_database_is_at_the_current_version_with_the_llm_record(tmp_path):
    path = tmp_path / "new.db"
    Database(path).close()
    schema = _schema(path)
    assert SCHEMA_VERSION == 6 and V3_TABLES <= set(schema)
    for table, columns in V3_COLUMNS.items():
        assert columns <= {c[0] for c in schema[table][0]}
    calls = {c[0]: c for c in schema["llm_calls"][0]}
    assert set(calls) == {"id", "run_id", "stage", "model", "server", "messages", "response_format", "response",
                          "finish_reason", "prompt_tokens", "completion_tokens", "latency_s", "waited_s", "status",
                          "error", "retries", "repair_of", "cache_key", "created_at"}
    assert calls["run_id"][2] == 0 and calls["response"][2] == 0  # nullable
    keys = schema["llm_calls"][1]
    assert ("runs", "run_id", "id", "NO ACTION", "SET NULL", "NONE") in keys
    cache = {c[0]: c for c in schema["llm_responses"][0]}
    assert cache["cache_key"][4] == 1  # primary key
    assert "api_key" not in calls and "api_key" not in cache


def test_version_2_database_is_upgraded_in_place(fake_run_db, copy_db, tmp_path):
    path = copy_db(fake_run_db.db)
    _downgrade_to_v2(path)
    before = table_counts(path, ("runs", "corpora", "texts", "explanations", "assignments", "text_results"))
    v2 = _schema(path)
    assert not V3_TABLES & set(v2)
    assert not {c[0] for c in v2["explanations"][0]} & V3_COLUMNS["explanations"]
    assert [k for k in v2["explanations"][1] if k[1] == "parent_id"] == []

    Database(path).close()

    con = sqlite3.connect(path)
    versions = [v for (v,) in con.execute("SELECT version FROM schema_migrations ORDER BY version")]
    name = con.execute("SELECT name FROM schema_migrations WHERE version = 3").fetchone()[0]
    nulls = con.execute("SELECT count(*) FROM explanations WHERE parent_id IS NULL AND goal_similarity IS NULL")
    n_null = nulls.fetchone()[0]
    con.close()
    assert versions == [1, 2, 3, 4, 5, 6] and "llm_calls" in name
    assert table_counts(path, tuple(before)) == before  # nothing lost
    assert n_null == before["explanations"]
    # The upgraded database has exactly the schema of a new one.
    fresh = tmp_path / "fresh.db"
    Database(fresh).close()
    assert _schema(path) == _schema(fresh)
    # Opening again is a no-op.
    Database(path).close()
    assert _schema(path) == _schema(fresh)


def test_version_1_database_is_upgraded_to_the_current_version(fake_run_db, copy_db):
    path = copy_db(fake_run_db.db)
    _downgrade_to_v2(path)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE text_results DROP COLUMN reason")
    con.execute("DELETE FROM schema_migrations WHERE version >= 2")
    con.commit()
    con.close()
    Database(path).close()
    con = sqlite3.connect(path)
    versions = [v for (v,) in con.execute("SELECT version FROM schema_migrations ORDER BY version")]
    con.close()
    assert versions == [1, 2, 3, 4, 5, 6]


def test_calls_outlive_a_deleted_run_and_explanations_nest(fake_run_db, copy_db):
    path = copy_db(fake_run_db.db)
    Database(path).close()  # already v3; make sure
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys=ON")
    run_id = fake_run_db.run_id
    con.execute(
        "INSERT INTO llm_calls (run_id, stage, model, server, messages, response_format, status, retries, "
        "waited_s, cache_key, created_at) VALUES (?, 'propose', 'm', 'http://x/v1', '[]', 'json_schema', 'ok', 0, "
        "0, 'k', '2025-01-01')", (run_id,))
    first, second = [i for (i,) in con.execute(
        "SELECT id FROM explanations WHERE run_id = ? ORDER BY id LIMIT 2", (run_id,))]
    con.execute("UPDATE explanations SET parent_id = ?, goal_similarity = 0.5 WHERE id = ?", (first, second))
    con.execute("UPDATE assignments SET evidence = 'my refund never came' WHERE explanation_id = ?", (second,))
    con.commit()
    for table in ("text_results", "assignments", "selections", "explanations", "cluster_members", "clusters"):
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    con.commit()
    rows = con.execute("SELECT run_id, stage FROM llm_calls").fetchall()
    con.close()
    assert rows == [(None, "propose")]  # ON DELETE SET NULL: the record of a paid call stays
