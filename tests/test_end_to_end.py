"""End to end with the real embedding model on data/complaints.csv.

One default ``textclust run`` of the sample is shared by the whole session
(``sample_run`` in conftest.py). Tests that add runs work on copies of its database,
where the embeddings are already cached.
"""

from __future__ import annotations

import csv
import json
import sqlite3

import pandas as pd
import pytest
from sklearn.metrics import normalized_mutual_info_score

import textclust
from conftest import GOAL, table_counts
from textclust.config import RunConfig
from textclust.explain import OFFLINE_NOTICE
from textclust.ingest import normalize_text
from textclust.results import ROW_COLUMNS, ClusterSummary, RunResult

N_ROWS, N_TEXTS, N_EMPTY, N_DUPLICATES, N_REASONS = 309, 300, 4, 5, 6
# A floor for clustering quality against the 6 gold reasons. A labelling that ignores
# the text has NMI ≈ 0 (≈ 0.02 for 6 random clusters of 305 texts); the same pipeline
# with k-means on MiniLM reaches ≈ 0.65 here. 0.3 catches a broken pipeline (collapsed
# clusters, misaligned rows) without depending on the exact numbers of one machine.
NMI_FLOOR = 0.3
ACC_FLOOR = 0.4  # chance with 6 balanced classes is ≈ 0.2


def flat(text: str) -> str:
    """Whitespace-insensitive view of terminal output (rich wraps long lines)."""
    return " ".join(text.split())


def stored_run(db, run_id):
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return dict(con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())
    finally:
        con.close()


@pytest.fixture(scope="module")
def gold(sample_path):
    frame = pd.read_csv(sample_path, dtype=str, keep_default_na=False)
    assert len(frame) == N_ROWS
    return frame


# --- textclust run ----------------------------------------------------------------------------


def test_run_prints_summary_with_offline_notice(sample_run):
    out = flat(sample_run.stdout)
    assert sample_run.exit_code == 0
    assert flat(OFFLINE_NOTICE) in out
    assert "described by words its members contain" in out
    assert f"Run {sample_run.run_id} · complaints · status complete" in out
    assert f"Goal: {GOAL}" in out
    assert f"{N_ROWS} rows → {N_TEXTS} distinct texts ({N_EMPTY} empty rows, {N_DUPLICATES} duplicate rows)" in out
    # The explanations table: title and header row.
    assert "Explanations" in sample_run.stdout
    for header in ("explanation", "rows", "share", "examples"):
        assert header in sample_run.stdout
    assert f"of {N_ROWS - N_EMPTY} non-empty rows" in out


def test_run_logs_progress_on_stderr(sample_run):
    err = sample_run.stderr
    assert f"{N_ROWS} rows, {N_TEXTS} distinct texts, {N_EMPTY} empty, {N_DUPLICATES} duplicate rows (column 'text')" in err
    assert f"embeddings: {N_TEXTS} computed, 0 from cache (all-MiniLM-L6-v2)" in err
    assert "clusters: " in err and "explanations: " in err
    assert "Traceback" not in err and "error" not in err.lower()


def test_run_is_stored_complete(sample_run):
    run = stored_run(sample_run.db, sample_run.run_id)
    assert run["status"] == "complete"
    assert run["error"] is None
    assert run["finished_at"] is not None
    assert run["goal"] == GOAL
    assert run["explainer"] == "offline-extractive"
    assert json.loads(run["settings"]) == RunConfig().to_dict()
    versions = json.loads(run["versions"])
    assert versions["textclust"] == textclust.__version__
    assert set(json.loads(run["timings"])) == {"embed", "cluster", "explain"}
    stats = json.loads(run["stats"])
    assert (stats["n_rows"], stats["n_texts"], stats["n_empty"], stats["n_duplicate_rows"]) == (
        N_ROWS, N_TEXTS, N_EMPTY, N_DUPLICATES)
    assert stats["embeddings_computed"] == N_TEXTS and stats["embeddings_cached"] == 0
    assert stats["n_selected"] >= 1
    assert 0.0 <= stats["coverage"] <= 1.0
    assert stats["notice"] == OFFLINE_NOTICE
    counts = table_counts(sample_run.db, ("runs", "corpora", "texts", "input_rows", "embeddings", "text_results"))
    assert counts == {"runs": 1, "corpora": 1, "texts": N_TEXTS, "input_rows": N_ROWS,
                      "embeddings": N_TEXTS, "text_results": N_TEXTS}
    con = sqlite3.connect(sample_run.db)
    try:
        selected = con.execute("SELECT count(*) FROM explanations WHERE run_id = ? AND selected",
                               (sample_run.run_id,)).fetchone()[0]
    finally:
        con.close()
    assert selected == stats["n_selected"]


