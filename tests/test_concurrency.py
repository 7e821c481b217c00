"""Several processes on one database: concurrent runs, concurrent creation, a lock held elsewhere.

Real subprocesses (``python -m textclust``). Each one imports everything first, says it
is ready, and waits for a common "go", so that they really hit the database together.
Runs use the fake embedding model on a copy of ``fake_run_db`` (whose cache already
holds every vector), so no model is loaded.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAKE_MODEL, REPO_ROOT, copy_sqlite, table_counts

# Imports first (slow, and not what is being tested), then wait for the go file, then act.
DRIVER = r"""
import sys, time
from pathlib import Path
import textclust.cli, textclust.pipeline, textclust.store  # noqa: F401  (warm up)
ready, go, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
deadline = time.time() + 120
while not go.exists() and time.time() < deadline:
    time.sleep(0.002)
if mode == "cli":
    sys.argv = ["textclust"] + sys.argv[4:]
    textclust.cli.main()
elif mode == "claim":  # claim the unfinished run of a key; stay alive until every process has tried
    from textclust.store import Database
    db = Database(sys.argv[4])
    print(db.claim_unfinished_run(sys.argv[5]))
    sys.stdout.flush()
    ready.with_suffix(".claimed").touch()
    while len(list(ready.parent.glob("*.claimed"))) < int(sys.argv[6]) and time.time() < deadline:
        time.sleep(0.01)
    db.close()
else:  # "open": create / open the database and store one corpus
    from textclust.ingest import corpus_from_texts
    from textclust.store import Database
    db = Database(sys.argv[4])
    db.save_corpus(corpus_from_texts(["first shared text", "second shared text"], name="shared"))
    db.close()
    print("ok")
"""


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("TEXTCLUST_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _together(tmp_path: Path, argvs: list[list[str]], mode: str, timeout: float = 240, **env) -> list:
    """Start one process per argv, release them at the same moment, return their CompletedProcess-like results."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    go = tmp_path / "go"
    procs, ready_files = [], []
    for i, argv in enumerate(argvs):
        ready = tmp_path / f"ready{i}"
        ready_files.append(ready)
        procs.append(subprocess.Popen(
            [sys.executable, str(driver), str(ready), str(go), mode, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env), cwd=tmp_path,
        ))
    try:
        deadline = time.time() + timeout
        while not all(r.exists() for r in ready_files):
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        go.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.time()))
            results.append((p.returncode, out, err))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _blobs_csv(tmp_path: Path, blobs, name: str = "blobs.csv") -> Path:
    """The synthetic corpus as a file with an id column: a NEW corpus (not the fixture's),
    whose vectors are all in the fixture database's cache."""
    path = tmp_path / name
    lines = ["id,text"] + [f"b{i},{text}" for i, text in enumerate(blobs.texts)]
    path.write_text("\n".join(lines) + "\n")
    return path


RUN_ARGS = ["--goal", "which topic the text is about", "--embedding-model", FAKE_MODEL, "--k", "3",
            "--reduction", "none", "--id-column", "id"]


def test_three_runs_on_one_database_all_complete(tmp_path, fake_run_db, blobs):
    db = copy_sqlite(fake_run_db.db, tmp_path / "shared.db")
    data = _blobs_csv(tmp_path, blobs)
    # --new: each makes its own run (one finishing first would otherwise be reused by the others)
    results = _together(tmp_path, [["run", str(data), "--db", str(db), *RUN_ARGS, "--new"]] * 3, "cli")
    for code, out, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    con = sqlite3.connect(db)
    try:
        statuses = [r[0] for r in con.execute("SELECT status FROM runs ORDER BY id")]
        corpora = con.execute("SELECT count(*) FROM corpora").fetchone()[0]
        per_corpus = con.execute("SELECT corpus_id, count(*) FROM input_rows GROUP BY corpus_id").fetchall()
    finally:
        con.close()
    assert statuses == ["complete"] * 4  # the fixture's run and the three new ones
    assert corpora == 2  # the new corpus was stored once, although both processes tried at the same moment
    assert [n for _, n in per_corpus] == [len(blobs.texts)] * 2


