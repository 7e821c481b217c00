"""Finishing a run that did not: ``textclust resume RUN_ID``.

Everything a run needs is in the database: its settings, its goal, its corpus (rows and
texts), the embeddings, and every language-model answer it received (the response
cache). Resuming re-executes the stages in place under the same run id; embeddings and
answers come from the cache, so nothing is computed or paid for twice, and the result
is written in one transaction, so no row is duplicated.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import select

from .errors import SettingsError
from .ingest import Corpus
from .pipeline import Pipeline, Settings
from .store import Database
from .store.schema import CorpusRow, InputRow, LLMCall, TextRow

DEFAULT_SERVER_PREFIX = "default"


def load_corpus(db: Database, corpus_id: int) -> Corpus:
    """The stored corpus, as :func:`textclust.ingest.read_corpus` built it."""
    with db.transaction() as s:
        row = s.get(CorpusRow, corpus_id)
        inputs = s.execute(select(InputRow.row_key, InputRow.text_id).where(InputRow.corpus_id == corpus_id)
                           .order_by(InputRow.row_index)).all()
        ids = sorted({t for _, t in inputs if t is not None})
        texts = {}
        for start in range(0, len(ids), 900):  # SQLite limits the variables of one statement
            chunk = ids[start:start + 900]
            texts.update(s.execute(select(TextRow.id, TextRow.text).where(TextRow.id.in_(chunk))).all())
    ordered: dict[str, str] = {}
    for _, text_id in inputs:  # first-seen order, as ingest keeps it
        if text_id is not None and text_id not in ordered:
            ordered[text_id] = texts[text_id]
    return Corpus(name=row.name, source=row.source, format=row.format, text_column=row.text_column,
                  id_column=row.id_column, row_keys=[k for k, _ in inputs], row_text_ids=[t for _, t in inputs],
                  texts=ordered)


def recorded_structured_mode(db: Database, run_id: int) -> str | None:
    """The structured-output mode of the run's last answered request, from its call record.

    The mode shapes every request (its ``response_format``, and for ``json_object``/``none``
    a format hint in the prompt), so it is part of each answer's cache key. It is not in the
    run's settings (it may come from a config file, or from the client falling back when a
    server refused a mode), so a resume that guessed it would miss the cache and pay for
    every answer again.
    """
    with db.transaction() as s:
        return s.scalar(select(LLMCall.response_format)
                        .where(LLMCall.run_id == run_id, LLMCall.response.is_not(None))
                        .order_by(LLMCall.id.desc()).limit(1))


def llm_config_for(identity: dict, api_key_env: str | None = None, structured: str | None = None, **budget):
    """Rebuild the run's LLMConfig from what the run stored (never a key: that comes from the
    environment now). ``structured``: the mode the run's requests used (default auto)."""
    from .llm.config import LLMConfig

    server = identity.get("server") or ""
    base_url = gguf = None
    if server.startswith("gguf:"):
        gguf = server[len("gguf:"):]
    elif not server.startswith(DEFAULT_SERVER_PREFIX):
        if "***" in server:
            raise SettingsError("the run's server URL held credentials, which were not stored; "
                                "re-run the original command instead of resume")
        base_url = server
    values = {k: identity[k] for k in ("temperature", "seed", "max_output_tokens") if k in identity}
    values.update({k: v for k, v in budget.items() if v is not None})
    if structured:
        values["structured"] = structured
    return LLMConfig(model=identity["model"], base_url=base_url, gguf=gguf,
                     api_key_env=api_key_env or identity.get("api_key_env") or "OPENAI_API_KEY", **values)


def resume_run(db: Database, run_id: int, log: Callable[[str], None] | None = None, api_key_env: str | None = None,
               **budget) -> int:
    """Finish ``run_id`` in place; returns it. A complete run is left as it is."""
    log = log or (lambda message: None)
    run = db.get_run(run_id)
    if run.status == "complete":
        log(f"run {run_id} is already complete; nothing to do")
        return run_id
    settings = Settings.from_dict(run.settings)
    llm = None
    if settings.llm:
        llm = llm_config_for(settings.llm, api_key_env, structured=recorded_structured_mode(db, run_id), **budget)
    log(f"resuming run {run_id} ({run.status}): {'language model ' + llm.model if llm else 'offline'}")
    corpus = load_corpus(db, run.corpus_id)
    return Pipeline(db, settings, log=log, llm=llm).resume(run_id, corpus)
