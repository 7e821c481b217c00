"""Stage 7 — store: SQLite through SQLAlchemy; the record of every corpus, run and result.

Every query of textclust is here, behind :class:`Database` (the SQLite implementation of
:class:`textclust.interfaces.RunStore`), opened by :func:`open_store` (a path or a URL). The store imports no stage: only the bottom
layer (``corpus``, ``interfaces``, ``config``, ``stats``, ``errors``).
"""

from .database import Database, settings_key
from .open import open_store, store_path
from .records import StoredRun
from .schema import FINISHED

__all__ = ["FINISHED", "Database", "StoredRun", "open_store", "settings_key", "store_path"]
