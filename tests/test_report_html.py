"""`textclust report`: the HTML, Markdown and JSON reports, checked against the database.

Expected values are recomputed here with SQL on the stored run (not taken from the
report code), so a report that shows wrong numbers or texts fails.
"""

from __future__ import annotations

import json
import re
import sqlite3
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import FAKE_MODEL, GOAL, make_blobs
from textclust.explain import OFFLINE_NOTICE

# --- helpers ---------------------------------------------------------------------------------


class Page(HTMLParser):
    """Tags, attributes and visible text of an HTML page (text inside <script>/<style> kept apart)."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text_parts: list[str] = []
        self.scripts: list[str] = []
        self._raw: str | None = None
        self.feed(source)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._raw = tag
            if tag == "script":
                self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == self._raw:
            self._raw = None

    def handle_data(self, data):
        if self._raw == "script":
            self.scripts[-1] += data
        elif self._raw is None:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)


def flat(text: str) -> str:
    return " ".join(text.split())


def query(db, sql, *args):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def expected_explanations(db, run_id):
    """Per selected explanation: name, text, size (input rows), terms, top texts by score — straight from SQL."""
    rows = query(db, """
        SELECT e.id, e.name, e.text, e.terms,
               (SELECT count(*) FROM input_rows ir JOIN text_results tr ON tr.text_id = ir.text_id AND tr.run_id = e.run_id
                 JOIN runs r ON r.id = e.run_id WHERE ir.corpus_id = r.corpus_id AND tr.explanation_id = e.id)
        FROM explanations e WHERE e.run_id = ? AND e.selected""", run_id)
    result = []
    for exp_id, name, text, terms, size in rows:
        top = query(db, """SELECT t.text FROM text_results tr JOIN texts t ON t.id = tr.text_id
                           WHERE tr.run_id = ? AND tr.explanation_id = ? ORDER BY tr.score DESC LIMIT 3""",
                    run_id, exp_id)
        result.append({"id": exp_id, "name": name, "text": text, "terms": json.loads(terms), "size": size,
                       "top": [t for (t,) in top]})
    return result


def stored_stats(db, run_id):
    return json.loads(query(db, "SELECT stats FROM runs WHERE id = ?", run_id)[0][0])


# --- the sample run: content -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_reports(sample_run, tmp_path_factory, cli_invoke_module):
    folder = tmp_path_factory.mktemp("reports")
    paths = {}
    for fmt, name in (("html", "report.html"), ("md", "report.md"), ("json", "report.json")):
        path = folder / name
        args = ["report", sample_run.run_id, "-o", path, "--db", sample_run.db, "--map", "pca"]
        if fmt == "md":
            args += ["--format", "md"]  # html and json: from the file extension
        result = cli_invoke_module(*args)
        assert result.exit_code == 0, result.output
        assert f"wrote the {fmt} report of run {sample_run.run_id} to {path}" in result.stderr
        paths[fmt] = path
    return paths


@pytest.fixture(scope="module")
def cli_invoke_module():
    from click.testing import CliRunner

    from textclust.cli import cli

    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args])


def test_html_report_is_one_self_contained_file(sample_reports):
    source = sample_reports["html"].read_text(encoding="utf-8")
    page = Page(source)
    assert source.startswith("<!DOCTYPE html>")
    # Nothing is loaded from anywhere: no external script, stylesheet, font, image or frame.
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "data", "action"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("#", "data:")), (tag, key, value)
        assert tag not in ("link", "iframe", "object", "embed", "img"), tag
    assert "@import" not in source and "url(http" not in source
    assert not re.search(r"""<script[^>]+src=""", source)
    # plotly.js is inlined (the ~4.8 MB bundle), once.
    assert sum("plotly.js v" in s[:2000] for s in page.scripts) == 1
    assert "cdn.plot.ly" not in " ".join(t[1].get("src", "") for t in page.tags)
    # A restrictive content security policy forbids any network access as well.
    csp = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "connect-src 'none'" in csp[0]


def test_html_report_shows_run_facts(sample_reports, sample_run):
    text = Page(sample_reports["html"].read_text(encoding="utf-8")).text
    stats = stored_stats(sample_run.db, sample_run.run_id)
    assert f"Goal: {GOAL}" in text
    assert flat(OFFLINE_NOTICE) in text
    assert "complaints" in text and "complaints.csv" in text
    assert "no language model configured" in text
    assert "all-MiniLM-L6-v2" in text and "offline-extractive" in text
    assert "input 309 rows" in text and "distinct texts 300 distinct texts" in text and "empty 4 empty rows" in text
    assert "duplicates 5 duplicate rows" in text
    non_empty = 309 - 4
    assert f"covered {non_empty - stats['n_uncovered']} of {non_empty} non-empty rows ({stats['coverage']:.1%})" in text
    assert f"uncovered {stats['n_uncovered']} row{'' if stats['n_uncovered'] == 1 else 's'} (fit no explanation)" in text
    assert f"in 2+ explanations {stats['n_multi']} row{'' if stats['n_multi'] == 1 else 's'}" in text
    assert f"unclustered {stats['n_unclustered']} row{'' if stats['n_unclustered'] == 1 else 's'}" in text
    assert re.search(r"time \d+\.\d s \(embed \d+\.\d s, cluster \d+\.\d s, explain \d+\.\d s\)", text)
    # Sections that need a language model are absent; the hierarchy too (no data yet).
    assert "evidence quotes" not in text
    assert "Hierarchy" not in text


def test_html_report_shows_every_explanation(sample_reports, sample_run):
    text = Page(sample_reports["html"].read_text(encoding="utf-8")).text
    non_empty = 309 - 4
    expected = expected_explanations(sample_run.db, sample_run.run_id)
    assert f"Explanations ({len(expected)})" in text
    for e in expected:
        assert e["name"] in text and e["text"] in text
        assert f"{e['size']} rows ({e['size'] / non_empty:.1%})" in text, e["name"]
        for term in e["terms"]:
            assert term in text
        for example in e["top"]:  # the highest-scoring texts are the representative ones
            assert flat(example) in text, example
    # Mean assignment score of each explanation, recomputed over its input rows.
    for e in expected:
        mean = query(sample_run.db, """SELECT avg(tr.score) FROM input_rows ir
                     JOIN text_results tr ON tr.text_id = ir.text_id AND tr.run_id = ?
                     WHERE tr.explanation_id = ?""", sample_run.run_id, e["id"])[0][0]
        shown = re.search(r"#\d+ " + re.escape(f"{e['name']} {e['text']} {e['size']} rows (") + r"[^)]*\) · matched by \d+ rows including secondary "
                          r"matches · mean assignment score (\d\.\d{3})", text)
        assert shown, e["name"]
        assert float(shown.group(1)) == pytest.approx(mean, abs=6e-4)  # shown to 3 decimals


def test_html_report_lists_uncovered_unclustered_and_overlapping_texts(sample_reports, sample_run):
    text = Page(sample_reports["html"].read_text(encoding="utf-8")).text
    stats = stored_stats(sample_run.db, sample_run.run_id)
    uncovered = query(sample_run.db, """SELECT t.text FROM text_results tr JOIN texts t ON t.id = tr.text_id
                                        WHERE tr.run_id = ? AND tr.explanation_id IS NULL""", sample_run.run_id)
    assert f"Uncovered texts (fit no explanation): {stats['n_uncovered']} rows ({len(uncovered)} distinct texts)" in text
    for (t,) in uncovered:
        assert flat(t) in text
    unclustered = query(sample_run.db, "SELECT count(*) FROM text_results WHERE run_id = ? AND cluster = -1",
                        sample_run.run_id)[0][0]
    assert f"Unclustered texts (noise of the clustering): {stats['n_unclustered']} rows ({unclustered} distinct" in text
    multi = query(sample_run.db, """SELECT t.text FROM text_results tr JOIN texts t ON t.id = tr.text_id
                                    WHERE tr.run_id = ? AND tr.n_explanations > 1""", sample_run.run_id)
    assert f"Texts in two or more explanations: {stats['n_multi']} rows ({len(multi)} distinct texts)" in text
    for (t,) in multi:
        assert flat(t) in text


def test_html_report_has_map_and_size_chart(sample_reports, sample_run):
    source = sample_reports["html"].read_text(encoding="utf-8")
    page = Page(source)
    ids = {a.get("id") for _, a in page.tags}
    assert {"map-chart", "sizes-chart"} <= ids
    assert "placed by a 2-D PCA projection" in page.text and "All 300 distinct texts are shown." in page.text
    figures = [s for s in page.scripts if "Plotly.newPlot" in s]
    assert len(figures) == 2
    assert "Coverage " in figures[0] + figures[1]


def test_report_map_points_match_the_database(sample_run):
    from textclust.report.model import ReportOptions, build_report
    from textclust.store import Database

    db = Database(sample_run.db)
    report = build_report(db, sample_run.run_id, ReportOptions(reduction="pca"))
    m = report["map"]
    assert m["n_points"] == m["n_total"] == 300 and not m["sampled"] and m["reduction"] == "pca"
    per_label = {}
    for p in m["points"]:
        name = re.fullmatch(r"#\d+ (.*)", p["label"]).group(1) if p["label"] != "uncovered" else p["label"]
        per_label[name] = per_label.get(name, 0) + 1
    stored = dict(query(sample_run.db, """SELECT coalesce(e.name, 'uncovered'), count(*) FROM text_results tr
                        LEFT JOIN explanations e ON e.id = tr.explanation_id WHERE tr.run_id = ? GROUP BY 1""",
                        sample_run.run_id))
    assert per_label == stored
    xy = np.array([[p["x"], p["y"]] for p in m["points"]])
    assert np.isfinite(xy).all() and xy.std(axis=0).min() > 0  # a real spread, not all at one spot

    sampled = build_report(db, sample_run.run_id, ReportOptions(reduction="pca", max_points=50))["map"]
    assert sampled["sampled"] and sampled["n_points"] == 50 and sampled["n_total"] == 300
    texts = {t for (t,) in query(sample_run.db, """SELECT t.text FROM text_results tr JOIN texts t ON t.id = tr.text_id
                                                   WHERE tr.run_id = ?""", sample_run.run_id)}
    assert all(p["text"] in texts or p["text"].endswith("…") for p in sampled["points"])
    db.close()


def test_map_sampling_is_announced(sample_run, tmp_path, cli_invoke):
    out = tmp_path / "sampled.html"
    result = cli_invoke("report", sample_run.run_id, "-o", out, "--db", sample_run.db, "--map", "pca",
                        "--max-points", 40)
    assert result.exit_code == 0, result.output
    assert "Showing a random sample of 40 of 300 distinct texts." in Page(out.read_text(encoding="utf-8")).text


def test_markdown_report(sample_reports, sample_run):
    md = sample_reports["md"].read_text(encoding="utf-8")
    stats = stored_stats(sample_run.db, sample_run.run_id)
    expected = expected_explanations(sample_run.db, sample_run.run_id)
    assert md.startswith(f"# textclust run {sample_run.run_id}: complaints\n")
    assert f"**Goal:** {GOAL}" in md
    assert f"> **Note:** {OFFLINE_NOTICE}" in md
    assert "| LLM calls, tokens, cost | no language model configured |" in md
    table = md.split("## Explanations")[1].split("\n### ")[0]
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| # |")]
    assert len(body) == len(expected) + 1  # + the uncovered row
    non_empty = 309 - 4
    for e in expected:
        assert f"| {e['name']} | {e['text']} | {e['size']} | {e['size'] / non_empty:.1%} |" in md
        assert re.search(r"\n### #\d+ " + re.escape(f"{e['name']}\n"), md)
    assert f"## Uncovered texts (fit no explanation): {stats['n_uncovered']} rows" in md
    assert f"## Texts in two or more explanations: {stats['n_multi']} rows" in md
    assert f"## Unclustered texts (noise of the clustering): {stats['n_unclustered']} rows" in md
    assert "<script" not in md and "Plotly" not in md and "<div" not in md  # no map, no HTML


def test_json_report_is_the_full_structured_result(sample_reports, sample_run):
    data = json.loads(sample_reports["json"].read_text(encoding="utf-8"))
    stats = stored_stats(sample_run.db, sample_run.run_id)
    assert data["run_id"] == sample_run.run_id and data["goal"] == GOAL and data["notice"] == OFFLINE_NOTICE
    assert data["llm"] is None and data["llm_note"] == "no language model configured"
    assert data["counts"]["uncovered"] == stats["n_uncovered"] and data["counts"]["multi"] == stats["n_multi"]
    rows = data["run_result"]["rows"]
    assert len(rows) == 309
    assert [r["row_index"] for r in rows] == list(range(309))
    expected = {e["name"]: e for e in expected_explanations(sample_run.db, sample_run.run_id)}
    assert {e["name"] for e in data["explanations"]} == set(expected)
    for e in data["explanations"]:
        assert e["size"] == expected[e["name"]]["size"]
        assert e["representative"][0]["text"] == expected[e["name"]]["top"][0]
    assert data["uncovered"]["n_rows"] == stats["n_uncovered"]
    assert data["map"] is None  # the map is HTML only


# --- hostile text: escaped everywhere ---------------------------------------------------------------

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> refund | never & came'


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    from textclust.ingest import corpus_from_texts
    from textclust.config import RunConfig
    from textclust.pipeline import Pipeline
    from textclust.store import Database

    blobs = make_blobs()
    texts, X = list(blobs.texts), blobs.X.copy()
    texts[0] = HOSTILE
    X[0] = np.eye(X.shape[1], dtype=np.float32)[0]  # the most representative text of its explanation
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    db = Database(path)
    corpus = corpus_from_texts(texts, name="<b>corpus</b>")
    db.save_corpus(corpus)
    db.store_embeddings(FAKE_MODEL, corpus.text_ids, X)
    run_id = Pipeline(db, RunConfig.from_flat(k=3, reduction="none", embedding_model=FAKE_MODEL)).run(
        corpus, "<script>alert('goal')</script>")
    db.close()
    return path, run_id


def test_hostile_text_is_escaped_in_html(hostile_run, tmp_path, cli_invoke):
    db, run_id = hostile_run
    out = tmp_path / "r.html"
    result = cli_invoke("report", run_id, "-o", out, "--db", db, "--map", "pca")
    assert result.exit_code == 0, result.output
    source = out.read_text(encoding="utf-8")
    page = Page(source)
    # Exactly the report's own scripts: plotly config, plotly.js, two figures. No injected tag or handler.
    assert page.count("script") == 4
    assert page.count("img") == 0 and page.count("b") == 0
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)
    # ...and the texts show literally.
    assert flat(HOSTILE) in page.text
    assert "<script>alert('goal')</script>" in page.text
    assert "textclust run 1 · <b>corpus</b>" in page.text
    # In the plot data (JSON inside <script>) the text is escaped for plotly and for the HTML parser.
    figures = "".join(s for s in page.scripts if "Plotly.newPlot" in s)
    assert "</script" not in figures.lower() and "<img" not in figures
    assert "\\u0026lt;script\\u0026gt;" in figures or "&lt;script&gt;" in figures


def test_hostile_text_is_inert_in_markdown_and_json(hostile_run, tmp_path, cli_invoke):
    db, run_id = hostile_run
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    assert cli_invoke("report", run_id, "-o", md, "--db", db).exit_code == 0
    assert cli_invoke("report", run_id, "-o", js, "--db", db).exit_code == 0
    text = md.read_text(encoding="utf-8")
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(\"x\")&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; refund \\| never &amp; came" in text
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["goal"] == "<script>alert('goal')</script>"  # JSON keeps the exact text
    assert HOSTILE in [r["text"] for r in data["run_result"]["rows"]]


# --- map options and fallbacks -------------------------------------------------------------------------


def test_umap_map(fake_run_db):
    from textclust.report.model import ReportOptions, build_report
    from textclust.store import Database

    db = Database(fake_run_db.db)
    m = build_report(db, fake_run_db.run_id, ReportOptions(reduction="umap"))["map"]
    db.close()
    assert m["reduction"] == "umap" and m["n_points"] == 60
    xy = np.array([[p["x"], p["y"]] for p in m["points"]])
    labels = np.array([p["label"] for p in m["points"]])
    # Three well-separated blobs stay apart in 2-D: each point is nearer its own group's centre.
    centres = {lab: xy[labels == lab].mean(axis=0) for lab in set(labels)}
    nearest = [min(centres, key=lambda c: np.linalg.norm(xy[i] - centres[c])) for i in range(len(xy))]
    assert (np.array(nearest) == labels).mean() == 1.0


def test_report_without_cached_embeddings_says_so(fake_run_db, copy_db, tmp_path, cli_invoke):
    db = copy_db(fake_run_db.db)
    con = sqlite3.connect(db)
    con.execute("DELETE FROM embeddings")
    con.commit()
    con.close()
    out = tmp_path / "nomap.html"
    result = cli_invoke("report", fake_run_db.run_id, "-o", out, "--db", db)
    assert result.exit_code == 0, result.output
    page = Page(out.read_text(encoding="utf-8"))
    assert "No map: the embeddings of this run's texts are not in the cache (model test-fake-8d)." in page.text
    assert "sizes-chart" in {a.get("id") for _, a in page.tags}


# --- errors -------------------------------------------------------------------------------------------


def test_report_errors(fake_run_db, copy_db, tmp_path, cli_invoke):
    db = fake_run_db.db
    cases = [
        (["report", 99, "-o", tmp_path / "x.html", "--db", db], "no run with id 99"),
        (["report", fake_run_db.run_id, "-o", tmp_path / "missing" / "x.html", "--db", db], "does not exist"),
        (["report", fake_run_db.run_id, "-o", tmp_path / "x.html", "--db", tmp_path / "none.db"], "no such database"),
        (["report", fake_run_db.run_id, "-o", tmp_path / "x.html", "--db", db, "--max-points", 3],
         "--max-points must be at least 10"),
    ]
    for args, message in cases:
        result = cli_invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("textclust: error: ") and message in result.stderr, result.stderr
        assert "Traceback" not in result.output
    failed = copy_db(db)
    con = sqlite3.connect(failed)
    con.execute("UPDATE runs SET status = 'failed', error = 'boom' WHERE id = ?", (fake_run_db.run_id,))
    con.commit()
    con.close()
    result = cli_invoke("report", fake_run_db.run_id, "-o", tmp_path / "f.html", "--db", failed)
    assert result.exit_code == 2
    assert f"run {fake_run_db.run_id} is failed: boom; only complete (or budget-stopped) runs have a report" in result.stderr
    assert not (tmp_path / "f.html").exists() and not (tmp_path / "x.html").exists()


def test_report_help(cli_invoke):
    result = cli_invoke("report", "--help")
    assert result.exit_code == 0
    for option in ("RUN_ID", "-o", "--output", "--format", "--map", "--max-points", "--db"):
        assert option in result.stdout


# --- optional sections: shown only when the data exists ------------------------------------------


def test_language_model_usage_and_hierarchy_are_shown_when_recorded(fake_run_db, copy_db, tmp_path, cli_invoke):
    db = copy_db(fake_run_db.db)
    con = sqlite3.connect(db)
    stats = json.loads(con.execute("SELECT stats FROM runs WHERE id = ?", (fake_run_db.run_id,)).fetchone()[0])
    stats["llm"] = {"model": "some-llm-1", "calls": 17, "prompt_tokens": 12345, "completion_tokens": 678,
                    "cost_usd": 0.0421}
    stats["hierarchy"] = [{"name": "money <problems>", "size": 40,
                           "children": [{"name": "refunds", "size": 20}, {"name": "fees", "size": 20}]}]
    con.execute("UPDATE runs SET stats = ? WHERE id = ?", (json.dumps(stats), fake_run_db.run_id))
    con.commit()
    con.close()
    html_out, md_out = tmp_path / "r.html", tmp_path / "r.md"
    assert cli_invoke("report", fake_run_db.run_id, "-o", html_out, "--db", db, "--map", "pca").exit_code == 0
    assert cli_invoke("report", fake_run_db.run_id, "-o", md_out, "--db", db).exit_code == 0
    text = Page(html_out.read_text(encoding="utf-8")).text
    assert "language model some-llm-1" in text
    assert "LLM calls 17" in text and "tokens 12345 in, 678 out" in text and "cost $0.0421" in text
    assert "no language model configured" not in text
    assert "Hierarchy money <problems> (40) refunds (20) fees (20)" in text
    md = md_out.read_text(encoding="utf-8")
    assert "| LLM calls, tokens, cost | 17 calls, 12345 in / 678 out, $0.0421 |" in md
    assert "## Hierarchy\n\n- money &lt;problems&gt; (40)\n  - refunds (20)\n  - fees (20)" in md


def test_max_listed_limits_the_lists_and_says_so(blobs, tmp_path, cli_invoke):
    # Scattered texts that HDBSCAN leaves as noise (the default k-means partition leaves none).
    from conftest import Blobs, build_fake_run

    rng = np.random.default_rng(1)
    stray = rng.normal(size=(12, blobs.X.shape[1]))
    stray = (stray / np.linalg.norm(stray, axis=1, keepdims=True)).astype(np.float32)
    noisy = Blobs(blobs.texts + [f"an unrelated remark number {i}" for i in range(12)], np.vstack([blobs.X, stray]),
                  np.concatenate([blobs.groups, np.full(12, -1)]), blobs.topics)
    sample_run = build_fake_run(tmp_path / "hdbscan.db", noisy, k=None, clusterer="hdbscan", reduction="none",
                                min_cluster_size=5)
    stats = stored_stats(sample_run.db, sample_run.run_id)
    n_uncovered = query(sample_run.db, "SELECT count(*) FROM text_results WHERE run_id = ? AND explanation_id IS NULL",
                        sample_run.run_id)[0][0]
    assert n_uncovered > 5
    html_out, md_out = tmp_path / "r.html", tmp_path / "r.md"
    for out in (html_out, md_out):
        result = cli_invoke("report", sample_run.run_id, "-o", out, "--db", sample_run.db, "--max-listed", 5,
                            "--map", "pca")
        assert result.exit_code == 0, result.output
    source = html_out.read_text(encoding="utf-8")
    uncovered = source.split('<section id="uncovered">')[1].split("</section>")[0]
    assert f"the first 5 of {n_uncovered} distinct texts" in Page(uncovered).text
    assert uncovered.count("<li>") == 5
    md = md_out.read_text(encoding="utf-8")
    section = md.split("## Uncovered texts")[1].split("\n## ")[0]
    assert f"_The first 5 of {n_uncovered} distinct texts._" in section
    assert sum(line.startswith("- ") for line in section.splitlines()) == 5
    assert f": {stats['n_uncovered']} rows ({n_uncovered} distinct texts)" in section


# --- hand-built results: the typed stats and configuration, rendered -------------------------------
# Built without a database or a pipeline run, from RunStats and RunConfig as the store reads them.


def typed_result(*, with_model: bool = True, notice: str | None = None, clusterer: str | None = "hdbscan",
                 config=None, **stats):
    """A complete RunResult of 6 input rows (1 empty, 1 uncovered, 1 left as noise, 1 in two explanations)."""
    from textclust.config import RunConfig
    from textclust.llm.config import LLMConfig
    from textclust.results import ClusterSummary, RunResult
    from textclust.stats import ModelUsage, RunStats

    if config is None:
        config = RunConfig()
        config.set("k", 2)
        config.set("candidates", [{"name": "Refunds", "explanation": "the refund is late"}])
        if with_model:
            config.model = LLMConfig(model="some-llm-1", base_url="http://127.0.0.1:8080/v1", max_calls=50)
            config.set("depth", 2)
    usage = ModelUsage(model="some-llm-1", server="http://127.0.0.1:8080/v1", calls=17, cached_calls=3,
                       failed_calls=1, prompt_tokens=12345, completion_tokens=678, cost_usd=0.0421, retries=2,
                       structured="json_schema", calls_by_stage={"propose": 3, "assign": 14, "describe": 0})
    values = dict(n_rows=6, n_texts=5, n_empty=1, n_duplicate_rows=0, clusterer=clusterer, n_clusters=2,
                  n_unclustered=1, n_candidates=4, n_selected=2, n_uncovered=1, n_multi=1, coverage=0.8,
                  objective=1.0, selection_status="optimal", rounds_used=2, embeddings_computed=5,
                  embeddings_cached=0, n_user_candidates=1, notice=notice)
    if with_model:
        values.update(model=usage, n_unparsed=1, notes=["a note"],
                      hierarchy=[{"name": "money <problems>", "explanation": "x", "size": 2,
                                  "children": [{"name": "late refund", "explanation": "it is late", "size": 1}]}])
    else:
        values.update(goal_notice="The goal asks for sentiment; seeded explanations ({candidates}) can steer it.")
    values.update(stats)

    def row(i, text, status, cluster, exp, score, also=""):
        name = {1: "Refunds", 2: "Delivery"}.get(exp)
        return {"row_index": i, "row_key": str(i), "text_id": f"t{i}" if text else None, "text": text,
                "status": status, "embedding_cluster": cluster, "explanation_number": exp, "explanation_name": name,
                "explanation": {1: "the refund is late", 2: "the parcel is late"}.get(exp), "score": score,
                "also_matches": also, "explained_by": "llm" if exp else None, "assigned_by": "llm" if exp else None}

    rows = [row(0, "refund late", "covered", 0, 1, 0.9), row(1, "refund never came", "covered", 0, 1, 0.8, "#2 Delivery"),
            row(2, "parcel lost", "covered", 1, 2, 0.7), row(3, "parcel <b>late</b>", "covered", -1, 2, 0.6),
            row(4, "hello there", "uncovered", 1, None, None), row(5, "", "empty", None, None, None)]
    clusters = [ClusterSummary(1, 11, "Refunds", "the refund is late", "seed", 2, 0.4, 2, 0.85, ["refund"],
                               ["refund late"], 1, ["refund"]),
                ClusterSummary(2, 12, "Delivery", "the parcel is late", "llm", 2, 0.4, 3, 0.65, ["parcel"],
                               ["parcel lost"], 1, [])]
    return RunResult(run_id=7, goal="why the customer is unhappy", status="complete",
                     explainer="llm" if with_model else "offline",
                     corpus={"id": 1, "name": "shop", "source": "shop.csv", "text_column": "text", "n_rows": 6,
                             "n_texts": 5, "n_empty": 1, "n_duplicate_rows": 0},
                     settings=config.to_dict(), stats=RunStats(**values), timings={"embed": 1.0, "explain": 2.5},
                     versions={"textclust": "test"}, created_at="2024-01-02T03:04:05", error=None,
                     clusters=clusters, rows=rows)


# The Settings line as reports printed it from the flat settings of schema version 3, for the
# configuration typed_result builds (the same names, order and values; the reduction's default
# has been "auto" since issue 16).
LEGACY_SETTINGS_LINE = (
    "Settings: k=2, clusterer=auto, reduction=auto, n_components=10, min_cluster_size=None, min_samples=5, "
    "max_cluster_share=0.5, embedding_model=all-MiniLM-L6-v2, rounds=None, min_share=0.005, lambda_miss=1.0, "
    "lambda_overlap=0.5, random_state=0, seeds=[{'name': 'Refunds', 'explanation': 'the refund is late'}], "
    "only_candidates=False, llm={'model': 'some-llm-1', 'server': 'http://127.0.0.1:8080/v1', 'temperature': 0.0, "
    "'seed': 0, 'max_output_tokens': 2048, 'api_key_env': 'OPENAI_API_KEY'}, examples=None, depth=2, n_samples=40, "
    "n_explanations=8, batch_size=10, prefilter=5, escalations=3, merge_threshold=0.9, max_candidate_share=None, "
    "max_chars=1000")


def _report(result, **options):
    from textclust.report.model import ReportOptions, report_from_result

    return report_from_result(result, ReportOptions(**options))


def test_typed_report_shows_the_settings_as_before():
    from textclust.report.markdown import report_markdown

    md = report_markdown(_report(typed_result()))
    assert "\n" + LEGACY_SETTINGS_LINE + "\n" in md
    offline = report_markdown(_report(typed_result(with_model=False)))
    assert "only_candidates=False, llm=None, examples=None, depth=1," in offline


@pytest.mark.parametrize("server", ["gguf", "http://127.0.0.1:8080/v1", "default (OPENAI_BASE_URL or api.openai.com)"])
def test_settings_stored_flat_read_the_same_after_the_upgrade(server, tmp_path):
    """A run stored with flat settings (schema ≤ 3) lists the same settings once upgraded to the tree."""
    from textclust.config import RunConfig, upgrade_flat_settings
    from textclust.report.model import settings_shown

    if server == "gguf":
        model_file = tmp_path / "x.gguf"
        model_file.write_bytes(b"GGUF")
        server = f"gguf:{model_file}"

    flat = {"k": 2, "clusterer": "auto", "reduction": "umap", "n_components": 10, "min_cluster_size": None,
            "min_samples": 5, "max_cluster_share": 0.5, "embedding_model": "all-MiniLM-L6-v2", "rounds": None,
            "min_share": 0.005, "lambda_miss": 1.0, "lambda_overlap": 0.5, "random_state": 0,
            "seeds": [{"name": "Refunds", "explanation": "the refund is late"}], "only_candidates": False,
            "llm": {"model": "m", "server": server, "temperature": 0.2, "seed": 3,
                    "max_output_tokens": 512, "api_key_env": "KEY"},
            "examples": ["e"], "depth": 2, "n_samples": 40, "n_explanations": 8, "batch_size": 10, "prefilter": 5,
            "escalations": 3, "merge_threshold": 0.9, "max_candidate_share": None, "max_chars": 1000}
    shown = settings_shown(RunConfig.from_dict(upgrade_flat_settings(flat)))
    assert shown == flat and list(shown) == list(flat)


def test_typed_report_shows_model_usage_hierarchy_and_counts():
    from textclust.report.html import render_html
    from textclust.report.markdown import report_markdown
    from textclust.report.model import report_json

    report = _report(typed_result())
    assert report["models"] == {"embedding model": "all-MiniLM-L6-v2", "explainer": "llm",
                                "language model": "some-llm-1"}
    assert report["counts"] == {"rows": 6, "texts": 5, "empty": 1, "duplicate_rows": 0, "non_empty": 5,
                                "covered": 4, "uncovered": 1, "multi": 1, "unclustered": 1, "coverage": 0.8,
                                "selected": 2, "candidates": 4, "clusters": 2, "rounds": 2}
    assert report["clusterer"] == "hdbscan" and report["overlaps"]["n_rows"] == 1
    md = report_markdown(report)
    assert "| LLM calls, tokens, cost | 17 calls, 12345 in / 678 out, $0.0421 |" in md
    assert "| language model | some-llm-1 |" in md and "| embedding model | all-MiniLM-L6-v2 |" in md
    assert "## Hierarchy\n\n- money &lt;problems&gt; (2)\n  - late refund (1)" in md
    text = Page(render_html(report)).text
    assert "LLM calls 17" in text and "tokens 12345 in, 678 out" in text and "cost $0.0421" in text
    assert "no language model configured" not in text
    assert "Hierarchy money <problems> (2) late refund (1)" in text
    data = json.loads(json.dumps(report_json(report), default=str))
    assert data["llm"] == report["result"].stats.model.to_dict()  # the model usage as stored
    assert data["llm"]["calls_by_stage"] == {"propose": 3, "assign": 14, "describe": 0}
    assert data["hierarchy"][0]["name"] == "money <problems>"
    assert data["run_result"]["stats"]["llm"]["calls"] == 17 and data["run_result"]["stats"]["n_seeds"] == 1


def test_typed_report_without_a_model():
    from textclust.report.html import render_html
    from textclust.report.markdown import report_markdown
    from textclust.report.model import report_json

    report = _report(typed_result(with_model=False, notice=OFFLINE_NOTICE))
    assert report["llm"] is None and report["llm_note"] == "no language model configured"
    assert report["models"]["language model"] == "no language model configured" and report["hierarchy"] is None
    assert "| LLM calls, tokens, cost | no language model configured |" in report_markdown(report)
    assert 'id="llm-note">no language model configured<' in render_html(report)
    data = report_json(report)
    assert data["llm"] is None and data["notice"] == OFFLINE_NOTICE


@pytest.mark.parametrize(("chosen", "k", "used"), [("auto", None, "hdbscan"), ("auto", 3, "kmeans"),
                                                   ("kmeans", 3, "kmeans"), ("hdbscan", 3, "hdbscan")])
def test_clusterer_of_runs_stored_before_stats_recorded_it(chosen, k, used):
    from textclust.config import RunConfig

    config = RunConfig()
    config.set("clusterer", chosen)
    config.set("k", k)
    assert _report(typed_result(clusterer=None, config=config))["clusterer"] == used
    assert _report(typed_result(clusterer="none", config=config))["clusterer"] == "none"


def test_map_reads_the_embeddings_of_the_configured_model():
    from textclust.config import RunConfig
    from textclust.report.model import ReportOptions, map_points

    asked = []

    class Store:
        def cached_embeddings(self, model, text_ids):
            asked.append(model)
            rng = np.random.default_rng(0)
            return {t: rng.normal(size=8).astype(np.float32) for t in text_ids}

    config = RunConfig()
    config.embedding.model = FAKE_MODEL
    result = typed_result(config=config)
    points = map_points(Store(), result, ReportOptions(reduction="pca"))
    assert asked == [FAKE_MODEL] and points["embedding_model"] == FAKE_MODEL and points["n_points"] == 5


def test_typed_summary_and_export(tmp_path):
    from rich.console import Console

    from textclust.report import export_run, print_summary

    console = Console(record=True, width=200, color_system=None)
    print_summary(typed_result(), console)
    out = console.export_text()
    assert ("Covered 4 of 5 non-empty rows (80.0%); uncovered (fit no explanation): 1 row; in more than one explanation: "
            "1 row; left as noise by hdbscan clustering: 1 row; unparsed (the model's answer could not be used): 1 row") in flat(out)
    assert ("Language model some-llm-1 at http://127.0.0.1:8080/v1: 19 requests sent (3 propose, 14 assign; 2 retries), "
            "3 answered from the cache, 1 failed; 12345 prompt + 678 completion tokens; $0.0421") in out
    assert "2 explanations selected from 4 candidates in 2 round(s); embeddings 5 computed, 0 cached; time" in out
    assert "Sub-explanations (depth 2)" in out and "late refund (1): it is late" in out
    console = Console(record=True, width=200, color_system=None)
    print_summary(typed_result(), console, spell=lambda name: "--" + name)  # the CLI spells its flags
    assert "Sub-explanations (--depth 2)" in console.export_text()
    console = Console(record=True, width=200, color_system=None)
    print_summary(typed_result(with_model=False, clusterer="none"), console)
    out = console.export_text()
    assert "left as noise" not in out and "Language model" not in out
    assert "Goal, offline: The goal asks for sentiment; seeded explanations (candidates) can steer" in out

    for fmt in ("json", "md", "csv"):
        export_run(typed_result(), fmt, tmp_path / f"run.{fmt}")
    data = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert data["stats"] == typed_result().stats.to_dict() and data["stats"]["llm_notes"] == ["a note"]
    md = (tmp_path / "run.md").read_text(encoding="utf-8")
    assert LEGACY_SETTINGS_LINE in md and "| 3 | 3 | parcel &lt;b&gt;late&lt;/b&gt; | #2 | Delivery | 0.6 |" in md


def test_stored_texts_name_settings_as_the_reader_knows_them(tmp_path):
    """A notice names settings as {name}: reports spell them by name, or as `spell` says (the CLI: flags)."""
    from rich.console import Console

    from textclust.report import export_run, print_summary
    from textclust.report.markdown import report_markdown
    from textclust.report.model import report_json

    notice = "Budget ran out: re-run with a larger {max_calls}/{max_tokens}; {not_a_setting} stays."
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    result = typed_result(notice=notice, stop_reason="{max_calls} reached")
    by_name = "Budget ran out: re-run with a larger max_calls/max_tokens; {not_a_setting} stays."
    as_flags = "Budget ran out: re-run with a larger --max-calls/--max-tokens; {not_a_setting} stays."
    assert _report(result)["notice"] == by_name
    report = _report(result, spell=flag)
    assert report["notice"] == as_flags and f"> **Note:** {as_flags}" in report_markdown(report)
    data = report_json(report)
    assert data["run_result"]["notice"] == as_flags and data["run_result"]["stats"]["stop_reason"] == "--max-calls reached"
    console = Console(record=True, width=300, color_system=None)
    print_summary(result, console, spell=flag)
    assert f"Note: {as_flags}" in console.export_text()
    export_run(result, "json", tmp_path / "run.json", spell=flag)
    assert json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["notice"] == as_flags
    assert result.stats.notice == notice  # the stored text is left as stored
    assert result.notice == by_name  # what a Python caller reads names the keywords


# --- readability (issue "The first hour of a new user", item 10) -----------------------------------


class ClippedTexts(HTMLParser):
    """Each <details class="clip"> of a page: the start it shows closed, and the text it opens to."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.clips: list[dict] = []
        self.outside: list[str] = []  # the page's text outside these elements
        self._in: str | None = None  # "start", "label" or "full" while inside a clip
        self.feed(source)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details" and attrs.get("class") == "clip":
            self.clips.append({"start": "", "full": "", "open": "open" in attrs})
            self._in = "label"
        elif self._in and tag == "span" and attrs.get("class") == "start":
            self._in = "start"

    def handle_endtag(self, tag):
        if self._in == "start" and tag == "span":
            self._in = "label"
        elif self._in and tag == "summary":
            self._in = "full"
        elif self._in and tag == "details":
            self._in = None

    def handle_data(self, data):
        if self._in in ("start", "full"):
            self.clips[-1][self._in] += data
        elif self._in is None:
            self.outside.append(data)


