"""The storage schema, in one place.

SQLite through SQLAlchemy 2.x. A fresh database is created from these models and
stamped with :data:`SCHEMA_VERSION`; an older database is upgraded step by step by
the numbered migrations in :mod:`textclust.store.migrations`. When you change a
model here, bump ``SCHEMA_VERSION`` and add the matching migration.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 6

# Run statuses. A finished run has its result rows; "incomplete" is a run stopped by the
# language-model budget, with the best result so far.
FINISHED = ("complete", "incomplete")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class SchemaMigration(Base):
    """One row per schema version the database has been brought to."""

    __tablename__ = "schema_migrations"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TextRow(Base):
    """A distinct normalised text, shared by every corpus that contains it."""

    __tablename__ = "texts"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # sha256(text)[:16]
    text: Mapped[str] = mapped_column(Text)
    n_chars: Mapped[int] = mapped_column(Integer)


class CorpusRow(Base):
    """An ingested input, stored once per distinct content (see Corpus.fingerprint)."""

    __tablename__ = "corpora"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(20))
    text_column: Mapped[str] = mapped_column(String(300))
    id_column: Mapped[str | None] = mapped_column(String(300), nullable=True)
    n_rows: Mapped[int] = mapped_column(Integer)
    n_texts: Mapped[int] = mapped_column(Integer)
    n_empty: Mapped[int] = mapped_column(Integer)
    n_duplicate_rows: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class InputRow(Base):
    """Every row of the input file, in order, pointing at its text (None when empty)."""

    __tablename__ = "input_rows"
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    row_key: Mapped[str] = mapped_column(String(300))
    text_id: Mapped[str | None] = mapped_column(ForeignKey("texts.id"), nullable=True)


class Embedding(Base):
    """Cached vector of one text under one model (float32 bytes)."""

    __tablename__ = "embeddings"
    model: Mapped[str] = mapped_column(String(500), primary_key=True)
    text_id: Mapped[str] = mapped_column(ForeignKey("texts.id"), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class StringEmbedding(Base):
    """Cached vector of a string that is no corpus text (a goal, a candidate term, an
    explanation) under one model, keyed by the SHA-256 of the exact string: with it, a fully
    cached re-run loads no embedding model."""

    __tablename__ = "string_embeddings"
    model: Mapped[str] = mapped_column(String(500), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Run(Base):
    """One execution of the pipeline over a corpus, with everything needed to reproduce it."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    goal: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # running | complete | incomplete | failed
    explainer: Mapped[str] = mapped_column(String(40))  # e.g. offline-extractive
    settings: Mapped[dict] = mapped_column(JSON)  # RunConfig.to_dict() (flat settings before version 4)
    settings_key: Mapped[str] = mapped_column(String(32), index=True)  # hash of goal+settings+corpus
    versions: Mapped[dict] = mapped_column(JSON)
    timings: Mapped[dict] = mapped_column(JSON, default=dict)
    stats: Mapped[dict] = mapped_column(JSON, default=dict)  # counts, coverage, objective…
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The process working on the run: {"pid", "host"}; None once its result is written (or
    # never claimed). A failed run keeps the claim of the process it failed in. Schema
    # version 4; before, the claim was written into ``stats``.
    claimed_by: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # When a command last made, resumed or reused the run: ``latest`` is the run with the newest
    # one (the user's last run, whichever command made or reused it). Schema version 5; an
    # upgraded run gets its ``created_at``.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=True)


class Cluster(Base):
    """A cluster found by the clustering stage (label -1 holds the unclustered texts)."""

    __tablename__ = "clusters"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    terms: Mapped[list] = mapped_column(JSON, default=list)


class ClusterMember(Base):
    """Which cluster each text fell in, per round of clustering."""

    __tablename__ = "cluster_members"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    text_id: Mapped[str] = mapped_column(ForeignKey("texts.id"), primary_key=True)
    label: Mapped[int] = mapped_column(Integer)


class Explanation(Base):
    """A candidate explanation (proposed, seeded, …); ``selected`` marks the chosen ones."""

    __tablename__ = "explanations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # index among the run's candidates
    name: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(40))  # extractive | llm | seed
    source_cluster: Mapped[int | None] = mapped_column(Integer, nullable=True)
    terms: Mapped[list] = mapped_column(JSON, default=list)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_matched: Mapped[int] = mapped_column(Integer, default=0)
    selected: Mapped[bool] = mapped_column(Boolean, default=False)
    # Added in schema version 3: the explanation this one refines (--depth 2 hierarchy),
    # and the similarity of the explanation to the goal.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("explanations.id", ondelete="SET NULL"), nullable=True
    )
    goal_similarity: Mapped[float | None] = mapped_column(Float, nullable=True)


