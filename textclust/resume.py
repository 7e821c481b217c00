"""Finishing a run that did not: ``textclust resume RUN_ID``.

Everything a run needs is in the database: its settings, its goal, its corpus (rows and
texts), the embeddings, and every language-model answer it received (the response
cache). Resuming re-executes the stages in place under the same run id; embeddings and
answers come from the cache, so nothing is computed or paid for twice, and the result
is written in one transaction, so no row is duplicated.
"""

from __future__ import annotations

from typing import Callable

from .corpus import Corpus
from .errors import SettingsError
from .pipeline import Pipeline
from .store import Database

DEFAULT_SERVER_PREFIX = "default"


def load_corpus(db: Database, corpus_id: int) -> Corpus:
    """The stored corpus, as :func:`textclust.ingest.read_corpus` built it."""
    return db.load_corpus(corpus_id)


def recorded_structured_mode(db: Database, run_id: int) -> str | None:
    """The structured-output mode of the run's last answered request, from its call record
    (see :meth:`Database.recorded_structured_mode`: a resume that guessed it would miss the
    response cache and pay for every answer again)."""
    return db.recorded_structured_mode(run_id)


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
    """Finish ``run_id`` in place; returns it. A complete run is left as it is. (The pipeline
    reads the run's stored configuration and corpus: :meth:`Pipeline.resume`.)"""
    return Pipeline(db, log=log).resume(run_id, api_key_env=api_key_env, **budget)
