"""The command line's two first-hour promises (issue "The first hour of a new user, again", 5 and 6):

* ``export -o FILE`` writes the format FILE's extension names (.csv, .json, .md/.markdown), and
  refuses, in one line, a ``--format`` that contradicts it; standard output stays CSV by default.
* every error, click's usage errors included, is one line on stderr, ``textclust: error: …``,
  with a non-zero exit (2 for usage errors) and click's "Did you mean …" hint when it has one.

All of it runs on the fast, model-free database of ``fake_run_db``.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.conftest import file_sha256


def _one_error_line(result, exit_code: int = 2) -> str:
    """The single stderr line of a failed command; checks the exit code, that nothing went to
    stdout and that no exception (a traceback) escaped."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), f"an exception escaped: {result.exception!r}"
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {result.stderr!r}"
    assert lines[0].startswith("textclust: error: "), lines[0]
    assert "Usage:" not in lines[0] and "Try '" not in lines[0]
    return lines[0]


@pytest.fixture
def db(copy_db, fake_run_db):
    return copy_db(fake_run_db.db)


# --- export: the format follows the output file's extension -----------------------------------------


def _export(cli_invoke, fake_run_db, db, *args):
    return cli_invoke("export", fake_run_db.run_id, "--db", db, *args)


def test_export_to_a_json_file_writes_json(cli_invoke, fake_run_db, db, tmp_path, blobs):
    out = tmp_path / "x.json"
    result = _export(cli_invoke, fake_run_db, db, "-o", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))  # the old export wrote CSV here
    assert data["run_id"] == fake_run_db.run_id and len(data["rows"]) == len(blobs.texts)
    assert result.stderr.strip() == f"wrote {len(blobs.texts)} rows of run {fake_run_db.run_id} to {out}"