class Assignment(Base):
    """Text × explanation pairs that match (score ≥ the explanation's threshold)."""

    __tablename__ = "assignments"
    explanation_id: Mapped[int] = mapped_column(ForeignKey("explanations.id", ondelete="CASCADE"), primary_key=True)
    text_id: Mapped[str] = mapped_column(ForeignKey("texts.id"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    # The model's quote from the text that supports the match (None offline). Schema version 3.
    evidence: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_assignments_run_text", "run_id", "text_id"),)


class Selection(Base):
    """The set of explanations the integer program chose, with the program's outcome."""

    __tablename__ = "selections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    explanation_ids: Mapped[list] = mapped_column(JSON)
    k: Mapped[int | None] = mapped_column(Integer, nullable=True)  # fixed K, or None for automatic
    objective: Mapped[float] = mapped_column(Float)
    coverage: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(60))


class TextResult(Base):
    """The final answer per distinct text: its primary explanation (None = uncovered)."""

    __tablename__ = "text_results"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    text_id: Mapped[str] = mapped_column(ForeignKey("texts.id"), primary_key=True)
    cluster: Mapped[int] = mapped_column(Integer)  # first-round cluster label, -1 = unclustered
    explanation_id: Mapped[int | None] = mapped_column(ForeignKey("explanations.id"), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_explanations: Mapped[int] = mapped_column(Integer, default=0)  # selected ones that match
    # Why the primary explanation fits: "seed match" / "classifier" (seeded explanations),
    # "similarity" (proposed ones); None when uncovered. Added in schema version 2.
    reason: Mapped[str | None] = mapped_column(String(40), nullable=True)


class LLMCall(Base):
    """One request to the language model (with its retries), or one answer served from the cache.

    Written as soon as the request ends, so an interrupted run keeps the record of every
    call it paid for. ``status``: ``ok`` (answered), ``cached`` (served from
    ``llm_responses``; no request was sent), ``error`` (no usable answer: ``error`` says why).
    ``run_id`` is SET NULL when a run row is deleted by other means; ``textclust runs --delete``
    and ``prune`` (:mod:`.maintenance`) delete a run's calls with it, while the cache
    (``llm_responses``) stays, so nothing is paid for twice. The API key is never stored.
    Schema version 3.
    """

    __tablename__ = "llm_calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), nullable=True, index=True)
    stage: Mapped[str] = mapped_column(String(40))  # propose | assign | repair of either…
    model: Mapped[str] = mapped_column(String(300))
    server: Mapped[str] = mapped_column(String(500))  # base URL (or local model file); never a key
    messages: Mapped[list] = mapped_column(JSON)
    response_format: Mapped[str] = mapped_column(String(20))  # json_schema | json_object | none
    response: Mapped[str | None] = mapped_column(Text, nullable=True)  # raw content of the answer
    finish_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # the last attempt
    waited_s: Mapped[float] = mapped_column(Float, default=0.0)  # backoff between attempts
    status: Mapped[str] = mapped_column(String(20))  # ok | cached | error
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    repair_of: Mapped[int | None] = mapped_column(ForeignKey("llm_calls.id", ondelete="SET NULL"), nullable=True)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LLMResponse(Base):
    """The response cache: the answer to one exact request (server, model, messages, parameters).

    Re-running the same command serves every answer from here and sends nothing.
    Schema version 3.
    """

    __tablename__ = "llm_responses"
    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the request
    server: Mapped[str] = mapped_column(String(500))
    model: Mapped[str] = mapped_column(String(300))
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    refusal: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