def test_second_identical_run_computes_zero_embeddings(sample_run, sample_path, copy_db, cli_invoke, monkeypatch):
    from textclust.embed import Embedder

    db = copy_db(sample_run.db)
    # A re-run over cached texts embeds nothing again: texts, goal and candidate terms all come
    # from the database's caches (issue 11, item 5), so the model is never asked.
    assert cli_invoke("export", sample_run.run_id, "--format", "json", "-o", db.with_suffix(".json"),
                      "--db", db).exit_code == 0
    encode = Embedder.encode
    encoded = []

    def recording(self, texts, *args, **kwargs):
        encoded.extend(texts)
        return encode(self, texts, *args, **kwargs)

    monkeypatch.setattr(Embedder, "encode", recording)
    # --new: an identical complete run is otherwise reused, not computed again
    result = cli_invoke("run", sample_path, "--goal", GOAL, "--db", db, "--json", "--new")
    assert result.exit_code == 0, result.output
    assert f"embeddings: 0 computed, {N_TEXTS} from cache" in result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "complete"
    assert data["run_id"] != sample_run.run_id
    assert data["stats"]["embeddings_computed"] == 0
    assert data["stats"]["embeddings_cached"] == N_TEXTS
    assert "rows" not in data
    rows = json.loads(db.with_suffix(".json").read_text())["rows"]
    corpus_texts = {r["text"] for r in rows if r["text"]}
    assert corpus_texts
    assert encoded == []  # goal and terms too come from the cache: the model is never asked
    counts = table_counts(db)
    assert counts["runs"] == 2
    assert counts["corpora"] == 1  # the same corpus, stored once
    assert counts["embeddings"] == N_TEXTS
    # Same inputs, same seed: the same explanations.
    first = json.loads(cli_invoke("show", sample_run.run_id, "--json", "--db", db).stdout)
    assert [(c["name"], c["size"]) for c in data["clusters"]] == [(c["name"], c["size"]) for c in first["clusters"]]


# --- runs / show -------------------------------------------------------------------------------


def test_runs_lists_the_run(sample_run, cli_invoke):
    table = cli_invoke("runs", "--db", sample_run.db)
    assert table.exit_code == 0
    assert "Runs" in table.stdout and "complete" in table.stdout
    listed = cli_invoke("runs", "--json", "--db", sample_run.db)
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    mine = [r for r in rows if r["id"] == sample_run.run_id]
    assert len(mine) == 1
    row = mine[0]
    stats = json.loads(stored_run(sample_run.db, sample_run.run_id)["stats"])
    assert row["status"] == "complete"
    assert row["corpus"] == "complaints"
    assert row["n_texts"] == N_TEXTS
    assert row["goal"] == GOAL
    assert row["n_selected"] == stats["n_selected"]
    assert row["coverage"] == pytest.approx(stats["coverage"])


def test_runs_on_empty_database(cli_invoke, tmp_path):
    db = tmp_path / "empty.db"
    textclust.Database(db).close()
    result = cli_invoke("runs", "--db", db)
    assert result.exit_code == 0
    assert result.stdout.strip() == f"no runs in {db}"
    assert json.loads(cli_invoke("runs", "--json", "--db", db).stdout) == []


