"""Opening the database and reading/writing its records: the SQLite implementation of
:class:`textclust.interfaces.RunStore`.

Every query of the package lives in this package, behind the methods of
:class:`Database`; the rest of textclust calls the methods and never sees a session.
Writes that belong together happen in one transaction (``with self.transaction() as s``),
so a failure part-way leaves what was stored before untouched. What is SQLite's own
(WAL, ``BEGIN IMMEDIATE``, the bound-variable limit, PRAGMAs) is in :mod:`.sqlite`.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..corpus import Corpus
from ..errors import NotFoundError, SettingsError, TextclustError, register_settings
from ..interfaces import ExplainResult
from ..stats import RunStats
from . import maintenance, migrations, sqlite, write
from .claims import claim, process_alive
from .records import CAPABILITY_MARK, StoredRun, capability_key
from .schema import (
    FINISHED,
    SCHEMA_VERSION,
    Assignment,
    CorpusRow,
    Embedding,
    StringEmbedding,
    Explanation,
    InputRow,
    LLMCall,
    LLMResponse,
    Run,
    TextResult,
    TextRow,
    utcnow,
)

register_settings(("db",))  # messages name the database setting as {db}

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

    Rows handed out (:meth:`get_run`, :meth:`list_runs`, :meth:`calls_for_run`,
    :meth:`read_run`) are detached: read them, never change them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise TextclustError(f"{{db}} {self.path}: is a directory")
        if not self.path.parent.exists():
            raise TextclustError(f"{{db}} {self.path}: folder {self.path.parent} does not exist")
        self.timeout = busy_timeout()
        self.engine = create_engine(sqlite.url(self.path), connect_args={"timeout": self.timeout})
        event.listen(self.engine, "connect", sqlite.set_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._open()
        except OperationalError as err:
            self.engine.dispose()
            if sqlite.is_locked(err):
                raise self._locked_error() from None
            raise TextclustError(f"{{db}} {self.path}: not a usable SQLite database ({_short(err)})") from None
        except DatabaseError as err:
            self.engine.dispose()
            raise TextclustError(f"{{db}} {self.path}: not a usable SQLite database ({_short(err)})") from None
        except TextclustError as err:
            self.engine.dispose()
            raise TextclustError(f"{{db}} {self.path}: {err.template}") from None

    def _open(self) -> None:
        """Check the schema version (a read); create or migrate under the write lock only when needed."""
        with self.engine.connect() as conn:
            found = migrations.current_version(conn)
            conn.rollback()
            if found is None:
                # An empty file is ours: WAL first (it cannot change inside a transaction);
                # WAL lets readers work while a run writes, and persists in the file.
                sqlite.enable_wal(conn)
            if found is None or found < SCHEMA_VERSION:
                sqlite.begin_immediate(conn)  # another process may be creating it right now
                migrations.migrate(conn)
                conn.commit()
            elif found == SCHEMA_VERSION:
                if sqlite.journal_mode(conn) != "wal":
                    # Only now that the file is known to be ours.
                    sqlite.enable_wal(conn)
            else:
                migrations.migrate(conn)  # raises: newer than this textclust

    def _locked_error(self) -> TextclustError:
        return TextclustError(
            f"{{db}} {self.path}: database is locked by another program (waited {self.timeout:g}s; "
            f"set {TIMEOUT_ENV} to wait longer)"
        )

    @contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[Session]:
        """A session whose work is committed together, or rolled back on any error (for the
        store's own use).

        ``immediate=True`` takes the write lock at the start (BEGIN IMMEDIATE): what the
        transaction reads cannot be changed by another process before it commits. Without
        it the lock is taken at the first write, and reads never wait for a writer.
        """
        with self._sessions() as session:
            try:
                if immediate:
                    sqlite.begin_immediate(session.connection())
                yield session
                session.commit()
            except OperationalError as err:
                session.rollback()
                if sqlite.is_locked(err):
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
                if sqlite.is_locked(err):
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
            for chunk in sqlite.chunks(ids):
                known.update(s.scalars(select(TextRow.id).where(TextRow.id.in_(chunk))))
            new_ids = [t for t in ids if t not in known]
            for chunk in sqlite.chunks(new_ids, sqlite.INSERT_CHUNK):  # bounded memory for large corpora
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
            for start in range(0, corpus.n_rows, sqlite.INSERT_CHUNK):
                stop = start + sqlite.INSERT_CHUNK
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

    def load_corpus(self, corpus_id: int) -> Corpus:
        """The stored corpus, as :func:`textclust.ingest.read_corpus` built it (rows in file
        order, texts in first-seen order)."""
        with self._reading() as s:
            row = s.get(CorpusRow, corpus_id)
            if row is None:
                raise NotFoundError(f"no corpus with id {corpus_id} in {self.path}")
            inputs = s.execute(select(InputRow.row_key, InputRow.text_id).where(InputRow.corpus_id == corpus_id)
                               .order_by(InputRow.row_index)).all()
            ids = sorted({t for _, t in inputs if t is not None})
            texts = {}
            for chunk in sqlite.chunks(ids):
                texts.update(s.execute(select(TextRow.id, TextRow.text).where(TextRow.id.in_(chunk))).all())
        ordered: dict[str, str] = {}
        for _, text_id in inputs:  # first-seen order, as ingest keeps it
            if text_id is not None and text_id not in ordered:
                ordered[text_id] = texts[text_id]
        return Corpus(name=row.name, source=row.source, format=row.format, text_column=row.text_column,
                      id_column=row.id_column, row_keys=[k for k, _ in inputs], row_text_ids=[t for _, t in inputs],
                      texts=ordered)

    # --- embeddings ---------------------------------------------------------------

    def cached_embeddings(self, model: str, text_ids: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._reading() as s:
            for chunk in sqlite.chunks(text_ids):
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
            for chunk in sqlite.chunks(text_ids):
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

    def cached_strings(self, model: str, keys: list[str]) -> dict[str, np.ndarray]:
        """Cached vectors of strings that are no corpus text, by key (see :class:`StringEmbedding`)."""
        found: dict[str, np.ndarray] = {}
        with self._reading() as s:
            for chunk in sqlite.chunks(keys):
                rows = s.execute(select(StringEmbedding.key, StringEmbedding.vector)
                                 .where(StringEmbedding.model == model, StringEmbedding.key.in_(chunk)))
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def store_strings(self, model: str, keys: list[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if not len(keys):
            return
        with self.transaction() as s:
            s.execute(StringEmbedding.__table__.insert().prefix_with("OR IGNORE"),
                      [{"model": model, "key": k, "dim": int(v.shape[0]), "vector": v.tobytes()}
                       for k, v in zip(keys, vectors)])

    # --- runs ---------------------------------------------------------------------------

    def start_run(self, corpus_id: int, goal: str, explainer: str, settings: dict, settings_key: str,
                  versions: dict) -> int:
        """A new run (status 'running'), claimed by this process from its first moment; its id.
        ``settings`` is what is stored (``RunConfig.to_dict()``); ``settings_key`` what finds
        the run again (see :func:`settings_key`)."""
        with self.transaction() as s:
            run = Run(corpus_id=corpus_id, goal=goal, status="running", explainer=explainer, settings=settings,
                      settings_key=settings_key, versions=versions, timings={}, stats={})
            claim(run)
            s.add(run)
            s.flush()
            return run.id

    def claim_unfinished_run(self, settings_key: str) -> int | None:
        """Find and claim (in one transaction, so two processes cannot both take it) the newest
        run with this key that did not finish and that no live process is working on:
        'running' by a dead process (killed), 'failed', or 'incomplete' (budget). None when
        there is none, or when a complete run is newer than any unfinished one."""
        with self.transaction(immediate=True) as s:  # write lock first: find and claim atomically
            runs = s.scalars(select(Run).where(Run.settings_key == settings_key).order_by(Run.id.desc())).all()
            for run in runs:
                if run.status == "complete":
                    return None  # a finished run is newer than any unfinished one: start afresh
                if run.status in ("failed", "incomplete") or (
                        run.status == "running" and not process_alive(run.claimed_by)):
                    claim(run)
                    return run.id
        return None

    def claim_run(self, run_id: int, takeover: bool = False) -> None:
        """Mark the run as being worked on by this process (so another one won't resume it).
        With ``takeover``, a run a live process is working on is refused (SettingsError)."""
        with self.transaction(immediate=True) as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFoundError(f"no run with id {run_id} in {self.path}")
            if takeover and run.status == "running" and process_alive(run.claimed_by):
                raise SettingsError(f"run {run_id} is being worked on by process {(run.claimed_by or {}).get('pid')}")
            claim(run)

    def fail_run(self, run_id: int, error: str) -> None:
        with self.transaction() as s:
            run = s.get(Run, run_id)
            if run is not None:
                run.status = "failed"
                run.error = error
                run.finished_at = utcnow()

    def write_result(self, run_id: int, *, text_ids: list[str], labels: np.ndarray, weights: np.ndarray,
                     result: ExplainResult, k: int | None, stats: RunStats, timings: dict,
                     status: str = "complete", goal_similarity: np.ndarray | None = None,
                     error: str | None = None) -> None:
        """Store a run's result (every row of it) with its final status, stats and timings, in
        one transaction that first removes any result rows the run had (see :mod:`.write`)."""
        write.write_result(self, run_id, text_ids=text_ids, labels=labels, weights=weights, result=result, k=k,
                           stats=stats, timings=timings, status=status, goal_similarity=goal_similarity,
                           error=error)

    def find_complete_run_by_key(self, key: str) -> int | None:
        """The newest complete run with this settings key (:func:`settings_key`), or None."""
        with self._reading() as s:
            return s.scalar(_newest_complete(key))

    def reuse_complete_run(self, settings_key: str) -> int | None:
        """The newest complete run with this settings key, marked as used now (so ``latest``
        names it); None when there is none. Find and mark in one transaction."""
        with self.transaction(immediate=True) as s:
            run_id = s.scalar(_newest_complete(settings_key))
            if run_id is not None:
                s.get(Run, run_id).last_used_at = utcnow()
            return run_id

    def mark_used(self, run_id: int) -> None:
        """Record that a command used the run now (``latest`` names it from now on)."""
        with self.transaction() as s:
            run = s.get(Run, run_id)
            if run is not None:
                run.last_used_at = utcnow()

    # --- deleting runs (see :mod:`.maintenance`) -------------------------------------------

    def plan_delete(self, run_ids: list[int]) -> list:
        """The runs ``run_ids`` as :meth:`delete_runs` would delete them (``maintenance.Doomed``);
        NotFoundError / SettingsError for ids that do not exist or runs a live process holds."""
        return maintenance.plan_delete(self, run_ids)

    def plan_prune(self) -> list:
        """What ``prune`` deletes: failed, incomplete and interrupted runs, and older duplicates."""
        return maintenance.plan_prune(self)

    def delete_runs(self, run_ids: list[int]) -> dict:
        """Delete the runs and what belongs only to them, in one transaction."""
        return maintenance.delete_runs(self, run_ids)

    def get_run(self, run_id: int) -> Run:
        with self._reading() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFoundError(f"no run with id {run_id} in {self.path}")
            return run

    def latest_run_id(self) -> int | None:
        """The id of the user's last run: the one a command most recently made, resumed or
        reused (``runs.last_used_at``; the newer id on a tie). None in a database without runs."""
        with self._reading() as s:
            used = func.coalesce(Run.last_used_at, Run.created_at)
            return s.scalar(select(Run.id).order_by(used.desc(), Run.id.desc()).limit(1))

    def list_runs(self) -> list[tuple[Run, CorpusRow]]:
        with self._reading() as s:
            return [tuple(row) for row in s.execute(select(Run, CorpusRow).join(CorpusRow).order_by(Run.id))]

    def read_run(self, run_id: int) -> StoredRun:
        """A run with its corpus and, when it finished (:data:`.schema.FINISHED`), everything its
        result is assembled from (:class:`.records.StoredRun`); NotFoundError when absent."""
        with self._reading() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFoundError(f"no run with id {run_id} in {self.path}")
            corpus = s.get(CorpusRow, run.corpus_id)
            stored = StoredRun(run=run, corpus=corpus)
            if run.status not in FINISHED:
                return stored
            # Top-level explanations only; sub-explanations (depth 2) are in stats["hierarchy"].
            stored.explanations = list(s.scalars(select(Explanation).where(Explanation.run_id == run_id,
                                                                           Explanation.parent_id.is_(None))))
            selected = [e.id for e in stored.explanations if e.selected]
            stored.evidence = [tuple(row) for row in s.execute(
                select(Assignment.explanation_id, Assignment.evidence)
                .where(Assignment.run_id == run_id, Assignment.explanation_id.in_(selected),
                       Assignment.evidence.is_not(None))
                .order_by(Assignment.explanation_id, Assignment.text_id)
            )]
            stored.text_results = {r.text_id: r for r in s.scalars(select(TextResult).where(TextResult.run_id == run_id))}
            stored.texts = dict(s.execute(
                select(TextRow.id, TextRow.text).join(TextResult, TextResult.text_id == TextRow.id)
                .where(TextResult.run_id == run_id)
            ).all())
            multi = {t for t, r in stored.text_results.items() if r.n_explanations > 1}
            if multi:
                rows = s.execute(select(Assignment.text_id, Assignment.explanation_id).where(Assignment.run_id == run_id))
                stored.multi_matches = [(t, e) for t, e in rows if t in multi]
            stored.input_rows = [tuple(row) for row in s.execute(
                select(InputRow.row_index, InputRow.row_key, InputRow.text_id)
                .where(InputRow.corpus_id == corpus.id).order_by(InputRow.row_index)
            )]
        return stored

    # --- the language-model record: response cache and call log -----------------------------

    def cached_response(self, key: str) -> dict | None:
        """The cached answer to the request with this cache key: ``{"content", "prompt_tokens",
        "completion_tokens", "finish_reason", "refusal"}``, or None."""
        with self.transaction() as s:
            row = s.get(LLMResponse, key)
            if row is None or row.finish_reason == CAPABILITY_MARK:
                return None
            return {"content": row.response, "prompt_tokens": row.prompt_tokens,
                    "completion_tokens": row.completion_tokens, "finish_reason": row.finish_reason,
                    "refusal": row.refusal}

    def structured_capability(self, server: str, model: str) -> str | None:
        """The structured-output mode that worked with this server and model before, if recorded."""
        with self.transaction() as s:
            row = s.get(LLMResponse, capability_key(server, model))
            return row.response if row is not None and row.finish_reason == CAPABILITY_MARK else None

    def remember_structured_capability(self, server: str, model: str, mode: str) -> None:
        with self.transaction(immediate=True) as s:  # read-then-write: lock first
            key = capability_key(server, model)
            row = s.get(LLMResponse, key)
            if row is None:
                s.add(LLMResponse(cache_key=key, server=server, model=model, response=mode,
                                  finish_reason=CAPABILITY_MARK))
            else:
                row.response = mode

    def log_call(self, call: dict, answer: dict | None = None) -> int:
        """Write one call (``llm_calls`` columns) and, for a fresh answer, its cache entry
        (``llm_responses`` columns but the key, which is the call's) in one transaction; the
        call's id. The values are written as given: the caller scrubs secrets first."""
        with self.transaction() as s:
            row = LLMCall(**call)
            s.add(row)
            if answer is not None and s.get(LLMResponse, call["cache_key"]) is None:
                s.add(LLMResponse(cache_key=call["cache_key"], **answer))
            s.flush()
            return row.id

    def calls_for_run(self, run_id: int) -> list[LLMCall]:
        """Every call of a run, in order."""
        with self.transaction() as s:
            return list(s.scalars(select(LLMCall).where(LLMCall.run_id == run_id).order_by(LLMCall.id)))

    def usage_for_run(self, run_id: int) -> dict:
        """Counts and tokens of a run's calls, from the record (``cached`` rows cost nothing)."""
        with self.transaction() as s:
            rows = s.execute(
                select(LLMCall.status, func.count(), func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
                       func.coalesce(func.sum(LLMCall.completion_tokens), 0),
                       func.coalesce(func.sum(LLMCall.retries), 0))
                .where(LLMCall.run_id == run_id)
                .group_by(LLMCall.status)
            ).all()
        by_status = {status: (n, p, c, r) for status, n, p, c, r in rows}
        sent = [by_status.get(k, (0, 0, 0, 0)) for k in ("ok", "error")]
        return {
            "calls": sum(x[0] for x in sent),
            "cached_calls": by_status.get("cached", (0,))[0],
            "failed_calls": by_status.get("error", (0,))[0],
            "prompt_tokens": sum(x[1] for x in sent),
            "completion_tokens": sum(x[2] for x in sent),
            "retries": sum(x[3] for x in sent),
        }

    def recorded_structured_mode(self, run_id: int) -> str | None:
        """The structured-output mode of the run's last answered request, from its call record.

        The mode shapes every request (its ``response_format``, and for ``json_object``/``none``
        a format hint in the prompt), so it is part of each answer's cache key. It is not in the
        run's settings (it may come from a config file, or from the client falling back when a
        server refused a mode), so a resume that guessed it would miss the cache and pay for
        every answer again.
        """
        with self._reading() as s:
            return s.scalar(select(LLMCall.response_format)
                            .where(LLMCall.run_id == run_id, LLMCall.response.is_not(None))
                            .order_by(LLMCall.id.desc()).limit(1))


def _newest_complete(key: str):
    """The query for the newest complete run with settings key ``key``."""
    return select(Run.id).where(Run.settings_key == key, Run.status == "complete").order_by(Run.id.desc()).limit(1)


def settings_key(corpus_id: int, goal: str, settings: dict) -> str:
    """What finds a run again: a hash of its corpus, goal and result-changing settings."""
    payload = json.dumps({"corpus": corpus_id, "goal": goal, "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _short(err: Exception) -> str:
    return " ".join(str(getattr(err, "orig", err)).split())[:200]
