"""``textclust doctor``: check a database and say what is wrong with it.

The checks only read (the file is opened read-only): SQLite's own
``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``, the schema version
against this textclust's, the tables and columns the schema needs, and runs left
in status ``running`` by a process that is gone (killed; a run records its process id
and host in ``runs.claimed_by``, and a run whose process is alive is reported as in
progress, not stuck). With
``fix=True`` the fixable problems are repaired: stuck runs are marked ``failed`` (error
:data:`INTERRUPTED`) and an older schema is upgraded.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import TextclustError, register_settings
from .claims import process_alive
from .database import Database, busy_timeout
from .schema import SCHEMA_VERSION, Base

register_settings(("db",))

INTERRUPTED = "interrupted (found by doctor)"
SQLITE_HEADER = b"SQLite format 3\x00"
_MAX_LISTED = 10  # ids / messages listed in one line


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fixable: bool = False
    fixed: bool = False
    data: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "fixed" if self.fixed else "problem"

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fixable": self.fixable, **self.data}


@dataclass
class DoctorReport:
    path: str
    checks: list[Check] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.fixed]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "db": self.path,
            "healthy": self.healthy,
            "n_problems": len(self.problems),
            "n_fixed": sum(c.fixed for c in self.checks),
            "checks": [c.to_dict() for c in self.checks],
            "info": self.info,
        }

    def lines(self) -> list[str]:
        """The human-readable report, one line per check."""
        head = f"textclust doctor: {self.path}"
        facts = [self.info[k] for k in ("size", "schema", "journal") if self.info.get(k)]
        if facts:
            head += f" ({', '.join(facts)})"
        out = [head]
        for check in self.checks:
            out.append(f"  {check.status.upper():8} {check.name}: {check.detail}")
        if self.info.get("contents"):
            out.append(f"  contents: {self.info['contents']}")
        n_fixed = sum(c.fixed for c in self.checks)
        if self.healthy:
            out.append(f"healthy after fixing {_plural(n_fixed, 'problem')}." if n_fixed else "healthy: no problems found.")
        else:
            hint = " (`textclust doctor --fix` repairs the fixable ones)" if any(c.fixable for c in self.problems) else ""
            out.append(f"{_plural(len(self.problems), 'problem')} found{hint}.")
        return out


def check_database(path: str | Path, fix: bool = False) -> DoctorReport:
    """Check the database at ``path``; with ``fix``, repair what can be repaired."""
    path = Path(path)
    if not path.exists():
        raise TextclustError(f"{{db}} {path}: no such database")
    if path.is_dir():
        raise TextclustError(f"{{db}} {path}: is a directory")
    report = DoctorReport(str(path))
    version = None
    size = path.stat().st_size
    report.info["size"] = _size(size)
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        what = "the file is empty" if size == 0 else f"it starts with {header[:8]!r}, not the SQLite header"
        report.checks.append(Check("file", False, f"not an SQLite database ({what})"))
        return report

    con = _connect(path, report)
    if con is None:
        return report
    try:
        if not _check_integrity(con, report):
            return report
        _check_foreign_keys(con, report)
        version = _check_schema(con, report)
        if version is not None:
            _check_runs(con, report)
    finally:
        con.close()
    if fix:
        _fix(path, report)
    if version is not None:
        con = _connect(path, report)
        if con is not None:
            try:
                _contents(con, report)
            finally:
                con.close()
    return report


def _connect(path: Path, report: DoctorReport) -> sqlite3.Connection | None:
    """A connection that cannot write (query_only); closing it tidies the -wal/-shm files
    (a ``mode=ro`` connection would leave them behind)."""
    try:
        con = sqlite3.connect(path, timeout=busy_timeout())
        con.execute("PRAGMA query_only = ON")
        return con
    except sqlite3.Error as err:
        report.checks.append(Check("file", False, f"cannot open as SQLite ({_one_line(err)})"))
        return None


# --- the checks -------------------------------------------------------------------------


def _check_integrity(con: sqlite3.Connection, report: DoctorReport) -> bool:
    """False when the database cannot be read at all (no further checks make sense)."""
    try:
        report.info["journal"] = f"journal {con.execute('PRAGMA journal_mode').fetchone()[0]}"
        rows = [r[0] for r in con.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as err:
        report.checks.append(Check("integrity", False, f"cannot read the database: {_one_line(err)}"))
        return False
    if rows == ["ok"]:
        report.checks.append(Check("integrity", True, "PRAGMA integrity_check: ok"))
    else:
        listed = "; ".join(_one_line(r) for r in rows[:3])
        more = f" (and {len(rows) - 3} more)" if len(rows) > 3 else ""
        report.checks.append(Check(
            "integrity", False,
            f"PRAGMA integrity_check found damage: {listed}{more}; restore a backup or copy what is readable "
            "with `sqlite3 DB .recover`",
            data={"messages": rows},
        ))
    return True


def _check_foreign_keys(con: sqlite3.Connection, report: DoctorReport) -> None:
    try:
        rows = con.execute("PRAGMA foreign_key_check").fetchall()
    except sqlite3.DatabaseError as err:
        report.checks.append(Check("foreign keys", False, f"cannot check: {_one_line(err)}"))
        return
    if not rows:
        report.checks.append(Check("foreign keys", True, "no broken references"))
        return
    groups: dict[tuple[str, str], list] = {}
    for table, rowid, parent, _fkid in rows:
        groups.setdefault((table, parent), []).append(rowid)
    parts = []
    for (table, parent), rowids in groups.items():
        shown = ", ".join(str(r) for r in rowids[:_MAX_LISTED]) + (", …" if len(rowids) > _MAX_LISTED else "")
        verb = "refers" if len(rowids) == 1 else "refer"
        parts.append(f"{_plural(len(rowids), 'row')} of {table} {verb} to a missing {parent} row (rowid {shown})")
    report.checks.append(Check(
        "foreign keys", False, "; ".join(parts),
        data={"violations": [{"table": t, "parent": p, "rowids": ids} for (t, p), ids in groups.items()]},
    ))


def _check_schema(con: sqlite3.Connection, report: DoctorReport) -> int | None:
    """The schema version (None when this is not a textclust database)."""
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        report.checks.append(Check("schema", False, f"cannot read the schema: {_one_line(err)}"))
        return None
    if not tables:
        report.checks.append(Check("schema", False, "the database is empty (no tables): not a textclust database yet"))
        return None
    if "schema_migrations" not in tables:
        shown = ", ".join(sorted(tables)[:_MAX_LISTED])
        report.checks.append(Check(
            "schema", False, f"not a textclust database (no schema_migrations table; its tables: {shown})"))
        return None
    version = con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
    report.info["schema"] = f"schema version {version}"
    if version > SCHEMA_VERSION:
        report.checks.append(Check(
            "schema", False, f"version {version} is newer than this textclust's ({SCHEMA_VERSION}); upgrade textclust"))
        return version
    if version < SCHEMA_VERSION:
        report.checks.append(Check(
            "schema", False, f"version {version}, older than this textclust's ({SCHEMA_VERSION}); "
            "it is upgraded on the next write, or now with --fix", fixable=True, data={"version": version}))
        return version
    missing = []
    for table in Base.metadata.sorted_tables:
        if table.name not in tables:
            missing.append(f"table {table.name}")
            continue
        have = {r[1] for r in con.execute(f'PRAGMA table_info("{table.name}")')}
        missing += [f"column {table.name}.{c.name}" for c in table.columns if c.name not in have]
    if missing:
        report.checks.append(Check(
            "schema", False, f"version {version} but missing {', '.join(missing[:_MAX_LISTED])}",
            data={"version": version, "missing": missing}))
    else:
        report.checks.append(Check("schema", True, f"version {version}, as this textclust expects",
                                   data={"version": version}))
    return version


def _check_runs(con: sqlite3.Connection, report: DoctorReport) -> None:
    try:
        columns = {r[1] for r in con.execute('PRAGMA table_info("runs")')}
        # The claim (pid, host) is in runs.claimed_by from schema version 4, in runs.stats before.
        claim = "claimed_by" if "claimed_by" in columns else "stats"
        running = con.execute(
            f"SELECT id, created_at, {claim} FROM runs WHERE status = 'running' ORDER BY id").fetchall()
    except sqlite3.DatabaseError as err:
        report.checks.append(Check("runs", False, f"cannot read the runs: {_one_line(err)}"))
        return
    # A run whose recorded process is still alive is in progress, not stuck.
    stuck = [(run_id, created) for run_id, created, claimed_by in running if not process_alive(_json(claimed_by))]
    live = len(running) - len(stuck)
    in_progress = f"; {_plural(live, 'run')} in progress in a live process" if live else ""
    if not stuck:
        report.checks.append(Check("runs", True, f"no run stuck in status 'running'{in_progress}"))
        return
    now = datetime.now(timezone.utc)
    described = []
    for run_id, created in stuck[:_MAX_LISTED]:
        described.append(f"run {run_id} (started {_when(created, now)})")
    more = f" and {len(stuck) - _MAX_LISTED} more" if len(stuck) > _MAX_LISTED else ""
    report.checks.append(Check(
        "runs", False,
        f"{_plural(len(stuck), 'run')} in status 'running' whose process is gone: {', '.join(described)}{more}; "
        f"interrupted (re-run the same command or `textclust resume RUN_ID` to finish it){in_progress}",
        fixable=True, data={"run_ids": [r[0] for r in stuck]},
    ))


def _json(value):
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None


def _contents(con: sqlite3.Connection, report: DoctorReport) -> None:
    try:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("corpora", "texts", "embeddings")}
        statuses = dict(con.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    except sqlite3.DatabaseError:
        return
    n_runs = sum(statuses.values())
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    report.info["contents"] = (
        f"{_plural(counts['corpora'], 'corpus', 'corpora')}, {_plural(n_runs, 'run')}"
        + (f" ({by_status})" if by_status else "")
        + f", {_plural(counts['texts'], 'text')}, {_plural(counts['embeddings'], 'embedding')}"
    )
    report.info["counts"] = {**counts, "runs": statuses}


# --- fixing ---------------------------------------------------------------------------------


def _fix(path: Path, report: DoctorReport) -> None:
    fixable = [c for c in report.checks if not c.ok and c.fixable]
    if not fixable:
        return
    db = Database(path)  # upgrades an older schema on opening
    try:
        for check in fixable:
            if check.name == "schema":
                check.fixed = True
                check.detail = f"upgraded from version {check.data.get('version')} to {SCHEMA_VERSION}"
            elif check.name == "runs":
                for run_id in check.data["run_ids"]:
                    db.fail_run(run_id, INTERRUPTED)
                ids = check.data["run_ids"]
                named = ("run " if len(ids) == 1 else "runs ") + ", ".join(str(r) for r in ids[:_MAX_LISTED])
                more = f" and {len(ids) - _MAX_LISTED} more" if len(ids) > _MAX_LISTED else ""
                check.fixed = True
                check.detail = f"marked {named}{more} failed with error \"{INTERRUPTED}\""
    finally:
        db.close()


# --- wording ----------------------------------------------------------------------------------


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _when(created, now: datetime) -> str:
    try:
        moment = datetime.fromisoformat(str(created))
    except ValueError:
        return str(created)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    minutes = (now - moment).total_seconds() / 60
    ago = f"{minutes:.0f} min ago" if minutes < 120 else f"{minutes / 60:.1f} h ago"
    return f"{moment:%Y-%m-%d %H:%M} UTC, {ago}"


def _one_line(value) -> str:
    return " ".join(str(value).split())[:200]