def test_long_texts_show_their_start_and_open_whole():
    """A listed text longer than 300 characters shows its first ≤300, cut at a word, and opens to
    the whole text in a <details> element (no script); a short text is shown as it is."""
    from textclust.report.html import render_html

    def article(topic: str) -> str:  # 1,500+ characters, like a news article
        return f"<{topic}> " + " ".join(f"{topic}{i} sentence & more." for i in range(100))

    result = typed_result()
    long_texts = {0: article("refund"), 1: article("overlap"), 4: article("uncovered")}  # representative, in two, uncovered
    for i, text in long_texts.items():
        result.rows[i]["text"] = text
    source = render_html(_report(result))
    page = ClippedTexts(source.split("</head>", 1)[1])  # the page, without the inlined plotly.js
    assert len(page.clips) >= 3
    for text in long_texts.values():
        clips = [c for c in page.clips if c["full"] == text]
        assert clips, text[:40]
        for clip in clips:
            start = clip["start"]
            assert start.endswith("…") and len(start) <= 300 and not clip["open"]
            assert text.startswith(start[:-1]) and text[len(start) - 1] in " .,;:-"  # no word cut in two
            assert len(start) > 200  # not cut further back than needed
        assert text not in " ".join(page.outside)  # nowhere in full outside its <details>
    assert "parcel lost" in " ".join(page.outside) and all(c["full"] != "parcel lost" for c in page.clips)
    # The whole text is escaped like any other: its "<refund>" is text, not a tag.
    assert "&lt;refund&gt; refund0" in source and "<refund>" not in source


