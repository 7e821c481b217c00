"""`textclust summarize` and `textclust.summarize`: a run as an overview, one bullet per
explanation and what fits nowhere; the model's overview only when its figures are the run's.

The runs are the fast fake-embedder runs of conftest (no model is loaded); the model is a
scripted server on 127.0.0.1 (tests/llm_server.py), reached over real HTTP."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner

from tests.llm_server import ScriptedServer, chat_completion
from textclust.cli import cli
from textclust.results import load_run


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory, blobs):
    """A complete run whose HDBSCAN clustering leaves scattered texts uncovered (what fits nowhere)."""
    from conftest import Blobs, build_fake_run

    rng = np.random.default_rng(1)
    stray = rng.normal(size=(12, blobs.X.shape[1]))
    stray = (stray / np.linalg.norm(stray, axis=1, keepdims=True)).astype(np.float32)
    noisy = Blobs(blobs.texts + [f"an unrelated remark number {i}" for i in range(12)], np.vstack([blobs.X, stray]),
                  np.concatenate([blobs.groups, np.full(12, -1)]), blobs.topics)
    return build_fake_run(tmp_path_factory.mktemp("summarize") / "noisy.db", noisy, k=None, clusterer="hdbscan",
                          reduction="none", min_cluster_size=5)


def invoke(*args):
    """The CLI with a (fake) API key for the scripted server; stdout and stderr kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], env={"OPENAI_API_KEY": "sk-test"})


