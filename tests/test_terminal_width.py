"""Terminal output stays readable on an 80-column terminal (issue 15).

Every table is rendered with ``Console(width=W, record=True, color_system=None)`` on a database of
three real runs of one corpus (fake embedder, no model loaded) whose goals differ only in their
last word; their explanations are renamed to long, distinct names, the way a language model names
them. The checks: no line is wider than the console, and what tells runs and explanations apart
(each goal's last word, the created time, the corpus name, each explanation's first word, the
counts) is in the output. Wide consoles are rendered too, so both layouts of each table are tested.
"""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import pytest
from rich.console import Console

from conftest import FAKE_MODEL
from tests.fakes import FakeEmbedder

CORPUS = "customer_complaints_2024_export"
GOAL = "why is the customer unhappy with the product they ordered from our online shop in the"
SEASONS = ("spring", "autumn", "winter")  # run i's goal is GOAL + " " + SEASONS[i]
TOPICS = ["refund", "password", "delivery", "damage", "billing", "support", "sizing", "warranty", "courier",
          "coupon"]
PRODUCTS = ["shoes", "laptop", "kettle", "sofa", "headphones", "camera", "blender", "jacket", "lamp", "tablet",
            "mattress", "printer", "bicycle"]
# Run A's explanations, then run B's: long names, each with a first word of its own.
NAMES_A = ["Refunds that never arrived after the return was accepted by the warehouse",
           "Passwords that cannot be reset because the email never comes",
           "Deliveries that are late while the tracking page stays frozen",
           "Damaged items that arrive broken or scratched in a crushed box",
           "Billing errors such as being charged twice for a single order",
           "Support agents who never answer the phone or the chat",
           "Sizing charts that are wrong so the clothes do not fit",
           "Warranty claims that are refused without any reason given",
           "Couriers who leave parcels in the rain or at the wrong door",
           "Coupons that are rejected at checkout although still valid"]
NAMES_B = ["Reimbursement delays", "Login trouble with reset emails that never arrive",
           "Lateness of the parcel and a tracking page that does not move",
           "Breakage in transit, with crushed boxes and scratched goods",
           "Invoice mistakes and double charges on one order",
           "Helpdesk silence on the phone and in the chat window",
           "Fit problems caused by a wrong size chart",
           "Guarantee refusals with no explanation given",
           "Doorstep problems with parcels left outside",
           "Discount codes rejected at checkout"]


def _first_word(name: str) -> str:
    return name.split()[0]


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """One corpus of 10 topics of different sizes (4..13 texts), three runs with the goals above:
    k=9 (run A), k=10 (run B), k=8; runs A and B get the long explanation names."""
    from textclust.config import RunConfig
    from textclust.ingest import corpus_from_texts
    from textclust.pipeline import Pipeline
    from textclust.store import Database

    rng = np.random.default_rng(0)
    texts, vectors = [], []
    for g, topic in enumerate(TOPICS):
        for i in range(4 + g):
            texts.append(f"my {PRODUCTS[i]} order has a {topic} problem again and nobody at the shop seems to "
                         f"care about it, this is the {i + 1}th time")
            v = np.eye(len(TOPICS))[g] + 0.05 * rng.normal(size=len(TOPICS))
            vectors.append(v / np.linalg.norm(v))
    path = tmp_path_factory.mktemp("width") / "width.db"
    db = Database(path)
    corpus = corpus_from_texts(texts, name=CORPUS)
    embedder = FakeEmbedder(texts, np.asarray(vectors, dtype=np.float32))
    ids = [Pipeline(db, RunConfig.from_flat(k=k, reduction="none", embedding_model=FAKE_MODEL), embedder=embedder)
           .run(corpus, f"{GOAL} {season}") for k, season in zip((9, 10, 8), SEASONS)]
    db.close()
    con = sqlite3.connect(path)
    try:
        for run_id, names in zip(ids, (NAMES_A, NAMES_B)):
            rows = con.execute("SELECT id FROM explanations WHERE run_id = ? AND selected ORDER BY id",
                               (run_id,)).fetchall()
            assert len(rows) >= 6
            for (explanation_id,), name in zip(rows, names):
                con.execute("UPDATE explanations SET name = ?, text = ? WHERE id = ?",
                            (name, f"The text complains about {name.lower()}.", explanation_id))
        con.commit()
    finally:
        con.close()
    return path, ids


def _render(width: int, draw) -> str:
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))
    draw(console)
    console.file.close()
    return console.export_text()


def _assert_fits(text: str, width: int) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, f"{len(too_wide)} lines wider than {width}:\n" + "\n".join(too_wide)


