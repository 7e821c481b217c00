"""Stage 7 — store: SQLite through SQLAlchemy; the record of every corpus, run and result."""

from .database import Database

__all__ = ["Database"]
