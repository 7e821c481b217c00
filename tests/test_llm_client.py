"""The language-model client over REAL HTTP against a scripted OpenAI-compatible server.

Every test drives the real ``openai`` client through :class:`OpenAITransport` to a
server on 127.0.0.1 (tests/llm_server.py); only the model's answers are scripted. Each
failure mode (429, 5xx, timeouts, malformed or empty answers, refusals, schema
mismatches, rejected structured output) must end in a correct result or a clearly
recorded failure — never a crash — and every call must be in the database.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import time

import pytest

from conftest import copy_sqlite
from tests.llm_server import Reply, ScriptedServer, chat_completion, error_body, user_prompt
from textclust.ingest import corpus_from_texts
from textclust.llm import BudgetExceeded, LLMClient, LLMConfig, LLMError, PermanentError
from textclust.llm.parse import ParseError, SchemaMismatch, check_schema, parse_json
from textclust.llm.record import calls_for_run, usage_for_run
from textclust.llm.transport import retry_after_seconds
from textclust.store import Database, settings_key

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}
GOOD = '{"label": "refund", "score": 0.9}'
MESSAGES = [
    {"role": "system", "content": "You label customer complaints. Answer in JSON."},
    {"role": "user", "content": "Complaint: my refund never arrived."},
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTCLUST_LLM_MODEL", "TEXTCLUST_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """A new database, made once: each test works on a copy (creating one costs ~0.3 s)."""
    path = tmp_path_factory.mktemp("llm-template") / "empty.db"
    Database(path).close()
    return path


@pytest.fixture
def db(empty_db, tmp_path):
    database = Database(copy_sqlite(empty_db, tmp_path / "llm.db"))
    yield database
    database.close()


class Sleeps(list):
    """A fake ``sleep`` that records the waits instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


def make_client(server, db, sleep=None, log=None, **settings):
    settings.setdefault("max_retries", 2)
    config = LLMConfig(model="scripted-model", base_url=server.base_url, **settings)
    return LLMClient(config, db, sleep=sleep if sleep is not None else Sleeps(), log=log)


def calls(db_path, columns="status, error, retries, repair_of, response_format"):
    con = sqlite3.connect(db_path)
    try:
        return con.execute(f"SELECT {columns} FROM llm_calls ORDER BY id").fetchall()
    finally:
        con.close()


def ask(client, messages=MESSAGES, validate=None):
    return client.complete_json("assign", messages, SCHEMA, "label", validate)


# --- the happy path ---------------------------------------------------------------------------------


def test_happy_path_uses_json_schema_and_records_the_call(db):
    with ScriptedServer(ScriptedServer.sequence(Reply(body=chat_completion(GOOD, 42, 7)))) as server:
        client = make_client(server, db)
        result = ask(client)
        body = server.requests[0]["body"]
        headers = {k.lower(): v for k, v in server.requests[0]["headers"].items()}
    assert result.ok and result.error is None and not result.cached
    assert result.data == {"label": "refund", "score": 0.9} and result.text == GOOD
    assert body["model"] == "scripted-model" and body["messages"] == MESSAGES
    assert body["temperature"] == 0 and body["seed"] == 0 and body["max_tokens"] == 2048
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "label", "schema": SCHEMA, "strict": True}}
    assert headers["authorization"] == "Bearer unused"  # a local server without a key
    row = calls(db.path, "run_id, stage, model, server, messages, response_format, response, finish_reason, "
                         "prompt_tokens, completion_tokens, latency_s, status, error, retries, cache_key")[0]
    assert row[:4] == (None, "assign", "scripted-model", server.base_url)
    assert json.loads(row[4]) == MESSAGES
    assert row[5:10] == ("json_schema", GOOD, "stop", 42, 7)
    assert row[10] > 0 and row[11:14] == ("ok", None, 0) and len(row[14]) == 64
    assert result.call_id == 1
    usage = client.usage()
    assert usage == {"model": "scripted-model", "server": server.base_url, "calls": 1, "cached_calls": 0,
                     "failed_calls": 0, "prompt_tokens": 42, "completion_tokens": 7, "cost_usd": None,
                     "retries": 0, "structured": "json_schema", "requests_by_stage": {"assign": 1}}