def _run_rows(db, cli_invoke) -> list[dict]:
    """The rows `textclust runs` prints, as it builds them (its --json)."""
    result = cli_invoke("runs", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- textclust runs ----------------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_run_list_tells_runs_apart(three_runs, cli_invoke, width):
    from textclust.report.summary import print_run_list

    db, ids = three_runs
    rows = _run_rows(db, cli_invoke)
    assert [r["id"] for r in rows] == ids
    out = _render(width, lambda console: print_run_list(rows, console))
    _assert_fits(out, width)
    for season in SEASONS:  # the end of each goal, the only word in which they differ
        assert len(re.findall(rf"\b{season}\b", out)) == 1, (season, out)
    for r in rows:
        assert r["created_at"] in out  # whole, on one line
        assert f"{r['coverage']:.1%}" in out
    assert CORPUS in out or width < len(CORPUS) + 10
    assert out.count(CORPUS[:16]) == len(rows)  # every run names its corpus
    assert "offline-extractive" in out and "complete" in out


def test_run_list_is_a_table_when_it_fits(three_runs, cli_invoke):
    """On a wide terminal the table stays; the whole goal is in it (wrapped, not cut at 60 chars)."""
    from textclust.report.summary import print_run_list

    db, _ = three_runs
    rows = _run_rows(db, cli_invoke)
    out = _render(240, lambda console: print_run_list(rows, console))
    header = next(line for line in out.splitlines() if "┃" in line)
    assert [h.strip() for h in header.strip("┃").split("┃")] == [
        "id", "created", "status", "corpus", "rows", "goal", "explainer", "explanations", "coverage"]
    for r in rows:
        line = next(line for line in out.splitlines() if f"│ {r['id']} " in line)
        assert r["created_at"] in line and CORPUS in line and f"{r['coverage']:.1%}" in line
        assert f"│ {r['n_rows']:,} " in line  # the corpus's input rows, under "rows"
    narrow = _render(80, lambda console: print_run_list(rows, console))
    assert "┃" not in narrow  # one block per run instead
    flat = " ".join(narrow.split())
    for r in rows:
        assert f"goal: {r['goal']}" in flat
        assert f"{r['n_rows']:,} rows ({r['n_texts']:,} distinct texts)" in flat


def test_cli_runs_at_80_columns(three_runs, cli_invoke, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    db, _ = three_runs
    result = cli_invoke("runs", "--db", db)
    assert result.exit_code == 0, result.output
    _assert_fits(result.stdout, 80)
    for season in SEASONS:
        assert re.search(rf"\b{season}\b", result.stdout), result.stdout


# --- textclust compare -------------------------------------------------------------------------


def _contingency_cells(out: str) -> set[tuple[int, int, int]]:
    """(row of A, column of B, count) for every non-zero cell the output shows, read from the grid
    or from the list of cells, whichever was printed."""
    lines = out.splitlines()
    cells = set()
    if any(line.startswith("┃ A \\ B") for line in lines):  # the grid: A's rows, B1..Bn, total
        header = next(line for line in lines if line.startswith("┃ A \\ B"))
        columns = [int(h.strip()[1:]) for h in header.strip("┃").split("┃")[1:-1]]
        for line in lines:
            match = re.match(r"│ A(\d+) ", line)
            if match:
                values = [v.strip() for v in line.strip("│").split("│")[1:-1]]
                cells |= {(int(match.group(1)), j, int(v)) for j, v in zip(columns, values) if v != "·"}
        return cells
    start = next(i for i, line in enumerate(lines) if line.startswith("┃ run A"))
    row = None
    for line in lines[start + 2:]:
        if not line.startswith("│"):
            break
        a, b, n = (part.strip() for part in line.strip("│").split("│"))
        if a.startswith("A") and n:
            row = int(re.match(r"A(\d+) ", a).group(1))
        if n and b:
            cells.add((row, int(re.match(r"B(\d+) ", b).group(1)), int(n)))
    return cells


@pytest.mark.parametrize("width", [50, 60, 80, 120, 200])
def test_compare_is_readable(three_runs, width):
    from textclust.report.compare import compare_runs
    from textclust.store import Database

    db_path, (a, b, _) = three_runs
    db = Database(db_path)
    try:
        data = compare_runs(db, a, b)
    finally:
        db.close()
    assert len(data["rows"]) >= 6 and len(data["columns"]) >= 6
    assert {_first_word(n) for n in data["rows"]} <= {_first_word(n) for n in NAMES_A}
    out = _comparison_shown_whole(data, width)
    assert f"AMI {data['ami']:.3f}" in out
    for season in ("spring", "autumn"):
        assert season in out
    if width == 80:  # ten columns of run B do not fit 80 columns as a grid: the list of cells
        assert "Contingency table as a list" in out
    if width == 200:
        assert "┃ A \\ B" in out


def test_compare_grid_keeps_its_layout_when_it_fits():
    """Few explanations: the grid as before, row labels whole and numbered."""
    from textclust.report.compare import print_comparison

    data = {
        "run_a": {"run_id": 1, "goal": "g1", "corpus": CORPUS, "explainer": "x", "n_explanations": 3,
                  "coverage": 1.0, "notice": None},
        "run_b": {"run_id": 2, "goal": "g2", "corpus": CORPUS, "explainer": "x", "n_explanations": 2,
                  "coverage": 1.0, "notice": None},
        "same_corpus": True, "unit": "input rows", "n": 30,
        "rows": ["refund late", "password reset", "uncovered"], "columns": ["money", "access"],
        "table": [[9, 1], [0, 15], [3, 2]], "ami": 0.5, "nmi": 0.5, "ari": 0.4,
        "best_match_b": [{"label": "money", "size": 12, "best": "refund late", "overlap": 9, "share": 0.75},
                         {"label": "access", "size": 18, "best": "password reset", "overlap": 15, "share": 15 / 18}],
    }
    out = _render(80, lambda console: print_comparison(data, console))
    _assert_fits(out, 80)
    assert "A1 refund late" in out and "A3 uncovered" in out
    assert _contingency_cells(out) == {(1, 1, 9), (1, 2, 1), (2, 2, 15), (3, 1, 3), (3, 2, 2)}


def test_cli_compare_at_80_columns(three_runs, cli_invoke, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    db, (a, b, _) = three_runs
    result = cli_invoke("compare", a, b, "--db", db)
    assert result.exit_code == 0, result.output
    _assert_fits(result.stdout, 80)
    data = json.loads(cli_invoke("compare", a, b, "--db", db, "--json").stdout)
    expected = {(i + 1, j + 1, v) for i, row in enumerate(data["table"]) for j, v in enumerate(row) if v}
    assert _contingency_cells(result.stdout) == expected


# --- the run summary's Explanations table ------------------------------------------------------


def _column_widths(out: str) -> list[int]:
    """The inner widths of the Explanations table's columns, from its top border."""
    top = next(line for line in out.splitlines() if line.startswith("┏"))
    return [len(part) - 2 for part in top.strip("┏┓").split("┳")]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_summary_explanations_table_is_readable(three_runs, width):
    from textclust.report.summary import print_summary
    from textclust.results import load_run
    from textclust.store import Database

    db_path, (a, _, _) = three_runs
    db = Database(db_path)
    try:
        result = load_run(db, a, include_rows=False)
    finally:
        db.close()
    # An explanation with model evidence (an LLM run's), one quote a long URL with no space in it.
    url = "https://shop.example.com/orders/1234567890/refund-status"  # under the 60-character clip
    result.clusters[0].evidence = ["nobody at the shop seems to care", url]
    out = _render(width, lambda console: print_summary(result, console))
    _assert_fits(out, width)
    table = out.split("Explanations", 1)[1].split("Covered ", 1)[0]
    widths = _column_widths(table)
    header = next(line for line in table.splitlines() if line.startswith("┃"))
    titles = [h.strip() for h in header.strip("┃").split("┃")]
    assert titles[:4] == ["#", "explanation" if width >= 80 else "explanation and examples", "rows", "share"]
    assert all(w >= 20 for w, t in zip(widths, titles) if t.startswith(("explanation", "examples")))
    lines = table.splitlines()
    for i, cluster in enumerate(result.clusters, start=1):
        first = next(line for line in lines if line.startswith(f"│ {i:>{len(str(len(result.clusters)))}} │"))
        cells = [c.strip() for c in first.strip("│").split("│")]
        assert cells[1].startswith(_first_word(cluster.name)), cells
        assert cells[2:4] == [str(cluster.size), f"{cluster.share:.1%}"]
    # The URL is folded onto several lines of its column, not cut off.
    column = 1
    pieces = "".join(line.strip("│").split("│")[column].strip() for line in lines
                     if line.startswith("│") and len(line.strip("│").split("│")) > column)
    assert url in pieces.replace("“", "").replace("”", "")
    examples = [e for c in result.clusters for e in c.examples]
    flat = " ".join(re.sub(r"[│┃]", " ", table).split())
    assert all(f"• {e.split()[0]}" in flat for e in examples)


def _big_comparison() -> dict:
    """A comparison of two runs of a 4,000-row corpus (counts of three and four digits): 8 and 9
    explanations plus 'uncovered' each, as :func:`textclust.report.compare.compare_runs` builds it."""
    from textclust.report.compare import _best_matches

    rng = np.random.default_rng(1)
    rows, columns = NAMES_A[:8] + ["uncovered"], NAMES_B[:9] + ["uncovered"]
    table = rng.integers(20, 500, size=(len(rows), len(columns))) * (rng.random((len(rows), len(columns))) < 0.3)
    table[np.arange(len(rows)), np.arange(len(rows))] += 300  # every row has a peak
    describe = {"goal": GOAL, "corpus": CORPUS, "explainer": "llm", "coverage": 0.9, "notice": None}
    return {"run_a": {"run_id": 7, "n_explanations": 8, **describe},
            "run_b": {"run_id": 8, "n_explanations": 9, **describe},
            "same_corpus": True, "unit": "input rows", "n": int(table.sum()), "rows": rows, "columns": columns,
            "table": table.tolist(), "ami": 0.41, "nmi": 0.45, "ari": 0.3,
            "best_match_a": _best_matches(table, rows, columns, axis=1),
            "best_match_b": _best_matches(table, columns, rows, axis=0)}


@pytest.mark.parametrize("width", [80, 100, 200])
def test_compare_with_large_counts(width):
    """Ten columns of four-digit counts leave no room for the row labels of a grid at 80 columns."""

    data = _big_comparison()
    out = _comparison_shown_whole(data, width)
    assert f"│ {data['n']} │" in out  # the total


def _comparison_shown_whole(data, width: int) -> str:
    """``compare``'s output at ``width``: it fits, names every row and column, and shows every
    non-zero cell at its place. Returns the output for further checks."""
    from textclust.report.compare import print_comparison

    out = _render(width, lambda console: print_comparison(data, console))
    _assert_fits(out, width)
    for name in data["rows"] + data["columns"]:
        assert re.search(rf"\b{_first_word(name)}\b", out), name
    expected = {(i + 1, j + 1, v) for i, row in enumerate(data["table"]) for j, v in enumerate(row) if v}
    assert _contingency_cells(out) == expected
    return out


# --- 80 columns and pipes, through the command line (issue "The first hour of a new user", item 10) --


def _explanations_header(out: str) -> list[str]:
    header = next(line for line in out.splitlines() if line.startswith("┃"))
    return [h.strip() for h in header.strip("┃").split("┃")]


def test_cli_show_at_80_columns(three_runs, cli_invoke, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    db, (a, _, _) = three_runs
    result = cli_invoke("show", a, "--db", db)
    assert result.exit_code == 0, result.output
    _assert_fits(result.stdout, 80)
    assert _explanations_header(result.stdout) == ["#", "explanation", "rows", "share", "examples"]  # none squeezed
    for name in NAMES_A[:6]:
        assert re.search(rf"\b{_first_word(name)}\b", result.stdout), name


@pytest.fixture
def no_terminal(monkeypatch):
    """The process as in a pipe: no COLUMNS, and no standard stream is a terminal."""
    def not_a_terminal(*args):
        raise OSError("not a terminal")

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("os.get_terminal_size", not_a_terminal)


@pytest.mark.parametrize("command", ["runs", "show", "compare"])
def test_cli_output_in_a_pipe_fits_80_columns(three_runs, cli_invoke, no_terminal, command):
    db, (a, b, _) = three_runs
    args = {"runs": ["runs"], "show": ["show", a], "compare": ["compare", a, b]}[command]
    result = cli_invoke(*args, "--db", db)
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.stdout  # no colour codes either
    _assert_fits(result.stdout, 80)
    assert max(len(line) for line in result.stdout.splitlines()) > 70  # the 80 columns are used
    if command == "runs":  # one block per run, every field of it whole
        for season in SEASONS:
            assert re.search(rf"\b{season}\b", result.stdout)
        assert result.stdout.count(f"corpus {CORPUS},") == 3 and result.stdout.count("· created ") == 3
    elif command == "show":
        assert _explanations_header(result.stdout) == ["#", "explanation", "rows", "share", "examples"]


def test_runs_through_a_real_pipe(three_runs):
    """`textclust runs | …` as a process whose output is a pipe (the case the issue reported)."""
    import os
    import subprocess
    import sys

    db, _ = three_runs
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    result = subprocess.run([sys.executable, "-c", "from textclust.cli import main; main()", "runs", "--db", str(db)],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    _assert_fits(result.stdout, 80)
    for season in SEASONS:
        assert re.search(rf"\b{season}\b", result.stdout)
    assert result.stdout.count(f"corpus {CORPUS},") == 3 and result.stdout.count("· created ") == 3
