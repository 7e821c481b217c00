"""Assign with a language model: multi-label classification of texts against candidates.

Frugal by construction:

* an embedding **prefilter** asks about each text only its ``prefilter`` most similar
  candidates (all of them when there are no more), and only pairs not judged before;
  a text whose checked candidates all came back "no" is **escalated** once to its next
  ``prefilter`` unjudged candidates (the embedding ranking misses abstract predicates);
* ``batch_size`` texts share a call;
* the fixed part of the prompt (system prompt, goal, numbered candidate list,
  instructions) comes first and is byte-identical for every call of a round, so a
  server with prefix caching reuses it; only the data block differs.

An answer that does not parse is repaired once by the client and, failing that, its
texts are recorded as failed ("unparsed"), never mapped anywhere. Each evidence quote is
checked against its text (case and spacing aside): one the text does not contain is kept
apart as unverified (the "yes" stands, the quote is not shown as evidence). A text missing from
an otherwise good answer is asked again once, in a new call, then recorded as failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import BudgetExceeded  # the base class: any client's budget stop keeps what was answered
from ..prompts_loader import render_prompt
from .propose_llm import data_block, one_line, render_split, truncate

MAX_EVIDENCE_CHARS = 300
WAVE_CALLS = 16  # calls handed to the client at once; a budget stop loses at most one wave

ASSIGN_SCHEMA = {
    "type": "object",
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "matches": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"explanation": {"type": "integer"}, "evidence": {"type": "string"}},
                            "required": ["explanation", "evidence"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["id", "matches"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["results"],
    "additionalProperties": False,
}
ASSIGN_SCHEMA_NAME = "assignments"


def assign_schema(n_texts: int, n_checks: int) -> dict:
    """ASSIGN_SCHEMA with limits (a grammar-constrained server then stops where it should):
    at most ``n_texts`` results, ``n_checks`` matches each, short evidence."""
    schema = json.loads(json.dumps(ASSIGN_SCHEMA))
    results = schema["properties"]["results"]
    results["maxItems"] = n_texts
    matches = results["items"]["properties"]["matches"]
    matches["maxItems"] = max(1, n_checks)
    matches["items"]["properties"]["evidence"]["maxLength"] = MAX_EVIDENCE_CHARS
    return schema


# --- prompts ----------------------------------------------------------------------------------


class AssignPrompt:
    """The assign prompt of one round: goal and numbered candidates fixed, texts variable.

    ``candidates`` are ``(name, explanation)`` pairs; candidate ``j`` (0-based) is
    number ``j + 1`` in the prompt."""

    def __init__(self, goal: str, candidates: list[tuple[str, str]], max_chars: int = 1000):
        self.max_chars = max_chars
        self.n_candidates = len(candidates)
        self.system = render_prompt("assign_system").strip()
        self.before, self.after = render_split(
            "assign",
            goal=one_line(goal),
            candidates=[{"number": j + 1, "name": one_line(name), "text": one_line(text)}
                        for j, (name, text) in enumerate(candidates)],
        )

    def messages(self, items: list[tuple[str, list[int], str]]) -> list[dict]:
        """Messages for texts given as ``(id, candidate numbers to check, text)``."""
        block = data_block([{"id": text_id, "check": [int(n) for n in numbers], "text": truncate(text, self.max_chars)}
                            for text_id, numbers, text in items])
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.before + block + self.after}]


# --- answers ----------------------------------------------------------------------------------


def _number(value) -> int:
    if isinstance(value, bool):
        raise ValueError("an explanation number must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"an explanation number must be an integer (got {value!r:.40})")


def _text_id(value) -> str:
    if isinstance(value, bool):
        raise ValueError("a text id must be a string like \"t1\"")
    if isinstance(value, int):
        return f"t{value}"
    if isinstance(value, str) and value.strip():
        value = value.strip()
        return f"t{value}" if value.isdigit() else value
    raise ValueError(f"a text id must be a string like \"t1\" (got {value!r:.40})")


def validate_assignment(data) -> dict:
    """Structural check for the client (a ValueError makes it ask the model to repair).
    Which ids are present is checked per batch afterwards, not here."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError('expected an object {"results": [...]}')
    for item in data["results"]:
        if not isinstance(item, dict) or "id" not in item or not isinstance(item.get("matches"), list):
            raise ValueError('each result needs an "id" and a "matches" list')
        _text_id(item["id"])
        for match in item["matches"]:
            if not isinstance(match, dict) or "explanation" not in match:
                raise ValueError('each match needs an "explanation" number')
            _number(match["explanation"])
    return data