def test_run_id_and_cost_are_recorded(db):
    with ScriptedServer(lambda request: chat_completion(GOOD, 1_000_000, 500_000)) as server:
        client = make_client(server, db, price_prompt_per_mtok=0.15, price_completion_per_mtok=0.6)
        corpus_id = db.save_corpus(corpus_from_texts(["a text", "another text"]))  # a run for the foreign key
        client.run_id = db.start_run(corpus_id, "goal", "llm", {}, settings_key(corpus_id, "goal", {}), {})
        assert ask(client).ok
        assert ask(client).cached
        assert not ask(client, [{"role": "user", "content": "not json please"}], validate=_never).ok
    assert calls(db.path, "run_id") == [(client.run_id,)] * 4
    assert client.usage()["cost_usd"] == pytest.approx(3 * (0.15 + 0.3))
    assert usage_for_run(db, client.run_id) == {"calls": 3, "cached_calls": 1, "failed_calls": 2,
                                                "prompt_tokens": 3_000_000, "completion_tokens": 1_500_000,
                                                "retries": 0}
    assert [c.status for c in calls_for_run(db, client.run_id)] == ["ok", "cached", "error", "error"]


def _never(data):
    raise ValueError("never good enough")


# --- retries ------------------------------------------------------------------------------------------


def test_429_with_retry_after_then_success_waits_as_told(db):
    replies = ScriptedServer.sequence(
        Reply(429, error_body("Rate limit reached", "rate_limit_exceeded"), headers={"Retry-After": "0.3"}),
        chat_completion(GOOD),
    )
    with ScriptedServer(replies) as server:
        client = make_client(server, db, sleep=time.sleep)
        started = time.perf_counter()
        result = ask(client)
        elapsed = time.perf_counter() - started
        assert server.calls == 2
    assert result.ok and result.data["label"] == "refund"
    assert elapsed >= 0.3
    status, error, retries, *_ = calls(db.path)[0]
    assert (status, error, retries) == ("ok", None, 1)
    assert calls(db.path, "waited_s")[0][0] == pytest.approx(0.3)
    assert client.usage()["retries"] == 1 and client.usage()["calls"] == 1


def test_retry_after_ms_header_is_honoured_and_capped(db):
    replies = ScriptedServer.sequence(
        Reply(429, error_body("slow down"), headers={"retry-after-ms": "1500"}),
        Reply(429, error_body("slow down"), headers={"Retry-After": "3600"}),
        chat_completion(GOOD),
    )
    sleeps = Sleeps()
    with ScriptedServer(replies) as server:
        result = ask(make_client(server, db, sleep=sleeps))
        assert server.calls == 3
    assert result.ok
    assert sleeps == [1.5, 60.0]  # an hour is capped at the longest wait


def test_500_then_success_backs_off_with_jitter(db):
    replies = ScriptedServer.sequence(Reply(500, error_body("upstream exploded")), chat_completion(GOOD))
    sleeps = Sleeps()
    with ScriptedServer(replies) as server:
        result = ask(make_client(server, db, sleep=sleeps))
        assert server.calls == 2
    assert result.ok
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 1.0  # full jitter under the 1 s base
    assert calls(db.path)[0][:3] == ("ok", None, 1)


def test_persistent_500_is_a_recorded_failure_after_max_retries(db):
    sleeps = Sleeps()
    logged = []
    with ScriptedServer(lambda request: Reply(503, error_body("overloaded"))) as server:
        client = make_client(server, db, sleep=sleeps, log=logged.append, max_retries=3)
        result = ask(client)
        assert server.calls == 4
    assert not result.ok and result.data is None
    assert result.error.startswith("failed after 3 retries: 503 from http://127.0.0.1:")
    assert "overloaded" in result.error
    assert len(sleeps) == 3 and all(0 <= s <= bound for s, bound in zip(sleeps, [1, 2, 4]))
    assert len(logged) == 3 and "retry 1 of 3" in logged[0]
    status, error, retries, *_ = calls(db.path)[0]
    assert (status, retries) == ("error", 3) and error == result.error
    assert result.call_id == 1
    usage = client.usage()
    assert (usage["calls"], usage["failed_calls"], usage["retries"]) == (1, 1, 3)


def test_backoff_is_deterministic_for_a_seed(db):
    waits = []
    for _ in range(2):
        sleeps = Sleeps()
        with ScriptedServer(lambda request: Reply(500, error_body("down"))) as server:
            ask(make_client(server, db, sleep=sleeps, max_retries=4))
        waits.append(list(sleeps))
    assert waits[0] == waits[1] and len(waits[0]) == 4


