"""`textclust doctor`: a healthy database, and databases damaged on purpose."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, copy_sqlite, file_sha256
from textclust.store.doctor import INTERRUPTED, check_database
from textclust.store.schema import SCHEMA_VERSION


def _sql(path, *statements, foreign_keys: bool = False):
    con = sqlite3.connect(path)
    try:
        con.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        for statement in statements:
            con.execute(statement)
        con.commit()
    finally:
        con.close()


def _query(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _doctor(cli_invoke, db, *args):
    result = cli_invoke("doctor", "--db", db, *args)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture
def db(copy_db, fake_run_db):
    return copy_db(fake_run_db.db)


def test_healthy_database(cli_invoke, db):
    digest = file_sha256(db)
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"textclust doctor: {db} (") and f"schema version {SCHEMA_VERSION}" in lines[0]
    assert "  OK       integrity: PRAGMA integrity_check: ok" in lines
    assert "  OK       foreign keys: no broken references" in lines
    assert f"  OK       schema: version {SCHEMA_VERSION}, as this textclust expects" in lines
    assert "  OK       runs: no run stuck in status 'running'" in lines
    assert any(line.startswith("  contents: 1 corpus, 1 run (1 complete), ") for line in lines)
    assert lines[-1] == "healthy: no problems found."
    assert file_sha256(db) == digest  # checking never writes
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith(db.name)) == [db.name]


def test_healthy_database_json(cli_invoke, db):
    result = _doctor(cli_invoke, db, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["healthy"] is True and data["n_problems"] == 0
    assert [c["name"] for c in data["checks"]] == ["integrity", "foreign keys", "schema", "runs"]
    assert {c["status"] for c in data["checks"]} == {"ok"}
    assert data["info"]["counts"]["runs"] == {"complete": 1}


def test_a_run_whose_process_is_alive_is_in_progress_not_stuck(cli_invoke, db):
    import socket

    claim = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    _sql(db, f"UPDATE runs SET status = 'running', finished_at = NULL, claimed_by = '{claim}'")
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 0, result.stdout
    assert "1 run in progress in a live process" in result.stdout


def _as_version_3(path, claim: dict | None) -> None:
    """Back to what a version-3 textclust left: the claim (if any) inside stats, no claimed_by."""
    con = sqlite3.connect(path)
    try:
        if claim is not None:
            con.execute("UPDATE runs SET stats = ?", (json.dumps(claim),))
        con.execute("ALTER TABLE runs DROP COLUMN claimed_by")
        con.execute("DELETE FROM schema_migrations WHERE version >= 4")
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize("alive", [True, False])
def test_version_3_database_reads_the_claim_from_stats(cli_invoke, db, alive):
    """Before version 4 the process of a running run was in its stats: the doctor still reads it
    there, and --fix moves it into claimed_by as it upgrades the schema."""
    import socket

    pid = os.getpid() if alive else 2**22 + 777  # above any pid_max: no such process
    _as_version_3(db, {"pid": pid, "host": socket.gethostname()})
    _sql(db, "UPDATE runs SET status = 'running', finished_at = NULL")
    digest = file_sha256(db)
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"textclust doctor: {db} (") and "schema version 3" in lines[0]
    assert (f"  PROBLEM  schema: version 3, older than this textclust's ({SCHEMA_VERSION}); it is upgraded on "
            "the next write, or now with --fix") in lines
    if alive:
        assert "  OK       runs: no run stuck in status 'running'; 1 run in progress in a live process" in lines
    else:
        assert any(line.startswith("  PROBLEM  runs: 1 run in status 'running' whose process is gone: run 1 ")
                   for line in lines)
    assert file_sha256(db) == digest  # checking never writes

    fixed = _doctor(cli_invoke, db, "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert f"  FIXED    schema: upgraded from version 3 to {SCHEMA_VERSION}" in fixed.stdout.splitlines()
    status, stats, claimed_by = _query(db, "SELECT status, stats, claimed_by FROM runs")[0]
    assert json.loads(claimed_by) == {"pid": pid, "host": socket.gethostname()}
    assert "pid" not in json.loads(stats)
    assert status == ("running" if alive else "failed")
    again = _doctor(cli_invoke, db)
    assert again.exit_code == 0 and f"schema: version {SCHEMA_VERSION}, as this textclust expects" in again.stdout


def test_stuck_run_is_found_and_fixed(cli_invoke, db):
    _sql(db, "UPDATE runs SET status = 'running', finished_at = NULL")
    digest = file_sha256(db)
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 1
    problem = [line for line in result.stdout.splitlines() if line.startswith("  PROBLEM")]
    assert len(problem) == 1
    assert problem[0].startswith("  PROBLEM  runs: 1 run in status 'running' whose process is gone: run 1 (started ")
    assert "interrupted (re-run the same command or `textclust resume RUN_ID` to finish it)" in problem[0]
    assert result.stdout.strip().splitlines()[-1] == (
        "1 problem found (`textclust doctor --fix` repairs the fixable ones).")
    assert file_sha256(db) == digest

    fixed = _doctor(cli_invoke, db, "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert f'  FIXED    runs: marked run 1 failed with error "{INTERRUPTED}"' in fixed.stdout.splitlines()
    assert fixed.stdout.strip().splitlines()[-1] == "healthy after fixing 1 problem."
    status, error, finished = _query(db, "SELECT status, error, finished_at FROM runs")[0]
    assert (status, error) == ("failed", INTERRUPTED) and finished is not None
    assert _doctor(cli_invoke, db).exit_code == 0


def test_run_of_a_killed_process_is_found(tmp_path, sample_path, cli_invoke):
    """A real `textclust run` killed with SIGKILL (no chance to mark its run failed)."""
    db = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "textclust", "run", str(sample_path), "--goal", "anything",
                             "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    if _query(db, "SELECT count(*) FROM runs WHERE status = 'running'")[0][0]:
                        break
                except sqlite3.Error:
                    pass
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 1
    assert "PROBLEM  runs: 1 run in status 'running' whose process is gone: run 1" in result.stdout
    fixed = _doctor(cli_invoke, db, "--fix", "--json")
    assert fixed.exit_code == 0
    data = json.loads(fixed.stdout)
    assert data["healthy"] and data["n_fixed"] == 1
    assert _query(db, "SELECT status, error FROM runs") == [("failed", INTERRUPTED)]
    shown = cli_invoke("show", "1", "--db", db)
    assert "Traceback" not in shown.output


def test_foreign_key_violations(cli_invoke, db):
    _sql(db,
         "INSERT INTO input_rows (corpus_id, row_index, row_key, text_id) VALUES (999, 0, 'ghost', NULL)",
         "UPDATE text_results SET text_id = 'ghost' || rowid WHERE rowid IN "
         "(SELECT rowid FROM text_results LIMIT 2)")
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if "foreign keys" in x)
    assert line.startswith("  PROBLEM  foreign keys: ")
    assert "1 row of input_rows refers to a missing corpora row (rowid " in line
    assert "2 rows of text_results refer to a missing texts row (rowid " in line
    data = json.loads(_doctor(cli_invoke, db, "--json").stdout)
    check = next(c for c in data["checks"] if c["name"] == "foreign keys")
    assert check["status"] == "problem" and not check["fixable"]
    assert {v["table"] for v in check["violations"]} == {"input_rows", "text_results"}
    # --fix does not delete data: the problem stays, and so does the exit status.
    assert _doctor(cli_invoke, db, "--fix").exit_code == 1


def test_not_a_textclust_database(cli_invoke, tmp_path):
    path = tmp_path / "other.db"
    _sql(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO customers VALUES (1, 'Ada')")
    digest = file_sha256(path)
    for args in ((), ("--fix",)):
        result = _doctor(cli_invoke, path, *args)
        assert result.exit_code == 1
        assert ("  PROBLEM  schema: not a textclust database (no schema_migrations table; its tables: customers)"
                in result.stdout.splitlines())
        assert file_sha256(path) == digest


@pytest.mark.parametrize("content, detail", [
    (b"These are my notes, not a database.\n" * 50, "it starts with b'These ar', not the SQLite header"),
    (b"", "the file is empty"),
    (b"SQLite format 3\x00" + b"\xff" * 5000, None),  # the right header, garbage after it
])
def test_garbage_files(cli_invoke, tmp_path, content, detail):
    path = tmp_path / "garbage.db"
    path.write_bytes(content)
    result = _doctor(cli_invoke, path)
    assert result.exit_code == 1
    assert result.stdout.strip().splitlines()[-1] == "1 problem found."
    if detail:
        assert f"  PROBLEM  file: not an SQLite database ({detail})" in result.stdout.splitlines()
    else:
        assert "PROBLEM" in result.stdout
    assert path.read_bytes() == content


def test_damaged_pages(cli_invoke, db, tmp_path):
    _sql(db, "PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    assert len(data) > 4 * 4096
    data[2 * 4096 + 100 : 3 * 4096] = b"\x07" * (4096 - 100)  # scribble over a b-tree page
    db.write_bytes(bytes(data))
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 1
    assert "PROBLEM  integrity:" in result.stdout
    assert json.loads(_doctor(cli_invoke, db, "--json").stdout)["healthy"] is False


def test_missing_table_and_newer_schema(cli_invoke, db):
    _sql(db, "DROP TABLE selections")
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 1
    assert f"  PROBLEM  schema: version {SCHEMA_VERSION} but missing table selections" in result.stdout.splitlines()
    _sql(db, f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({SCHEMA_VERSION + 1}, 'x', '2099')")
    result = _doctor(cli_invoke, db, "--fix")
    assert result.exit_code == 1
    assert (f"  PROBLEM  schema: version {SCHEMA_VERSION + 1} is newer than this textclust's ({SCHEMA_VERSION}); "
            "upgrade textclust") in result.stdout.splitlines()


def test_check_while_another_program_writes(cli_invoke, db, monkeypatch):
    """Checking only reads (WAL): it works under another writer's lock; fixing waits, then says why not."""
    _sql(db, "UPDATE runs SET status = 'running'")
    monkeypatch.setenv("TEXTCLUST_DB_TIMEOUT", "0.2")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert _doctor(cli_invoke, db).exit_code == 1
        fixing = _doctor(cli_invoke, db, "--fix")
    finally:
        holder.rollback()
        holder.close()
    assert fixing.exit_code == 2
    assert fixing.stderr.strip().splitlines()[-1] == (
        f"textclust: error: --db {db}: database is locked by another program "
        "(waited 0.2s; set TEXTCLUST_DB_TIMEOUT to wait longer)")


def test_missing_database_is_a_usage_error(cli_invoke, tmp_path):
    db = tmp_path / "absent.db"
    result = _doctor(cli_invoke, db)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"textclust: error: --db {db}: no such database"
    assert not db.exists()


def test_check_database_api(db):
    report = check_database(db)
    assert report.healthy and report.problems == []
    assert report.to_dict()["db"] == str(db)
    copy = copy_sqlite(db, db.parent / "copy-for-api.db")
    assert check_database(copy).healthy


def test_help(cli_invoke):
    result = cli_invoke("doctor", "--help")
    assert result.exit_code == 0 and result.stderr == ""
    for option in ("doctor [OPTIONS]", "--fix", "--db", "--json"):
        assert option in result.stdout
    assert "  doctor " in cli_invoke("--help").stdout