def test_many_processes_create_one_new_database_together(tmp_path):
    db = tmp_path / "new.db"
    results = _together(tmp_path, [[str(db)]] * 3, "open")
    for code, out, err in results:
        assert code == 0, err
        assert out.strip() == "ok"
    counts = table_counts(db, ("corpora", "texts", "schema_migrations"))
    assert counts["corpora"] == 1 and counts["texts"] == 2
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_only_one_process_claims_an_unfinished_run(tmp_path):
    """Finding and claiming an unfinished run is one write-locked transaction: of several processes
    re-running the same command at once, exactly one resumes the run (the others start afresh)."""
    from textclust.ingest import corpus_from_texts
    from textclust.store import Database, settings_key

    db_path = tmp_path / "claims.db"
    db = Database(db_path)
    corpus_id = db.save_corpus(corpus_from_texts(["first text", "second text"]))
    key = settings_key(corpus_id, "g", {})
    run_id = db.start_run(corpus_id, "g", "x", {}, key, {})
    db.fail_run(run_id, "interrupted")
    db.close()
    n = 4
    results = _together(tmp_path, [[str(db_path), key, str(n)]] * n, "claim")
    for code, out, err in results:
        assert code == 0, err
    claimed = [out.strip() for _, out, _ in results]
    assert sorted(claimed, key=lambda c: c != "None") == ["None"] * (n - 1) + [str(run_id)]
    con = sqlite3.connect(db_path)
    try:
        status, claimed_by = con.execute("SELECT status, claimed_by FROM runs").fetchone()
    finally:
        con.close()
    assert status == "running" and claimed_by is not None


def _hold_write_lock(db: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_locked_database_is_a_clean_error_after_the_timeout(tmp_path, fake_run_db, blobs):
    db = copy_sqlite(fake_run_db.db, tmp_path / "locked.db")
    data = _blobs_csv(tmp_path, blobs)
    holder = _hold_write_lock(db)
    try:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "textclust", "run", str(data), "--db", str(db), *RUN_ARGS],
                              capture_output=True, text=True, env=_env(TEXTCLUST_DB_TIMEOUT="0.5"), cwd=tmp_path,
                              timeout=240)
        elapsed = time.perf_counter() - start
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (f"textclust: error: --db {db}: database is locked by another program "
                         "(waited 0.5s; set TEXTCLUST_DB_TIMEOUT to wait longer)")
    assert "Traceback" not in proc.stderr
    assert elapsed < 120
    assert table_counts(db)["runs"] == 1 and table_counts(db)["corpora"] == 1


def test_locked_database_through_the_cli_runner(tmp_path, fake_run_db, blobs, cli_invoke, monkeypatch):
    db = copy_sqlite(fake_run_db.db, tmp_path / "locked.db")
    data = _blobs_csv(tmp_path, blobs)
    monkeypatch.setenv("TEXTCLUST_DB_TIMEOUT", "0.2")
    holder = _hold_write_lock(db)
    try:
        result = cli_invoke("run", data, "--db", db, *RUN_ARGS)
        # Reading needs no lock (WAL): listing runs works while another program writes.
        listing = cli_invoke("runs", "--db", db, "--json")
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines()[-1].endswith("database is locked by another program "
                                                           "(waited 0.2s; set TEXTCLUST_DB_TIMEOUT to wait longer)")
    assert listing.exit_code == 0, listing.stderr
    assert table_counts(db)["runs"] == 1 and table_counts(db)["corpora"] == 1
    # Once the lock is gone the same run goes through.
    again = cli_invoke("run", data, "--db", db, *RUN_ARGS)
    assert again.exit_code == 0, again.stderr
    assert table_counts(db)["runs"] == 2


def test_lock_on_a_rollback_journal_database_blocks_even_opening(tmp_path, fake_run_db, blobs, cli_invoke,
                                                                 monkeypatch):
    """Not in WAL mode (e.g. converted by another tool): an exclusive lock stops readers too."""
    db = copy_sqlite(fake_run_db.db, tmp_path / "journal.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    monkeypatch.setenv("TEXTCLUST_DB_TIMEOUT", "0.2")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE runs SET goal = goal")  # an exclusive lock is taken at the first write
    try:
        for args in (("runs",), ("run", _blobs_csv(tmp_path, blobs), *RUN_ARGS)):
            result = cli_invoke(*args, "--db", db)
            assert result.exit_code == 2, result.output
            assert isinstance(result.exception, SystemExit)
            assert "Traceback" not in result.output
            assert result.stderr.strip().splitlines()[-1] == (
                f"textclust: error: --db {db}: database is locked by another program "
                "(waited 0.2s; set TEXTCLUST_DB_TIMEOUT to wait longer)")
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_bad_timeout_setting(value, cli_invoke, copy_db, fake_run_db, monkeypatch):
    db = copy_db(fake_run_db.db)
    monkeypatch.setenv("TEXTCLUST_DB_TIMEOUT", value)
    result = cli_invoke("runs", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"textclust: error: TEXTCLUST_DB_TIMEOUT must be a number of seconds (got '{value}')"


def test_timeout_setting_reaches_sqlite(tmp_path, monkeypatch):
    from textclust.store import Database

    monkeypatch.setenv("TEXTCLUST_DB_TIMEOUT", "2.5")
    db = Database(tmp_path / "t.db")
    try:
        assert db.timeout == 2.5
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.close()