def test_show_json(sample_run, cli_invoke):
    result = cli_invoke("show", sample_run.run_id, "--json", "--db", sample_run.db)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["run_id"] == sample_run.run_id
    assert data["status"] == "complete"
    assert data["goal"] == GOAL
    assert "rows" not in data
    assert data["corpus"]["n_rows"] == N_ROWS and data["corpus"]["text_column"] == "text"
    stats = data["stats"]
    assert stats["notice"] == OFFLINE_NOTICE
    assert len(data["clusters"]) == stats["n_selected"]
    sizes = [c["size"] for c in data["clusters"]]
    assert sizes == sorted(sizes, reverse=True)
    assert sum(sizes) == N_ROWS - N_EMPTY - stats["n_uncovered"]
    for cluster in data["clusters"]:
        # Truthful wording (issue 25): a predicate only when it holds for >= 90% of the members,
        # else an honest "similar in meaning to …" with the real shares of its words.
        if cluster["explanation"].startswith("mentions "):
            assert cluster["truth"] is not None and cluster["truth"] >= 0.9
        else:
            assert cluster["explanation"].startswith("similar in meaning to ")
        assert cluster["source"] == "extractive"
        assert 1 <= len(cluster["examples"]) <= 2
        assert cluster["matched"] >= cluster["size"]


def test_show_text_matches_json(sample_run, cli_invoke):
    data = json.loads(cli_invoke("show", sample_run.run_id, "--json", "--db", sample_run.db).stdout)
    result = cli_invoke("show", sample_run.run_id, "--db", sample_run.db)
    assert result.exit_code == 0
    out = flat(result.stdout)
    assert f"Run {sample_run.run_id}" in out and "status complete" in out
    assert flat(OFFLINE_NOTICE) in out
    for cluster in data["clusters"]:
        assert cluster["name"] in out
    stats = data["stats"]
    assert f"{stats['n_selected']} explanations selected from {stats['n_candidates']} candidates" in out


# --- export ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(sample_run, tmp_path_factory):
    """Export the shared run once in every format."""
    from click.testing import CliRunner

    from textclust.cli import cli

    folder = tmp_path_factory.mktemp("exports")
    paths, logs = {}, {}
    for fmt in ("csv", "json", "md"):
        paths[fmt] = folder / f"run.{fmt}"
        result = CliRunner().invoke(cli, ["export", str(sample_run.run_id), "--format", fmt, "-o", str(paths[fmt]),
                                          "--db", str(sample_run.db)])
        assert result.exit_code == 0, result.output
        logs[fmt] = result.stderr
    return paths, logs


def test_export_csv_one_row_per_input_row(exports, sample_run, gold):
    paths, logs = exports
    assert logs["csv"].strip() == f"wrote {N_ROWS} rows of run {sample_run.run_id} to {paths['csv']}"
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        assert reader.fieldnames == ROW_COLUMNS
    assert len(rows) == N_ROWS
    assert [int(r["row_index"]) for r in rows] == list(range(N_ROWS))
    empty = [r for r in rows if r["status"] == "empty"]
    assert len(empty) == N_EMPTY
    for r in empty:
        assert (r["text"] == "" and r["text_id"] == "" and r["explanation_number"] == ""
                and r["embedding_cluster"] == "")
    # Rows line up with the input file: same text, in the same order.
    for r, original in zip(rows, gold["text"]):
        assert r["text"] == normalize_text(original)
        assert (r["status"] == "empty") == (normalize_text(original) == "")
    assert {r["status"] for r in rows} <= {"empty", "covered", "uncovered"}
    for r in rows:
        assert (r["explanation_number"] != "") == (r["status"] == "covered")
    # Duplicate rows share their text's result.
    by_text = {}
    for r in rows:
        if r["text_id"]:
            by_text.setdefault(r["text_id"], set()).add((r["explanation_number"], r["score"]))
    assert len(by_text) == N_TEXTS
    assert all(len(v) == 1 for v in by_text.values())


