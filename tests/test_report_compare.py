"""`textclust compare RUN_A RUN_B`: contingency table and adjusted mutual information.

Expected tables are recomputed here from text_results with SQL, and the AMI with
scikit-learn on those labels.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score

from conftest import FAKE_MODEL, make_blobs
from test_report_html import Page


def labels_by_row(db, run_id):
    """Each non-empty input row's label in a run: its explanation name or 'uncovered'."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("""SELECT ir.row_index, coalesce(e.name, 'uncovered') FROM runs r
                              JOIN input_rows ir ON ir.corpus_id = r.corpus_id
                              JOIN text_results tr ON tr.text_id = ir.text_id AND tr.run_id = r.id
                              LEFT JOIN explanations e ON e.id = tr.explanation_id
                              WHERE r.id = ? ORDER BY ir.row_index""", (run_id,)).fetchall()
    finally:
        con.close()
    return dict(rows)


@pytest.fixture(scope="module")
def two_goals(tmp_path_factory):
    """One synthetic corpus (with duplicate rows), three runs: k=3, k=2, and k=3 with another seed."""
    from textclust.ingest import corpus_from_texts
    from textclust.config import RunConfig
    from textclust.pipeline import Pipeline
    from textclust.store import Database

    blobs = make_blobs()
    texts = blobs.texts + blobs.texts[:5]  # 5 duplicate rows: counts are per input row
    path = tmp_path_factory.mktemp("compare") / "compare.db"
    db = Database(path)
    corpus = corpus_from_texts(texts, name="blobs")
    db.save_corpus(corpus)
    db.store_embeddings(FAKE_MODEL, corpus.text_ids, blobs.X)
    ids = [Pipeline(db, RunConfig.from_flat(k=k, reduction="none", embedding_model=FAKE_MODEL)).run(corpus, goal)
           for k, goal in ((3, "which topic"), (2, "<i>two</i> groups | pipes"))]
    db.close()
    return path, ids


def test_compare_json_matches_the_database(two_goals, cli_invoke):
    db, (a, b) = two_goals
    result = cli_invoke("compare", a, b, "--db", db, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    la, lb = labels_by_row(db, a), labels_by_row(db, b)
    assert data["n"] == len(la) == 65 and data["unit"] == "input rows" and data["same_corpus"]
    pairs = Counter((la[i], lb[i]) for i in la)
    table = np.array(data["table"])
    assert table.sum() == 65
    for i, ra in enumerate(data["rows"]):
        for j, cb in enumerate(data["columns"]):
            assert table[i, j] == pairs.get((ra, cb), 0)
    assert set(data["rows"]) == set(la.values()) and set(data["columns"]) == set(lb.values())
    keys = sorted(la)
    assert data["ami"] == pytest.approx(adjusted_mutual_info_score([la[k] for k in keys], [lb[k] for k in keys]))
    assert 0.3 < data["ami"] < 0.99  # 3 topics vs 2 groups: related, not the same
    assert data["run_a"]["goal"] == "which topic" and data["run_b"]["goal"] == "<i>two</i> groups | pipes"
    # Every B explanation's best match is where most of its rows came from.
    for j, match in enumerate(data["best_match_b"]):
        assert match["overlap"] == table[:, j].max() and match["size"] == table[:, j].sum()


def test_compare_a_run_with_itself_is_perfect_agreement(two_goals, cli_invoke):
    db, (a, _) = two_goals
    data = json.loads(cli_invoke("compare", a, a, "--db", db, "--json").stdout)
    table = np.array(data["table"])
    assert data["ami"] == pytest.approx(1.0)
    assert (table == np.diag(np.diag(table))).all() and data["rows"] == data["columns"]


def test_compare_prints_tables(two_goals, cli_invoke):
    db, (a, b) = two_goals
    result = cli_invoke("compare", a, b, "--db", db)
    assert result.exit_code == 0, result.output
    out = result.stdout
    data = json.loads(cli_invoke("compare", a, b, "--db", db, "--json").stdout)
    assert f"AMI {data['ami']:.3f}" in out and "over 65 input rows" in out
    assert "Contingency table" in out and "goal: <i>two</i> groups | pipes" in out
    assert "\x1b[" not in out  # piped: plain text
    for i, name in enumerate(data["rows"], start=1):
        row = next(line for line in out.splitlines() if f"A{i} {name}" in line)
        cells = [c.strip() for c in row.split("│")[2:-1]]
        assert cells == [str(v) if v else "·" for v in data["table"][i - 1]] + [str(sum(data["table"][i - 1]))]


def test_compare_writes_html(two_goals, tmp_path, cli_invoke):
    db, (a, b) = two_goals
    out = tmp_path / "compare.html"
    result = cli_invoke("compare", a, b, "--db", db, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote the comparison of runs {a} and {b} to {out}" in result.stderr
    source = out.read_text(encoding="utf-8")
    page = Page(source)
    data = json.loads(cli_invoke("compare", a, b, "--db", db, "--json").stdout)
    assert f"AMI {data['ami']:.3f}" in page.text
    assert "<i>two</i> groups | pipes" in page.text and page.count("i") == 0  # the goal is escaped
    assert page.count("script") == 0 and not any(a.get("src") for _, a in page.tags)
    # The table: header + one row per A label + totals, cells equal to the counts.
    table = source.split('id="contingency"')[1].split("</table>")[0]
    rows = table.split("<tr>")[1:]
    assert len(rows) == len(data["rows"]) + 2
    for i, row in enumerate(rows[1:-1]):
        cells = [Page(c).text for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        assert cells == [str(v) if v else "" for v in data["table"][i]] + [str(sum(data["table"][i]))]


def test_compare_different_corpora_counts_shared_texts(two_goals, copy_db, cli_invoke):
    """A second corpus that shares 30 texts: the table covers just those (distinct texts)."""
    from textclust.ingest import corpus_from_texts
    from textclust.config import RunConfig
    from textclust.pipeline import Pipeline
    from textclust.store import Database

    db_path, (a, _) = two_goals
    db_path = copy_db(db_path)
    blobs = make_blobs()
    db = Database(db_path)
    other = corpus_from_texts(blobs.texts[10:40] + [f"unrelated text number {i}" for i in range(10)], name="other")
    db.save_corpus(other)
    vectors = np.vstack([blobs.X[10:40], np.tile(blobs.X[:1], (10, 1))])
    db.store_embeddings(FAKE_MODEL, other.text_ids, vectors)
    c = Pipeline(db, RunConfig.from_flat(k=2, reduction="none", embedding_model=FAKE_MODEL)).run(other, "g")
    db.close()
    data = json.loads(cli_invoke("compare", a, c, "--db", db_path, "--json").stdout)
    assert not data["same_corpus"] and data["unit"] == "distinct texts in both runs" and data["n"] == 30


def test_compare_errors(two_goals, fake_run_db, tmp_path, cli_invoke):
    db, (a, _) = two_goals
    result = cli_invoke("compare", a, 42, "--db", db)
    assert result.exit_code == 2 and "no run with id 42" in result.stderr
    result = cli_invoke("compare", a, a, "--db", tmp_path / "none.db")
    assert result.exit_code == 2 and "no such database" in result.stderr
    result = cli_invoke("compare", a, a, "--db", db, "-o", tmp_path / "no" / "c.html")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_compare_runs_without_shared_texts(tmp_path, cli_invoke):
    from textclust.ingest import corpus_from_texts
    from textclust.config import RunConfig
    from textclust.pipeline import Pipeline
    from textclust.store import Database

    blobs = make_blobs()
    db = Database(tmp_path / "disjoint.db")
    ids = []
    for prefix in ("one", "two"):
        corpus = corpus_from_texts([f"{prefix} {t}" for t in blobs.texts], name=prefix)
        db.save_corpus(corpus)
        db.store_embeddings(FAKE_MODEL, corpus.text_ids, blobs.X)
        ids.append(Pipeline(db, RunConfig.from_flat(k=2, reduction="none", embedding_model=FAKE_MODEL)).run(corpus, "g"))
    db.close()
    result = cli_invoke("compare", *ids, "--db", tmp_path / "disjoint.db")
    assert result.exit_code == 2
    assert result.stderr == f"textclust: error: runs {ids[0]} and {ids[1]} share no texts; nothing to compare\n"


def test_compare_help(cli_invoke):
    result = cli_invoke("compare", "--help")
    assert result.exit_code == 0
    for option in ("RUN_A", "RUN_B", "-o", "--output", "--db", "--json"):
        assert option in result.stdout


def test_compare_hand_built_runs_shows_the_typed_notice(monkeypatch):
    """compare reads each run's notice from its typed stats, spelled as the reader knows the settings."""
    from rich.console import Console

    from test_report_html import typed_result
    from textclust.report import compare as compare_module

    runs = {1: typed_result(with_model=False, notice="Classification into your explanations ({only_candidates})"),
            2: typed_result()}
    runs[2].run_id = 2
    monkeypatch.setattr(compare_module, "load_run", lambda db, run_id, include_rows=True: runs[run_id])
    data = compare_module.compare_runs(None, 1, 2)
    assert data["run_a"]["notice"] == "Classification into your explanations (only_candidates)"
    assert data["run_a"]["coverage"] == 0.8 and data["run_b"]["notice"] is None
    assert data["n"] == 5 and data["ami"] == pytest.approx(1.0)
    flagged = compare_module.compare_runs(None, 1, 2, spell=lambda name: "--" + name.replace("_", "-"))
    assert flagged["run_a"]["notice"] == "Classification into your explanations (--only-candidates)"
    console = Console(record=True, width=200, color_system=None)
    compare_module.print_comparison(flagged, console)
    assert "Note: Classification into your explanations (--only-candidates)" in console.export_text()
    assert "(--only-candidates)" in Page(compare_module.render_compare_html(flagged)).text
