"""The language-model client: structured JSON answers, frugal and fully recorded.

:meth:`LLMClient.complete_json` sends one chat request and returns the parsed, validated
JSON answer as an :class:`LLMResult` — never raising for a bad answer or a failed request,
which are recorded and returned as ``ok=False`` with a one-line ``error``. What it does:

* **structured output** — ``structured="auto"`` asks for a JSON-schema ``response_format``;
  a server that rejects it is asked with ``json_object`` carrying the schema (the form
  llama-cpp-python's server turns into a grammar), then plain ``json_object``, then with no ``response_format``
  (the schema then goes into the prompt). The mode that works is remembered, for this
  client and in the database (so a re-run does not ask again);
* **cache** — the answer to an exact request (server, model, messages, temperature, seed,
  max_output_tokens, response_format) is stored; the same request again is served from the
  database, sends nothing and costs nothing;
* **budget** — a request that would go over ``max_calls`` / ``max_tokens`` is not sent:
  :class:`BudgetExceeded` is raised instead (answers so far stay cached);
* **retries** — 429, 5xx, timeouts and connection errors are retried up to
  ``max_retries`` times with exponential backoff (1 s doubling, capped at 60 s, full
  jitter from a seeded generator), honouring the server's Retry-After;
* **repair** — an answer that is not JSON, or not of the requested shape, or rejected by
  ``validate``, gets ONE repair request quoting the problem; a refusal or an empty answer
  does not (asking again at temperature 0 would get the same);
* **record** — every request and every cache hit is a row of ``llm_calls``, committed at
  once. The API key never reaches the database, logs or messages.

Errors that make every further request pointless are raised (all :class:`LLMError`, so the
CLI prints one line): the server is unreachable after the retries, the key or model is
wrong (401/403/404), or an explicitly requested structured-output mode is refused.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Callable

from .config import LLMConfig
from .errors import BudgetExceeded, LLMError, PermanentError, TransientError, UnsupportedFormat, scrub
from .parse import ParseError, SchemaMismatch, check_schema, coerce_scalars, parse_json
from .record import CallRow, NoRecord, Recorder, cache_key
from .transport import ChatResponse, Transport, url_secrets

BACKOFF_BASE = 1.0  # seconds before the first retry (upper bound of the jitter)
BACKOFF_CAP = 60.0  # longest wait between attempts, Retry-After included
# What to ask for when the server refuses a structured-output mode. "json_object_schema" is
# {"type": "json_object", "schema": …}: llama-cpp-python's server rejects json_schema but
# constrains its output with that schema.
FALLBACK = {"json_schema": "json_object_schema", "json_object_schema": "json_object", "json_object": "none"}

FORMAT_HINT = (
    "Answer with JSON only (no prose, no code fences), following this JSON schema:\n{schema}"
)
REPAIR_PROMPT = (
    "Your previous answer could not be used: {problem}. Reply again with the corrected JSON only "
    "(no prose, no code fences), following the requested schema."
)


@dataclass
class LLMResult:
    """The outcome of one structured request."""

    data: object | None  # the parsed, validated JSON (None when it failed)
    ok: bool
    error: str | None  # "unparsed: …", "refused: …", "empty reply", "failed after 5 retries: …"
    cached: bool  # every answer used came from the cache (nothing was sent)
    call_id: int | None  # llm_calls row of the last attempt
    text: str | None  # raw content of the last answer


@dataclass
class _Outcome:
    data: object | None
    problem: str | None
    repairable: bool
    call_id: int | None
    cached: bool
    text: str | None
    sent: list[dict] | None = None  # the messages as sent (with the schema hint, if any)


class _Failed(Exception):
    """A transport error after its retries, with what the attempts cost."""

    def __init__(self, error: LLMError, retries: int, latency: float | None, waited: float):
        super().__init__(str(error))
        self.error, self.retries, self.latency, self.waited = error, retries, latency, waited


class LLMClient:
    def __init__(self, config: LLMConfig, db=None, run_id: int | None = None, transport: Transport | None = None,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None):
        """``db``: the store that records every call and caches every answer (its call log and
        response cache); None runs the model on its own, recording and caching nothing."""
        self.config = config
        self.db = db
        self.run_id = run_id
        self.transport = transport if transport is not None else config.make_transport()
        self._sleep = sleep
        self._log = log or (lambda message: None)
        key = config.api_key()
        self._secrets = [s for s in [key, *url_secrets(config.base_url or "")] if s]
        self._record = Recorder(db, self._secrets) if db is not None else NoRecord()
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed if config.seed is not None else 0)
        if config.structured == "auto":
            self._mode = self._record.capability(self.server, config.model) or "json_schema"
        else:
            self._mode = config.structured
        self._calls = self._cached_calls = self._failed_calls = self._retries = 0
        # Every HTTP request handed to the transport, by stage: retries, repairs and requests
        # a server refused for their structured-output mode included (what the server received).
        self._requests_by_stage: dict[str, int] = {}
        self._prompt_tokens = self._completion_tokens = 0
        self._in_flight = self._in_flight_tokens = 0
        self._stop = threading.Event()  # set when complete_many is interrupted: no more attempts

    @property
    def server(self) -> str:
        return self.transport.server

    # --- public API -------------------------------------------------------------------------

    def complete_json(self, stage: str, messages: list[dict], schema: dict, schema_name: str,
                      validate: Callable[[object], object] | None = None) -> LLMResult:
        """One structured answer (with at most one repair request); see the module docstring.

        ``validate(data)`` may raise (any Exception: the answer is invalid, its message is
        quoted in the repair request) and may return a cleaned value (None keeps ``data``).
        Raises only :class:`BudgetExceeded` and the fatal :class:`LLMError` cases.
        """
        first = self._request(stage, messages, schema, schema_name, validate)
        if first.problem is None:
            return LLMResult(first.data, True, None, first.cached, first.call_id, first.text)
        if not first.repairable:
            return LLMResult(None, False, first.problem, first.cached, first.call_id, first.text)
        repair = list(first.sent or messages) + [
            {"role": "assistant", "content": first.text or ""},
            {"role": "user", "content": REPAIR_PROMPT.format(problem=first.problem)},
        ]
        second = self._request(stage, repair, schema, schema_name, validate, repair_of=first.call_id, hinted=True)
        cached = first.cached and second.cached
        if second.problem is None:
            return LLMResult(second.data, True, None, cached, second.call_id, second.text)
        if second.repairable:
            error = f"unparsed: {second.problem}"
        else:
            error = f"unparsed: {first.problem}; the repair request failed: {second.problem}"
        return LLMResult(None, False, error, cached, second.call_id, second.text)

    def complete_many(self, stage: str, list_of_messages: list[list[dict]], schema: dict, schema_name: str,
                      validate: Callable[[object], object] | None = None) -> list[LLMResult]:
        """``complete_json`` for each message list, ``concurrency`` at a time; results in order.

        If a request raises (budget reached, fatal error), requests not yet started are
        cancelled, those in flight finish (and are recorded), then the first error in input
        order is raised; a :class:`BudgetExceeded` carries ``partial`` (results or None).
        """
        if not list_of_messages:
            return []
        workers = max(1, min(self.config.concurrency, len(list_of_messages)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="textclust-llm")
        try:
            futures = [pool.submit(self.complete_json, stage, m, schema, schema_name, validate)
                       for m in list_of_messages]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                future.cancel()  # only those not started yet
            wait(futures)
        except BaseException:  # e.g. Ctrl-C: no new attempts; requests in flight end and are recorded
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self._stop.clear()
            raise
        pool.shutdown(wait=True)
        results: list[LLMResult | None] = []
        first_error: BaseException | None = None
        for future in futures:
            if future.cancelled():
                results.append(None)
                continue
            error = future.exception()
            if error is not None:
                results.append(None)
                if first_error is None or (isinstance(first_error, BudgetExceeded)
                                           and not isinstance(error, BudgetExceeded)):
                    first_error = error  # a fatal error matters more than the budget
            else:
                results.append(future.result())
        if first_error is not None:
            if isinstance(first_error, BudgetExceeded):
                first_error.partial = results
            raise first_error
        return results  # type: ignore[return-value]

    def usage(self) -> dict:
        with self._lock:
            cost = None
            prices = (self.config.price_prompt_per_mtok, self.config.price_completion_per_mtok)
            if any(p is not None for p in prices):
                cost = round((self._prompt_tokens * (prices[0] or 0.0)
                              + self._completion_tokens * (prices[1] or 0.0)) / 1e6, 6)
            return {
                "model": self.config.model,
                "server": self.server,
                "calls": self._calls,
                "cached_calls": self._cached_calls,
                "failed_calls": self._failed_calls,
                "prompt_tokens": self._prompt_tokens,
                "completion_tokens": self._completion_tokens,
                "cost_usd": cost,
                "retries": self._retries,
                "structured": self._mode,
                "requests_by_stage": dict(self._requests_by_stage),
            }

    def is_cached(self, messages: list[dict], schema: dict, schema_name: str) -> bool:
        """Whether ``complete_json`` would answer these messages from the cache (for --dry-run)."""
        with self._lock:
            mode = self._mode
        sent = _with_format_hint(messages, schema, mode)
        key = cache_key(server=self.server, model=self.config.model, messages=sent,
                        temperature=self.config.temperature, seed=self.config.seed,
                        max_output_tokens=self.config.max_output_tokens,
                        response_format=_response_format(mode, schema, schema_name))
        return self._record.cached(key) is not None

    def estimate_tokens(self, text: str) -> int:
        """A rough token count (about 4 characters per token), for --dry-run and the budget."""
        return (len(text) + 3) // 4

    # --- one request: cache, budget, retries, record -----------------------------------------

    def _request(self, stage, messages, schema, schema_name, validate, repair_of=None, hinted=False) -> _Outcome:
        config = self.config
        while True:
            with self._lock:
                mode = self._mode
            sent = list(messages) if hinted else _with_format_hint(messages, schema, mode)
            response_format = _response_format(mode, schema, schema_name)
            key = cache_key(server=self.server, model=config.model, messages=sent,
                            temperature=config.temperature, seed=config.seed,
                            max_output_tokens=config.max_output_tokens, response_format=response_format)
            row = CallRow(stage=stage, model=config.model, server=self.server, messages=sent, response_format=mode,
                          status="cached", cache_key=key, run_id=self.run_id, repair_of=repair_of)

            answer = self._record.cached(key)
            if answer is not None:
                outcome = self._interpret(answer, schema, validate)
                _fill(row, answer, outcome.problem)
                outcome.call_id, outcome.cached, outcome.sent = self._record.log(row), True, sent
                with self._lock:
                    self._cached_calls += 1
                return outcome

            estimate = self._reserve(sent)
            try:
                answer, retries, latency, waited = self._send(stage, sent, response_format)
                # A server may echo the key in its answer: scrub it before anything reads the
                # answer, so neither the result nor the cache ever holds it.
                answer = replace(answer, content=scrub(answer.content, self._secrets, patterns=False),
                                 refusal=scrub(answer.refusal, self._secrets, patterns=False))
            except _Failed as failed:
                self._release(estimate, sent=not isinstance(failed.error, UnsupportedFormat), failed=True,
                              retries=failed.retries)
                row.status, row.retries, row.latency_s, row.waited_s = "error", failed.retries, failed.latency, failed.waited
                error = failed.error
                if isinstance(error, UnsupportedFormat):
                    row.error = f"structured output ({mode}) refused: {error}"
                    self._record.log(row)
                    self._downgrade(mode, error)
                    continue
                if isinstance(error, TransientError):
                    row.error = f"failed after {failed.retries} retries: {error}" if failed.retries else str(error)
                else:
                    row.error = str(error)
                call_id = self._record.log(row)
                if isinstance(error, TransientError) and error.connection:
                    raise LLMError(f"{row.error} (is the language model server running?)") from None
                if isinstance(error, PermanentError) and error.fatal:
                    raise PermanentError(error.template, error.status) from None  # settings still named
                return _Outcome(None, row.error, False, call_id, False, None, sent)

            outcome = self._interpret(answer, schema, validate)
            _fill(row, answer, outcome.problem)
            row.status = "ok" if outcome.problem is None else "error"
            row.retries, row.latency_s, row.waited_s = retries, latency, waited
            self._release(estimate, sent=True, failed=outcome.problem is not None, retries=retries,
                          prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
            outcome.call_id, outcome.sent = self._record.log(row, answer), sent
            return outcome

    def _send(self, stage: str, messages: list[dict], response_format: dict | None):
        """The transport's answer, retrying transient errors; raises _Failed."""
        config = self.config
        attempt, waited = 0, 0.0
        while True:
            if self._stop.is_set():
                raise _Failed(LLMError("interrupted before the request was sent"), attempt, None, waited)
            started = time.perf_counter()
            with self._lock:
                self._requests_by_stage[stage] = self._requests_by_stage.get(stage, 0) + 1
            try:
                answer = self.transport.chat(model=config.model, messages=messages, temperature=config.temperature,
                                             seed=config.seed, max_tokens=config.max_output_tokens,
                                             response_format=response_format, timeout=config.timeout)
                return answer, attempt, time.perf_counter() - started, waited
            except TransientError as err:
                latency = time.perf_counter() - started
                if attempt >= config.max_retries:
                    raise _Failed(self._scrubbed(err), attempt, latency, waited) from None
                delay = self._backoff(attempt, err.retry_after)
                self._log(f"{stage}: {scrub(str(err), self._secrets)}; retry {attempt + 1} of "
                          f"{config.max_retries} in {delay:.1f}s")
                if self._sleep is time.sleep:
                    self._stop.wait(delay)  # wakes up at once when interrupted
                else:
                    self._sleep(delay)
                waited += delay
                attempt += 1
            except LLMError as err:
                raise _Failed(self._scrubbed(err), attempt, time.perf_counter() - started, waited) from None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), BACKOFF_CAP)
        with self._lock:
            return self._rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))

    def _scrubbed(self, err: LLMError) -> LLMError:
        """The same error with the key (and anything key-like) masked in its message."""
        message = scrub(str(err), self._secrets)
        if message == str(err):
            return err
        clone = type(err).__new__(type(err))
        clone.__dict__.update(err.__dict__)
        clone.args = (message,)
        clone.template = scrub(err.template, self._secrets)  # rendered by the CLI: masked there too
        return clone

    # --- budget and counters ------------------------------------------------------------------

    def _reserve(self, messages: list[dict]) -> int:
        estimate = sum(self.estimate_tokens(_content_text(m)) + 4 for m in messages)
        config = self.config
        with self._lock:
            if config.max_calls is not None and self._calls + self._in_flight >= config.max_calls:
                raise BudgetExceeded(
                    f"{{max_calls}} {config.max_calls} reached ({self._calls} calls made); the answers so far are "
                    "cached: re-run with a higher {max_calls} to continue"
                )
            used = self._prompt_tokens + self._completion_tokens + self._in_flight_tokens
            if config.max_tokens is not None and used + estimate > config.max_tokens:
                raise BudgetExceeded(
                    f"{{max_tokens}} {config.max_tokens} reached ({used} tokens used, the next call needs about "
                    f"{estimate}); the answers so far are cached: re-run with a higher {{max_tokens}} to continue"
                )
            self._in_flight += 1
            self._in_flight_tokens += estimate
        return estimate

    def _release(self, estimate: int, *, sent: bool, failed: bool, retries: int,
                 prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        with self._lock:
            self._in_flight -= 1
            self._in_flight_tokens -= estimate
            self._retries += retries
            if not sent:
                return
            self._calls += 1
            self._failed_calls += int(failed)
            if prompt_tokens is None and completion_tokens is None and not failed:
                prompt_tokens = estimate  # the server did not say: count the estimate against the budget
            self._prompt_tokens += prompt_tokens or 0
            self._completion_tokens += completion_tokens or 0

    def _downgrade(self, mode: str, error: LLMError) -> None:
        """Structured-output ``mode`` was refused: use the next one (auto) or stop (explicit mode)."""
        if self.config.structured != "auto" or mode not in FALLBACK:
            raise LLMError(
                f"the server refused structured output ({mode}): {error}; try {{structured}} "
                f"{FALLBACK.get(mode, 'none')}"
            ) from None
        changed = False
        with self._lock:
            if self._mode == mode:
                self._mode = FALLBACK[mode]
                changed = True
            new = self._mode
        if changed:
            self._record.remember_capability(self.server, self.config.model, new)
            self._log(f"the server does not accept response_format {mode}; using {new}")

    # --- reading an answer --------------------------------------------------------------------

    def _interpret(self, answer: ChatResponse, schema: dict, validate) -> _Outcome:
        text = answer.content
        if answer.refusal or answer.finish_reason == "content_filter":
            reason = " ".join((answer.refusal or "stopped by the content filter").split())[:300]
            return _Outcome(None, f"refused: {reason}", False, None, False, text)
        if text is None or not text.strip():
            cut = " (cut at max_output_tokens)" if answer.finish_reason == "length" else ""
            return _Outcome(None, f"empty reply{cut}", False, None, False, text)
        try:
            data = coerce_scalars(parse_json(text), schema)  # "3" for 3 is no reason to repair
            check_schema(data, schema)
        except ParseError as err:
            cut = " (the answer was cut at max_output_tokens)" if answer.finish_reason == "length" else ""
            return _Outcome(None, f"{err}{cut}", True, None, False, text)
        except SchemaMismatch as err:
            return _Outcome(None, f"does not match the schema: {err}", True, None, False, text)
        if validate is not None:
            try:
                cleaned = validate(data)
            except Exception as err:  # any complaint of the caller's validator
                message = " ".join(str(err).split())[:300] or type(err).__name__
                return _Outcome(None, f"invalid: {message}", True, None, False, text)
            if cleaned is not None:
                data = cleaned
        return _Outcome(data, None, False, None, False, text)


def _fill(row: CallRow, answer: ChatResponse, problem: str | None) -> None:
    row.response = answer.content if answer.content is not None else answer.refusal
    row.finish_reason = answer.finish_reason
    row.prompt_tokens, row.completion_tokens = answer.prompt_tokens, answer.completion_tokens
    row.error = problem


def _response_format(mode: str, schema: dict, schema_name: str) -> dict | None:
    if mode == "json_schema":
        # OpenAI's strict mode rejects string lengths; the limits only matter to grammar-based servers.
        strict = _without(schema, "maxLength")
        return {"type": "json_schema", "json_schema": {"name": schema_name, "schema": strict, "strict": True}}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _without(schema, key: str):
    """A copy of a JSON schema without ``key`` anywhere in it."""
    if isinstance(schema, dict):
        return {k: _without(v, key) for k, v in schema.items() if k != key}
    if isinstance(schema, list):
        return [_without(v, key) for v in schema]
    return schema


def _with_format_hint(messages: list[dict], schema: dict, mode: str) -> list[dict]:
    """Without a JSON-schema response_format the model learns the schema from the last user message."""
    if mode == "json_schema":
        return list(messages)
    hint = FORMAT_HINT.format(schema=json.dumps(schema, ensure_ascii=False))
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                message["content"] = content + [{"type": "text", "text": hint}]
            else:
                message["content"] = f"{content or ''}\n\n{hint}".lstrip()
            return out
    out.append({"role": "user", "content": hint})
    return out


def _content_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else str(content)
