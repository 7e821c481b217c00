"""The Python entry points: a whole run in one call.

Settings are the keywords of :meth:`textclust.config.RunConfig.from_flat` (``k=5``,
``clusterer="kmeans"``, ``candidates=[...]``…); their defaults are those of
:mod:`textclust.config`. Errors name those keywords (``k must be at least 1``), and every
setting is checked before the database is touched.

Both record the run in an SQLite database, ``db``: by default ``textclust.db`` in the current
directory, created when missing (so ``textclust show latest`` finds the run); pass
``db="path/to/file.db"`` (or an open :class:`~textclust.store.Database`) to write elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig
from .ingest import corpus_from_texts, read_corpus
from .llm.config import LLMConfig
from .results import RunResult, load_run
from .store import Database

DEFAULT_DB = "textclust.db"


def run(
    path: str | Path,
    goal: str,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    skip_bad_rows: bool = False,
    db: str | Path | Database = DEFAULT_DB,
    progress: bool | None = False,
    llm: LLMConfig | dict | None = None,
    embedder=None,
    clusterer=None,
    client=None,
    **settings,
) -> RunResult:
    """Cluster the texts of a file for ``goal``; ``settings`` are the flat keywords of
    :class:`~textclust.config.RunConfig` (``k``, ``clusterer``, ``embedding_model``, …).

    ``skip_bad_rows``: skip and count malformed rows (a JSONL line that is not a JSON object, a
    CSV row the parser rejects) instead of rejecting the file; they count in ``result.stats.n_skipped``.

    ``db``: the SQLite database the run is recorded in (default ``textclust.db`` in the current
    directory, created when missing).

    ``llm``: an :class:`~textclust.llm.config.LLMConfig` or a dict of its fields
    (``{"model": "gpt-4o-mini"}``, ``{"model": "m", "base_url": "http://127.0.0.1:8080/v1"}``);
    None = offline explainer.

    ``embedder``, ``clusterer``, ``client``: components to use instead of the built-in ones
    (see :mod:`textclust.interfaces`), passed to :class:`~textclust.pipeline.Pipeline`. A
    ``clusterer`` given as a string is the setting instead, the algorithm's name
    (``"auto"``, ``"hdbscan"``, ``"kmeans"``), as it always was.
    """
    corpus = read_corpus(path, text_column=text_column, id_column=id_column, skip_bad_rows=skip_bad_rows)
    return _run(corpus, goal, db, progress, llm, settings,
                dict(embedder=embedder, clusterer=clusterer, client=client))


def run_texts(texts: list[str], goal: str, *, db: str | Path | Database = DEFAULT_DB,
              progress: bool | None = False, llm: LLMConfig | dict | None = None,
              embedder=None, clusterer=None, client=None, **settings) -> RunResult:
    """Cluster an in-memory list of strings for ``goal`` (keywords as for :func:`run`).

    The run is recorded in the SQLite database ``db``, like :func:`run`'s: by default
    ``textclust.db`` in the current directory, created when missing."""
    return _run(corpus_from_texts(list(texts)), goal, db, progress, llm, settings,
                dict(embedder=embedder, clusterer=clusterer, client=client))


def _run(corpus, goal, db, progress, llm, settings: dict, components: dict) -> RunResult:
    from .pipeline import Pipeline

    if isinstance(components["clusterer"], str):  # the setting (an algorithm's name), not a component
        settings = {**settings, "clusterer": components.pop("clusterer")}
    config = RunConfig.from_flat(model=llm, **settings)
    config.validate(corpus.n_texts, goal)  # before the database is touched
    database = db if isinstance(db, Database) else Database(db)
    run_id = Pipeline(database, config, progress=progress, **components).run(corpus, goal)
    return load_run(database, run_id)
