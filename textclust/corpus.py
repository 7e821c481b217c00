"""The ingested input, as every stage sees it: :class:`Corpus` and :func:`text_id`.

A bottom-layer module (it imports nothing of the package): ``ingest`` builds a corpus
from a file, the store saves and loads it, and the pipeline reads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def text_id(text: str) -> str:
    """Stable id of a normalised text: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Corpus:
    """The ingested input: rows in file order, distinct texts once each."""

    name: str
    source: str
    format: str
    text_column: str
    id_column: str | None
    row_keys: list[str]
    row_text_ids: list[str | None]  # None: the row has no usable text (empty or skipped)
    texts: dict[str, str]  # text id -> normalised text, in first-seen order
    columns: list[str] = field(default_factory=list)
    extra: dict[str, list] = field(default_factory=dict)  # requested extra columns, per row
    n_skipped: int = 0  # rows without a text because it could not be read (counted in n_empty too)
    notes: list[str] = field(default_factory=list)  # one-line remarks about the input (skipped rows…)

    @property
    def n_rows(self) -> int:
        return len(self.row_keys)

    @property
    def n_texts(self) -> int:
        return len(self.texts)

    @property
    def n_empty(self) -> int:
        """Rows with no text to cluster: empty ones and the ``n_skipped`` unreadable ones."""
        return self.row_text_ids.count(None)

    @property
    def n_duplicate_rows(self) -> int:
        """Rows whose (non-empty) text already appeared in an earlier row."""
        return self.n_rows - self.n_empty - self.n_texts

    @property
    def fingerprint(self) -> str:
        """Identity of the corpus content: same rows and texts → same fingerprint."""
        h = hashlib.sha256()
        h.update(self.text_column.encode())
        for key, tid in zip(self.row_keys, self.row_text_ids):
            h.update(f"\x1f{key}\x1e{tid or ''}".encode())
        return h.hexdigest()[:32]

    @property
    def text_ids(self) -> list[str]:
        return list(self.texts)

    def summary(self) -> str:
        """The one-line description of the input printed before a run."""
        skipped = f" ({self.n_skipped} of them unreadable, skipped)" if self.n_skipped else ""
        return (
            f"{self.source}: {self.n_rows} rows, {self.n_texts} distinct texts, {self.n_empty} empty{skipped}, "
            f"{self.n_duplicate_rows} duplicate rows (column '{self.text_column}')"
        )
