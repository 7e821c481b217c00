"""Stage 7 — store: SQLite through SQLAlchemy; the record of every corpus, run and result."""

from .database import Database, open_database

__all__ = ["Database", "open_database"]