def test_slow_reply_past_the_timeout_is_retried(db):
    replies = ScriptedServer.sequence(Reply(body=chat_completion(GOOD), delay=2.0), chat_completion(GOOD))
    with ScriptedServer(replies) as server:
        started = time.perf_counter()
        result = ask(make_client(server, db, timeout=0.5))
        elapsed = time.perf_counter() - started
        assert server.calls == 2
    assert result.ok and elapsed < 1.8
    assert calls(db.path)[0][:3] == ("ok", None, 1)


def test_always_slow_server_is_a_recorded_timeout_failure(db):
    with ScriptedServer(lambda request: Reply(body=chat_completion(GOOD), delay=2.0)) as server:
        result = ask(make_client(server, db, timeout=0.5, max_retries=1))
        assert server.calls == 2
    assert not result.ok
    assert result.error.startswith("failed after 1 retries: no reply within 0.5s (timeout)")
    assert calls(db.path)[0][:3] == ("error", result.error, 1)


def test_unreachable_server_stops_the_stage(db):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LLMConfig(model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    client = LLMClient(config, db, sleep=Sleeps())
    with pytest.raises(LLMError, match=r"cannot connect to http://127\.0\.0\.1:\d+/v1.*server running"):
        ask(client)
    assert calls(db.path)[0][:3][0] == "error"


# --- bad answers ----------------------------------------------------------------------------------------


def test_malformed_json_gets_one_repair_request(db):
    replies = ScriptedServer.sequence('Sure! {"label": "refund" "score": 0.9}', chat_completion(GOOD))
    with ScriptedServer(replies) as server:
        result = ask(make_client(server, db))
        assert server.calls == 2
        repair = server.requests[1]["body"]["messages"]
    assert result.ok and result.data == {"label": "refund", "score": 0.9}
    assert repair[:2] == MESSAGES
    assert repair[2] == {"role": "assistant", "content": 'Sure! {"label": "refund" "score": 0.9}'}
    assert repair[3]["role"] == "user" and "not valid JSON" in repair[3]["content"]
    assert "corrected JSON only" in repair[3]["content"]
    rows = calls(db.path)
    assert rows[0][0] == "error" and rows[0][1].startswith("not valid JSON")
    assert rows[1][:4] == ("ok", None, 0, 1)  # the repair points at the call it repairs
    assert result.call_id == 2


def test_malformed_json_twice_is_unparsed(db):
    with ScriptedServer(lambda request: "I think the label is refund.") as server:
        client = make_client(server, db)
        result = ask(client)
        assert server.calls == 2  # one repair, no loop
    assert not result.ok and result.error == "unparsed: no JSON object or array in the reply"
    assert result.text == "I think the label is refund."
    assert [r[0] for r in calls(db.path)] == ["error", "error"]
    assert client.usage()["failed_calls"] == 2


def test_tolerant_parser_needs_no_repair(db):
    answer = '<think>the user wants JSON</think>\n```json\n{"label": "refund", "score": 0.9,}\n```'
    with ScriptedServer(lambda request: answer) as server:
        result = ask(make_client(server, db))
        assert server.calls == 1
    assert result.ok and result.data == {"label": "refund", "score": 0.9}


@pytest.mark.parametrize("reply, error", [
    (chat_completion(None), "empty reply"),
    (chat_completion("   "), "empty reply"),
    (chat_completion("", finish_reason="length"), "empty reply (cut at max_output_tokens)"),
    (chat_completion(None, refusal="I can't help with that."), "refused: I can't help with that."),
    (chat_completion(None, finish_reason="content_filter"), "refused: stopped by the content filter"),
])
def test_empty_or_refused_reply_is_recorded_not_repeated(db, reply, error):
    with ScriptedServer(lambda request: reply) as server:
        result = ask(make_client(server, db))
        assert server.calls == 1
    assert not result.ok and result.error == error and result.data is None
    assert calls(db.path)[0][:2] == ("error", error)


def test_schema_mismatch_is_repaired(db):
    replies = ScriptedServer.sequence('{"label": 3, "score": 1}', chat_completion(GOOD))
    with ScriptedServer(replies) as server:
        result = ask(make_client(server, db))
        assert server.calls == 2
        repair_prompt = server.requests[1]["body"]["messages"][-1]["content"]
    assert result.ok
    assert "does not match the schema: $.label: expected string, got integer" in repair_prompt


def test_validator_rejection_is_repaired_with_its_message(db):
    def validate(data):
        if data["label"] not in ("refund", "delivery"):
            raise ValueError(f"unknown label {data['label']!r}; use refund or delivery")
        return {**data, "checked": True}

    replies = ScriptedServer.sequence('{"label": "money", "score": 1}', chat_completion(GOOD))
    with ScriptedServer(replies) as server:
        result = ask(make_client(server, db), validate=validate)
        repair_prompt = server.requests[1]["body"]["messages"][-1]["content"]
    assert result.ok and result.data == {"label": "refund", "score": 0.9, "checked": True}
    assert "invalid: unknown label 'money'; use refund or delivery" in repair_prompt


def test_validator_rejecting_twice_is_unparsed(db):
    def validate(data):
        raise KeyError("cluster_id")

    with ScriptedServer(lambda request: GOOD) as server:
        result = ask(make_client(server, db), validate=validate)
        assert server.calls == 2
    assert not result.ok and result.error == "unparsed: invalid: 'cluster_id'"


def test_prompt_blocked_by_a_content_filter_is_a_refusal(db):
    body = error_body("The response was filtered due to the prompt triggering the content management policy.",
                      "invalid_request_error", "content_filter")  # Azure OpenAI's way
    with ScriptedServer(lambda request: Reply(400, body)) as server:
        result = ask(make_client(server, db))
        assert server.calls == 1
    assert not result.ok and result.error.startswith("refused: The response was filtered")


def test_reply_that_is_not_a_chat_completion_is_a_recorded_failure(db):
    with ScriptedServer(lambda request: Reply(200, "<html>gateway says hi</html>")) as server:
        result = ask(make_client(server, db))
        assert server.calls == 1
    assert not result.ok and result.error.startswith("bad reply from http://127.0.0.1")
    assert calls(db.path)[0][0] == "error"


def test_other_4xx_fails_that_request_only(db):
    reply = Reply(400, error_body("This model's maximum context length is 4096 tokens", "invalid_request_error"))
    with ScriptedServer(lambda request: reply) as server:
        client = make_client(server, db)
        first = ask(client)
        second = ask(client, [{"role": "user", "content": "another"}])
        assert server.calls == 2  # not retried
    assert not first.ok and "400 from" in first.error and "maximum context length" in first.error
    assert not second.ok


@pytest.mark.parametrize("status, hint, flag_hint", [
    (401, "check the API key", "check the API key"), (403, "", ""),
    (404, "check model and base_url", "check --llm-model and --llm-base-url")])
def test_wrong_key_or_model_stops_the_stage(db, status, hint, flag_hint):
    from textclust.cli import error_line

    with ScriptedServer(lambda request: Reply(status, error_body("nope", "invalid_request_error"))) as server:
        with pytest.raises(PermanentError) as caught:
            ask(make_client(server, db))
        assert server.calls == 1
    # Python callers read the settings' keywords; the command line prints its flags.
    assert caught.value.fatal and f"{status} from" in str(caught.value) and hint in str(caught.value)
    assert f"{status} from" in error_line(caught.value) and flag_hint in error_line(caught.value)
    assert calls(db.path)[0][0] == "error"


# --- structured output fallback ---------------------------------------------------------------------------


def _rejecting(*kinds):
    def handler(request):
        fmt = request["body"].get("response_format")
        if fmt and fmt["type"] in kinds:
            return Reply(400, error_body(f"response_format type '{fmt['type']}' is not supported",
                                         "invalid_request_error"))
        return chat_completion(GOOD)

    return handler


def test_server_rejecting_json_schema_gets_json_object_with_the_schema(db):
    logged = []
    with ScriptedServer(_rejecting("json_schema")) as server:
        client = make_client(server, db, log=logged.append)
        assert ask(client).ok
        assert ask(client, [{"role": "user", "content": "Complaint: late parcel."}]).ok
        kinds = [r["body"].get("response_format", {}).get("type") for r in server.requests]
        hinted = server.requests[1]["body"]["messages"][-1]["content"]
        # A new client on the same database starts with the mode that works with this
        # server, and the cache answers.
        again = make_client(server, db)
        assert again.usage()["structured"] == "json_object_schema"
        result = ask(again)
        assert server.calls == 3
    assert result.ok and result.cached
    assert kinds == ["json_schema", "json_object", "json_object"]  # the working mode is remembered
    assert server.requests[1]["body"]["response_format"]["schema"]["required"] == ["label", "score"]
    assert "JSON schema" in hinted and '"required": ["label", "score"]' in hinted
    assert client.usage()["structured"] == "json_object_schema"
    assert client.usage()["calls"] == 2  # the refused request is not a paid call
    assert any("does not accept response_format json_schema" in line for line in logged)
    rows = calls(db.path)
    assert rows[0][0] == "error" and rows[0][1].startswith("structured output (json_schema) refused")
    assert [(r[0], r[4]) for r in rows] == [("error", "json_schema"), ("ok", "json_object_schema"),
                                            ("ok", "json_object_schema"), ("cached", "json_object_schema")]


def test_llama_cpp_style_500_for_json_schema_falls_back_without_retrying(db):
    """llama-cpp-python's server answers response_format json_schema with a 500 validation error
    and honours {"type": "json_object", "schema": …}."""
    def handler(request):
        fmt = request["body"].get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return Reply(500, error_body("1 validation error: response_format.type Input should be 'text' or "
                                         "'json_object'"))
        assert fmt == {"type": "json_object", "schema": fmt["schema"]}
        return chat_completion(GOOD)

    with ScriptedServer(handler) as server:
        client = make_client(server, db)
        assert ask(client).ok
        assert server.calls == 2  # one refusal, then the schema in json_object: no retries of the 500
    assert client.usage()["structured"] == "json_object_schema" and client.usage()["retries"] == 0


def test_server_rejecting_all_structured_output_gets_plain_json_request(db):
    with ScriptedServer(_rejecting("json_schema", "json_object")) as server:
        client = make_client(server, db)
        result = ask(client)
        body = server.requests[-1]["body"]
        assert server.calls == 4  # json_schema, json_object + schema, json_object, none
    assert result.ok and "response_format" not in body
    assert "Answer with JSON only" in body["messages"][-1]["content"]
    assert client.usage()["structured"] == "none"


def test_explicit_structured_mode_refused_is_a_clear_error(db):
    with ScriptedServer(_rejecting("json_schema")) as server:
        with pytest.raises(LLMError, match=r"refused structured output \(json_schema\).*try structured "
                                           r"json_object_schema") as caught:
            ask(make_client(server, db, structured="json_schema"))
    from textclust.cli import error_line

    assert re.search(r"refused structured output \(json_schema\).*try --llm-structured json_object_schema",
                     error_line(caught.value))


def test_newer_openai_parameter_names_are_adapted(db):
    def handler(request):
        if "max_tokens" in request["body"]:
            return Reply(400, error_body("Unsupported parameter: 'max_tokens' is not supported with this model. "
                                         "Use 'max_completion_tokens' instead.", "invalid_request_error"))
        return chat_completion(GOOD)

    with ScriptedServer(handler) as server:
        client = make_client(server, db)
        assert ask(client).ok
        assert ask(client, [{"role": "user", "content": "again"}]).ok
        assert [("max_tokens" in r["body"], r["body"].get("max_completion_tokens")) for r in server.requests] == [
            (True, None), (False, 2048), (False, 2048)]


# --- cache ------------------------------------------------------------------------------------------------


def test_same_request_twice_is_served_from_the_cache(db):
    with ScriptedServer(lambda request: chat_completion(GOOD)) as server:
        client = make_client(server, db)
        assert not client.is_cached(MESSAGES, SCHEMA, "label")
        first, second = ask(client), ask(client)
        assert client.is_cached(MESSAGES, SCHEMA, "label")
        assert server.calls == 1
        # A later process (new client, same database) sends nothing either.
        third = ask(make_client(server, db))
        assert server.calls == 1
        # Different parameters are a different request.
        ask(make_client(server, db, temperature=0.5))
        assert server.calls == 2
    assert first.ok and not first.cached
    assert second.ok and second.cached and second.data == first.data
    assert third.cached
    assert [r[0] for r in calls(db.path)] == ["ok", "cached", "cached", "ok"]
    assert client.usage()["calls"] == 1 and client.usage()["cached_calls"] == 1
    assert client.usage()["prompt_tokens"] == 10  # cached answers cost nothing


def test_cached_bad_answer_replays_the_repair_from_the_cache(db):
    replies = ScriptedServer.sequence("not json", chat_completion(GOOD))
    with ScriptedServer(replies) as server:
        ask(make_client(server, db))
        result = ask(make_client(server, db))
        assert server.calls == 2
    assert result.ok and result.cached
    assert [r[0] for r in calls(db.path)] == ["error", "ok", "cached", "cached"]


def test_cache_key_depends_on_the_server(db):
    with ScriptedServer(lambda request: chat_completion(GOOD)) as one:
        ask(make_client(one, db))
        with ScriptedServer(lambda request: chat_completion(GOOD)) as two:
            ask(make_client(two, db))
            assert (one.calls, two.calls) == (1, 1)


# --- budgets and concurrency ----------------------------------------------------------------------------


def test_max_calls_stops_before_sending(db):
    with ScriptedServer(lambda request: chat_completion(GOOD)) as server:
        client = make_client(server, db, max_calls=1)
        assert ask(client).ok
        with pytest.raises(BudgetExceeded, match=r"^max_calls 1 reached \(1 calls made\).*a higher max_calls "):
            ask(client, [{"role": "user", "content": "a different complaint"}])
        assert server.calls == 1
        assert ask(client).cached  # cached answers are still served
    assert len(calls(db.path)) == 2


def test_max_tokens_stops_before_sending(db):
    with ScriptedServer(lambda request: chat_completion(GOOD, 100, 20)) as server:
        client = make_client(server, db, max_tokens=150)
        assert ask(client).ok
        with pytest.raises(BudgetExceeded, match=r"^max_tokens 150 reached \(120 tokens used"):
            ask(client, [{"role": "user", "content": "x" * 400}])
        assert server.calls == 1


def test_max_calls_zero_serves_only_the_cache(db):
    with ScriptedServer(lambda request: chat_completion(GOOD)) as server:
        ask(make_client(server, db))
        client = make_client(server, db, max_calls=0)
        assert ask(client).cached
        with pytest.raises(BudgetExceeded):
            ask(client, [{"role": "user", "content": "new"}])
        assert server.calls == 1


def _echo(request):
    number = int(user_prompt(request).split()[-1])
    return Reply(body=chat_completion(json.dumps({"label": f"text {number}", "score": number})), delay=0.3)


def test_concurrent_requests_keep_their_order(db):
    batch = [[{"role": "user", "content": f"Complaint number {i}"}] for i in range(8)]
    with ScriptedServer(_echo) as server:
        client = make_client(server, db, concurrency=4)
        started = time.perf_counter()
        results = client.complete_many("assign", batch, SCHEMA, "label")
        elapsed = time.perf_counter() - started
        assert server.calls == 8
    assert [r.data["score"] for r in results] == list(range(8))
    assert all(r.ok for r in results)
    assert elapsed < 8 * 0.3 * 0.6  # ~2 rounds of 0.3 s, not 8
    assert len(calls(db.path)) == 8 and client.usage()["calls"] == 8


def test_budget_in_a_batch_stops_cleanly_with_partial_results(db):
    batch = [[{"role": "user", "content": f"Complaint number {i}"}] for i in range(6)]
    with ScriptedServer(_echo) as server:
        client = make_client(server, db, concurrency=2, max_calls=3)
        with pytest.raises(BudgetExceeded) as caught:
            client.complete_many("assign", batch, SCHEMA, "label")
        assert server.calls == 3
    partial = caught.value.partial
    assert len(partial) == 6 and sum(r is not None for r in partial) == 3
    assert all(r.ok for r in partial if r is not None)
    assert [r[0] for r in calls(db.path)] == ["ok"] * 3  # every paid call is recorded


# --- the key never leaves the environment ---------------------------------------------------------------


SENTINEL = "sk-test-SENTINEL-4f1c0d9e8b7a6c5d"


def test_the_api_key_never_reaches_the_database_or_logs(db, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    seen = []

    def handler(request):
        auth = {k.lower(): v for k, v in request["headers"].items()}.get("authorization", "")
        seen.append(auth)
        prompt = user_prompt(request)
        if "fail" in prompt:  # a server that echoes the key in its errors
            return Reply(500, error_body(f"internal error for key {auth}"))
        if "deny" in prompt:
            return Reply(401, error_body(f"Incorrect API key provided: {auth[7:]}", "invalid_request_error",
                                         "invalid_api_key"))
        return chat_completion(GOOD)

    logged = []
    with ScriptedServer(handler) as server:
        client = make_client(server, db, log=logged.append, max_retries=1)
        assert ask(client).ok
        failed = ask(client, [{"role": "user", "content": "please fail"}])
        with pytest.raises(PermanentError) as denied:
            ask(client, [{"role": "user", "content": "please deny"}])
    assert seen[0] == f"Bearer {SENTINEL}"  # the key was sent to the server, and only there
    assert not failed.ok and SENTINEL not in failed.error and "***" in failed.error
    assert SENTINEL not in str(denied.value) and "401" in str(denied.value)
    assert SENTINEL not in " ".join(logged)
    assert SENTINEL not in repr(client.config) and SENTINEL not in json.dumps(client.config.public_dict())
    assert SENTINEL not in repr(client.transport)
    db.close()
    con = sqlite3.connect(db.path)
    tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    dump = "\n".join(repr(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert "llm_calls" in tables and dump.count("Incorrect API key") == 1
    assert SENTINEL not in dump and SENTINEL[3:] not in dump
    for path in db.path.parent.glob(db.path.name + "*"):  # the file and any -wal / -shm
        assert SENTINEL.encode() not in path.read_bytes()


# --- pieces ---------------------------------------------------------------------------------------------


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('```json\n{"a": [1, 2,],}\n```', {"a": [1, 2]}),
    ('Here it is: {"a": "x}y"} — hope that helps', {"a": "x}y"}),
    ("<think>{not this}</think> [1, 2]", [1, 2]),
    ("{'a': True, 'b': None}", {"a": True, "b": None}),
    ("{\u201ca\u201d: \u201cb\u201d}", {"a": "b"}),
])
def test_tolerant_parser(text, expected):
    assert parse_json(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "empty reply"),
    ("no json here", "no JSON object or array"),
    ('{"a": 1', "cut off"),
    ('{"a" 1}', "not valid JSON"),
])
def test_parser_errors_say_why(text, message):
    with pytest.raises(ParseError, match=message):
        parse_json(text)