def _many_explanations(n: int) -> dict:
    """A report of ``n`` explanations (sizes falling with the number) and a map with points of each."""
    report = _report(typed_result())
    first = report["explanations"][0]
    report["explanations"] = [{**first, "number": i, "name": f"topic{i}", "label": f"#{i} topic{i}",
                               "size": 100 - i, "representative": []} for i in range(1, n + 1)]
    labels = [e["label"] for e in report["explanations"]] + ["uncovered"]
    points = [{"x": float(i), "y": float(j), "text": f"text {i}-{j}", "label": label}
              for i, label in enumerate(labels) for j in range(3)]
    report["map"] = {"n_total": len(points), "sampled": False, "reduction": "pca", "embedding_model": FAKE_MODEL,
                     "n_points": len(points), "points": points, "n_missing": 0, "unavailable": None}
    return report


def _lab(colour: str, simulate=None) -> np.ndarray:
    """CIE L*a*b* of an sRGB colour, optionally as a colour-blind viewer sees it (``simulate``: a
    3x3 matrix on linear RGB)."""
    rgb = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    if simulate is not None:
        linear = np.clip(simulate @ linear, 0, 1)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    x, y, z = xyz / np.array([0.95047, 1.0, 1.08883])
    f = lambda t: np.cbrt(t) if t > 0.008856 else 7.787 * t + 16 / 116  # noqa: E731
    return np.array([116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))])


