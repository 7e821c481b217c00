"""Export a run to CSV, JSON or Markdown: one row per input row, plus the explanations."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import TextclustError
from ..results import ROW_COLUMNS, RunResult

EXPORT_FORMATS = ("csv", "json", "md")


def export_run(result: RunResult, fmt: str, path: str | Path) -> None:
    if result.status != "complete":
        raise TextclustError(f"run {result.run_id} is {result.status}; only complete runs can be exported")
    path = Path(path)
    if not path.parent.exists():
        raise TextclustError(f"-o {path}: folder {path.parent} does not exist")
    writer = {"csv": _write_csv, "json": _write_json, "md": _write_markdown}.get(fmt)
    if writer is None:
        raise TextclustError(f"unknown format '{fmt}'; choose one of {', '.join(EXPORT_FORMATS)}")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer(result, handle)


def _write_csv(result: RunResult, handle) -> None:
    writer = csv.DictWriter(handle, fieldnames=ROW_COLUMNS)
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in ROW_COLUMNS})


def _write_json(result: RunResult, handle) -> None:
    json.dump(result.to_dict(), handle, ensure_ascii=False, indent=2, default=str)
    handle.write("\n")


def md_cell(text) -> str:
    """Make a value safe inside a Markdown table cell (and inert as HTML)."""
    if text is None:
        return ""
    value = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("|", "\\|").replace("\n", " ")


def markdown_summary(result: RunResult) -> list[str]:
    stats, corpus = result.stats, result.corpus
    lines = [
        f"# textclust run {result.run_id}: {md_cell(corpus['name'])}",
        "",
        f"**Goal:** {md_cell(result.goal)}",
        "",
    ]
    if result.notice:
        lines += [f"> **Note:** {md_cell(result.notice)}", ""]
    non_empty = corpus["n_rows"] - corpus["n_empty"]
    lines += [
        f"- rows: {corpus['n_rows']} ({corpus['n_empty']} empty, {corpus['n_duplicate_rows']} duplicates), "
        f"distinct texts: {corpus['n_texts']}",
        f"- covered: {non_empty - stats['n_uncovered']} of {non_empty} ({stats['coverage']:.1%}); "
        f"uncovered: {stats['n_uncovered']}; in more than one explanation: {stats['n_multi']}; "
        f"unclustered: {stats['n_unclustered']}",
        f"- explanations: {stats['n_selected']} selected of {stats['n_candidates']} candidates "
        f"({stats['rounds_used']} round(s)); explainer: {result.explainer}",
        "",
        "| # | name | explanation | size | share | examples |",
        "|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(result.clusters, start=1):
        examples = "<br>".join(f"• {md_cell(e)}" for e in c.examples)
        lines.append(f"| {i} | {md_cell(c.name)} | {md_cell(c.explanation)} | {c.size} | {c.share:.1%} | {examples} |")
    return lines


def _write_markdown(result: RunResult, handle) -> None:
    lines = markdown_summary(result)
    lines += ["", "## Texts", "", "| row | id | text | explanation | score |", "|---|---|---|---|---|"]
    for r in result.rows:
        name = r["explanation_name"] or f"_{r['status']}_"
        lines.append(
            f"| {r['row_index']} | {md_cell(r['row_key'])} | {md_cell(r['text'])} | {md_cell(name) if r['explanation_name'] else name} | "
            f"{'' if r['score'] is None else r['score']} |"
        )
    handle.write("\n".join(lines) + "\n")
