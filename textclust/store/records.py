"""What the store hands out besides its rows: a stored run with what its result is
assembled from, and the keys of the language-model record."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .schema import FINISHED, CorpusRow, Explanation, Run, TextResult

# finish_reason of the llm_responses rows that memo a server's structured-output mode
# (they share the cache table; a cache lookup never returns one).
CAPABILITY_MARK = "capability"


def canonical_json(value: object) -> str:
    """The one JSON spelling of a value that keys hash (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def capability_key(server: str, model: str) -> str:
    """The cache key under which the structured-output mode of a server and model is memoed."""
    payload = {"capability": "structured_output", "server": server, "model": model}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@dataclass
class StoredRun:
    """One run as :meth:`Database.read_run` reads it (detached rows and plain values).

    Only a finished run (:data:`.schema.FINISHED`) has result fields; for any other they are
    empty.
    """

    run: Run
    corpus: CorpusRow
    explanations: list[Explanation] = field(default_factory=list)  # top-level ones (no parent), by id
    # (explanation id, quote) of the selected explanations' evidence, by explanation then text id
    evidence: list[tuple[int, str]] = field(default_factory=list)
    text_results: dict[str, TextResult] = field(default_factory=dict)  # text id -> its result
    texts: dict[str, str] = field(default_factory=dict)  # text id -> text, of the texts with a result
    # (text id, explanation id) of every match of the texts that match more than one selected explanation
    multi_matches: list[tuple[str, int]] = field(default_factory=list)
    input_rows: list[tuple[int, str, str | None]] = field(default_factory=list)  # (row_index, row_key, text_id)

    @property
    def finished(self) -> bool:
        return self.run.status in FINISHED