@pytest.mark.parametrize("name", ["x.md", "x.markdown", "X.MD"])
def test_export_to_a_markdown_file_writes_markdown(cli_invoke, fake_run_db, db, tmp_path, name):
    out = tmp_path / name
    result = _export(cli_invoke, fake_run_db, db, "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert text.startswith(f"# textclust run {fake_run_db.run_id}") and "## Texts" in text


def test_export_to_an_upper_case_csv_file_writes_csv(cli_invoke, fake_run_db, db, tmp_path, blobs):
    out = tmp_path / "X.CSV"
    result = _export(cli_invoke, fake_run_db, db, "-o", out)
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(blobs.texts)


@pytest.mark.parametrize("name, fmt", [("x.json", "csv"), ("x.csv", "json"), ("x.md", "json"),
                                       ("x.markdown", "csv"), ("x.json", "md")])
def test_export_refuses_a_format_that_contradicts_the_extension(cli_invoke, fake_run_db, db, tmp_path, name, fmt):
    out = tmp_path / name
    line = _one_error_line(_export(cli_invoke, fake_run_db, db, "-o", out, "--format", fmt))
    assert f"--format {fmt}" in line and f"-o {out}" in line
    assert not out.exists()


@pytest.mark.parametrize("name, fmt", [("x.json", "json"), ("x.csv", "csv"), ("x.markdown", "md")])
def test_export_accepts_a_format_that_agrees_with_the_extension(cli_invoke, fake_run_db, db, tmp_path, name, fmt):
    out = tmp_path / name
    result = _export(cli_invoke, fake_run_db, db, "-o", out, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


def test_export_to_a_file_of_another_extension_takes_format_or_writes_csv(cli_invoke, fake_run_db, db, tmp_path,
                                                                          blobs):
    plain = tmp_path / "rows.txt"
    result = _export(cli_invoke, fake_run_db, db, "-o", plain)
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(io.StringIO(plain.read_text(encoding="utf-8"))))) == len(blobs.texts)
    assert result.stderr.strip().endswith(f"to {plain} as CSV")  # not the extension's doing: say what it is
    as_json = tmp_path / "rows.out"
    result = _export(cli_invoke, fake_run_db, db, "-o", as_json, "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(as_json.read_text(encoding="utf-8"))["rows"]) == len(blobs.texts)
    assert result.stderr.strip().endswith(f"to {as_json} as JSON")


@pytest.mark.parametrize("args", [(), ("-o", "-")])
def test_export_to_standard_output_is_still_csv_by_default(cli_invoke, fake_run_db, db, blobs, args):
    result = _export(cli_invoke, fake_run_db, db, *args)
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == len(blobs.texts)
    markdown = _export(cli_invoke, fake_run_db, db, *args, "--format", "md")
    assert markdown.exit_code == 0 and markdown.stdout.startswith("# textclust run")


# --- usage errors: one line, like the project's own ------------------------------------------------


def test_error_input_is_a_directory(cli_invoke, tmp_path):
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    line = _one_error_line(cli_invoke("run", folder, "--goal", "g", "--db", tmp_path / "u.db"))
    assert "is a directory" in line and line.endswith("(see textclust run --help)")
    assert not (tmp_path / "u.db").exists()


def test_error_missing_goal(cli_invoke, make_file, tmp_path):
    path = make_file("in.csv", "text\nhello\n")
    line = _one_error_line(cli_invoke("run", path, "--db", tmp_path / "u.db"))
    assert line == "textclust: error: Missing option '--goal' (see textclust run --help)"


def test_error_unknown_flag(cli_invoke, make_file, tmp_path):
    path = make_file("in.csv", "text\nhello\n")
    line = _one_error_line(cli_invoke("run", path, "--goal", "g", "--frobnicate", "--db", tmp_path / "u.db"))
    assert line.startswith("textclust: error: No such option '--frobnicate'")
    assert line.endswith("(see textclust run --help)")


def test_error_run_id_not_a_number(cli_invoke, db):
    digest = file_sha256(db)
    line = _one_error_line(cli_invoke("show", "abc", "--db", db))
    assert line == ("textclust: error: Invalid value for 'RUN_ID': 'abc' is not a run id (a number, or latest) "
                    "(see textclust show --help)")
    assert file_sha256(db) == digest


def test_error_negative_run_id(cli_invoke, db, tmp_path):
    line = _one_error_line(cli_invoke("export", "-1", "--db", db))
    assert line == "textclust: error: No such option '-1' (see textclust export --help)"


def test_error_unknown_export_format(cli_invoke, db, fake_run_db, tmp_path):
    line = _one_error_line(cli_invoke("export", fake_run_db.run_id, "--format", "xlsx", "--db", db,
                                      "-o", tmp_path / "x.xlsx"))
    assert line == ("textclust: error: Invalid value for '--format': 'xlsx' is not one of 'csv', 'json', 'md' "
                    "(see textclust export --help)")
    assert not (tmp_path / "x.xlsx").exists()


@pytest.mark.parametrize("args, hint", [
    (("rn",), "(Did you mean one of: 'run', 'runs'?)"),
    (("exprot", "1"), "Did you mean 'export'?"),
    (("run", "in.csv", "--gaol", "g"), "Did you mean '--goal'?"),
])
def test_error_keeps_clicks_did_you_mean(cli_invoke, args, hint):
    line = _one_error_line(cli_invoke(*args))
    assert hint in line, line


@pytest.mark.parametrize("args, command", [
    (("export", "1", "--format"), "export"),  # "requires an argument": click raises it without a context
    (("show", "1", "--json=yes"), "show"),  # "does not take a value": likewise
    (("--bogus",), ""),
])
def test_error_points_at_the_commands_help(cli_invoke, args, command):
    line = _one_error_line(cli_invoke(*args))
    assert line.endswith(f"(see {' '.join(['textclust', command]).strip()} --help)"), line


def test_a_project_error_is_unchanged(cli_invoke, tmp_path):
    line = _one_error_line(cli_invoke("show", "1", "--db", tmp_path / "absent.db"))
    assert line == f"textclust: error: --db {tmp_path / 'absent.db'}: no such database (run `textclust run` first)"


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("export", "--help"), ("run", "-h"), ("show", "--help")])
def test_help_is_not_an_error(cli_invoke, args):
    result = cli_invoke(*args)
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: ") and "Options:" in result.stdout


# --- an embedding model that is nowhere: said at once, before sentence-transformers loads --------


def test_an_absent_embedding_model_fails_in_one_line_without_loading_sentence_transformers(
        cli_invoke, tmp_path, monkeypatch):
    """With the hub off, a model that is neither on disk nor in the Hugging Face cache cannot load;
    the run says so before importing sentence-transformers (which alone takes ~10 s): the import
    is made impossible here, so reaching it would be an ImportError, not this message."""
    import sys

    from tests.conftest import GOAL, SAMPLE

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    db = tmp_path / "t.db"
    result = cli_invoke("run", SAMPLE, "--goal", GOAL, "--db", db, "--embedding-model", "nobody/no-such-model-xyz")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), repr(result.exception)  # a settings error
    assert "Traceback" not in result.stderr
    line = result.stderr.splitlines()[-1]  # after the ingest summary: the one error line
    assert line.startswith("textclust: error: ")
    assert "cannot load embedding model 'nobody/no-such-model-xyz'" in line
    assert "not in the Hugging Face cache" in line


def test_a_model_folder_on_disk_is_not_refused_by_the_offline_check(tmp_path, monkeypatch):
    from textclust.embed import absent_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)
    assert absent_offline(str(tmp_path)) is None  # a folder: the library decides
    assert absent_offline(str(tmp_path / "missing")) is not None
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert absent_offline(str(tmp_path / "missing")) is None  # the hub may have it: let it try
