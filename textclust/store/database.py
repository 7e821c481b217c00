"""Opening the database and reading/writing its records.

Writes that belong together happen in one transaction (``with db.transaction() as s``),
so a failure part-way leaves what was stored before untouched.
"""

from __future__ import annotations

import hashlib
import json
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
from .schema import CorpusRow, Embedding, InputRow, Run, TextRow, utcnow

BUSY_TIMEOUT_SECONDS = 30


class Database:
    """A textclust SQLite database: ``Database(path)`` opens (and creates/migrates) it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise TextclustError(f"--db {self.path}: is a directory")
        if not self.path.parent.exists():
            raise TextclustError(f"--db {self.path}: folder {self.path.parent} does not exist")
        self.engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"timeout": BUSY_TIMEOUT_SECONDS}
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            with self.engine.begin() as conn:
                migrations.migrate(conn)
            with self.engine.connect() as conn:
                # Only now that the file is known to be ours: WAL lets readers work
                # while a run writes (persistent in the file).
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        except DatabaseError as err:
            raise TextclustError(f"--db {self.path}: not a usable SQLite database ({_short(err)})") from None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed together, or rolled back on any error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except OperationalError as err:
                session.rollback()
                if "locked" in str(err):
                    raise TextclustError(
                        f"--db {self.path}: database is locked by another program (waited {BUSY_TIMEOUT_SECONDS}s)"
                    ) from None
                raise
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()

    # --- corpora ----------------------------------------------------------------

    def save_corpus(self, corpus: Corpus) -> int:
        """Store the corpus once (keyed by its content fingerprint); return its id."""
        with self.transaction() as s:
            existing = s.scalar(select(CorpusRow.id).where(CorpusRow.fingerprint == corpus.fingerprint))
            if existing is not None:
                return existing
            known = set()
            ids = corpus.text_ids
            for chunk in _chunks(ids, 900):
                known.update(s.scalars(select(TextRow.id).where(TextRow.id.in_(chunk))))
            new_texts = [
                {"id": t, "text": corpus.texts[t], "n_chars": len(corpus.texts[t])} for t in ids if t not in known
            ]
            if new_texts:
                s.execute(TextRow.__table__.insert(), new_texts)
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
            s.execute(
                InputRow.__table__.insert(),
                [
                    {"corpus_id": row.id, "row_index": i, "row_key": key, "text_id": tid}
                    for i, (key, tid) in enumerate(zip(corpus.row_keys, corpus.row_text_ids))
                ],
            )
            return row.id

    # --- embeddings ---------------------------------------------------------------

    def cached_embeddings(self, model: str, text_ids: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._sessions() as s:
            for chunk in _chunks(text_ids, 900):
                rows = s.execute(
                    select(Embedding.text_id, Embedding.vector).where(
                        Embedding.model == model, Embedding.text_id.in_(chunk)
                    )
                )
                for tid, blob in rows:
                    found[tid] = np.frombuffer(blob, dtype=np.float32)
        return found

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
        with self._sessions() as s:
            return s.scalar(
                select(Run.id)
                .where(Run.settings_key == settings_key(corpus_id, goal, settings), Run.status == "complete")
                .order_by(Run.id.desc())
            )

    def get_run(self, run_id: int) -> Run:
        with self._sessions() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFoundError(f"no run with id {run_id} in {self.path}")
            return run

    def list_runs(self) -> list[tuple[Run, CorpusRow]]:
        with self._sessions() as s:
            return [tuple(row) for row in s.execute(select(Run, CorpusRow).join(CorpusRow).order_by(Run.id))]


def settings_key(corpus_id: int, goal: str, settings: dict) -> str:
    payload = json.dumps({"corpus": corpus_id, "goal": goal, "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _short(err: Exception) -> str:
    return " ".join(str(getattr(err, "orig", err)).split())[:200]
