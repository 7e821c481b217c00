"""Feedback on every long step (issue "The first hour of a new user", item 7).

Clustering, explaining and the report build each say what they are doing on stderr before
they start (a plain line: all a pipe or log file gets); on a terminal they also tick their
elapsed time. The run ends by naming the database and what to run next.
"""

from __future__ import annotations

import time

import numpy as np

from tests.fakes import FAKE_MODEL, FakeEmbedder
from textclust import pipeline as pipeline_module
from textclust.config import RunConfig
from textclust.ingest import corpus_from_texts
from textclust import progress as progress_module
from textclust.pipeline import Pipeline
from textclust.progress import working
from textclust.store import Database


def _index(lines: list[str], prefix: str) -> int:
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert hits, f"no line starting with {prefix!r} in:\n" + "\n".join(lines)
    return hits[0]


def test_the_cli_says_what_each_long_step_does_before_it_starts(cli_invoke, copy_db, fake_run_db, blobs, tmp_path):
    # The fake run's database holds the texts' vectors: the CLI run takes them from the cache
    # (no model is loaded) and spends its time clustering and explaining.
    db = copy_db(fake_run_db.db)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(blobs.texts) + "\n", encoding="utf-8")
    result = cli_invoke("run", texts, "--goal", "what the customer asks for", "--embedding-model", FAKE_MODEL,
                        "--k", 3, "--reduction", "none", "--db", db)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    # Each plan comes before its step's result.
    assert _index(lines, "clustering: ") < _index(lines, "clusters: ")
    explaining = lines[_index(lines, "explaining: ")]
    assert "up to 2 rounds" in explaining and f"{len(blobs.texts)} distinct texts" in explaining, explaining
    assert _index(lines, "clusters: ") < _index(lines, "explaining: ") < _index(lines, "round 1: ")
    # At the end: which database, and what to run next.
    assert lines[-1].startswith(f"Saved as run 2 in {db}. Next: textclust show 2")
    # Not a terminal: lines only, no bar redrawn with carriage returns.
    assert "\r" not in result.stderr

    report = cli_invoke("report", 2, "-o", tmp_path / "r.md", "--db", db)
    assert report.exit_code == 0, report.output
    said = report.stderr.splitlines()
    assert said[0] == f"writing the report of run 2 to {tmp_path / 'r.md'}…", said
    assert said[-1].startswith("wrote the ")


def test_the_explain_plan_names_the_model_and_its_calls():
    from textclust.llm.config import LLMConfig

    config = RunConfig.from_flat(model=LLMConfig(model="m", base_url="http://127.0.0.1:1/v1"), batch_size=20)
    plan = pipeline_module._explaining_plan(config, 1000)
    assert plan.startswith("explaining: up to 3 rounds") and "language model m" in plan and "about 50 calls" in plan
    only = RunConfig.from_flat(candidates=[{"name": "a", "explanation": "b"}], only_candidates=True)
    assert pipeline_module._explaining_plan(only, 7).startswith("explaining: judging 7 distinct texts")


class SlowClusterer:
    """A clusterer that takes a while, as UMAP and silhouette on 10k texts do."""

    algorithm, k, reduction = "kmeans", 3, "none"

    def __init__(self, groups, seconds: float):
        self.groups, self.seconds = groups, seconds

    def fit(self, X):
        time.sleep(self.seconds)
        self.labels_ = np.asarray(self.groups)
        return self

    def subset_clusterer(self):
        return self


def test_on_a_terminal_a_slow_step_ticks_and_log_lines_stay_whole(tmp_path, blobs, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "TICK_SECONDS", 0.05)
    lines = []

    def log(message):  # as the CLI's log: a line on stderr
        lines.append(message)
        print(message, file=__import__("sys").stderr)

    corpus = corpus_from_texts(blobs.texts, name="blobs")
    config = RunConfig.from_flat(k=3, reduction="none", embedding_model=FAKE_MODEL)
    db = Database(tmp_path / "t.db")
    try:
        Pipeline(db, config, log=log, progress=True, embedder=FakeEmbedder(blobs.texts, blobs.X),
                 clusterer=SlowClusterer(blobs.groups, 0.4)).run(corpus, "which topic")
    finally:
        db.close()
    err = capsys.readouterr().err
    assert "clustering: 00:00" in err  # the ticker redrew the elapsed time while the fit ran
    assert err.count("clustering: 00:00") >= 3, err
    # Every log line reached stderr whole, on a line of its own (the bar is cleared for it).
    for message in lines:
        assert "\n" + message + "\n" in "\n" + err.replace("\r", "\n"), message
    assert _index(lines, "clustering: ") < _index(lines, "clusters: ")


def test_without_a_terminal_a_step_is_one_line_and_no_bar(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "TICK_SECONDS", 0.01)
    said = []
    with working("clustering", "clustering: 3 texts…", said.append, progress=False, status=lambda: "x"):
        time.sleep(0.05)
    assert said == ["clustering: 3 texts…"]
    assert capsys.readouterr().err == ""


def test_the_ticker_shows_the_step_status(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "TICK_SECONDS", 0.02)
    calls = iter(range(1000))
    with working("explaining", "explaining: …", lambda m: None, progress=True,
                 status=lambda: f"{next(calls)} model calls, 0 from cache"):
        time.sleep(0.2)
    err = capsys.readouterr().err
    assert "explaining: 00:00, 1 model calls, 0 from cache" in err, err
    assert err.endswith(" \r"), repr(err[-80:])  # the bar is blanked out at the end (leave=False)
