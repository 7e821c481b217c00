"""`--help` on every command, listing its key options."""

from __future__ import annotations

import pytest

import textclust

RUN_OPTIONS = ["--goal", "--text-column", "--id-column", "--format", "--k", "--clusterer", "--reduction",
               "--n-components", "--min-cluster-size", "--embedding-model", "--rounds", "--min-share", "--seed",
               "--db", "--json"]
COMMANDS = {
    "run": RUN_OPTIONS,
    "eval": ["--label-column"] + RUN_OPTIONS,
    "runs": ["--db", "--json"],
    "show": ["RUN_ID", "--db", "--json"],
    "export": ["RUN_ID", "--format", "--output", "-o", "--db"],
    "summarize": ["--goal", "--run", "--format", "--input-format", "--db", "--llm-model"],
}


def test_top_level_help_lists_every_command(cli_invoke):
    result = cli_invoke("--help")
    assert result.exit_code == 0
    assert "Goal-driven, explainable text clustering" in result.stdout
    for command in COMMANDS:
        assert f"  {command} " in result.stdout, command


def test_short_help_flag(cli_invoke):
    assert cli_invoke("-h").stdout == cli_invoke("--help").stdout


def test_version(cli_invoke):
    result = cli_invoke("--version")
    assert result.exit_code == 0
    assert textclust.__version__ in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_lists_key_options(command, cli_invoke):
    result = cli_invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert f"{command} [OPTIONS]" in result.stdout
    for option in COMMANDS[command]:
        assert option in result.stdout, f"{command} --help does not mention {option}"


def test_run_help_shows_choices_and_defaults(cli_invoke):
    text = " ".join(cli_invoke("run", "--help").stdout.split())
    assert "auto|hdbscan|kmeans" in text
    assert "umap|pca|none" in text
    assert "csv|tsv|jsonl|json|txt|parquet" in text
    assert "all-MiniLM-L6-v2" in text
    assert "TEXTCLUST_DB" in text


def test_export_help_shows_formats(cli_invoke):
    text = " ".join(cli_invoke("export", "--help").stdout.split())
    assert "csv|json|md" in text


def test_unknown_command_is_an_error(cli_invoke):
    result = cli_invoke("cluster")
    assert result.exit_code == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.output
