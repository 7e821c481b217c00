"""Seams (issue "Seams a second store and a second executor can fill"). One way to open a store:
``open_store`` takes a file path or a SQLAlchemy URL, for the CLI, ``textclust.run``, ``load_run``
and the benches; nothing outside ``textclust/store/`` constructs ``Database`` itself."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from textclust.errors import TextclustError
from textclust.store import Database, open_store, store_path

PACKAGE = Path(__file__).resolve().parents[1] / "textclust"
BENCH = PACKAGE.parent / "bench"


def test_a_path_and_a_sqlite_url_open_the_same_file(tmp_path):
    path = tmp_path / "s.db"
    first = open_store(path)
    try:
        assert isinstance(first, Database) and path.is_file()
    finally:
        first.close()
    second = open_store(f"sqlite:///{path}")
    try:
        assert second.path == path
    finally:
        second.close()
    assert store_path(f"sqlite:///{path}") == path == store_path(str(path))


def test_a_store_object_is_returned_as_it_is(tmp_path):
    db = open_store(tmp_path / "s.db")
    try:
        assert open_store(db) is db
    finally:
        db.close()


@pytest.mark.parametrize("url, said", [
    ("postgresql://ann:hunter2@db.example/textclust", "not supported yet"),
    ("sqlite://", "must name a file"),
    ("sqlite:///:memory:", "must name a file"),
    ("::not a url://x", "neither a file path nor a database URL"),
])
def test_an_unsupported_url_is_one_clear_error_without_its_password(url, said):
    with pytest.raises(TextclustError) as caught:
        open_store(url)
    message = str(caught.value)
    assert said in message
    assert "hunter2" not in message


def test_the_command_line_and_load_run_take_a_sqlite_url(cli_invoke, fake_run_db, copy_db):
    from textclust.results import load_run

    db = copy_db(fake_run_db.db)
    url = f"sqlite:///{db}"
    result = cli_invoke("runs", "--db", url, "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == [fake_run_db.run_id]
    assert load_run(url, "latest").run_id == fake_run_db.run_id
    missing = cli_invoke("runs", "--db", f"sqlite:///{db.parent / 'none.db'}")
    assert missing.exit_code != 0 and "no such database" in missing.stderr
    assert not (db.parent / "none.db").exists()  # a reading command never creates one
    refused = cli_invoke("runs", "--db", "postgresql://ann:hunter2@localhost/x")
    assert refused.exit_code == 2 and refused.stderr.startswith("textclust: error: ")
    assert "hunter2" not in refused.stderr and "Traceback" not in refused.stderr


def _constructs_database(path: Path) -> list[int]:
    """Lines of ``path`` that call ``Database(…)`` or test ``isinstance(…, Database)``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name == "Database":
                lines.append(node.lineno)
            if name == "isinstance" and any("Database" in ast.dump(a) for a in node.args[1:]):
                lines.append(node.lineno)
    return lines


def test_nothing_outside_the_store_constructs_a_database():
    files = [p for p in PACKAGE.rglob("*.py") if "store" not in p.relative_to(PACKAGE).parts]
    files += sorted(BENCH.glob("*.py"))
    found = {str(p.relative_to(PACKAGE.parent)): lines for p in files if (lines := _constructs_database(p))}
    assert found == {}, f"construct stores through textclust.store.open_store: {found}"


def test_the_construction_check_finds_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from textclust.store import Database\ndb = Database('x.db')\nok = isinstance(db, Database)\n")
    assert _constructs_database(bad) == [2, 3]


# --- eval's library part: textclust.evaluate_file -------------------------------------------------------


def test_evaluate_is_eval_in_python_and_reuses_the_run(tmp_path, blobs):
    """``textclust.evaluate_file`` runs (or reuses) and scores against a gold column, as `eval` does."""
    import csv

    import textclust
    from tests.fakes import FAKE_MODEL, FakeEmbedder

    path = tmp_path / "labelled.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "topic"])
        writer.writerows((text, blobs.topics[g]) for text, g in zip(blobs.texts, blobs.groups))
    kwargs = dict(db=f"sqlite:///{tmp_path / 'e.db'}", embedder=FakeEmbedder(blobs.texts, blobs.X), k=3,
                  reduction="none", embedding_model=FAKE_MODEL)
    first = textclust.evaluate_file(path, "which topic the text is about", "topic", **kwargs)
    assert first["reused"] is False and first["n"] == len(blobs.texts) and first["n_gold_classes"] == 3
    assert first["acc"] > 0.9 and 0.0 <= first["nmi"] <= 1.0
    again = textclust.evaluate_file(path, "which topic the text is about", "topic", **kwargs)
    assert again["reused"] is True and again["run_id"] == first["run_id"] and again["acc"] == first["acc"]


# --- the goal is cleaned once ------------------------------------------------------------------------


def test_a_goal_is_cleaned_once_so_spacing_never_makes_a_new_run(tmp_path, blobs):
    from textclust.config import RunConfig, clean_goal
    from textclust.ingest import corpus_from_texts
    from textclust.pipeline import Pipeline
    from tests.fakes import FAKE_MODEL, FakeEmbedder

    assert clean_goal("  which topic\n the   text is about ") == "which topic the text is about"
    corpus = corpus_from_texts(blobs.texts, name="blobs")
    config = RunConfig.from_flat(k=3, reduction="none", embedding_model=FAKE_MODEL)
    db = open_store(tmp_path / "g.db")
    try:
        pipeline = Pipeline(db, config, embedder=FakeEmbedder(blobs.texts, blobs.X, vectors_for_unknown=True))
        run_id = pipeline.run(corpus, "  which topic\n the   text is about ")
        assert db.read_run(run_id).run.goal == "which topic the text is about"
        assert pipeline.identical_run(corpus, "which topic the text is about") == run_id
    finally:
        db.close()
