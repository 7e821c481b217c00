"""SQLite's habits, in one place: what another database behind the same
:class:`~textclust.interfaces.RunStore` methods would do differently.

* WAL journal mode (readers never wait for a writer), set once on a file that is ours;
* per-connection PRAGMAs (foreign keys on, ``synchronous=NORMAL``);
* ``BEGIN IMMEDIATE``: a read-then-write transaction takes the write lock first;
* the limit on the bound variables of one statement (``IN (…)`` lists are chunked);
* what a lock held too long by another program looks like.
"""

from __future__ import annotations

from typing import Iterator

# SQLite refuses a statement with more bound variables than SQLITE_MAX_VARIABLE_NUMBER
# (999 before 3.32); every ``IN (…)`` list of ids is sent in chunks of at most this many.
MAX_VARIABLES = 900
# Rows per bulk insert (bounded memory for large corpora; an insert binds its values per row).
INSERT_CHUNK = 20_000


def url(path) -> str:
    return f"sqlite:///{path}"


def set_pragmas(dbapi_connection, _record) -> None:
    """On every new connection (SQLAlchemy ``connect`` event)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def begin_immediate(connection) -> None:
    """Take the write lock now (a connection or a session's connection), not at the first write."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def enable_wal(connection) -> None:
    """WAL mode (outside a transaction; it persists in the file)."""
    connection.exec_driver_sql("PRAGMA journal_mode=WAL")


def journal_mode(connection) -> str:
    return str(connection.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()


def is_locked(err: Exception) -> bool:
    """Is this error another program's lock outlasting the busy timeout?"""
    message = str(getattr(err, "orig", err)).lower()
    return "database is locked" in message or "database table is locked" in message or "busy" in message


def chunks(items: list, size: int = MAX_VARIABLES) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
