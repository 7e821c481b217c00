"""The Python entry points: a whole run in one call.

Settings are the keywords of :meth:`textclust.config.RunConfig.from_flat` (``k=5``,
``clusterer="kmeans"``, ``candidates=[...]``…); their defaults are those of
:mod:`textclust.config`. Errors name those keywords (``k must be at least 1``), and every
setting is checked before the database is touched.

Both record the run in an SQLite database, ``db``: by default ``textclust.db`` in the current
directory, created when missing (so ``textclust show latest`` finds the run); pass
``db="path/to/file.db"`` (or ``sqlite:///path``, or an open store) to write elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig
from .ingest import corpus_from_texts, read_corpus
from .interfaces import RunStore
from .llm.config import LLMConfig
from .results import RunResult, load_run
from .store import open_store

DEFAULT_DB = "textclust.db"


def run(
    path: str | Path,
    goal: str,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    skip_bad_rows: bool = False,
    db: str | Path | RunStore = DEFAULT_DB,
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


def run_texts(texts: list[str], goal: str, *, db: str | Path | RunStore = DEFAULT_DB,
              progress: bool | None = False, llm: LLMConfig | dict | None = None,
              embedder=None, clusterer=None, client=None, **settings) -> RunResult:
    """Cluster an in-memory list of strings for ``goal`` (keywords as for :func:`run`).

    The run is recorded in the SQLite database ``db``, like :func:`run`'s: by default
    ``textclust.db`` in the current directory, created when missing."""
    return _run(corpus_from_texts(list(texts)), goal, db, progress, llm, settings,
                dict(embedder=embedder, clusterer=clusterer, client=client))


def evaluate_file(
    path: str | Path,
    goal: str,
    label_column: str,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    skip_bad_rows: bool = False,
    db: str | Path | RunStore = DEFAULT_DB,
    progress: bool | None = False,
    llm: LLMConfig | dict | None = None,
    embedder=None,
    clusterer=None,
    client=None,
    **settings,
) -> dict:
    """Cluster the texts of a file (or reuse the complete run of the same input, goal and
    settings) and score it against the gold labels in ``label_column``, as ``textclust eval``
    does: ``acc``, ``nmi``, ``ari``, ``coverage``, ``n`` (labelled rows), ``n_clusters``,
    ``run_id``, ``explainer``, ``reused`` (whether the run was found rather than made),
    ``n_gold_classes`` and ``notice`` (the run's notice, or None). Keywords as for :func:`run`."""
    corpus = read_corpus(path, text_column=text_column, id_column=id_column, extra_columns=(label_column,),
                         skip_bad_rows=skip_bad_rows)
    config, components = _config(llm, settings, dict(embedder=embedder, clusterer=clusterer, client=client))
    return evaluate_corpus(corpus, goal, label_column, config, db, progress=progress, **components)


def evaluate_corpus(corpus, goal: str, label_column: str, config: RunConfig, db, *, log=None,
                    progress: bool | None = False, **components) -> dict:
    """:func:`evaluate_file` for a corpus already read (with ``label_column`` among its extra columns)
    and a configuration already built; ``log`` gets the pipeline's lines (and the reuse line)."""
    from .evaluate import score_partition
    from .pipeline import Pipeline

    config.validate(corpus.n_texts, goal)  # before the database is touched
    database = open_store(db)
    pipeline = Pipeline(database, config, log=log, progress=progress, **components)
    run_id, reused = pipeline.run_or_reuse(corpus, goal)
    result = load_run(database, run_id)
    gold, predicted, _ = result.scored_rows(corpus.extra[label_column])
    scores = score_partition(gold, predicted).to_dict()
    scores.update(run_id=run_id, explainer=result.explainer, reused=reused, n_gold_classes=len(set(gold)),
                  notice=result.notice)
    return scores


def _config(llm, settings: dict, components: dict) -> tuple[RunConfig, dict]:
    """The run's configuration from the Python keywords, and the components to hand the pipeline.
    A ``clusterer`` given as a string is the setting (an algorithm's name), not a component."""
    if isinstance(components["clusterer"], str):
        settings = {**settings, "clusterer": components.pop("clusterer")}
    return RunConfig.from_flat(model=llm, **settings), components


def _run(corpus, goal, db, progress, llm, settings: dict, components: dict) -> RunResult:
    from .pipeline import Pipeline

    config, components = _config(llm, settings, components)
    config.validate(corpus.n_texts, goal)  # before the database is touched
    database = open_store(db)
    run_id = Pipeline(database, config, progress=progress, **components).run(corpus, goal)
    return load_run(database, run_id)


def summarize(run: RunResult | int | str = "latest", *, db: str | Path | RunStore | None = None,
              llm: LLMConfig | dict | bool | None = True, spell=None):
    """A readable summary of a finished run (``textclust summarize``): a
    :class:`~textclust.report.summarize.Summary`; ``str(summary)`` is its Markdown,
    ``summary.render("text" | "json")`` the other forms, ``summary.to_dict()`` its facts.

    ``run``: a :class:`RunResult`, or a run id (``"latest"``: the last run made, resumed or reused)
    in ``db`` (default ``textclust.db``). ``llm``: True = the run's own language model (offline
    runs get the template overview); None or False = the template overview; an
    :class:`LLMConfig` or a dict of its fields = that model. The model's call is recorded and
    cached under the run in ``db`` (for a ``RunResult``, only when ``db`` is given), so asking
    again sends nothing. ``spell`` names settings in the run's notices (the CLI: as flags)."""
    from dataclasses import replace

    from .errors import NotFoundError
    from .llm.client import LLMClient
    from .report.summarize import add_model_overview, summary_facts
    from .store import store_path

    if isinstance(run, RunResult):
        result, store = run, (None if db is None else open_store(db))
    else:
        db = DEFAULT_DB if db is None else db
        file = store_path(db) if isinstance(db, (str, Path)) else None
        if file is not None and not file.is_file():
            raise NotFoundError(f"{{db}} {db}: no such database")
        store = open_store(db)
        result = load_run(store, run)
    summary = summary_facts(result, spell)
    if llm is True:
        model = result.config.model
    elif llm:
        model = LLMConfig(**llm) if isinstance(llm, dict) else llm
        model = replace(model, seed=result.config.random_state)  # the run's seed, as the run's own model has
    else:
        model = None
    if model is not None:
        add_model_overview(summary, LLMClient(model, store, run_id=result.run_id))
    return summary