def test_export_json(exports, sample_run):
    paths, _ = exports
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["run_id"] == sample_run.run_id
    assert len(data["rows"]) == N_ROWS
    assert all(set(r) == set(ROW_COLUMNS) for r in data["rows"])
    assert sum(r["status"] == "empty" for r in data["rows"]) == N_EMPTY
    covered = sum(r["status"] == "covered" for r in data["rows"])
    assert covered == N_ROWS - N_EMPTY - data["stats"]["n_uncovered"]
    for cluster in data["clusters"]:
        assert cluster["size"] == sum(r["explanation_number"] == cluster["number"] for r in data["rows"])


def test_export_markdown(exports, sample_run):
    paths, _ = exports
    lines = paths["md"].read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# textclust run {sample_run.run_id}: complaints"
    assert f"**Goal:** {GOAL}" in lines
    assert any(line.startswith("> **Note:** No language model was configured") for line in lines)
    start = lines.index("## Texts")
    table = [line for line in lines[start:] if line.startswith("| ")]
    assert table[0] == "| row | id | text | # | explanation | score |"
    body = table[1:]
    assert len(body) == N_ROWS
    assert sum("| _empty_ |" in line for line in body) == N_EMPTY
    # Every body row has exactly 6 cells: pipes inside texts are escaped.
    for line in body:
        assert line.replace("\\|", "").count("|") == 7


# --- eval --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_eval(sample_run, sample_path, tmp_path_factory):
    """`textclust eval` with the same settings as the shared run, on a copy of its database."""
    from click.testing import CliRunner

    from conftest import copy_sqlite
    from textclust.cli import cli

    db = copy_sqlite(sample_run.db, tmp_path_factory.mktemp("eval") / "eval.db")
    before = table_counts(db)
    result = CliRunner().invoke(cli, ["eval", str(sample_path), "--label-column", "reason", "--goal", GOAL,
                                      "--db", str(db), "--json"])
    return result, db, before


def test_eval_json_keys_and_reuses_the_run(default_eval, sample_run):
    result, db, before = default_eval
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert set(scores) == {"acc", "nmi", "ari", "coverage", "n", "n_clusters", "run_id", "explainer"}
    assert scores["explainer"] == "offline-extractive"
    assert scores["run_id"] == sample_run.run_id
    assert f"reusing complete run {sample_run.run_id}" in result.stderr
    assert table_counts(db) == before, "eval with identical settings must not add a run"
    assert scores["n"] == N_ROWS - N_EMPTY  # the 4 blank rows have no gold label
    for key in ("acc", "nmi", "coverage"):
        assert 0.0 <= scores[key] <= 1.0


def test_eval_scores_agree_with_the_export(default_eval, exports, gold):
    """Recompute NMI and coverage from the exported rows and the gold column."""
    result, _, _ = default_eval
    scores = json.loads(result.stdout)
    paths, _ = exports
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    pairs = [(g, r["explanation_number"] or "-1") for r, g in zip(rows, gold["reason"]) if r["status"] != "empty"]
    assert len(pairs) == scores["n"]
    truth, predicted = zip(*pairs)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(truth, predicted), abs=1e-4)
    assert scores["coverage"] == pytest.approx(sum(p != "-1" for p in predicted) / len(predicted), abs=1e-4)
    assert scores["n_clusters"] == len(set(predicted) - {"-1"})


def test_default_settings_beat_the_quality_floor(default_eval):
    result, _, _ = default_eval
    scores = json.loads(result.stdout)
    assert scores["n_clusters"] >= 3
    assert scores["nmi"] > NMI_FLOOR


