"""Identical re-runs (issue 25, item 2): `run` reuses an identical complete run (or, with --new,
says why it makes another), `latest` is the last run a command made or reused, and
`runs --delete ID…` / `prune` delete runs with what belongs only to them, after asking.

Cheap: the fake-embedding run of the fixture database and CLI runs of the same synthetic
corpus, whose vectors are all in that database's cache."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import build_fake_run, copy_sqlite, table_counts
from tests.fakes import FAKE_MODEL

RUN_ARGS = ["--goal", "which topic the text is about", "--embedding-model", FAKE_MODEL, "--k", "3",
            "--reduction", "none", "--id-column", "id"]
RESULT_TABLES = ("clusters", "cluster_members", "explanations", "assignments", "selections", "text_results",
                 "llm_calls")
DEAD_PID = 2**22 + 777  # above any pid_max: no such process


@pytest.fixture
def work(tmp_path, fake_run_db, blobs):
    """(a private copy of the fixture database, the synthetic corpus as a CSV file)."""
    db = copy_sqlite(fake_run_db.db, tmp_path / "runs.db")
    data = tmp_path / "blobs.csv"
    data.write_text("\n".join(["id,text"] + [f"b{i},{t}" for i, t in enumerate(blobs.texts)]) + "\n")
    return db, data


def _run(cli_invoke, db, data, *extra):
    result = cli_invoke("run", data, "--db", db, *RUN_ARGS, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["run_id"], result.stderr


def _sql(db, sql, *params):
    con = sqlite3.connect(db)
    try:
        rows = con.execute(sql, params).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def _latest(cli_invoke, db) -> int:
    result = cli_invoke("show", "latest", "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["run_id"]


def _per_run(db, run_id) -> dict:
    return {t: _sql(db, f"SELECT count(*) FROM {t} WHERE run_id = ?", run_id)[0][0] for t in RESULT_TABLES}


def _add_call(db, run_id, key):
    """A recorded model call of the run and its cached answer (as a model run leaves them)."""
    _sql(db, "INSERT INTO llm_calls (run_id, stage, model, server, messages, response_format, response, waited_s, "
             "status, retries, cache_key, created_at) VALUES (?, 'assign', 'm', 's', '[]', 'none', '{}', 0, 'ok', 0, "
             "?, '2025-01-01')", run_id, key)
    _sql(db, "INSERT INTO llm_responses (cache_key, server, model, response, created_at) "
             "VALUES (?, 's', 'm', '{}', '2025-01-01')", key)


# --- reuse ------------------------------------------------------------------------------------


def test_an_identical_run_is_reused_and_new_makes_another(cli_invoke, work):
    db, data = work
    first, said = _run(cli_invoke, db, data)
    assert "reusing complete run" not in said and "embeddings: 0 computed" in said
    n_runs = table_counts(db)["runs"]

    again, said = _run(cli_invoke, db, data)
    assert again == first
    assert (f"reusing complete run {first} (same input, goal and settings); pass --new to make a new run"
            in said.splitlines())
    assert table_counts(db)["runs"] == n_runs  # no new row
    assert "embeddings:" not in said  # nothing was computed or read

    fresh, said = _run(cli_invoke, db, data, "--new")
    assert fresh == n_runs + 1 and fresh != first
    assert (f"making a new run (--new), although complete run {first} has the same input, goal and settings"
            in said.splitlines())
    assert table_counts(db)["runs"] == n_runs + 1
    # The newest complete identical run is the one reused from now on.
    reused, said = _run(cli_invoke, db, data)
    assert reused == fresh and f"reusing complete run {fresh} " in said


def test_other_settings_make_a_new_run_without_a_reuse_note(cli_invoke, work):
    db, data = work
    first, _ = _run(cli_invoke, db, data)
    other = cli_invoke("run", data, "--db", db, *RUN_ARGS, "--json", "--k", "2")
    assert other.exit_code == 0, other.stderr
    assert json.loads(other.stdout)["run_id"] != first
    assert "reusing complete run" not in other.stderr and "--new" not in other.stderr


def test_eval_reuses_through_the_same_code_and_says_so_the_same_way(cli_invoke, work, tmp_path, blobs):
    db, _ = work
    data = tmp_path / "labelled.csv"
    data.write_text("\n".join(["id,text,topic"] + [f"b{i},{t},{blobs.topics[g]}" for i, (t, g)
                                                     in enumerate(zip(blobs.texts, blobs.groups))]) + "\n")
    made = cli_invoke("eval", data, "--label-column", "topic", "--db", db, *RUN_ARGS, "--json")
    assert made.exit_code == 0, made.stderr
    run_id = json.loads(made.stdout)["run_id"]
    # `run` on the same file and settings finds eval's run (eval reads the label column as extra data only)
    reran = cli_invoke("run", data, "--db", db, *RUN_ARGS, "--json")
    assert reran.exit_code == 0 and json.loads(reran.stdout)["run_id"] == run_id
    again = cli_invoke("eval", data, "--label-column", "topic", "--db", db, *RUN_ARGS, "--json")
    assert f"reusing complete run {run_id} (same input, goal and settings)" in again.stderr.splitlines()
    assert json.loads(again.stdout)["run_id"] == run_id


# --- latest ------------------------------------------------------------------------------------


def test_latest_is_the_run_last_made_or_reused(cli_invoke, work, fake_run_db):
    db, data = work
    assert _latest(cli_invoke, db) == fake_run_db.run_id
    three, _ = _run(cli_invoke, db, data)
    two = json.loads(cli_invoke("run", data, "--db", db, *RUN_ARGS, "--json", "--k", "2").stdout)["run_id"]
    assert two > three and _latest(cli_invoke, db) == two
    reused, _ = _run(cli_invoke, db, data)  # the k=3 run again: reused, and now the latest
    assert reused == three and _latest(cli_invoke, db) == three
    exported = cli_invoke("export", "latest", "--format", "json", "--db", db)
    assert json.loads(exported.stdout)["run_id"] == three
    assert cli_invoke("show", two, "--db", db).exit_code == 0  # reading a run does not make it the latest
    assert _latest(cli_invoke, db) == three
    resumed = cli_invoke("resume", two, "--db", db, "--json")  # already complete: used all the same
    assert resumed.exit_code == 0, resumed.stderr
    assert _latest(cli_invoke, db) == two


# --- schema version 5 --------------------------------------------------------------------------


def _as_version_4(db: Path) -> None:
    """What a version-4 textclust left: no runs.last_used_at, no string_embeddings, stamps 1 to 4."""
    _sql(db, "ALTER TABLE runs DROP COLUMN last_used_at")
    _sql(db, "DROP TABLE string_embeddings")
    _sql(db, "DELETE FROM schema_migrations WHERE version >= 5")


def _everything(db: Path) -> dict:
    tables = [t for (t,) in _sql(db, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                     "AND name != 'schema_migrations' ORDER BY name")]
    out = {}
    for table in tables:
        columns = [c[1] for c in _sql(db, f'PRAGMA table_info("{table}")') if c[1] != "last_used_at"]
        out[table] = sorted(_sql(db, f"SELECT {', '.join(columns)} FROM {table}"), key=repr)
    return out


def test_a_version_4_database_is_upgraded_without_losing_data(tmp_path, fake_run_db, blobs):
    from textclust.store import Database
    from textclust.store.schema import SCHEMA_VERSION

    db = copy_sqlite(fake_run_db.db, tmp_path / "v4.db")
    build_fake_run(db, blobs, k=2)  # a second, newer run
    _as_version_4(db)
    before = _everything(db)
    assert before["runs"] and before["text_results"] and before["embeddings"]

    store = Database(db)  # opening upgrades
    latest = store.latest_run_id()
    store.close()
    assert SCHEMA_VERSION == 6
    assert [v for (v,) in _sql(db, "SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3, 4, 5, 6]
    assert _sql(db, "SELECT name FROM schema_migrations WHERE version >= 5 ORDER BY version") == [
        ("runs.last_used_at",), ("string_embeddings",)]
    after = _everything(db)
    assert after.pop("string_embeddings") == []  # version 6's cache, new and empty
    assert after == before  # every row of every table, unchanged
    used = _sql(db, "SELECT id, created_at, last_used_at FROM runs ORDER BY id")
    assert all(last == created for _, created, last in used)  # last used when it was made
    assert latest == max(run_id for run_id, _, _ in used)  # latest names the same run as before


def test_doctor_fix_upgrades_a_version_4_database(tmp_path, fake_run_db, cli_invoke):
    from textclust.store.schema import SCHEMA_VERSION

    db = copy_sqlite(fake_run_db.db, tmp_path / "v4.db")
    _as_version_4(db)
    before = _everything(db)
    found = cli_invoke("doctor", "--db", db)
    assert found.exit_code == 1
    assert f"  PROBLEM  schema: version 4, older than this textclust's ({SCHEMA_VERSION}); it is upgraded on " \
           "the next write, or now with --fix" in found.stdout.splitlines()
    fixed = cli_invoke("doctor", "--fix", "--db", db)
    assert fixed.exit_code == 0, fixed.stdout
    assert f"  FIXED    schema: upgraded from version 4 to {SCHEMA_VERSION}" in fixed.stdout.splitlines()
    after = _everything(db)
    assert after.pop("string_embeddings") == []
    assert after == before
    assert _sql(db, "SELECT last_used_at IS NOT NULL FROM runs") == [(1,)]


# --- runs --delete -----------------------------------------------------------------------------


def test_delete_removes_a_run_and_only_what_is_its_own(cli_invoke, work, fake_run_db):
    db, data = work
    kept = fake_run_db.run_id
    gone, _ = _run(cli_invoke, db, data)
    _add_call(db, gone, "k-gone")
    _add_call(db, kept, "k-kept")
    kept_rows = _per_run(db, kept)
    assert all(_per_run(db, gone)[t] > 0 for t in RESULT_TABLES)
    shared = table_counts(db, ("texts", "embeddings", "llm_responses"))

    result = cli_invoke("runs", "--delete", gone, "--yes", "--db", db)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"run {gone} · complete · blobs · which topic the text is about · asked for")
    assert lines[-1] == f"deleted 1 run ({gone}) and 1 corpus no run uses any more"
    assert _sql(db, "SELECT id FROM runs") == [(kept,)]
    assert _per_run(db, gone) == {t: 0 for t in RESULT_TABLES}
    assert _per_run(db, kept) == kept_rows  # the other run untouched
    assert table_counts(db, ("texts", "embeddings", "llm_responses")) == shared  # caches stay
    # the CSV's corpus went with its only run; the fixture's corpus (used by the kept run) stays
    assert _sql(db, "SELECT name, n_rows FROM corpora") == [("blobs", 60)]
    assert table_counts(db, ("input_rows",))["input_rows"] == 60
    assert _sql(db, "PRAGMA foreign_key_check") == []
    # the same command again: the vectors come from the cache, and a new run is made
    again, said = _run(cli_invoke, db, data)
    assert "reusing complete run" not in said and "embeddings: 0 computed" in said


def test_delete_keeps_a_corpus_another_run_uses(cli_invoke, work):
    db, data = work
    first, _ = _run(cli_invoke, db, data)
    second, _ = _run(cli_invoke, db, data, "--new")
    n_corpora = table_counts(db)["corpora"]
    result = cli_invoke("runs", "--delete", first, "--yes", "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    data_out = json.loads(result.stdout)
    assert [d["run_id"] for d in data_out["deleted"]] == [first] and data_out["corpora_deleted"] == 0
    assert table_counts(db)["corpora"] == n_corpora
    assert cli_invoke("show", second, "--db", db).exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["1", "999"], "no run with id 999 in {db}; nothing deleted"),
    (["998", "1", "999"], "no runs with ids 998, 999 in {db}; nothing deleted"),
])
def test_delete_of_ids_that_do_not_exist_deletes_nothing(cli_invoke, work, args, message):
    db, _ = work
    before = _everything(db)
    result = cli_invoke("runs", "--delete", *args, "--yes", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"textclust: error: {message.format(db=db)}"]
    assert _everything(db) == before


def test_delete_of_a_malformed_id_is_one_line(cli_invoke, work):
    db, _ = work
    result = cli_invoke("runs", "--delete", "1", "abc", "--yes", "--db", db)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("textclust: error: Invalid value for '[ID]...': 'abc' is not a run id")
    assert table_counts(db)["runs"] == 1


def test_run_ids_need_delete_and_delete_needs_ids(cli_invoke, work):
    db, _ = work
    listed = cli_invoke("runs", "1", "--db", db)
    assert listed.exit_code == 2
    assert listed.stderr == "textclust: error: run ids are taken only with --delete (textclust runs --delete ID…)\n"
    bare = cli_invoke("runs", "--delete", "--yes", "--db", db)
    assert bare.exit_code == 2 and bare.stderr.startswith("textclust: error: --delete needs the ids")
    assert table_counts(db)["runs"] == 1


def test_a_run_a_live_process_works_on_is_never_deleted(cli_invoke, work, fake_run_db):
    db, data = work
    other, _ = _run(cli_invoke, db, data)
    live = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    _sql(db, "UPDATE runs SET status = 'running', claimed_by = ? WHERE id = ?", live, fake_run_db.run_id)
    before = _everything(db)
    result = cli_invoke("runs", "--delete", other, fake_run_db.run_id, "--yes", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"textclust: error: run {fake_run_db.run_id} (process {os.getpid()}): still being worked on by a live "
        "process; nothing deleted"]
    assert _everything(db) == before
    pruned = cli_invoke("prune", "--yes", "--db", db)  # prune leaves it alone
    assert pruned.exit_code == 0 and pruned.stdout.startswith("nothing to prune")
    assert _everything(db) == before


# --- prune ---------------------------------------------------------------------------------------


@pytest.fixture
def cluttered(work, cli_invoke, fake_run_db):
    """Runs 1 (fixture, complete), 2 and 3 (identical complete), 4 failed, 5 incomplete, 6
    interrupted (process gone), 7 running in this live process; the newest identical is 3."""
    db, data = work
    ids = [_run(cli_invoke, db, data, "--new")[0] for _ in range(6)]
    assert ids == [2, 3, 4, 5, 6, 7]
    _sql(db, "UPDATE runs SET status = 'failed', error = 'boom' WHERE id = 4")
    _sql(db, "UPDATE runs SET status = 'incomplete' WHERE id = 5")
    _sql(db, "UPDATE runs SET status = 'running', claimed_by = ? WHERE id = 6",
         json.dumps({"pid": DEAD_PID, "host": socket.gethostname()}))
    _sql(db, "UPDATE runs SET status = 'running', claimed_by = ? WHERE id = 7",
         json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    return db


def test_prune_deletes_failed_unfinished_and_older_duplicates(cli_invoke, cluttered):
    db = cluttered
    result = cli_invoke("prune", "--yes", "--db", db)
    assert result.exit_code == 0, result.stderr
    goal = "which topic the text is about"
    assert result.stdout.splitlines() == [
        f"run 2 · complete · blobs · {goal} · older duplicate of run 3 (same input, goal and settings)",
        f"run 4 · failed · blobs · {goal} · failed",
        f"run 5 · incomplete · blobs · {goal} · incomplete (stopped by the budget)",
        f"run 6 · running · blobs · {goal} · interrupted (its process is gone)",
        "deleted 4 runs (2, 4, 5, 6)",
    ]
    assert [r for (r,) in _sql(db, "SELECT id FROM runs ORDER BY id")] == [1, 3, 7]
    for run_id in (2, 4, 5, 6):
        assert _per_run(db, run_id) == {t: 0 for t in RESULT_TABLES}
    assert _per_run(db, 3)["text_results"] == 60
    assert _sql(db, "PRAGMA foreign_key_check") == []
    again = cli_invoke("prune", "--db", db)
    assert again.exit_code == 0
    assert again.stdout == "nothing to prune: no failed, incomplete or interrupted run and no older duplicate\n"


def test_prune_without_yes_on_a_pipe_refuses_in_one_line(cli_invoke, cluttered):
    db = cluttered
    before = _everything(db)
    result = cli_invoke("prune", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "textclust: error: not deleting 4 runs without confirmation: standard input is not a terminal (pass --yes)"]
    assert _everything(db) == before
    deleted = cli_invoke("runs", "--delete", "3", "--db", db)  # --delete asks too
    assert deleted.exit_code == 2 and "not deleting 1 run without confirmation" in deleted.stderr
    assert _everything(db) == before


@pytest.mark.parametrize("answer, deleted", [("y\n", True), ("n\n", False), ("\n", False)])
def test_prune_asks_at_a_terminal(cluttered, monkeypatch, answer, deleted):
    from textclust import cli as cli_module

    db = cluttered
    monkeypatch.setattr(cli_module, "_stdin_is_interactive", lambda: True)
    result = CliRunner().invoke(cli_module.cli, ["prune", "--db", str(db)], input=answer)
    assert "Delete 4 runs? [y/N]: " in result.stdout
    remaining = [r for (r,) in _sql(db, "SELECT id FROM runs ORDER BY id")]
    if deleted:
        assert result.exit_code == 0 and remaining == [1, 3, 7]
        assert result.stdout.splitlines()[-1] == "deleted 4 runs (2, 4, 5, 6)"
    else:
        assert result.exit_code == 1 and remaining == [1, 2, 3, 4, 5, 6, 7]
        assert result.stderr == "nothing deleted\n"