def parse_answer(data: dict, checks: dict[str, list[int]]) -> dict[str, dict[int, str]]:
    """Per text id of this batch that the answer covers: the checked candidate numbers it
    matches, with their evidence. Unknown ids and numbers that were not checked for that
    text are ignored; an id listed twice has its matches joined."""
    out: dict[str, dict[int, str]] = {}
    for item in data.get("results", []):
        try:
            text_id = _text_id(item.get("id"))
        except ValueError:
            continue
        if text_id not in checks:
            continue
        found = out.setdefault(text_id, {})
        for match in item.get("matches") or []:
            try:
                number = _number(match.get("explanation"))
            except (ValueError, AttributeError):
                continue
            if number not in checks[text_id]:
                continue
            evidence = match.get("evidence")
            evidence = truncate(one_line(evidence), MAX_EVIDENCE_CHARS) if isinstance(evidence, str) else ""
            if number not in found or (evidence and not found[number]):
                found[number] = evidence
    return out


# --- judgments --------------------------------------------------------------------------------


class Judgments:
    """What the model has said so far, over distinct texts × candidates.

    ``scores``: 1.0 judged yes, 0.0 judged no, NaN not judged. ``failed``: the latest call
    that asked about the text failed after its retries (``errors`` says why)."""

    def __init__(self, n_texts: int):
        self.scores = np.full((n_texts, 0), np.nan)
        self.evidence: dict[tuple[int, int], str] = {}  # verified quotes (found in their text)
        self.unverified: dict[tuple[int, int], str] = {}  # quotes the text does not contain
        self.failed = np.zeros(n_texts, dtype=bool)
        self.errors: dict[int, str] = {}

    @property
    def n_candidates(self) -> int:
        return self.scores.shape[1]

    def add_candidates(self, count: int) -> None:
        self.scores = np.hstack([self.scores, np.full((len(self.scores), count), np.nan)])

    def record(self, text: int, checked: list[int], yes: dict[int, str], source: str | None = None) -> None:
        """The answer about ``text`` (whose words are ``source``, to check the quotes against)."""
        self.scores[text, checked] = 0.0
        for j, quote in yes.items():
            self.scores[text, j] = 1.0
            self.evidence.pop((text, j), None)
            self.unverified.pop((text, j), None)
            if source is None or quote_in_text(quote, source):
                self.evidence[(text, j)] = quote
            else:  # the judgment stands; the quote is not shown as evidence
                self.unverified[(text, j)] = quote
        self.failed[text] = False
        self.errors.pop(text, None)

    def fail(self, text: int, error: str) -> None:
        self.failed[text] = True
        self.errors[text] = error

    @property
    def yes(self) -> np.ndarray:
        return self.scores == 1.0

    @property
    def judged(self) -> np.ndarray:
        return ~np.isnan(self.scores)


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def quote_in_text(quote: str, text: str) -> bool:
    """Whether ``quote`` is in ``text``, case and spacing aside (an empty quote is: explanations
    about tone or absence may have none). Parts a model left out with "..." or "…" are
    allowed; surrounding quotation marks and end punctuation are ignored."""
    haystack = _normalised(text)
    parts = [p.strip(" \"'“”‘’.,;:!?") for p in re.split(r"\.\.\.|…", _normalised(quote))]
    return all(p in haystack for p in parts if p)