def test_eval_with_k6_beats_the_quality_floor(sample_run, sample_path, copy_db, cli_invoke):
    db = copy_db(sample_run.db)
    result = cli_invoke("eval", sample_path, "--label-column", "reason", "--goal", GOAL, "--k", N_REASONS,
                        "--db", db, "--json")
    assert result.exit_code == 0, result.output
    assert "reusing" not in result.stderr  # other settings: a new run
    assert "embeddings: 0 computed" in result.stderr
    scores = json.loads(result.stdout)
    assert scores["run_id"] != sample_run.run_id
    assert scores["n_clusters"] == N_REASONS
    assert scores["nmi"] > NMI_FLOOR
    assert scores["acc"] > ACC_FLOOR
    # Text output of the same (now reused) evaluation.
    again = cli_invoke("eval", sample_path, "--label-column", "reason", "--goal", GOAL, "--k", N_REASONS, "--db", db)
    assert again.exit_code == 0
    assert f"reusing complete run {scores['run_id']}" in again.stderr
    assert f"NMI {scores['nmi']:.3f}" in again.stdout


# --- Python API --------------------------------------------------------------------------------


def test_python_api_run(sample_run, sample_path, copy_db, gold):
    db = copy_db(sample_run.db)
    result = textclust.run(sample_path, goal=GOAL, db=db, id_column="id")
    assert isinstance(result, RunResult)
    assert result.status == "complete"
    assert result.goal == GOAL
    assert result.notice == OFFLINE_NOTICE
    assert result.clusters and all(isinstance(c, ClusterSummary) for c in result.clusters)
    assert result.stats.embeddings_computed == 0  # cached in the copied database
    frame = result.to_dataframe()
    assert len(frame) == N_ROWS
    assert list(frame.columns) == ROW_COLUMNS
    assert list(frame["row_key"]) == list(gold["id"])
    assert (frame["status"] == "empty").sum() == N_EMPTY
    assert sum(c.size for c in result.clusters) == (frame["status"] == "covered").sum()
    assert 0.0 <= result.coverage <= 1.0


def test_python_api_rejects_bad_settings_before_touching_the_db(sample_path, tmp_path):
    db = tmp_path / "api.db"
    with pytest.raises(textclust.TextclustError, match="asked for 1000 clusters"):
        textclust.run(sample_path, goal=GOAL, db=db, k=1000)
    assert not db.exists()


def test_python_api_blank_goal_does_not_create_the_db(sample_path, tmp_path):
    db = tmp_path / "api_goal.db"
    with pytest.raises(textclust.TextclustError, match="^goal must not be empty"):
        textclust.run(sample_path, goal="   ", db=db)
    assert not db.exists()


# --- terminal output of user-controlled names -----------------------------------------------


@pytest.fixture
def bracket_named_run(tmp_path, blobs, make_file):
    """A complete (model-free) run whose input file is called 'survey [final].csv'."""
    from tests.fakes import FAKE_MODEL, FakeEmbedder
    from textclust.ingest import read_corpus
    from textclust.pipeline import Pipeline
    from textclust.store import Database

    lines = ["text"] + [f'"{t}"' for t in blobs.texts]
    corpus = read_corpus(make_file("survey [final].csv", "\n".join(lines) + "\n"))
    db_path = tmp_path / "brackets.db"
    db = Database(db_path)
    config = RunConfig.from_flat(k=3, reduction="none", embedding_model=FAKE_MODEL)
    embedder = FakeEmbedder(blobs.texts, blobs.X)
    run_id = Pipeline(db, config, embedder=embedder).run(corpus, "[red]topic[/red]")
    db.close()
    return db_path, run_id


def test_show_prints_goal_literally(bracket_named_run, cli_invoke):
    db, run_id = bracket_named_run
    result = cli_invoke("show", run_id, "--db", db)
    assert result.exit_code == 0, result.output
    assert "Goal: [red]topic[/red]" in result.stdout


def test_show_prints_corpus_name_literally(bracket_named_run, cli_invoke):
    db, run_id = bracket_named_run
    result = cli_invoke("show", run_id, "--db", db)
    assert result.exit_code == 0, result.output
    assert "survey [final]" in result.stdout
