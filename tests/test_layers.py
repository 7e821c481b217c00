"""One seam for the database: every query lives in ``textclust/store/``, and the store
imports no stage (only the bottom layer: corpus, interfaces, config, stats, errors)."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from tests.import_graph import imported_modules

PACKAGE = Path(__file__).resolve().parents[1] / "textclust"
STORE = PACKAGE / "store"

# What the store may import from the package besides itself.
STORE_MAY_IMPORT = {"textclust.corpus", "textclust.interfaces", "textclust.config", "textclust.stats",
                    "textclust.errors", "textclust.llm.keys"}  # (the call record's keys: plain functions)
# The stages it must never import (named so that a failure says which rule broke).
STAGES = ("textclust.ingest", "textclust.cluster", "textclust.embed", "textclust.explain", "textclust.pipeline",
          "textclust.llm", "textclust.report", "textclust.results", "textclust.cli",
          "textclust.api", "textclust.evaluate")


# --- (a) no SQL outside the store ----------------------------------------------------------------


def sql_uses(source: str) -> list[tuple[int, str]]:
    """Where ``source`` uses SQLAlchemy's query API in code (comments and strings, docstrings
    included, do not count): the name ``Session``, a call ``select(…)`` or ``text(…)`` (also as
    ``sqlalchemy.select(…)``), any import of ``sqlalchemy``, and ``db.transaction(…)`` (the
    store's own sessions). A method of another object
    called ``select``/``text`` (``frame.select(…)``) or a function defined with that name is
    not SQL. Returns (line, what) pairs."""
    found = []
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
              and t.type != tokenize.STRING and not _in_fstring_text(t)]
    for i, token in enumerate(tokens):
        if token.type != tokenize.NAME:
            continue
        before = tokens[i - 1].string if i else ""
        before2 = tokens[i - 2].string if i > 1 else ""
        after = tokens[i + 1].string if i + 1 < len(tokens) else ""
        if token.string == "Session":
            found.append((token.start[0], "Session"))
        elif token.string in ("select", "text") and after == "(" and before != "def":
            if before != "." or before2 in ("sqlalchemy", "sa"):
                found.append((token.start[0], f"{token.string}("))
        elif token.string == "sqlalchemy" and before in ("import", "from"):
            found.append((token.start[0], "import sqlalchemy"))
        elif token.string == "transaction" and before == "." and after == "(":
            found.append((token.start[0], ".transaction("))  # the store's own: a Database method instead
    return found


def _in_fstring_text(token) -> bool:
    """The literal text of an f-string (Python 3.12 tokenizes f-strings into parts)."""
    return tokenize.tok_name.get(token.type) in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")


def _package_files_outside_the_store() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if STORE not in p.parents)


def test_no_sql_outside_the_store():
    wrong = []
    for path in _package_files_outside_the_store():
        for line, what in sql_uses(path.read_text(encoding="utf-8")):
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not wrong, "SQL belongs in textclust/store/ (a Database method):\n" + "\n".join(wrong)


@pytest.mark.parametrize("code, expected", [
    ("from sqlalchemy import select\nrows = s.scalars(select(Run))\n", [(1, "import sqlalchemy"), (2, "select(")]),
    ("def f(db):\n    with Session(db.engine) as s:\n        pass\n", [(2, "Session")]),
    ("import sqlalchemy\nq = sqlalchemy.text('SELECT 1')\n", [(1, "import sqlalchemy"), (2, "text(")]),
    ("conn.execute(text(\"DELETE FROM runs\"))\n", [(1, "text(")]),
    ("with self.db.transaction(immediate=True) as s:\n    pass\n", [(1, ".transaction(")]),
])
def test_the_sql_check_finds_a_violation(code, expected):
    assert sql_uses(code) == expected


@pytest.mark.parametrize("code", [
    '"""Reads the runs: select(...) over a Session, text(...) too."""\n',
    "# select(Run) lives in the store now; no Session here\nx = 1\n",
    "name = 'text(' + \"select(\"\n",
    "frame.select(columns)\nwidget.text('hello')\npath.read_text()\n",
    "def text(value):\n    return _text(value)\n",
    "y = f'{a} select(x) Session text(y)'\n",
])
def test_the_sql_check_ignores_prose_strings_and_other_methods(code):
    assert sql_uses(code) == []


# --- (b) the store imports no stage ----------------------------------------------------------------


def _store_imports() -> dict[str, set[str]]:
    return {path.name: {m for m in imported_modules(path, "textclust.store") if m.split(".")[0] == "textclust"}
            for path in sorted(STORE.glob("*.py"))}


def test_the_store_imports_no_stage():
    wrong = []
    for name, modules in _store_imports().items():
        for module in sorted(modules):
            allowed = any(module == m or module.startswith(m + ".") for m in STORE_MAY_IMPORT)
            if (module.startswith(STAGES) and not allowed) or not (
                    module == "textclust.store" or module.startswith("textclust.store.")
                    or allowed):
                wrong.append(f"textclust/store/{name} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_import_check_resolves_relative_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from ..ingest import Corpus\nfrom . import schema\nfrom .write import write_result\n"
                      "def f():\n    from ..explain.loop import RoundLoop\n    import textclust.report\n")
    assert imported_modules(sample, "textclust.store") >= {
        "textclust.ingest", "textclust.store", "textclust.store.schema", "textclust.store.write",
        "textclust.explain.loop", "textclust.report"}


def test_the_sqlite_store_implements_the_run_store_interface():
    """Every method of interfaces.RunStore exists on store.Database with the same parameters,
    so a second store (PostgreSQL) knows exactly what to implement."""
    import inspect

    from textclust.interfaces import RunStore
    from textclust.store import Database

    wanted = {name: f for name, f in inspect.getmembers(RunStore, inspect.isfunction) if not name.startswith("_")}
    assert len(wanted) >= 15
    for name, method in wanted.items():
        assert hasattr(Database, name), f"Database lacks {name}"
        assert list(inspect.signature(method).parameters) == list(inspect.signature(getattr(Database, name)).parameters), name