def test_schema_check_names_the_first_problem():
    schema = {"type": "object", "required": ["items"], "properties": {"items": {
        "type": "array", "minItems": 1, "items": {"type": "object", "required": ["name"],
                                                  "properties": {"name": {"type": "string"},
                                                                 "kind": {"enum": ["a", "b"]}}}}}}
    check_schema({"items": [{"name": "x", "kind": "a"}]}, schema)
    for value, message in [
        ([], "$: expected object, got array"),
        ({}, "$: missing required key 'items'"),
        ({"items": []}, "$.items: 0 items, at least 1 expected"),
        ({"items": [{"name": None}]}, "$.items[0].name: expected string, got null"),
        ({"items": [{"name": "x", "kind": "c"}]}, '$.items[0].kind: "c" is not one of "a", "b"'),
    ]:
        with pytest.raises(SchemaMismatch) as caught:
            check_schema(value, schema)
        assert str(caught.value) == message


# --- a model client without a database (issue "Seams…", item 3) -------------------------------------


def test_importing_the_client_imports_neither_the_store_nor_sqlalchemy():
    import subprocess
    import sys

    code = ("import sys, textclust.llm.client; "
            "print(sorted(m for m in sys.modules if m == 'sqlalchemy' or m.startswith('textclust.store')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_client_without_a_database_answers_and_records_nothing():
    import json

    from tests.llm_server import ScriptedServer, chat_completion
    from textclust.llm.client import LLMClient
    from textclust.llm.config import LLMConfig

    def answer(request):
        return chat_completion(json.dumps({"explanations": [{"name": "refund", "explanation": "asks for money back"}]}))

    with ScriptedServer(answer) as server:
        client = LLMClient(LLMConfig(model="m", base_url=server.base_url, max_retries=0))
        schema = {"type": "object", "properties": {"explanations": {"type": "array"}}, "required": ["explanations"]}
        first = client.complete_json("propose", [{"role": "user", "content": "hi"}], schema, "proposal")
        again = client.complete_json("propose", [{"role": "user", "content": "hi"}], schema, "proposal")
    assert first.ok and first.data["explanations"][0]["name"] == "refund" and first.call_id is None
    assert again.ok and not again.cached  # no store: no cache, the server is asked again
    assert server.calls == 2
