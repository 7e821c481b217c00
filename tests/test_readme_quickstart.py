"""The README's "What a run shows" block is what the main command prints (issue 25, item 12).

The block is abridged (``…`` marks cuts) and its timings differ run to run; everything else it
shows must be in the output of the README's main command on the sample, which the session
fixture ``sample_run`` runs once: the input summary, every table row shown (number, name, size,
share), the truthfulness and coverage figures, the counts of explanations and candidates.
Whitespace is ignored (rich wraps at the terminal's width)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"│\s*(\d+)\s*│\s*(\S[^│]*?)\s*│\s*(\d+)\s*│\s*([\d.]+%)\s*│")


def flat(text: str) -> str:
    return " ".join(text.split())


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## What a run shows", 1)[1]
    return section.split("```", 2)[1]


def summary_rows(output: str) -> dict[str, tuple[str, str, str]]:
    """Explanation number -> (name, size, share), from the table's first line of each row."""
    return {m.group(1): (m.group(2), m.group(3), m.group(4)) for m in ROW.finditer(output)}


def test_every_table_row_the_readme_shows_is_in_the_output(sample_run):
    shown = summary_rows(readme_block())
    assert len(shown) >= 2, "the README block shows no table rows: has its format changed?"
    printed = summary_rows(sample_run.stdout)
    for number, (name, size, share) in shown.items():
        assert number in printed, f"README row #{number} ({name}) is not in the output"
        got_name, got_size, got_share = printed[number]
        assert (flat(got_name), got_size, got_share) == (flat(name), size, share), f"row #{number}"


def test_the_readme_figures_are_the_ones_printed(sample_run):
    block = flat(readme_block())
    out = flat(sample_run.stdout + "\n" + sample_run.stderr)
    pieces = [
        re.search(r"\d+ rows → \d+ distinct texts \([^)]*\)", block),
        re.search(r"Truthfulness .*?lowest \d+%", block),
        re.search(r"Covered \d+ of \d+ non-empty rows .*?in more than one explanation: \d+ rows?", block),
        re.search(r"\d+ explanations selected from \d+ candidates in \d+ round\(s\); embeddings \d+ computed, \d+ cached",
                  block),
        re.search(r"Goal, offline: .*? toward it\.", block),  # what offline does with the goal, word for word
    ]
    assert all(pieces), "a figure the README block used to show is gone: update this test with the README"
    for piece in pieces:
        assert piece.group(0) in out, f"README says {piece.group(0)!r}; the run printed otherwise"


def test_the_readme_block_is_the_main_command_on_the_shipped_sample():
    text = README.read_text(encoding="utf-8")
    main = text.split("<!-- main-command -->", 1)[1].split("```", 2)[1]
    assert "textclust run data/complaints.csv --goal \"Cluster the complaints by why the customer is unhappy.\"" in main
    assert "Goal: Cluster the complaints by why the customer is unhappy." in readme_block()
