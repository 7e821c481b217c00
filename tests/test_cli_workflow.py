"""What users do right after a run: show or export the newest run, export to standard output,
and load a run from Python by the database's path."""

from __future__ import annotations

import csv
import io
import json

import pytest

import textclust
from textclust.errors import NotFoundError


def test_export_writes_csv_to_standard_output_by_default(cli_invoke, copy_db, fake_run_db, blobs):
    db = copy_db(fake_run_db.db)
    result = cli_invoke("export", fake_run_db.run_id, "--db", db)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(blobs.texts) and {r["status"] for r in rows} == {"covered"}
    assert "to standard output" in result.stderr
    dash = cli_invoke("export", fake_run_db.run_id, "-o", "-", "--format", "json", "--db", db)
    assert dash.exit_code == 0 and len(json.loads(dash.stdout)["rows"]) == len(blobs.texts)
    assert not (db.parent / "-").exists()  # "-" is standard output, never a file named "-"


def test_latest_names_the_newest_run(cli_invoke, copy_db, fake_run_db):
    db = copy_db(fake_run_db.db)
    by_id = cli_invoke("show", fake_run_db.run_id, "--json", "--db", db)
    latest = cli_invoke("show", "latest", "--json", "--db", db)
    assert latest.exit_code == 0 and json.loads(latest.stdout)["run_id"] == json.loads(by_id.stdout)["run_id"]
    exported = cli_invoke("export", "latest", "--format", "json", "--db", db)
    assert json.loads(exported.stdout)["run_id"] == fake_run_db.run_id


def test_a_run_id_that_is_not_a_number_is_refused(cli_invoke, copy_db, fake_run_db):
    result = cli_invoke("show", "first", "--db", copy_db(fake_run_db.db))
    assert result.exit_code == 2 and "not a run id (a number, or latest)" in result.stderr


def test_latest_in_a_database_without_runs_is_a_clean_error(cli_invoke, tmp_path):
    db = tmp_path / "empty.db"
    textclust.Database(db).close()
    result = cli_invoke("show", "latest", "--db", db)
    assert result.exit_code == 2 and result.stderr.startswith("textclust: error: no runs in")


def test_load_run_takes_a_path_or_a_database(fake_run_db):
    by_path = textclust.load_run(str(fake_run_db.db), fake_run_db.run_id, include_rows=False)
    database = textclust.Database(fake_run_db.db)
    try:
        by_object = textclust.load_run(database, fake_run_db.run_id, include_rows=False)
    finally:
        database.close()
    assert by_path.to_dict(include_rows=False) == by_object.to_dict(include_rows=False)
    assert len(by_path.clusters) == 3


def test_load_run_of_a_missing_database_creates_nothing(tmp_path):
    missing = tmp_path / "missing.db"
    with pytest.raises(NotFoundError, match="^db .*missing.db: no such database$"):
        textclust.load_run(missing, 1)
    assert not missing.exists()


def test_a_run_ends_by_saying_where_it_wrote_and_what_to_run_next(sample_run, cli_invoke, tmp_path):
    import shlex

    line = next(x for x in sample_run.stderr.splitlines() if x.startswith("Saved as run"))
    assert f"Saved as run {sample_run.run_id} in {sample_run.db}." in line
    suggested = [shlex.split(part.strip()) for part in line.split("Next:", 1)[1].split("·")]
    assert [args[:2] for args in suggested] == [["textclust", "show"], ["textclust", "report"],
                                                ["textclust", "export"]]
    for args in suggested:  # each suggestion works as printed (output files into tmp_path)
        args = [str(tmp_path / a) if a in ("report.html", "clusters.csv") else a for a in args[1:]]
        if args[0] == "report":
            args += ["--map", "pca"]  # the UMAP map costs ~30 s here; the command is otherwise as printed
        result = cli_invoke(*args)
        assert result.exit_code == 0, (args, result.output)
