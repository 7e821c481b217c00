"""Issue 25, item 11: `textclust log [RUN_ID] [--stage STAGE] [--json]` reads a run's model calls.

One real model run of the synthetic corpus (fake embedder, no model loaded) against the scripted
OpenAI-compatible server answering as the oracle, through the real client: its call record is
what `textclust log` prints. An offline run (the session's fake run) has no calls.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from rich.console import Console

from tests.fakes import FAKE_MODEL, FakeEmbedder
from tests.llm_server import ScriptedServer
from tests.oracle import Oracle

SECRET = "sk-test-do-not-print-0123456789"


@pytest.fixture(scope="module")
def llm_db(tmp_path_factory, blobs):
    """A database with one model run (propose and assign calls) and, after it, one offline run."""
    import os

    from textclust.config import RunConfig
    from textclust.ingest import corpus_from_texts
    from textclust.llm.config import LLMConfig
    from textclust.pipeline import Pipeline
    from textclust.store import Database

    labels = [blobs.topics[g] for g in blobs.groups]
    path = tmp_path_factory.mktemp("log") / "log.db"
    saved = {name: os.environ.get(name) for name in ("OPENAI_API_KEY", "NO_PROXY")}
    os.environ["OPENAI_API_KEY"] = SECRET
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    try:
        with ScriptedServer(Oracle(blobs.texts, labels)) as server:
            db = Database(path)
            corpus = corpus_from_texts(blobs.texts, name="blobs")
            embedder = FakeEmbedder(blobs.texts, blobs.X, vectors_for_unknown=True)
            model = LLMConfig(model="oracle", base_url=server.base_url)
            config = RunConfig.from_flat(model=model, k=3, reduction="none", embedding_model=FAKE_MODEL, rounds=1)
            llm_run = Pipeline(db, config, embedder=embedder).run(corpus, "which topic the text is about")
            offline = RunConfig.from_flat(k=2, reduction="none", embedding_model=FAKE_MODEL)
            offline_run = Pipeline(db, offline, embedder=embedder).run(corpus, "which topic, offline")
            db.close()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    con = sqlite3.connect(path)
    try:
        counts = dict(con.execute("SELECT stage, COUNT(*) FROM llm_calls WHERE run_id = ? GROUP BY stage",
                                  (llm_run,)).fetchall())
    finally:
        con.close()
    assert counts.get("propose") and counts.get("assign"), counts
    return {"db": path, "llm_run": llm_run, "offline_run": offline_run, "counts": counts}


def _calls(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_lists_every_recorded_call_of_the_run_with_its_full_record(llm_db, cli_invoke):
    calls = _calls(cli_invoke("log", llm_db["llm_run"], "--db", llm_db["db"], "--json"))
    assert len(calls) == sum(llm_db["counts"].values())
    assert {c["run_id"] for c in calls} == {llm_db["llm_run"]}
    assert [c["id"] for c in calls] == sorted(c["id"] for c in calls)
    stages = {c["stage"] for c in calls}
    assert {"propose", "assign"} <= stages
    first = calls[0]
    assert first["model"] == "oracle" and first["status"] == "ok" and first["sent"] is True
    assert first["prompt_tokens"] > 0 and first["completion_tokens"] > 0
    assert any(m["role"] == "user" and m["content"] for m in first["messages"])  # the full prompt
    assert json.loads(first["response"])  # the full answer, as the server sent it


def test_stage_filters_the_calls(llm_db, cli_invoke):
    calls = _calls(cli_invoke("log", llm_db["llm_run"], "--db", llm_db["db"], "--stage", "assign", "--json"))
    assert calls and {c["stage"] for c in calls} == {"assign"}
    assert len(calls) == llm_db["counts"]["assign"]
    none = cli_invoke("log", llm_db["llm_run"], "--db", llm_db["db"], "--stage", "nonsense")
    assert none.exit_code == 0
    assert none.stdout == f"run {llm_db['llm_run']} made no nonsense calls (its calls are: propose, assign)\n"


def test_text_output_shows_each_call_with_previews_and_no_secret(llm_db, cli_invoke):
    result = cli_invoke("log", llm_db["llm_run"], "--db", llm_db["db"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    n = sum(llm_db["counts"].values())
    assert out.splitlines()[0].startswith(f"Run {llm_db['llm_run']}: {n} language-model calls ({n} sent, 0 from")
    assert out.count("\n  prompt: ") == n and out.count("\n  answer: ") == n
    headings = [line for line in out.splitlines() if line.startswith("#")]
    assert len(headings) == n
    assert all("oracle" in h and "ok (sent)" in h and "tokens" in h for h in headings)
    assert sum(" · propose · " in h for h in headings) == llm_db["counts"]["propose"]
    assert SECRET not in out and SECRET not in result.output
    assert "Authorization" not in out and "Bearer" not in out
    as_json = cli_invoke("log", llm_db["llm_run"], "--db", llm_db["db"], "--json").stdout
    assert SECRET not in as_json and "Bearer" not in as_json


def test_latest_is_the_default_run_and_an_offline_run_has_a_one_line_note(llm_db, cli_invoke):
    result = cli_invoke("log", "--db", llm_db["db"])  # latest = the offline run, made after the model run
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"run {llm_db['offline_run']} made no language-model calls "
                             "(it ran offline or stopped before any)\n")
    as_json = cli_invoke("log", "latest", "--db", llm_db["db"], "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []
    assert "made no language-model calls" in as_json.stderr


def test_a_missing_run_or_database_is_a_one_line_error(llm_db, cli_invoke, tmp_path):
    for args in (("log", "999", "--db", llm_db["db"]),
                 ("log", "--db", tmp_path / "none.db"),
                 ("log", "first", "--db", llm_db["db"])):
        result = cli_invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("textclust: error: "), result.stderr
        assert result.stdout == ""
    assert "no run with id 999" in cli_invoke("log", "999", "--db", llm_db["db"]).stderr


@pytest.mark.parametrize("width", [60, 80, 120])
def test_text_output_fits_the_terminal(llm_db, width):
    from textclust.report.calls import call_record, print_calls
    from textclust.store import Database

    db = Database(llm_db["db"])
    try:
        records = [call_record(c) for c in db.calls_for_run(llm_db["llm_run"])]
    finally:
        db.close()
    records[0]["model"] = "an-organisation/a-very-long-model-name-that-goes-on-and-on-Instruct-GGUF-Q4_K_M"
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))
    print_calls(llm_db["llm_run"], records, console)
    console.file.close()
    text = console.export_text()
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, too_wide
    assert "Q4_K_M" in text  # the long model name is wrapped, not cut
    prompts = [line for line in text.splitlines() if line.startswith("  prompt: ")]
    assert len(prompts) == len(records) and all(len(p) > width // 2 for p in prompts)


def test_load_run_takes_latest_as_the_command_line_does(llm_db, tmp_path):
    from textclust.errors import NotFoundError
    from textclust.results import load_run
    from textclust.store import Database

    result = load_run(llm_db["db"], "latest", include_rows=False)
    assert result.run_id == llm_db["offline_run"]
    assert load_run(llm_db["db"], str(llm_db["llm_run"]), include_rows=False).run_id == llm_db["llm_run"]
    empty = Database(tmp_path / "empty.db")
    try:
        with pytest.raises(NotFoundError, match="no runs in"):
            load_run(empty, "latest")
    finally:
        empty.close()
