"""One number per explanation, one unit per count (issue 25, items 3 and 4).

On the shared sample run: the summary table's ``#N``, the exports' ``explanation_number`` (CSV,
JSON, Markdown), the reports' numbering (Markdown, HTML, JSON) and ``show`` agree for every row;
and every count the summary, ``runs`` and the reports print says whether it counts input rows or
distinct texts."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter

import pytest

from textclust.report.units import count_rows, count_texts, explanation_label, input_summary

# The first line of each row of the summary's table: number, name, rows, share.
ROW = re.compile(r"│\s*(\d+)\s*│\s*(\S[^│]*?)\s*│\s*(\d+)\s*│\s*([\d.]+%)\s*│")


def flat(text: str) -> str:
    return " ".join(text.split())


def table_rows(output: str) -> dict[int, tuple[str, int]]:
    return {int(m.group(1)): (m.group(2).strip(), int(m.group(3))) for m in ROW.finditer(output)}


@pytest.fixture(scope="module")
def outputs(sample_run, tmp_path_factory):
    from click.testing import CliRunner

    from textclust.cli import cli

    runner = CliRunner()
    folder = tmp_path_factory.mktemp("numbering")
    db = str(sample_run.db)
    run = str(sample_run.run_id)
    files = {"csv": folder / "rows.csv", "json": folder / "rows.json", "md": folder / "rows.md",
             "report_md": folder / "report.md", "report_json": folder / "report.json",
             "report_html": folder / "report.html"}
    for key in ("csv", "json", "md"):
        assert runner.invoke(cli, ["export", run, "-o", str(files[key]), "--db", db]).exit_code == 0
    for key in ("report_md", "report_json", "report_html"):
        result = runner.invoke(cli, ["report", run, "-o", str(files[key]), "--db", db, "--map", "pca"])
        assert result.exit_code == 0, result.output
    show = runner.invoke(cli, ["show", run, "--db", db, "--json"])
    runs = runner.invoke(cli, ["runs", "--db", db])
    runs_json = runner.invoke(cli, ["runs", "--db", db, "--json"])
    return {**{k: v.read_text(encoding="utf-8") for k, v in files.items()},
            "show_json": json.loads(show.output), "runs": runs.output, "runs_json": json.loads(runs_json.output)}


def test_summary_export_report_and_show_number_every_explanation_alike(sample_run, outputs):
    summary = table_rows(sample_run.stdout)
    assert sorted(summary) == list(range(1, len(summary) + 1)) and len(summary) >= 2
    rows = list(csv.DictReader(outputs["csv"].splitlines()))
    # Every covered row: its explanation_number is the summary row of its explanation_name.
    for r in rows:
        if r["status"] == "covered":
            number = int(r["explanation_number"])
            assert flat(summary[number][0]) == flat(r["explanation_name"]), r["row_index"]
        else:
            assert r["explanation_number"] == "" and r["explanation_name"] == ""
    # ... and the summary's size of #N is the number of rows the export gives #N.
    per_number = Counter(int(r["explanation_number"]) for r in rows if r["explanation_number"])
    assert per_number == {n: size for n, (_, size) in summary.items()}

    data = json.loads(outputs["json"])
    assert [r["explanation_number"] for r in data["rows"]] == [
        int(r["explanation_number"]) if r["explanation_number"] else None for r in rows]
    assert {c["number"]: c["name"] for c in data["clusters"]} == {n: name for n, (name, _) in summary.items()}
    assert {c["number"]: c["name"] for c in outputs["show_json"]["clusters"]} == \
        {n: name for n, (name, _) in summary.items()}

    report = json.loads(outputs["report_json"])
    assert [(e["number"], e["name"], e["size"]) for e in report["explanations"]] == \
        [(n, name, size) for n, (name, size) in sorted(summary.items())]
    for n, (name, size) in summary.items():
        assert f"\n### #{n} {name}\n" in outputs["report_md"]
        assert f"<h3>#{n} {name}</h3>" in outputs["report_html"]
        assert f"| #{n} | {name} |" in outputs["report_md"]

    # The Markdown export's rows carry the same number as the CSV's.
    md_rows = [line for line in outputs["md"].split("## Texts", 1)[1].splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(md_rows) == len(rows)
    for line, r in zip(md_rows, rows):
        expected = f"#{r['explanation_number']}" if r["explanation_number"] else ""
        assert line.split(" | ")[3] == expected, line


def test_also_matches_name_explanations_by_their_number(outputs):
    data = json.loads(outputs["json"])
    names = {c["number"]: c["name"] for c in data["clusters"]}
    for r in data["rows"]:
        for other in filter(None, r["also_matches"].split("; ")):
            number, name = re.fullmatch(r"#(\d+) (.*)", other).groups()
            assert names[int(number)] == name and int(number) != r["explanation_number"]


def test_export_keeps_database_ids_out_and_names_the_embedding_cluster(outputs):
    header = outputs["csv"].splitlines()[0].split(",")
    assert "explanation_id" not in header and "cluster" not in header
    assert "embedding_cluster" in header
    assert header.index("explanation_number") + 1 == header.index("explanation_name")
    data = json.loads(outputs["json"])
    assert all("explanation_id" not in r and "cluster" not in r for r in data["rows"])
    assert all("explanation_id" not in c for c in data["clusters"])


def test_the_unit_helpers():
    assert count_rows(1) == "1 row" and count_rows(1500) == "1,500 rows"
    assert count_rows(4, "empty") == "4 empty rows" and count_rows(0, "non-empty") == "0 non-empty rows"
    assert count_texts(1) == "1 distinct text" and count_texts(1454) == "1,454 distinct texts"
    assert input_summary(1500, 1454, 4, 42) == "1,500 rows → 1,454 distinct texts (4 empty rows, 42 duplicate rows)"
    assert explanation_label(6, "service / customer") == "#6 service / customer"
    assert explanation_label(None, None) is None


def test_summary_counts_name_their_unit(sample_run):
    out = flat(sample_run.stdout)
    assert re.search(r"\d+ rows → \d+ distinct texts \(\d+ empty rows?, \d+ duplicate rows?\)", out)
    assert re.search(r"Covered \d+ of \d+ non-empty rows \([\d.]+%\); uncovered \(fit no explanation\): \d+ rows?; "
                     r"in more than one explanation: \d+ rows?", out)
    assert "share of an explanation's distinct texts" in out
    header = next(line for line in sample_run.stdout.splitlines() if "┃ #" in line)
    assert [h.strip() for h in header.strip().strip("┃").split("┃")][2] == "rows"


def test_runs_names_its_unit(outputs, sample_run):
    runs = outputs["runs_json"]
    this = next(r for r in runs if r["id"] == sample_run.run_id)
    assert this["n_rows"] == 309 and this["n_texts"] == 300
    from rich.console import Console

    from textclust.report import print_run_list

    console = Console(record=True, width=240, color_system=None)
    print_run_list(runs, console)
    table = console.export_text()
    header = next(line for line in table.splitlines() if "┃" in line)
    columns = [h.strip() for h in header.strip().strip("┃").split("┃")]
    assert "rows" in columns and "texts" not in columns
    line = next(line for line in table.splitlines() if f"│ {sample_run.run_id} " in line)
    assert line.split("│")[columns.index("rows") + 1].strip() == "309"
    # Narrower (the CLI's 80 columns here): one block per run, both units named.
    assert "309 rows (300 distinct texts)" in flat(outputs["runs"])


def test_report_counts_name_their_unit(outputs):
    md = outputs["report_md"]
    assert "| input | 309 rows (4 empty rows, 5 duplicate rows) |" in md
    assert "| distinct texts | 300 distinct texts |" in md
    assert re.search(r"\| covered \| \d+ of 305 non-empty rows \([\d.]+%\) \|", md)
    assert re.search(r"\| uncovered \| \d+ rows? \(fit no explanation\) \|", md)
    assert re.search(r"\| in 2\+ explanations \| \d+ rows? \|", md)
    # Per explanation: its size and its matches in rows (n_matched is weighted by rows), truth in distinct texts.
    sizes = re.findall(r"- size: \d+ rows? \([\d.]+%\); matched by \d+ rows? including secondary matches", md)
    assert len(sizes) == md.count("\n### #")
    assert " texts including secondary" not in md and " texts including secondary" not in outputs["report_html"]
    for section in ("Texts in two or more explanations", "Uncovered texts (fit no explanation)",
                    "Unclustered texts (noise of the clustering)"):
        assert re.search(re.escape(section) + r": \d+ rows? \(\d+ distinct texts?\)", md), section
        assert re.search(re.escape(section) + r": \d+ rows? \(\d+ distinct texts?\)", outputs["report_html"]), section
    assert re.search(r"matched by \d+ rows? including secondary matches", outputs["report_html"])
