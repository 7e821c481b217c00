"""Export a run to CSV, JSON or Markdown: one row per input row, plus the explanations."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TextIO

from ..errors import TextclustError
from ..results import FINISHED, ROW_COLUMNS, RunResult
from .markdown import md_cell, report_markdown
from .model import ReportOptions, Spell, report_from_result, spelled_result

EXPORT_FORMATS = ("csv", "json", "md")
# The extensions that name an export format (compared in lower case).
EXPORT_SUFFIXES = {".csv": "csv", ".json": "json", ".md": "md", ".markdown": "md"}


def export_format_of(path: str | Path) -> str | None:
    """The export format the extension of ``path`` names (.csv, .json, .md or .markdown, in any
    case), or None for any other extension."""
    return EXPORT_SUFFIXES.get(Path(path).suffix.lower())


def export_run(result: RunResult, fmt: str, path: str | Path | TextIO, spell: Spell | None = None) -> None:
    """Write ``result`` as ``fmt`` to the file ``path`` (or to an open text stream, e.g.
    ``sys.stdout``); ``spell`` names the settings its notices mention (see
    :func:`textclust.report.model.spelled`)."""
    if result.status not in FINISHED:
        raise TextclustError(f"run {result.run_id} is {result.status}; only complete (or budget-stopped) runs can be exported")
    writer = {"csv": _write_csv, "json": _write_json, "md": _write_markdown}.get(fmt)
    if writer is None:
        raise TextclustError(f"unknown format '{fmt}'; choose one of {', '.join(EXPORT_FORMATS)}")
    if hasattr(path, "write"):  # an open stream
        writer(spelled_result(result, spell), path, spell)
        return
    path = Path(path)
    if not path.parent.exists():
        raise TextclustError(f"-o {path}: folder {path.parent} does not exist")
    result = spelled_result(result, spell)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer(result, handle, spell)


def _write_csv(result: RunResult, handle, spell=None) -> None:
    writer = csv.DictWriter(handle, fieldnames=ROW_COLUMNS)
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in ROW_COLUMNS})


def _write_json(result: RunResult, handle, spell=None) -> None:
    json.dump(result.to_dict(), handle, ensure_ascii=False, indent=2, default=str)
    handle.write("\n")


def _write_markdown(result: RunResult, handle, spell=None) -> None:
    """The report's Markdown (same summary as `textclust report --format md`), then every row."""
    lines = [report_markdown(report_from_result(result, ReportOptions(spell=spell))).rstrip("\n")]
    lines += ["", "## Texts", "", "| row | id | text | # | explanation | score |", "|---|---|---|---:|---|---|"]
    for r in result.rows:
        name = md_cell(r["explanation_name"]) if r["explanation_name"] else f"_{r['status']}_"
        number = "" if r["explanation_number"] is None else f"#{r['explanation_number']}"
        lines.append(
            f"| {r['row_index']} | {md_cell(r['row_key'])} | {md_cell(r['text'])} | {number} | {name} | "
            f"{'' if r['score'] is None else r['score']} |"
        )
    handle.write("\n".join(lines) + "\n")
