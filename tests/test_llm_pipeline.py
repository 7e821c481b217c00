"""The language-model stage through the command line, over real HTTP.

A scripted OpenAI-compatible server (tests/llm_server.py) answers as an *oracle* that
knows the sample's gold reasons (tests/oracle.py); textclust's real `openai` client talks
to it. What is checked is the plumbing: flags → config → client → explainer → database →
outputs, the cache, the budget, resuming and the dry run.
"""

from __future__ import annotations

import json
import re
import time
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.llm_server import Reply, ScriptedServer, error_body
from tests.oracle import Oracle, label_name
from textclust.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "complaints.csv"
GOAL = "Cluster the complaints by why the customer is unhappy."


def invoke(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"OPENAI_API_KEY": "sk-test", **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def llm_args(server, db, *extra):
    return ["run", SAMPLE, "--goal", GOAL, "--llm-base-url", server.base_url, "--llm-model", "oracle",
            "--db", db, *extra]


@pytest.fixture(scope="module")
def oracle():
    data = pd.read_csv(SAMPLE)
    return Oracle(data["text"].fillna("").tolist(), data["reason"].tolist())


@pytest.fixture
def fresh_db(sample_run, copy_db):
    """A database holding the sample and its embeddings (from the session's offline run) but no run:
    the tests below then spend their time on the language-model stage, not on embedding."""
    db = copy_db(sample_run.db)
    con = sqlite3.connect(db)
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("DELETE FROM runs")
    con.commit()
    con.close()
    return db


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory, oracle):
    """One LLM run of the sample; the server stays up for the tests that re-run it."""
    db = tmp_path_factory.mktemp("llm") / "t.db"
    with ScriptedServer(oracle) as server:
        result = invoke(*llm_args(server, db, "--json"))
        yield {"db": db, "server": server, "result": result, "calls": server.calls,
               "json": json.loads(result.stdout)}


def query(db, sql, *params):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def test_llm_run_recovers_the_reasons_and_records_every_call(llm_run):
    out = llm_run["json"]
    assert llm_run["result"].exit_code == 0, llm_run["result"].output
    assert out["status"] == "complete" and out["explainer"] == "llm"
    assert out["notice"] is None  # not the offline notice
    gold = {label_name(r) for r in pd.read_csv(SAMPLE)["reason"].dropna()}
    assert {c["name"] for c in out["clusters"]} == gold
    assert out["stats"]["coverage"] == 1.0
    assert all(c["evidence"] for c in out["clusters"])  # the model's quotes are kept
    usage = out["stats"]["llm"]
    assert usage["calls"] == llm_run["calls"] > 0
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    rows = query(llm_run["db"], "SELECT stage, status, COUNT(*), SUM(prompt_tokens) FROM llm_calls GROUP BY 1, 2")
    stages = {stage: (status, n, tokens) for stage, status, n, tokens in rows}
    assert stages["propose"][0] == "ok" and stages["assign"][0] == "ok"
    assert stages["propose"][1] + stages["assign"][1] == llm_run["calls"]
    # Frugal: each distinct text is asked once, ten texts a call (300 texts -> ~30 calls).
    assert stages["assign"][1] <= 0.12 * out["corpus"]["n_texts"]


def test_evaluation_of_the_llm_run(llm_run):
    server = llm_run["server"]
    before = server.calls
    result = invoke("eval", SAMPLE, "--label-column", "reason", "--goal", GOAL, "--llm-base-url", server.base_url,
                    "--llm-model", "oracle", "--db", llm_run["db"], "--json")
    scores = json.loads(result.stdout)
    assert scores["run_id"] == llm_run["json"]["run_id"]  # reused, not re-run
    assert scores["acc"] == 1.0 and scores["explainer"] == "llm"
    assert server.calls == before


def test_rerunning_the_same_command_sends_nothing(llm_run):
    server = llm_run["server"]
    before = server.calls
    result = invoke(*llm_args(server, llm_run["db"], "--json", "--new"))  # a new run, not the complete one reused
    again = json.loads(result.stdout)
    assert again["run_id"] != llm_run["json"]["run_id"]
    assert server.calls == before  # every answer from the response cache
    assert again["stats"]["llm"]["calls"] == 0 and again["stats"]["llm"]["cached_calls"] > 0
    assert [c["name"] for c in again["clusters"]] == [c["name"] for c in llm_run["json"]["clusters"]]


