"""How every output names its counts (issue 25, item 4) and its explanations (item 3).

Two units, worded one way everywhere (`runs`, the summary, the exports and the reports):

* **rows**: input rows; a text that occurs in three rows counts three times. Coverage, sizes,
  shares and the uncovered / overlap counts are rows.
* **distinct texts**: each normalised text once, however many rows hold it (what is embedded,
  what the map plots, what the truthfulness share and the listings count).

An explanation is called by its **number** in the run: its rank in the summary's table
(largest first), the same in ``show``, the exports' ``explanation_number`` column and the
reports. Database ids stay internal.
"""

from __future__ import annotations

from ..results import explanation_label

__all__ = ["count_rows", "count_texts", "explanation_label", "input_summary"]


def count_rows(n: int, kind: str = "") -> str:
    """``n`` input rows: "1 row", "1,500 rows", with ``kind`` "4 empty rows"."""
    return f"{n:,} {kind + ' ' if kind else ''}row{'' if n == 1 else 's'}"


def count_texts(n: int) -> str:
    """``n`` distinct texts: "1 distinct text", "1,454 distinct texts"."""
    return f"{n:,} distinct text{'' if n == 1 else 's'}"


def input_summary(n_rows: int, n_texts: int, n_empty: int, n_duplicate_rows: int) -> str:
    """ "1,500 rows → 1,454 distinct texts (4 empty rows, 42 duplicate rows)"."""
    return (f"{count_rows(n_rows)} → {count_texts(n_texts)} "
            f"({count_rows(n_empty, 'empty')}, {count_rows(n_duplicate_rows, 'duplicate')})")