# Machado, Oliveira and Fernandes (2009), severity 1.0: how protanopes, deuteranopes and tritanopes see.
COLOUR_BLINDNESS = {
    "typical": None,
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}


@pytest.mark.parametrize("n", [3, 8, 9, 14])
def test_explanation_colours_are_distinct_and_never_the_uncovered_grey(n):
    from textclust.report.html import OTHER_COLOUR, UNCOVERED_COLOUR, colour_map

    report = _many_explanations(n)
    colours = colour_map(report)
    own = [colours[e["label"]] for e in report["explanations"]]
    distinct = min(n, 8)  # eight hues, then the smallest explanations share one neutral colour
    assert len(set(own[:distinct])) == distinct and OTHER_COLOUR not in own[:distinct]
    assert own[distinct:] == [OTHER_COLOUR] * (n - distinct)
    assert colours["uncovered"] == UNCOVERED_COLOUR and UNCOVERED_COLOUR not in own
    # Every two colours a reader must tell apart stay apart (CIE76 ΔE ≥ 15) for typical vision and
    # for each kind of dichromacy. (plotly's palette, used before, had two pinks 3 apart for deuteranopes.)
    shown = sorted(set(own) | {UNCOVERED_COLOUR})
    for vision, simulate in COLOUR_BLINDNESS.items():
        lab = {c: _lab(c, simulate) for c in shown}
        closest = min((float(np.linalg.norm(lab[a] - lab[b])), a, b) for i, a in enumerate(shown) for b in shown[i + 1:])
        assert closest[0] >= 15, (vision, closest)


def test_the_map_groups_the_smallest_explanations_as_other():
    from textclust.report.html import OTHER_COLOUR, UNCOVERED_COLOUR, colour_map, map_figure, render_html

    report = _many_explanations(11)
    colours = colour_map(report)
    traces = map_figure(report, colours).data
    assert [t.name for t in traces] == [f"#{i} topic{i}" for i in range(1, 9)] + ["other (3 explanations)", "uncovered"]
    other, uncovered = traces[-2], traces[-1]
    assert other.marker.color == OTHER_COLOUR and uncovered.marker.color == UNCOVERED_COLOUR
    assert len(other.x) == 9  # the points of #9, #10 and #11, each hover naming its own explanation
    assert {h.split("</b>")[0] for h in other.hovertext} == {"<b>#9 topic9", "<b>#10 topic10", "<b>#11 topic11"}
    assert len({t.marker.color for t in traces}) == len(traces)
    text = Page(render_html(report)).text
    assert "light grey: uncovered; dark grey: other (3 explanations), the smallest" in text
