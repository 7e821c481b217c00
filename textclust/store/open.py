"""Opening a store: the one place that turns what a user typed (a path, a URL) into a store.

``--db``, ``$TEXTCLUST_DB``, ``textclust.run(db=…)``, ``load_run`` and the benches all come
through :func:`open_store`, so a second store (PostgreSQL) is one more branch here, not an
edit of every caller.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TextclustError
from .database import Database


def store_path(target: str | os.PathLike) -> Path | None:
    """The SQLite file ``target`` names (a path, or a ``sqlite:///…`` URL); None for another
    kind of URL. A URL's password never appears in an error."""
    text = os.fspath(target)
    if "://" not in text:
        return Path(text)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except ArgumentError:  # (not echoed: it may hold a password)
        raise TextclustError(f"{{db}}: '{text.split('://', 1)[0]}://…' is neither a file path nor a database URL") from None
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise TextclustError("{db}: a SQLite URL must name a file (sqlite:///path/to/file.db)")
    return Path(url.database)


def open_store(target) -> Database:
    """The store ``target`` names: a file path or a ``sqlite:///path`` URL (created when missing);
    a store object is returned as it is."""
    if not isinstance(target, (str, os.PathLike)):
        return target  # already a store (a RunStore implementation)
    path = store_path(target)
    if path is None:
        from sqlalchemy.engine import make_url

        shown = make_url(os.fspath(target)).render_as_string(hide_password=True)
        raise TextclustError(f"{{db}}: '{shown}' is not supported yet: textclust stores "
                             "runs in SQLite (a file path or sqlite:///path); PostgreSQL is planned")
    return Database(path)
