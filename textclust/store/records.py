"""What the store hands out besides its rows: a stored run with what its result is
assembled from, and the keys of the language-model record."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..llm.keys import CAPABILITY_MARK, canonical_json, capability_key  # noqa: F401  (the store's too)
from .schema import FINISHED, CorpusRow, Explanation, Run, TextResult


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