def test_exports_say_the_language_model_explained(llm_run, tmp_path):
    run_id = llm_run["json"]["run_id"]
    out = tmp_path / "rows.csv"
    invoke("export", run_id, "--format", "csv", "-o", out, "--db", llm_run["db"])
    rows = pd.read_csv(out)
    covered = rows[rows["status"] == "covered"]
    assert set(covered["explained_by"]) == {"llm"}
    assert set(covered["assigned_by"]) == {"language model"}
    html = tmp_path / "r.html"
    result = invoke("report", run_id, "-o", html, "--map", "pca", "--db", llm_run["db"])
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert "oracle" in page and "No language model" not in page


def test_dry_run_estimates_without_sending(tmp_path, oracle, fresh_db):
    db = fresh_db
    with ScriptedServer(oracle) as server:
        result = invoke(*llm_args(server, db, "--dry-run", "--json"))
        assert result.exit_code == 0, result.output
        estimate = json.loads(result.stdout)
        assert server.calls == 0
        assert query(db, "SELECT COUNT(*) FROM runs") == [(0,)]
        invoke(*llm_args(server, db))
        actual = dict(query(db, "SELECT stage, COUNT(*) FROM llm_calls GROUP BY stage"))
    assert estimate["propose"]["calls"] >= actual["propose"]
    # An upper bound: it assumes every round runs and escalations (this run stopped after one
    # round, everything covered at the first question).
    assert actual["assign"] <= estimate["assign"]["calls"] <= 5 * actual["assign"]
    assert estimate["total"]["prompt_tokens"] > 0 and "estimate" in estimate["note"]


def test_budget_stop_keeps_a_partial_result_and_the_same_command_finishes_it(tmp_path, oracle, fresh_db):
    db = fresh_db
    bodies = []

    def recording(request):
        bodies.append(json.dumps(request["body"], sort_keys=True))
        return oracle(request)

    with ScriptedServer(recording) as server:
        stopped = invoke(*llm_args(server, db, "--max-calls", "6", "--json"))
        assert stopped.exit_code == 0, stopped.output
        partial = json.loads(stopped.stdout)
        assert partial["status"] == "incomplete"
        assert "budget" in partial["notice"] and "budget exceeded" in partial["error"]
        assert server.calls == 6 and partial["stats"]["llm"]["calls"] == 6
        assert 0 < partial["stats"]["coverage"] < 1  # what was judged counts; the rest is uncovered
        shown = invoke("show", partial["run_id"], "--db", db)
        assert shown.exit_code == 0 and "budget" in shown.output

        finished = json.loads(invoke(*llm_args(server, db, "--json")).stdout)
    assert finished["run_id"] == partial["run_id"]  # resumed in place
    assert finished["status"] == "complete" and finished["stats"]["coverage"] == 1.0
    assert len(bodies) == len(set(bodies))  # no request was sent twice
    assert query(db, "SELECT COUNT(*) FROM runs") == [(1,)]
    assert query(db, "SELECT COUNT(*), COUNT(DISTINCT text_id) FROM text_results")[0] == (300, 300)


def test_resume_command_finishes_a_failed_run(tmp_path, oracle, fresh_db):
    db = fresh_db
    config = tmp_path / "textclust.toml"
    config.write_text("[llm]\nmax_retries = 0\n")
    broken = {"on": True}

    def flaky(request):
        if broken["on"] and "\nExplanations:\n" in request["body"]["messages"][-1]["content"]:
            return Reply(401, error_body("invalid key", "invalid_request_error", "invalid_api_key"))
        return oracle(request)

    with ScriptedServer(flaky) as server:
        failed = invoke(*llm_args(server, db, "--config", config))
        assert failed.exit_code == 2
        last = failed.stderr.strip().splitlines()[-1]
        assert last.startswith("textclust: error:") and "401" in last and "Traceback" not in failed.stderr
        assert query(db, "SELECT status FROM runs") == [("failed",)]
        broken["on"] = False
        resumed = invoke("resume", 1, "--db", db, "--json")
        assert resumed.exit_code == 0, resumed.output
    out = json.loads(resumed.stdout)
    assert out["run_id"] == 1 and out["status"] == "complete" and out["stats"]["coverage"] == 1.0


