"""The terminal summary of `run` / `show`: tables and colour on a terminal, plain text when piped.

The terminal case runs `textclust show` as a real process on a pseudo-terminal, so
rich's own terminal detection is what is tested.
"""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys

import pytest
from rich.console import Console

ANSI = "\x1b["


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
                                                             "TTY_INTERACTIVE", "COLUMNS", "TEXTCLUST_DB")}
    env["TERM"] = "xterm-256color"
    env["COLUMNS"] = "160"
    return env


def _show_command(db, run_id) -> list[str]:
    return [sys.executable, "-c", "from textclust.cli import main; main()", "show", str(run_id), "--db", str(db)]


def test_show_on_a_terminal_has_colour_and_tables(fake_run_db):
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(_show_command(fake_run_db.db, fake_run_db.run_id), stdin=slave, stdout=slave,
                                stderr=slave, env=_env(), close_fds=True)
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert ANSI in out, out  # colour / bold
    assert "┃" in out or "│" in out  # a drawn table
    assert "Explanations" in out


def test_show_piped_is_plain_text(fake_run_db):
    result = subprocess.run(_show_command(fake_run_db.db, fake_run_db.run_id), capture_output=True, text=True,
                            env=_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert ANSI not in result.stdout
    assert "Explanations" in result.stdout and "│" in result.stdout  # still a table, just without escape codes
    assert f"Run {fake_run_db.run_id} · blobs · status complete" in result.stdout


# --- examples that do not repeat one another (issue "The first hour of a new user", item 10) ------

# Two wire versions of one story (the same first 60 characters), and two different texts whose
# embeddings are identical: each pair is planted as the two most representative texts of an
# explanation, so without the near-duplicate check both texts of a pair would be shown.
SAME_START = ("Sony PSP tipped to be the hit of the holiday season, analysts say (Reuters) - the handheld "
              "console sells out in Tokyo",
              "Sony PSP tipped to be the hit of the holiday season, analysts say (AFP) - shops in London "
              "expect queues")
SAME_VECTOR = ("the parcel with my new lamp never arrived and the courier says it was delivered",
               "courier claims delivery but the box with the lamp is nowhere, still waiting")


@pytest.fixture(scope="module")
def duplicate_run(tmp_path_factory):
    import sqlite3

    import numpy as np

    from conftest import Blobs, build_fake_run, make_blobs

    blobs = make_blobs(spread=0.2)  # members far enough apart that they are no near-duplicates
    texts, X = list(blobs.texts), blobs.X.copy()
    e = np.eye(X.shape[1], dtype=np.float32)
    first_of = {g: int(np.flatnonzero(blobs.groups == g)[0]) for g in (0, 1)}
    a, c = first_of[0], first_of[1]
    texts[a], texts[a + 1] = SAME_START
    X[a], X[a + 1] = e[0] + 0.3 * e[3], e[0] + 0.3 * e[4]  # cosine 0.92: alike only in their text
    texts[c], texts[c + 1] = SAME_VECTOR
    X[c] = X[c + 1] = e[1] + 0.1 * e[5]  # alike only in their embedding
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    run = build_fake_run(tmp_path_factory.mktemp("duplicates") / "dup.db", Blobs(texts, X, blobs.groups, blobs.topics))
    con = sqlite3.connect(run.db)
    try:
        for text, score in zip(SAME_START + SAME_VECTOR, (0.999, 0.998, 0.999, 0.998)):
            (text_id,) = con.execute("SELECT id FROM texts WHERE text = ?", (text,)).fetchone()
            con.execute("UPDATE text_results SET score = ? WHERE run_id = ? AND text_id = ?", (score, run.run_id, text_id))
        con.commit()
    finally:
        con.close()
    return run


def _explanation_of(result, text: str):
    number = next(r["explanation_number"] for r in result.rows if r["text"] == text)
    return next(c for c in result.clusters if c.number == number)


def test_examples_are_never_near_duplicates(duplicate_run):
    """The summary (`run`, `show`) and the report choose their examples with one rule: the most
    representative texts, skipping one that repeats the start or the embedding of one chosen."""
    from textclust.report.markdown import report_markdown
    from textclust.report.model import ReportOptions, report_from_result
    from textclust.report.summary import print_summary
    from textclust.results import load_run

    result = load_run(duplicate_run.db, duplicate_run.run_id)
    report = report_from_result(result, ReportOptions())
    for pair in (SAME_START, SAME_VECTOR):
        cluster = _explanation_of(result, pair[0])
        assert _explanation_of(result, pair[1]) is cluster
        members = [r for r in result.rows if r["explanation_number"] == cluster.number]
        assert [r["text"] for r in sorted(members, key=result.representative_key)[:2]] == list(pair)
        assert cluster.examples[0] == pair[0] and pair[1] not in cluster.examples
        assert len(cluster.examples) == 2  # the next text that repeats neither
        shown = [t["text"] for t in report["explanations"][cluster.number - 1]["representative"]]
        assert shown[0] == pair[0] and pair[1] not in shown and len(shown) == 5
        assert shown[1] == cluster.examples[1]  # the report's first examples are the summary's
    markdown = report_markdown(report)
    assert SAME_START[0] in markdown and SAME_START[1] not in markdown.split("## Texts in two")[0]
    console = Console(record=True, width=200, color_system=None, file=io.StringIO())
    print_summary(load_run(duplicate_run.db, duplicate_run.run_id, include_rows=False), console)
    out = console.export_text()
    assert "(Reuters)" in out and "(AFP)" not in out
    assert "courier claims delivery" not in out


def test_choose_examples_skips_near_duplicates_only():
    import numpy as np

    from textclust.results import choose_examples

    def row(i, text):
        return {"text_id": f"t{i}", "text": text}

    v = {f"t{i}": x / np.linalg.norm(x) for i, x in enumerate(np.eye(4, dtype=np.float32) + 0.01)}
    v["t3"] = v["t0"] + 0.1 * v["t1"]  # nearly t0's direction: cosine 0.995
    v["t3"] /= np.linalg.norm(v["t3"])
    rows = [row(0, "Refund never came for the kettle I sent back in May, still waiting today"),
            row(1, "REFUND never came -- for the kettle I sent back in May; still waiting today!!"),  # same start
            row(2, "The courier left the parcel in the rain"),
            row(3, "A different text, the same meaning as the first"),  # its embedding repeats t0's
            row(4, "The courier left my parcel out in the rain, soaked")]  # shares only a short start
    assert [r["text_id"] for r in choose_examples(rows, 5, v)] == ["t0", "t2", "t4"]
    assert [r["text_id"] for r in choose_examples(rows, 2, v)] == ["t0", "t2"]
    assert [r["text_id"] for r in choose_examples(rows, 5)] == ["t0", "t2", "t3", "t4"]  # no embeddings: text only
