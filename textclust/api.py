"""The Python entry points: a whole run in one call."""

from __future__ import annotations

from pathlib import Path

from .ingest import corpus_from_texts, read_corpus
from .llm.config import LLMConfig
from .pipeline import Pipeline, Settings, llm_identity
from .results import RunResult, load_run
from .store import Database

DEFAULT_DB = "textclust.db"


def run(
    path: str | Path,
    goal: str,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    db: str | Path | Database = DEFAULT_DB,
    progress: bool | None = False,
    llm: LLMConfig | dict | None = None,
    **settings,
) -> RunResult:
    """Cluster the texts of a file for ``goal``; settings are those of :class:`Settings`.

    ``llm``: an :class:`~textclust.llm.config.LLMConfig` or a dict of its fields
    (``{"model": "gpt-4o-mini"}``, ``{"model": "m", "base_url": "http://127.0.0.1:8080/v1"}``);
    None = offline explainer.
    """
    corpus = read_corpus(path, text_column=text_column, id_column=id_column)
    return _run(corpus, goal, db, progress, llm, settings)


def run_texts(texts: list[str], goal: str, *, db: str | Path | Database = DEFAULT_DB,
              progress: bool | None = False, llm: LLMConfig | dict | None = None, **settings) -> RunResult:
    """Cluster an in-memory list of strings for ``goal``."""
    return _run(corpus_from_texts(list(texts)), goal, db, progress, llm, settings)


def _run(corpus, goal, db, progress, llm, settings) -> RunResult:
    options = Settings(**settings)
    config = LLMConfig(**llm) if isinstance(llm, dict) else llm
    if config is not None:
        options.llm = llm_identity(config)  # validated before the database is touched
    options.validate(corpus.n_texts, goal)  # before the database is touched
    database = db if isinstance(db, Database) else Database(db)
    run_id = Pipeline(database, options, progress=progress, llm=config).run(corpus, goal)
    return load_run(database, run_id)