def rank_candidates(X: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Per text, the candidate indices from most to least similar (cosine; stable on ties)."""
    if V.shape[0] == 0:
        return np.zeros((len(X), 0), dtype=int)
    return np.argsort(-(X @ V.T), axis=1, kind="stable")


def prefilter_checks(order: np.ndarray, scores: np.ndarray, prefilter: int,
                     rows: np.ndarray | None = None) -> list[tuple[int, list[int]]]:
    """``(text, candidates)`` to ask: among each text's ``prefilter`` most similar
    candidates, those not judged yet (texts with nothing to ask are left out)."""
    rows = np.arange(len(order)) if rows is None else rows
    top = order[:, :prefilter] if prefilter > 0 else order
    out = []
    for u in rows:
        ask = sorted(int(j) for j in top[u] if np.isnan(scores[u, j]))
        if ask:
            out.append((int(u), ask))
    return out


def escalation_checks(order: np.ndarray, scores: np.ndarray, prefilter: int,
                      rows) -> list[tuple[int, list[int]]]:
    """``(text, candidates)``: for each text of ``rows``, its next ``prefilter`` most
    similar candidates not judged yet."""
    out = []
    for u in rows:
        ask = [int(j) for j in order[u] if np.isnan(scores[u, j])][:prefilter]
        if ask:
            out.append((int(u), sorted(ask)))
    return out


@dataclass
class JudgeStats:
    calls: int = 0
    cached: int = 0
    retried: int = 0  # texts asked again because an answer left them out
    failed: int = 0  # texts whose call failed or that were left out twice
    texts: int = 0  # texts asked
    errors: list[str] = field(default_factory=list)

    def add(self, other: "JudgeStats") -> None:
        self.calls += other.calls
        self.cached += other.cached
        self.retried += other.retried
        self.failed += other.failed
        self.texts += other.texts
        self.errors += other.errors


def judge(client, prompt: AssignPrompt, requests: list[tuple[int, list[int]]], texts: list[str],
          state: Judgments, batch_size: int = 10, stage: str = "assign", stats: JudgeStats | None = None,
          wave_calls: int = WAVE_CALLS) -> JudgeStats:
    """Ask the model about ``requests`` (``(text, candidate indices)``), ``batch_size`` texts
    a call, and record the answers in ``state`` as each wave of calls returns (so that a
    budget stop keeps everything already answered). Texts an answer leaves out are asked
    once more, together, in new calls; then they are recorded as failed."""
    stats = stats if stats is not None else JudgeStats()
    stats.texts += len(requests)
    missing = _judge_once(client, prompt, requests, texts, state, batch_size, stage, stats, wave_calls)
    if missing:
        stats.retried += len(missing)
        still = _judge_once(client, prompt, missing, texts, state, batch_size, stage, stats, wave_calls)
        for u, _ in still:
            state.fail(u, "unparsed: the answer left this text out twice")
            stats.failed += 1
    return stats


def _judge_once(client, prompt, requests, texts, state, batch_size, stage, stats, wave_calls):
    batches = [requests[i:i + batch_size] for i in range(0, len(requests), max(1, batch_size))]
    missing: list[tuple[int, list[int]]] = []
    for w in range(0, len(batches), wave_calls):
        wave = batches[w:w + wave_calls]
        messages = [prompt.messages([(f"t{k}", [j + 1 for j in checked], texts[u])
                                     for k, (u, checked) in enumerate(batch, 1)]) for batch in wave]
        # One schema for the whole wave (its limits fit the largest batch), so the requests of
        # a round stay identical apart from the texts.
        schema = assign_schema(max(len(b) for b in wave), max(len(checked) for b in wave for _, checked in b))
        try:
            results = client.complete_many(stage, messages, schema, ASSIGN_SCHEMA_NAME,
                                           validate=validate_assignment)
        except BudgetExceeded as err:
            # Keep what was answered before the budget ran out, then stop.
            partial = list(err.partial or [])
            _record_wave(wave, partial + [None] * (len(wave) - len(partial)), state, stats, missing, texts)
            raise
        _record_wave(wave, results, state, stats, missing, texts)
    return missing


def _record_wave(wave, results, state: Judgments, stats: JudgeStats, missing: list, texts: list[str]) -> None:
    for batch, result in zip(wave, results):
        if result is None:  # never sent (budget): not judged, not failed
            continue
        stats.calls += 1
        stats.cached += bool(getattr(result, "cached", False))
        if not result.ok or not isinstance(result.data, dict):
            error = result.error or "unparsed: no usable answer"
            stats.errors.append(error)
            for u, _ in batch:
                state.fail(u, error)
                stats.failed += 1
            continue
        checks = {f"t{k}": [j + 1 for j in checked] for k, (_, checked) in enumerate(batch, 1)}
        answers = parse_answer(result.data, checks)
        for k, (u, checked) in enumerate(batch, 1):
            found = answers.get(f"t{k}")
            if found is None:
                missing.append((u, checked))
            else:
                state.record(u, checked, {number - 1: quote for number, quote in found.items()}, texts[u])