def one_line_error(result, *words):
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("textclust: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_markdown_of_a_stored_run_has_every_explanation_and_what_fits_nowhere(noisy_run, copy_db):
    db = copy_db(noisy_run.db)
    result = load_run(db, noisy_run.run_id)
    assert result.clusters and result.stats.n_uncovered > 0
    out = invoke("summarize", "--run", noisy_run.run_id, "--db", db)
    assert out.exit_code == 0, out.output
    md = out.stdout
    assert md.startswith(f"# Summary of run {noisy_run.run_id}: ")
    overview = next(line for line in md.splitlines() if line.startswith("**Overview"))
    assert overview.startswith("**Overview (template, no language model):** ")
    # The template's figures are the run's (largest explanation, coverage).
    first = result.clusters[0]
    assert f"#1 {first.name} ({first.share:.1%})" in overview
    assert f"cover {result.coverage:.1%} of the non-empty rows" in overview
    for c in result.clusters:  # one bullet each: its share, size and first example as the quote
        bullet = f"- **#{c.number} {c.name}**: {c.share:.1%} ({c.size} rows). {c.explanation}"
        assert bullet in md
        assert f"  > {c.examples[0]}" in md
    nowhere = md.split("## What fits nowhere\n")[1]
    non_empty = result.corpus["n_rows"] - result.corpus["n_empty"]
    share = result.stats.n_uncovered / non_empty
    assert f"{result.stats.n_uncovered} rows ({share:.1%}) fit no explanation, for example:" in nowhere
    uncovered = [r["text"] for r in result.rows if r["status"] == "uncovered"]
    assert f"\n- {uncovered[0]}\n" in nowhere


def test_text_and_json_carry_the_same_facts(noisy_run, copy_db):
    db = copy_db(noisy_run.db)
    result = load_run(db, noisy_run.run_id)
    text = invoke("summarize", "--run", noisy_run.run_id, "--db", db, "--format", "text")
    assert text.exit_code == 0, text.output
    assert "**" not in text.stdout and "\n#" not in text.stdout and not text.stdout.startswith("#")
    assert "Overview (template, no language model): The run grouped" in text.stdout
    for c in result.clusters:
        assert f"- #{c.number} {c.name}: {c.share:.1%} ({c.size} rows)." in text.stdout

    out = invoke("summarize", "--run", noisy_run.run_id, "--db", db, "--format", "json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["overview_from_model"] is False and data["overview_by"] == "template, no language model"
    assert data["n_explanations"] == len(result.clusters)
    assert [(e["number"], e["name"], e["size"], e["share"]) for e in data["explanations"]] == \
        [(c.number, c.name, c.size, c.share) for c in result.clusters]
    assert data["n_rows"] == result.corpus["n_rows"] and data["n_texts"] == result.corpus["n_texts"]
    assert data["n_uncovered"] == result.stats.n_uncovered and data["coverage"] == result.coverage
    uncovered = {r["text"] for r in result.rows if r["status"] == "uncovered"}
    assert data["uncovered_examples"] and set(data["uncovered_examples"]) <= uncovered
    assert data["overview"] in text.stdout  # the same overview in every format


def test_run_latest_is_the_last_run(fake_run_db, copy_db):
    db = copy_db(fake_run_db.db)
    latest = invoke("summarize", "--run", "latest", "--db", db)
    by_id = invoke("summarize", "--run", fake_run_db.run_id, "--db", db)
    assert latest.exit_code == 0, latest.output
    assert latest.stdout == by_id.stdout
    assert "Nothing: every non-empty row fits an explanation." in latest.stdout  # k-means: a partition


@pytest.mark.parametrize("args, words", [
    (["data.csv", "--run", "1"], ["not both"]),
    ([], ["INPUT", "--run RUN_ID"]),
    (["data.csv"], ["--goal"]),
    (["--run", "1", "--k", "3"], ["--k", "--run"]),
    (["--run", "1", "--goal", "why"], ["--goal"]),
    (["--run", "7"], ["no run with id 7"]),
])
def test_input_and_run_are_one_or_the_other(fake_run_db, copy_db, make_file, args, words):
    db = copy_db(fake_run_db.db)
    args = [str(make_file("data.csv", "text\nhello\nworld\n")) if a == "data.csv" else a for a in args]
    one_line_error(invoke("summarize", *args, "--db", db), *words)


def test_input_runs_or_reuses_a_run(fake_run_db, copy_db, make_file, blobs):
    # The fake run's texts as a file, with its settings: the embeddings come from the copy's cache.
    db = copy_db(fake_run_db.db)
    data = make_file("blobs.csv", "text\n" + "".join(f'"{t}"\n' for t in blobs.texts))
    args = ["summarize", data, "--goal", "which topic the text is about", "--k", 3, "--reduction", "none",
            "--embedding-model", "test-fake-8d", "--no-llm", "--db", db]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    run_id = int(first.stdout.split("# Summary of run ")[1].split(":")[0])
    second = invoke(*args)  # the same input, goal and settings: that run, reused
    assert second.exit_code == 0, second.output
    assert "reusing" in second.stderr.lower()
    assert second.stdout == first.stdout
    assert f"# Summary of run {run_id}: " in second.stdout
    assert sum(f"- **#{c.number} " in first.stdout for c in load_run(db, run_id).clusters) == 3


def overview_reply(text):
    return chat_completion(json.dumps({"overview": text}))


def model_args(server, run, db, *extra):
    return ["summarize", "--run", run.run_id, "--db", db, "--llm-model", "scripted",
            "--llm-base-url", server.base_url, *extra]


def test_the_models_overview_with_the_runs_figures_is_shown_and_cached(noisy_run, copy_db):
    db = copy_db(noisy_run.db)
    result = load_run(db, noisy_run.run_id)
    first, second = result.clusters[:2]
    good = (f"Most texts are about #1 {first.name} ({first.share:.1%}, {first.size} rows), then {second.name} "
            f"({second.share * 100:.0f}%); {result.stats.n_uncovered} rows fit nowhere.")
    with ScriptedServer(lambda request: overview_reply(good)) as server:
        out = invoke(*model_args(server, noisy_run, db))
        assert out.exit_code == 0, out.output
        assert server.calls == 1
        # The prompt carries the run's facts.
        prompt = server.requests[0]["body"]["messages"][-1]["content"]
        assert f'"share": "{first.share:.1%}"' in prompt and f'"rows": {first.size}' in prompt
        assert f"**Overview (language model scripted, figures checked against the run):** {good}" in out.stdout
        assert "template" not in out.stdout.split("## Explanations")[0]
        again = invoke(*model_args(server, noisy_run, db))
        assert again.exit_code == 0, again.output
        assert server.calls == 1  # answered from the store's cache: nothing sent
        assert again.stdout == out.stdout
    con = sqlite3.connect(db)
    stages = [row[0] for row in con.execute("SELECT stage FROM llm_calls WHERE run_id = ?", (noisy_run.run_id,))]
    con.close()
    assert stages and set(stages) == {"summarize"}  # recorded under the run (textclust log)


def test_a_figure_the_run_does_not_have_falls_back_to_the_template(noisy_run, copy_db):
    from textclust.report.summarize import run_figures, summary_facts

    db = copy_db(noisy_run.db)
    result = load_run(db, noisy_run.run_id)
    _, percents, _ = run_figures(summary_facts(result))
    assert 72.0 not in percents
    wrong = f"Most texts are about {result.clusters[0].name}, about 72% of them."
    with ScriptedServer(lambda request: overview_reply(wrong)) as server:
        out = invoke(*model_args(server, noisy_run, db, "--format", "json"))
        assert out.exit_code == 0, out.output
        assert server.calls == 1
    data = json.loads(out.stdout)
    assert data["overview_from_model"] is False
    assert data["overview"].startswith("The run grouped") and "72%" not in data["overview"]
    assert any("stated figures the run does not have (72%); template shown" in n for n in data["notes"])
    assert "72%" not in json.dumps(data["explanations"])


def test_figure_check(noisy_run):
    from textclust.report.summarize import foreign_figures, summary_facts

    s = summary_facts(load_run(noisy_run.db, noisy_run.run_id))
    p = s.points[0]
    n = len(s.points)
    assert foreign_figures(f"#{p.number} holds {p.size} rows, {p.share:.1%} or {p.share * 100:.0f} percent; "
                           f"{n} explanations, {s.n_rows:,} rows.", s) == []
    assert foreign_figures(f"#{n + 1} is new", s) == [f"#{n + 1}"]
    assert foreign_figures(f"{p.size + 1} rows and {p.share * 100 + 0.3:.1f}%", s) == \
        [str(p.size + 1), f"{p.share * 100 + 0.3:.1f}%"]


def test_python_summarize(noisy_run, copy_db):
    import textclust

    db = copy_db(noisy_run.db)
    summary = textclust.summarize(noisy_run.run_id, db=db)
    assert str(summary) == summary.render("md")
    assert summary.render("md") == invoke("summarize", "--run", noisy_run.run_id, "--db", db).stdout
    from_result = textclust.summarize(load_run(db, noisy_run.run_id), llm=None)
    assert from_result.to_dict() == summary.to_dict()
    with pytest.raises(textclust.TextclustError, match="no such database"):
        textclust.summarize("latest", db=db.parent / "missing.db")
