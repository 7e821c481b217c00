"""Opening the database and reading/writing its records.

Writes that belong together happen in one transaction (``with db.transaction() as s``),
so a failure part-way leaves what was stored before untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from sqlalchemy import create_engine, event, select
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import NotFoundError, TextclustError
from ..ingest import Corpus
from . import migrations
from .schema import SCHEMA_VERSION, CorpusRow, Embedding, InputRow, Run, TextRow, utcnow

BUSY_TIMEOUT_SECONDS = 30.0
TIMEOUT_ENV = "TEXTCLUST_DB_TIMEOUT"  # seconds to wait for a database another process is writing


def busy_timeout() -> float:
    """Seconds to wait for a lock held by another process: $TEXTCLUST_DB_TIMEOUT or 30."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return BUSY_TIMEOUT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 1e6:
        raise TextclustError(f"{TIMEOUT_ENV} must be a number of seconds (got '{value}')")
    return seconds


class Database:
    """A textclust SQLite database: ``Database(path)`` opens (and creates/migrates) it.

    Several processes may use one database at once: SQLite runs in WAL mode (readers
    never wait) and a writer waits up to :func:`busy_timeout` seconds for another
    writer. A transaction that reads before it writes (check-then-insert, e.g. "is
    this corpus stored yet?") uses ``transaction(immediate=True)``, which takes the
    write lock first so that another process cannot change what it read.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise TextclustError(f"--db {self.path}: is a directory")
        if not self.path.parent.exists():
            raise TextclustError(f"--db {self.path}: folder {self.path.parent} does not exist")
        self.timeout = busy_timeout()
        self.engine = create_engine(f"sqlite:///{self.path}", connect_args={"timeout": self.timeout})
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._open()
        except OperationalError as err:
            self.engine.dispose()
            if _is_locked(err):
                raise self._locked_error() from None
            raise TextclustError(f"--db {self.path}: not a usable SQLite database ({_short(err)})") from None
        except DatabaseError as err:
            self.engine.dispose()
            raise TextclustError(f"--db {self.path}: not a usable SQLite database ({_short(err)})") from None
        except TextclustError as err:
            self.engine.dispose()
            raise TextclustError(f"--db {self.path}: {err}") from None

    def _open(self) -> None:
        """Check the schema version (a read); create or migrate under the write lock only when needed."""
        with self.engine.connect() as conn:
            found = migrations.current_version(conn)
            conn.rollback()
            if found is None:
                # An empty file is ours: WAL first (it cannot change inside a transaction);
                # WAL lets readers work while a run writes, and persists in the file.
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            if found is None or found < SCHEMA_VERSION:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # another process may be creating it right now
                migrations.migrate(conn)
                conn.commit()
            elif found == SCHEMA_VERSION:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                if str(mode).lower() != "wal":
                    # Only now that the file is known to be ours.
                    conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            else:
                migrations.migrate(conn)  # raises: newer than this textclust

    def _locked_error(self) -> TextclustError:
        return TextclustError(
            f"--db {self.path}: database is locked by another program (waited {self.timeout:g}s; "
            f"set {TIMEOUT_ENV} to wait longer)"
        )

    @contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[Session]:
        """A session whose work is committed together, or rolled back on any error.

        ``immediate=True`` takes the write lock at the start (BEGIN IMMEDIATE): what the
        transaction reads cannot be changed by another process before it commits. Without
        it the lock is taken at the first write, and reads never wait for a writer.
        """
        with self._sessions() as session:
            try:
                if immediate:
                    session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                yield session
                session.commit()
            except OperationalError as err:
                session.rollback()
                if _is_locked(err):
                    raise self._locked_error() from None
                raise
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        """A session for reads; a lock held too long by another program is a clean error."""
        with self._sessions() as session:
            try:
                yield session
            except OperationalError as err:
                if _is_locked(err):
                    raise self._locked_error() from None
                raise

    def close(self) -> None:
        self.engine.dispose()

    # --- corpora ----------------------------------------------------------------

    def save_corpus(self, corpus: Corpus) -> int:
        """Store the corpus once (keyed by its content fingerprint); return its id."""
        with self.transaction(immediate=True) as s:  # two processes may store the same corpus at once
            existing = s.scalar(select(CorpusRow.id).where(CorpusRow.fingerprint == corpus.fingerprint))
            if existing is not None:
                return existing
            known = set()
            ids = corpus.text_ids
            for chunk in _chunks(ids, 900):
                known.update(s.scalars(select(TextRow.id).where(TextRow.id.in_(chunk))))
            new_ids = [t for t in ids if t not in known]
            for chunk in _chunks(new_ids, _INSERT_CHUNK):  # bounded memory for large corpora
                s.execute(
                    TextRow.__table__.insert(),
                    [{"id": t, "text": corpus.texts[t], "n_chars": len(corpus.texts[t])} for t in chunk],
                )
            row = CorpusRow(
                fingerprint=corpus.fingerprint,
                name=corpus.name,
                source=corpus.source,
                format=corpus.format,
                text_column=corpus.text_column,
                id_column=corpus.id_column,
                n_rows=corpus.n_rows,
                n_texts=corpus.n_texts,
                n_empty=corpus.n_empty,
                n_duplicate_rows=corpus.n_duplicate_rows,
            )
            s.add(row)
            s.flush()
            for start in range(0, corpus.n_rows, _INSERT_CHUNK):
                stop = start + _INSERT_CHUNK
                s.execute(
                    InputRow.__table__.insert(),
                    [
                        {"corpus_id": row.id, "row_index": start + i, "row_key": key, "text_id": tid}
                        for i, (key, tid) in enumerate(
                            zip(corpus.row_keys[start:stop], corpus.row_text_ids[start:stop])
                        )
                    ],
                )
            return row.id

    # --- embeddings ---------------------------------------------------------------

    def cached_embeddings(self, model: str, text_ids: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._reading() as s:
            for chunk in _chunks(text_ids, 900):
                rows = s.execute(
                    select(Embedding.text_id, Embedding.vector).where(
                        Embedding.model == model, Embedding.text_id.in_(chunk)
                    )
                )
                for tid, blob in rows:
                    found[tid] = np.frombuffer(blob, dtype=np.float32)
        return found

    def load_embeddings(self, model: str, text_ids: list[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Cached vectors read straight into one float32 matrix (no per-text copies).

        Returns ``(matrix, found)``: row i holds text_ids[i]'s vector where ``found[i]``;
        ``matrix`` is None when nothing is cached. ``text_ids`` must be distinct.
        """
        position = {t: i for i, t in enumerate(text_ids)}
        found = np.zeros(len(text_ids), dtype=bool)
        matrix = None
        with self._reading() as s:
            for chunk in _chunks(text_ids, 900):
                rows = s.execute(
                    select(Embedding.text_id, Embedding.vector).where(
                        Embedding.model == model, Embedding.text_id.in_(chunk)
                    )
                )
                for tid, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if matrix is None:
                        matrix = np.empty((len(text_ids), vector.shape[0]), dtype=np.float32)
                    if vector.shape[0] != matrix.shape[1]:
                        continue  # a damaged cache entry: computed again
                    i = position[tid]
                    matrix[i] = vector
                    found[i] = True
        return matrix, found

    def store_embeddings(self, model: str, text_ids: list[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        with self.transaction() as s:
            s.execute(
                Embedding.__table__.insert().prefix_with("OR IGNORE"),
                [
                    {"model": model, "text_id": t, "dim": int(v.shape[0]), "vector": v.tobytes()}
                    for t, v in zip(text_ids, vectors)
                ],
            )

    # --- runs ---------------------------------------------------------------------------

    def start_run(self, corpus_id: int, goal: str, explainer: str, settings: dict, versions: dict) -> int:
        with self.transaction() as s:
            run = Run(
                corpus_id=corpus_id,
                goal=goal,
                status="running",
                explainer=explainer,
                settings=settings,
                settings_key=settings_key(corpus_id, goal, settings),
                versions=versions,
                timings={},
                stats={},
            )
            s.add(run)
            s.flush()
            return run.id

    def fail_run(self, run_id: int, error: str) -> None:
        with self.transaction() as s:
            run = s.get(Run, run_id)
            if run is not None:
                run.status = "failed"
                run.error = error
                run.finished_at = utcnow()

    def find_complete_run(self, corpus_id: int, goal: str, settings: dict) -> int | None:
        """The newest complete run with exactly these inputs, for reuse (e.g. by ``eval``)."""
        with self._reading() as s:
            return s.scalar(
                select(Run.id)
                .where(Run.settings_key == settings_key(corpus_id, goal, settings), Run.status == "complete")
                .order_by(Run.id.desc())
            )

    def get_run(self, run_id: int) -> Run:
        with self._reading() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFoundError(f"no run with id {run_id} in {self.path}")
            return run

    def list_runs(self) -> list[tuple[Run, CorpusRow]]:
        with self._reading() as s:
            return [tuple(row) for row in s.execute(select(Run, CorpusRow).join(CorpusRow).order_by(Run.id))]


def settings_key(corpus_id: int, goal: str, settings: dict) -> str:
    payload = json.dumps({"corpus": corpus_id, "goal": goal, "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_INSERT_CHUNK = 20_000


def _is_locked(err: Exception) -> bool:
    message = str(getattr(err, "orig", err)).lower()
    return "database is locked" in message or "database table is locked" in message or "busy" in message


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _short(err: Exception) -> str:
    return " ".join(str(getattr(err, "orig", err)).split())[:200]
