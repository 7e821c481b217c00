"""Shared fixtures for the textclust test suite.

Expensive work is done once per session:

* ``sample_run`` — ONE real ``textclust run`` of data/complaints.csv (real embedding
  model, UMAP, HDBSCAN) into a temporary database. Tests that need a different
  database state work on a copy (``copy_db``), so the shared one never changes.
* ``fake_run_db`` — a database holding one complete run of a synthetic corpus, embedded by
  a fake embedder (``tests/fakes.py``) handed to the pipeline, so no model is ever loaded
  (fast; used by store and bad-input tests).

Every database and output file lives under pytest's tmp paths; nothing is written
into the repository.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

# The tests never download models: a name that is not on disk (the fake models below) must
# fail at once instead of retrying the Hugging Face Hub. Set before huggingface_hub is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "data" / "complaints.csv"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GOAL = "Cluster the complaints by why the customer is unhappy."  # the README main command's goal

# Synthetic corpus: three topics, each with its own vocabulary, and vectors drawn
# from three well-separated Gaussian blobs on the unit sphere.
from tests.fakes import FAKE_MODEL, FakeEmbedder  # noqa: E402  (never a real model: a miss fails loudly)
TOPICS = {
    "refund": "I returned the {p} weeks ago and the refund money never reached my account",
    "password": "cannot log in to see the {p} order because the password reset email never comes",
    "delivery": "the {p} delivery is late again and the tracking page has not moved for days",
}
PRODUCTS = [
    "shoes", "laptop", "kettle", "sofa", "headphones", "camera", "blender", "jacket", "lamp", "tablet",
    "mattress", "printer", "bicycle", "toaster", "monitor", "backpack", "watch", "speaker", "rug", "desk",
]


@dataclass
class SampleRun:
    db: Path
    run_id: int
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Blobs:
    texts: list[str]
    X: np.ndarray  # unit-length float32 rows
    groups: np.ndarray  # true topic index per text
    topics: list[str]


@dataclass
class FakeRun:
    db: Path
    run_id: int
    corpus: object  # textclust.ingest.Corpus
    settings: object  # textclust.config.RunConfig


# --- plain helpers (exposed through fixtures below) ---------------------------------


def make_blobs(per_group: int = 20, dim: int = 8, spread: float = 0.05, seed: int = 0) -> Blobs:
    """Toy texts with topic words and embeddings in well-separated blobs."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    centers = np.eye(dim)[: len(topics)]  # orthogonal directions: cosine 0 between topics
    texts, rows, groups = [], [], []
    for g, topic in enumerate(topics):
        for i in range(per_group):
            texts.append(TOPICS[topic].format(p=PRODUCTS[i % len(PRODUCTS)]) + ("" if i < len(PRODUCTS) else " again"))
            v = centers[g] + spread * rng.normal(size=dim)
            rows.append(v / np.linalg.norm(v))
            groups.append(g)
    return Blobs(texts, np.asarray(rows, dtype=np.float32), np.asarray(groups), topics)


def copy_sqlite(src: Path, dst: Path) -> Path:
    """A consistent copy of a (possibly WAL-mode, possibly open) SQLite database."""
    source = sqlite3.connect(src)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return dst


def table_counts(path: Path, tables=("runs", "corpora", "texts", "input_rows", "embeddings")) -> dict:
    con = sqlite3.connect(path)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_path() -> Path:
    assert SAMPLE.is_file(), f"sample corpus missing: {SAMPLE}"
    return SAMPLE


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared corpora not available: {SHARED_DATA} does not exist (only on development machines / CI)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _no_default_db(monkeypatch, tmp_path):
    """No test may fall back to ./textclust.db: point the default at a tmp path."""
    monkeypatch.setenv("TEXTCLUST_DB", str(tmp_path / "default-should-not-be-used.db"))
    monkeypatch.delenv("TEXTCLUST_DEBUG", raising=False)


@pytest.fixture
def make_file(tmp_path):
    """make_file(name, content) -> Path; str content is written as UTF-8, bytes as-is."""

    def _make(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return _make


@pytest.fixture
def cli_invoke():
    """cli_invoke(*args) -> click Result (stdout and stderr kept apart, click >= 8.2)."""
    from textclust.cli import cli

    runner = CliRunner()

    def _invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=True)

    return _invoke


@pytest.fixture
def copy_db(tmp_path):
    """copy_db(src) -> a private copy of a database under this test's tmp_path."""
    counter = {"n": 0}

    def _copy(src: Path) -> Path:
        counter["n"] += 1
        return copy_sqlite(Path(src), tmp_path / f"copy{counter['n']}.db")

    return _copy


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory, sample_path) -> SampleRun:
    """The one real pipeline run of the sample corpus, through the CLI with default settings."""
    from textclust.cli import cli

    db = tmp_path_factory.mktemp("sample_run") / "sample.db"
    result = CliRunner().invoke(cli, ["run", str(sample_path), "--goal", GOAL, "--db", str(db)])
    assert result.exit_code == 0, f"sample run failed: {result.output}\n{result.exception!r}"
    con = sqlite3.connect(db)
    try:
        ids = [r[0] for r in con.execute("SELECT id FROM runs")]
    finally:
        con.close()
    assert len(ids) == 1, ids
    return SampleRun(db=db, run_id=ids[0], exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr)


@pytest.fixture(scope="session")
def blobs() -> Blobs:
    return make_blobs()


def build_fake_run(db_path: Path, blobs: Blobs, **settings) -> FakeRun:
    """Run the real pipeline on the synthetic corpus with the fake embedder (no model is
    loaded); the run stores the vectors in the cache like any run, so CLI tests on a copy of
    the database find them there."""
    from textclust.config import RunConfig
    from textclust.ingest import corpus_from_texts
    from textclust.pipeline import Pipeline
    from textclust.store import Database

    corpus = corpus_from_texts(blobs.texts, name="blobs")
    options = RunConfig.from_flat(**{"k": 3, "reduction": "none", "embedding_model": FAKE_MODEL, **settings})
    db = Database(db_path)
    try:
        embedder = FakeEmbedder(blobs.texts, blobs.X)
        run_id = Pipeline(db, options, embedder=embedder).run(corpus, "which topic the text is about")
    finally:
        db.close()
    return FakeRun(db=db_path, run_id=run_id, corpus=corpus, settings=options)


@pytest.fixture(scope="session")
def fake_run_db(tmp_path_factory, blobs) -> FakeRun:
    """A closed database file holding one complete (fast, model-free) run."""
    return build_fake_run(tmp_path_factory.mktemp("fake_run") / "fake.db", blobs)


@pytest.fixture
def llm_db(monkeypatch, tmp_path):
    """A fresh database for tests against the scripted model servers: no model settings from the
    environment, and no proxy between the client and 127.0.0.1."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTCLUST_LLM_MODEL", "TEXTCLUST_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    from textclust.store import open_store

    database = open_store(tmp_path / "llm.db")
    yield database
    database.close()
