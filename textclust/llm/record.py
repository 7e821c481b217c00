"""The database side of the language-model stage: the call log and the response cache.

* ``llm_calls`` — one row per request sent (with its retries) or answer served from the
  cache; written and committed the moment the request ends, so an interrupted run keeps
  the record of every call it paid for.
* ``llm_responses`` — the cache: the raw answer to one exact request.

Writes are serialised by a lock (the client sends requests from several threads). Every
text written is scrubbed of the API key first; error messages are also scrubbed of
anything that looks like a credential.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass

from .keys import CAPABILITY_MARK, canonical_json, capability_key  # noqa: F401  (re-exported)
from .errors import scrub
from .transport import ChatResponse


def cache_key(*, server: str, model: str, messages: list[dict], temperature, seed, max_output_tokens,
              response_format) -> str:
    """sha256 of the canonical JSON of everything that determines the answer."""
    payload = {
        "server": server,
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "seed": seed,
        "max_output_tokens": max_output_tokens,
        "response_format": response_format,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@dataclass
class CallRow:
    """What the client knows about one call when it ends (becomes an ``llm_calls`` row)."""

    stage: str
    model: str
    server: str
    messages: list[dict]
    response_format: str
    status: str  # ok | cached | error
    cache_key: str
    run_id: int | None = None
    response: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    waited_s: float = 0.0
    error: str | None = None
    retries: int = 0
    repair_of: int | None = None


class NoRecord:
    """The record of a client without a store: nothing is logged, nothing is cached, and no
    structured-output mode is remembered (each process finds it again)."""

    def cached(self, key: str) -> None:
        return None

    def capability(self, server: str, model: str) -> None:
        return None

    def remember_capability(self, server: str, model: str, mode: str) -> None:
        pass

    def log(self, call: "CallRow", answer: ChatResponse | None = None) -> None:
        return None


class Recorder:
    """Thread-safe writes and reads of the call log and the response cache in one Database
    (the queries are the store's: :meth:`Database.log_call`, :meth:`Database.cached_response`…)."""

    def __init__(self, db, secrets=()):
        self.db = db
        self._secrets = [s for s in secrets if s]
        self._lock = threading.Lock()

    # --- cache -------------------------------------------------------------------------------

    def cached(self, key: str) -> ChatResponse | None:
        with self._lock:
            found = self.db.cached_response(key)
        return None if found is None else ChatResponse(**found)

    def capability(self, server: str, model: str) -> str | None:
        """The structured-output mode that worked with this server and model before, if recorded."""
        with self._lock:
            return self.db.structured_capability(server, model)

    def remember_capability(self, server: str, model: str, mode: str) -> None:
        with self._lock:
            self.db.remember_structured_capability(server, model, mode)

    # --- call log ----------------------------------------------------------------------------

    def log(self, call: CallRow, answer: ChatResponse | None = None) -> int:
        """Write one call (and, for a fresh answer, its cache entry) in one transaction; its id."""
        row = {
            "run_id": call.run_id,
            "stage": call.stage[:40],
            "model": call.model,
            "server": self._clean(call.server),
            "messages": json.loads(self._clean(json.dumps(call.messages, ensure_ascii=False))),
            "response_format": call.response_format,
            "response": self._clean(call.response),
            "finish_reason": call.finish_reason,
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens,
            "latency_s": call.latency_s,
            "waited_s": call.waited_s,
            "status": call.status,
            "error": scrub(call.error, self._secrets),
            "retries": call.retries,
            "repair_of": call.repair_of,
            "cache_key": call.cache_key,
        }
        cached = None
        if answer is not None:
            cached = {
                "server": self._clean(call.server),
                "model": call.model,
                "response": self._clean(answer.content),
                "finish_reason": answer.finish_reason,
                "refusal": self._clean(answer.refusal),
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
            }
        with self._lock:
            return self.db.log_call(row, cached)

    def _clean(self, text: str | None) -> str | None:
        return scrub(text, self._secrets, patterns=False)


# --- reading the record (reports, `show`) -------------------------------------------------------


def calls_for_run(db, run_id: int) -> list:
    """Every call of a run, in order (``llm_calls`` rows)."""
    return db.calls_for_run(run_id)


def usage_for_run(db, run_id: int) -> dict:
    """Counts and tokens of a run's calls, from the record (``cached`` rows cost nothing)."""
    return db.usage_for_run(run_id)