def test_unreachable_server_fails_in_one_line_before_any_work(tmp_path):
    db = tmp_path / "empty.db"  # nothing cached: any embedding would show in the table
    config = tmp_path / "c.toml"
    config.write_text("[llm]\nmax_retries = 1\ntimeout = 2\n")
    started = time.perf_counter()
    result = invoke("run", SAMPLE, "--goal", GOAL, "--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "m",
                    "--config", config, "--db", db)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert re.match(r"textclust: error: cannot connect to .*127\.0\.0\.1:9.*server running", last), last
    assert "Traceback" not in result.stderr
    # Checked before ingesting, embedding and clustering: no run, no corpus, no embedding stored.
    if db.exists():
        assert query(db, "SELECT COUNT(*) FROM runs") == [(0,)]
        assert query(db, "SELECT COUNT(*) FROM embeddings") == [(0,)]
    assert "embeddings:" not in result.stderr and "clustering" not in result.stderr
    assert time.perf_counter() - started < 30


def test_a_refused_key_fails_before_any_work(fresh_db):
    import http.server
    import threading

    class Refusing(http.server.BaseHTTPRequestHandler):
        def _refuse(self):
            body = json.dumps({"error": {"message": "invalid key", "type": "invalid_request_error"}}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _refuse

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = invoke("run", SAMPLE, "--goal", GOAL, "--llm-base-url", f"http://127.0.0.1:{server.server_port}/v1",
                        "--llm-model", "m", "--db", fresh_db)
    finally:
        server.shutdown()
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("textclust: error:") and "401" in last and "API key" in last, last
    assert query(fresh_db, "SELECT COUNT(*) FROM runs") == [(0,)]


def test_only_candidates_with_the_language_model(tmp_path, oracle, fresh_db):
    db = fresh_db
    seeds = ["late delivery: the order arrived late or not at all", "refund delay: a refund has not arrived"]
    args = []
    for seed in seeds:
        args += ["--candidate", seed]
    with ScriptedServer(oracle) as server:
        out = json.loads(invoke(*llm_args(server, db, *args, "--only-candidates", "--json")).stdout)
        proposals = sum(1 for r in server.requests if "Propose up to" in r["body"]["messages"][-1]["content"])
    assert proposals == 0
    assert out["status"] == "complete" and {c["name"] for c in out["clusters"]} == {"late delivery", "refund delay"}
    assert out["stats"]["n_uncovered"] == 305 - 102  # the four other reasons fit neither seed


def test_llm_flags_are_validated_before_the_database_is_touched(tmp_path):
    db = tmp_path / "t.db"
    for args, message in [
        (["--depth", "2"], "--depth 2 needs a language model"),
        (["--example", "x"], "--example needs a language model"),
        (["--llm-base-url", "http://127.0.0.1:9/v1"], "--llm-model"),
        (["--llm-model", "m", "--batch-size", "0"], "--batch-size must be at least 1"),
    ]:
        result = invoke("run", SAMPLE, "--goal", GOAL, "--db", db, *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
    assert not db.exists()


def test_depth_two_stores_sub_explanations_under_their_parents(tmp_path, oracle, fresh_db):
    """--depth 2: inside each reason, a scripted model splits texts quoting a number from the rest."""
    import json as _json

    from tests.llm_server import chat_completion
    from tests.oracle import data_items

    within = "(Within texts where:"
    children = [{"name": "quotes a number", "explanation": "the customer quotes a figure such as a price, date, "
                                                          "size or order reference"},
                {"name": "words only", "explanation": "the complaint is told entirely in words with no digits"}]

    def handler(request):
        prompt = request["body"]["messages"][-1]["content"]
        if within not in prompt.split("\n")[0]:
            return oracle(request)
        if "Propose up to" in prompt:
            return chat_completion(_json.dumps({"explanations": children}))
        numbers = {}
        for line in prompt.split("<<<TEXTS")[0].split("\n"):
            if re.match(r"^\d+\. ", line):
                number, rest = line.split(". ", 1)
                numbers[rest.split(":")[0]] = int(number)
        results = []
        for item in data_items(prompt):
            name = "quotes a number" if re.search(r"\d", item["text"]) else "words only"
            fits = [n for n in item["check"] if numbers.get(name) == n]
            results.append({"id": item["id"], "matches": [{"explanation": n, "evidence": item["text"][:20]}
                                                          for n in fits]})
        return chat_completion(_json.dumps({"results": results}))

    with ScriptedServer(handler) as server:
        out = json.loads(invoke(*llm_args(server, fresh_db, "--depth", "2", "--json")).stdout)
    assert out["status"] == "complete" and len(out["clusters"]) == 6  # the top level is unchanged
    tree = out["stats"]["hierarchy"]
    assert len(tree) == 6
    split = [node for node in tree if node["children"]]
    assert split, tree
    for node in split:
        assert {c["name"] for c in node["children"]} == {"quotes a number", "words only"}
        assert sum(c["size"] for c in node["children"]) == node["size"]
    stored = query(fresh_db, "SELECT COUNT(*) FROM explanations WHERE parent_id IS NOT NULL AND selected = 1")
    assert stored == [(2 * len(split),)]


def test_python_api_with_a_language_model(oracle, fresh_db):
    import textclust

    with ScriptedServer(oracle) as server:
        result = textclust.run(SAMPLE, GOAL, db=str(fresh_db), llm={"model": "oracle", "base_url": server.base_url})
        assert server.calls > 0
    assert result.explainer == "llm" and result.stats.coverage == 1.0
    assert result.settings["model"]["model"] == "oracle" and result.settings["model"]["api_key_env"] == "OPENAI_API_KEY"
    assert result.config.model.model == "oracle" and result.config.model.api_key_env == "OPENAI_API_KEY"
    frame = result.to_dataframe()
    assert set(frame.loc[frame["status"] == "covered", "explained_by"]) == {"llm"}


class FlakyOracle:
    """The oracle behind a flaky server: some first requests get a 503 (retried by the client),
    some first answers are not JSON (repaired by the client). Counts what the server received."""

    def __init__(self, oracle, every_busy: int = 5, every_broken: int = 4):
        import threading
        from collections import Counter

        self.oracle = oracle
        self.every_busy, self.every_broken = every_busy, every_broken
        self.seen: Counter = Counter()
        self.received: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, request):
        import hashlib

        messages = request["body"]["messages"]
        task = next(m["content"] for m in messages if m["role"] == "user")
        stage = "assign" if "\nExplanations:\n" in task else "propose"
        digest = int(hashlib.sha256(task.encode()).hexdigest(), 16)
        repair = len(messages) > 2
        with self.lock:
            self.received[stage] += 1
            self.seen[(task, repair)] += 1
            first = self.seen[(task, repair)] == 1
        if first and not repair and digest % self.every_busy == 0:
            return Reply(503, error_body("busy"), headers={"Retry-After": "0"})
        if first and not repair and stage == "assign" and digest % self.every_broken == 1:
            return "Sure! Here are the results: {{ not json"
        # the oracle answers the task (a repair request repeats it, then asks again)
        return self.oracle({**request, "body": {**request["body"], "messages": messages[:2]}})


def test_the_usage_line_counts_every_request_the_server_received(fresh_db, oracle):
    flaky = FlakyOracle(oracle)
    with ScriptedServer(flaky) as server:
        result = invoke(*llm_args(server, fresh_db, "--rounds", "2"))
        received = dict(flaky.received)
        total = server.calls
    assert result.exit_code == 0, result.output
    assert sum(received.values()) == total
    rows = query(fresh_db, "SELECT COUNT(*) FROM llm_calls WHERE repair_of IS NOT NULL")
    assert rows[0][0] > 0  # some answers were repaired
    assert query(fresh_db, "SELECT SUM(retries) FROM llm_calls")[0][0] > 0  # and some requests retried
    text = " ".join(result.output.split())  # the console wraps long lines
    line = text[text.index("Language model"):][:300]
    found = re.search(r": (\d+) requests sent \((\d+) propose, (\d+) assign", line)
    assert found, line
    assert [int(g) for g in found.groups()] == [total, received["propose"], received["assign"]], line
    stats = json.loads(invoke("show", "latest", "--db", fresh_db, "--json").stdout)["stats"]["llm"]
    assert stats["calls_by_stage"] == received
