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

from sqlalchemy import func, select

from ..store.schema import LLMCall, LLMResponse
from .errors import scrub
from .transport import ChatResponse

CAPABILITY_MARK = "capability"  # finish_reason of cache rows that memo a server's structured-output mode


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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


def capability_key(server: str, model: str) -> str:
    payload = {"capability": "structured_output", "server": server, "model": model}
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


class Recorder:
    """Thread-safe writes and reads of ``llm_calls`` / ``llm_responses`` in one Database."""

    def __init__(self, db, secrets=()):
        self.db = db
        self._secrets = [s for s in secrets if s]
        self._lock = threading.Lock()

    # --- cache -------------------------------------------------------------------------------

    def cached(self, key: str) -> ChatResponse | None:
        with self._lock, self.db.transaction() as s:
            row = s.get(LLMResponse, key)
            if row is None or row.finish_reason == CAPABILITY_MARK:
                return None
            return ChatResponse(content=row.response, prompt_tokens=row.prompt_tokens,
                                completion_tokens=row.completion_tokens, finish_reason=row.finish_reason,
                                refusal=row.refusal)

    def capability(self, server: str, model: str) -> str | None:
        """The structured-output mode that worked with this server and model before, if recorded."""
        with self._lock, self.db.transaction() as s:
            row = s.get(LLMResponse, capability_key(server, model))
            return row.response if row is not None and row.finish_reason == CAPABILITY_MARK else None

    def remember_capability(self, server: str, model: str, mode: str) -> None:
        with self._lock, self.db.transaction(immediate=True) as s:  # read-then-write: lock first
            key = capability_key(server, model)
            row = s.get(LLMResponse, key)
            if row is None:
                s.add(LLMResponse(cache_key=key, server=server, model=model, response=mode,
                                  finish_reason=CAPABILITY_MARK))
            else:
                row.response = mode

    # --- call log ----------------------------------------------------------------------------

    def log(self, call: CallRow, answer: ChatResponse | None = None) -> int:
        """Write one call (and, for a fresh answer, its cache entry) in one transaction; its id."""
        with self._lock, self.db.transaction() as s:
            row = LLMCall(
                run_id=call.run_id,
                stage=call.stage[:40],
                model=call.model,
                server=self._clean(call.server),
                messages=json.loads(self._clean(json.dumps(call.messages, ensure_ascii=False))),
                response_format=call.response_format,
                response=self._clean(call.response),
                finish_reason=call.finish_reason,
                prompt_tokens=call.prompt_tokens,
                completion_tokens=call.completion_tokens,
                latency_s=call.latency_s,
                waited_s=call.waited_s,
                status=call.status,
                error=scrub(call.error, self._secrets),
                retries=call.retries,
                repair_of=call.repair_of,
                cache_key=call.cache_key,
            )
            s.add(row)
            if answer is not None and s.get(LLMResponse, call.cache_key) is None:
                s.add(LLMResponse(
                    cache_key=call.cache_key,
                    server=self._clean(call.server),
                    model=call.model,
                    response=self._clean(answer.content),
                    finish_reason=answer.finish_reason,
                    refusal=self._clean(answer.refusal),
                    prompt_tokens=answer.prompt_tokens,
                    completion_tokens=answer.completion_tokens,
                ))
            s.flush()
            return row.id

    def _clean(self, text: str | None) -> str | None:
        return scrub(text, self._secrets, patterns=False)


# --- reading the record (reports, `show`) -------------------------------------------------------


def calls_for_run(db, run_id: int) -> list[LLMCall]:
    """Every call of a run, in order."""
    with db.transaction() as s:
        return list(s.scalars(select(LLMCall).where(LLMCall.run_id == run_id).order_by(LLMCall.id)))


def usage_for_run(db, run_id: int) -> dict:
    """Counts and tokens of a run's calls, from the record (``cached`` rows cost nothing)."""
    with db.transaction() as s:
        rows = s.execute(
            select(LLMCall.status, func.count(), func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
                   func.coalesce(func.sum(LLMCall.completion_tokens), 0), func.coalesce(func.sum(LLMCall.retries), 0))
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
