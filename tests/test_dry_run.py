"""Fail before spending (issue "The first hour of a new user", item 8).

``--dry-run`` estimates from the corpus and the settings alone: it embeds, clusters, stores
and sends nothing (not even the server check), and never creates a database. A model server
that cannot be reached stops ``resume`` before the run is claimed or anything recomputed.
(``run``'s own check, and a refused key, are tested in tests/test_llm_pipeline.py.)
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading

import pytest

from tests.conftest import file_sha256
from tests.fakes import FAKE_MODEL, FakeEmbedder
from tests.llm_server import Reply, ScriptedServer, error_body
from textclust.config import RunConfig
from textclust.ingest import corpus_from_texts
from textclust.llm.config import LLMConfig
from textclust.llm.errors import LLMError
from textclust.pipeline import Pipeline
from textclust.store import Database


class CountingListener:
    """A TCP port that accepts connections and counts them (any HTTP request would be one)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def dry_run(cli_invoke, corpus, db, url, *extra):
    # A fake embedding model: any attempt to embed would fail at once (it is not on disk).
    return cli_invoke("run", corpus, "--goal", "why the customer is unhappy", "--llm-model", "m",
                      "--llm-base-url", url, "--embedding-model", FAKE_MODEL, "--db", db, "--dry-run", *extra)


@pytest.fixture
def texts_file(tmp_path, blobs):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(blobs.texts) + "\n", encoding="utf-8")
    return path


def test_a_dry_run_sends_nothing_embeds_nothing_and_creates_no_database(cli_invoke, texts_file, tmp_path, blobs):
    db = tmp_path / "new.db"
    with CountingListener() as server:
        result = dry_run(cli_invoke, texts_file, db, server.base_url, "--json")
    assert result.exit_code == 0, result.output
    assert server.connections == 0  # not even the server check
    assert not db.exists() and not list(tmp_path.glob("new.db*"))
    assert "embeddings:" not in result.stderr and "clustering" not in result.stderr
    estimate = json.loads(result.stdout)
    n = len(blobs.texts)
    assert f"estimate: {n} distinct texts" in estimate["note"] and "embeds and clusters nothing" in estimate["note"]
    # Three rounds; a dry run knows no clusters, so it counts the most propose calls a round can make.
    from textclust.explain.model import MAX_PROPOSE_CALLS
    assert estimate["propose"]["calls"] == 3 * MAX_PROPOSE_CALLS
    # Every round asks every text at least once, 10 texts a call.
    assert estimate["assign"]["calls"] >= 3 * (n // 10)
    assert estimate["total"]["calls"] == estimate["propose"]["calls"] + estimate["assign"]["calls"]


def test_the_estimate_follows_the_batch_size_and_the_corpus_size(cli_invoke, texts_file, tmp_path, blobs):
    url = "http://127.0.0.1:9/v1"  # nothing listens there: a dry run must not care
    small = json.loads(dry_run(cli_invoke, texts_file, tmp_path / "a.db", url, "--json", "--batch-size", 5).stdout)
    large = json.loads(dry_run(cli_invoke, texts_file, tmp_path / "a.db", url, "--json", "--batch-size", 20).stdout)
    assert small["assign"]["calls"] >= 3 * large["assign"]["calls"]
    half = tmp_path / "half.txt"
    half.write_text("\n".join(blobs.texts[: len(blobs.texts) // 2]) + "\n", encoding="utf-8")
    fewer = json.loads(dry_run(cli_invoke, half, tmp_path / "a.db", url, "--json", "--batch-size", 5).stdout)
    assert fewer["assign"]["calls"] < small["assign"]["calls"]
    assert not (tmp_path / "a.db").exists()


def test_a_dry_run_leaves_an_existing_database_untouched(cli_invoke, copy_db, fake_run_db, texts_file):
    db = copy_db(fake_run_db.db)
    before = file_sha256(db)
    result = dry_run(cli_invoke, texts_file, db, "http://127.0.0.1:9/v1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Estimated language-model use (dry run: nothing was sent, embedded or stored)")
    assert file_sha256(db) == before


def test_an_offline_dry_run_fails_in_one_line_without_a_database(cli_invoke, texts_file, tmp_path):
    db = tmp_path / "none.db"
    result = cli_invoke("run", texts_file, "--goal", "g", "--db", db, "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "textclust: error: --dry-run estimates language-model calls: " \
                                             "configure one with --llm-model"
    assert not db.exists()


def test_the_python_dry_run_needs_no_database(blobs):
    config = RunConfig.from_flat(model=LLMConfig(model="m", base_url="http://127.0.0.1:9/v1"), depth=2,
                                 candidates=[{"name": "refund", "explanation": "the refund has not arrived"}])
    estimate = Pipeline(None, config).estimate(corpus_from_texts(blobs.texts), "why")
    assert estimate["total"]["calls"] > 0 and "depth 2" in estimate["note"]


def test_resume_with_an_unreachable_server_fails_before_any_work(tmp_path, blobs):
    """A run that failed at its model, resumed after the server went away: one error, at once;
    the run stays failed (not claimed, not re-embedded, not re-clustered)."""
    refuse = Reply(401, error_body("invalid key", "invalid_request_error", "invalid_api_key"))
    corpus = corpus_from_texts(blobs.texts)
    db = Database(tmp_path / "t.db")
    try:
        with ScriptedServer(lambda request: refuse) as server:  # GET /models answers; every call is refused
            model = LLMConfig(model="m", base_url=server.base_url, max_retries=0)
            config = RunConfig.from_flat(model=model, k=3, reduction="none", embedding_model=FAKE_MODEL)
            with pytest.raises(LLMError):
                Pipeline(db, config, embedder=FakeEmbedder(blobs.texts, blobs.X, vectors_for_unknown=True)
                         ).run(corpus, "which topic")
        embedder = FakeEmbedder(blobs.texts, blobs.X, vectors_for_unknown=True)
        said = []
        with pytest.raises(LLMError, match=r"cannot connect to .*server running"):
            Pipeline(db, log=said.append, embedder=embedder).resume(1)
        assert embedder.calls == 0 and not any(line.startswith(("clustering", "resuming")) for line in said)
    finally:
        db.close()
    con = sqlite3.connect(tmp_path / "t.db")
    try:
        assert con.execute("SELECT id, status FROM runs").fetchall() == [(1, "failed")]
    finally:
        con.close()
