"""Compare two runs (typically one corpus under two goals): contingency table and agreement.

Texts are matched by their stable text id, so the runs may come from the same file
or from files that share texts. Each text's label is its primary explanation, or
"uncovered". When both runs read the same corpus the table counts input rows (like
every size in a report); otherwise it counts the distinct texts the runs share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import TextclustError
from ..results import FINISHED, RunResult, load_run
from .model import UNCOVERED, Spell, spelled_result


def compare_runs(db, run_a: int, run_b: int, spell: Spell | None = None) -> dict:
    """``spell`` names the settings the runs' notices mention (see :func:`textclust.report.model.spelled`)."""
    a, b = (spelled_result(load_run(db, run_id, include_rows=True), spell) for run_id in (run_a, run_b))
    for result in (a, b):
        if result.status not in FINISHED:
            raise TextclustError(f"run {result.run_id} is {result.status}; only complete (or budget-stopped) runs can be compared")
    same_corpus = a.corpus["id"] == b.corpus["id"]
    labels_b = {r["text_id"]: _label(r) for r in b.rows if r["status"] != "empty"}
    pairs = []
    seen = set()
    for r in a.rows:
        if r["status"] == "empty" or r["text_id"] not in labels_b:
            continue
        if not same_corpus:
            if r["text_id"] in seen:
                continue
            seen.add(r["text_id"])
        pairs.append((_label(r), labels_b[r["text_id"]]))
    if not pairs:
        raise TextclustError(f"runs {run_a} and {run_b} share no texts; nothing to compare")

    names_a = _order(a, [p[0] for p in pairs])
    names_b = _order(b, [p[1] for p in pairs])
    index_a = {n: i for i, n in enumerate(names_a)}
    index_b = {n: i for i, n in enumerate(names_b)}
    table = np.zeros((len(names_a), len(names_b)), dtype=int)
    for la, lb in pairs:
        table[index_a[la], index_b[lb]] += 1

    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score

    ya = [index_a[p[0]] for p in pairs]
    yb = [index_b[p[1]] for p in pairs]
    return {
        "run_a": _describe(a),
        "run_b": _describe(b),
        "same_corpus": same_corpus,
        "unit": "input rows" if same_corpus else "distinct texts in both runs",
        "n": len(pairs),
        "rows": names_a,  # labels of run A (table rows)
        "columns": names_b,  # labels of run B (table columns)
        "table": table.tolist(),
        "ami": float(adjusted_mutual_info_score(ya, yb)),
        "nmi": float(normalized_mutual_info_score(ya, yb)),
        "ari": float(adjusted_rand_score(ya, yb)),
        "best_match_a": _best_matches(table, names_a, names_b, axis=1),
        "best_match_b": _best_matches(table, names_b, names_a, axis=0),
    }


def _label(row: dict) -> str:
    return row["explanation_name"] or UNCOVERED


def _order(result: RunResult, labels: list[str]) -> list[str]:
    """The run's explanations by size (as in its report), then 'uncovered', keeping only labels that occur."""
    present = set(labels)
    names = [c.name for c in result.clusters if c.name in present]
    names += sorted(present - set(names) - {UNCOVERED})
    if UNCOVERED in present:
        names.append(UNCOVERED)
    return names


def _describe(result: RunResult) -> dict:
    return {
        "run_id": result.run_id,
        "goal": result.goal,
        "corpus": result.corpus["name"],
        "explainer": result.explainer,
        "n_explanations": len(result.clusters),
        "coverage": result.coverage,
        "notice": result.notice,
    }


def _best_matches(table: np.ndarray, names: list[str], other: list[str], axis: int) -> list[dict]:
    """For each label, the label of the other run that holds most of its texts."""
    matrix = table if axis == 1 else table.T
    result = []
    for name, row in zip(names, matrix):
        total = int(row.sum())
        j = int(row.argmax())
        result.append({"label": name, "size": total, "best": other[j], "overlap": int(row[j]),
                       "share": row[j] / total if total else 0.0})
    return result


# --- output ------------------------------------------------------------------------------------


def print_comparison(data: dict, console=None) -> None:
    """The comparison as rich tables (colour on a terminal, plain text when piped). The contingency
    table is a grid when it fits the terminal, else a list of its non-zero cells."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .summary import fits_width

    console = console or Console(soft_wrap=False)
    a, b = data["run_a"], data["run_b"]
    console.print(f"[bold]Run A = {a['run_id']}[/bold] · {escape(a['corpus'])} · {a['n_explanations']} explanations")
    console.print(f"  goal: {a['goal']}", markup=False)
    console.print(f"[bold]Run B = {b['run_id']}[/bold] · {escape(b['corpus'])} · {b['n_explanations']} explanations")
    console.print(f"  goal: {b['goal']}", markup=False)
    if a["notice"] or b["notice"]:
        console.print(f"[yellow]Note:[/yellow] {escape(a['notice'] or b['notice'])}")
    console.print(
        f"Adjusted mutual information [bold]AMI {data['ami']:.3f}[/bold] (NMI {data['nmi']:.3f}, ARI {data['ari']:.3f}) "
        f"over {data['n']} {data['unit']}. 1 = the same grouping, 0 = no more alike than chance."
    )
    matrix = np.asarray(data["table"])
    title = f"Contingency table ({data['unit']}): rows = run A, columns = run B"
    labels = [f"A{i} {escape(_clip(name))}" for i, name in enumerate(data["rows"], start=1)]
    table = Table(title=title, show_lines=False)
    # Row labels wrap (but keep their first words, MIN_LABEL characters, on a line).
    table.add_column("A \\ B", overflow="fold", min_width=min(MIN_LABEL, max(len(label) for label in labels)))
    for j, _ in enumerate(data["columns"], start=1):
        table.add_column(f"B{j}", justify="right", no_wrap=True)
    table.add_column("total", justify="right", style="bold", no_wrap=True)
    for label, row in zip(labels, matrix):
        peak = row.max()
        cells = [(f"[bold]{v}[/bold]" if v and v == peak else ("·" if v == 0 else str(v))) for v in row]
        table.add_row(label, *cells, str(int(row.sum())))
    table.add_row("total", *[str(int(v)) for v in matrix.sum(axis=0)], str(int(matrix.sum())), style="bold")
    if fits_width(console, table):
        console.print(table)
    else:  # too many of run B's explanations for a grid here: one line per non-zero cell
        console.print(_cell_list(data, matrix, title.replace("Contingency table", "Contingency table as a list")))
    legend = Table(title="Run B's columns", show_header=True)
    legend.add_column("column", no_wrap=True)
    legend.add_column("explanation of run B", overflow="fold")
    legend.add_column("size", justify="right", no_wrap=True)
    legend.add_column("mostly from run A", justify="left", overflow="fold")
    for j, match in enumerate(data["best_match_b"], start=1):
        legend.add_row(f"B{j}", escape(match["label"]), str(match["size"]),
                       f"{escape(_clip(match['best']))} ({match['share']:.0%})")
    console.print(legend)


MIN_LABEL = 24  # the narrowest row label of a contingency grid; narrower terminals get the list


def _cell_list(data: dict, matrix: np.ndarray, title: str):
    """The contingency table's non-zero cells, by row of run A: "A1 name (total) | B2 name | n"."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    table.add_column("run A", overflow="fold")
    table.add_column("run B", overflow="fold")
    table.add_column("n", justify="right", no_wrap=True)
    for i, (name, row) in enumerate(zip(data["rows"], matrix), start=1):
        label = f"A{i} {escape(_clip(name))} ({int(row.sum())})"
        peak = row.max()
        for j in sorted(np.flatnonzero(row), key=lambda j: -row[j]):
            count = f"[bold]{row[j]}[/bold]" if row[j] == peak else str(row[j])
            table.add_row(label, f"B{j + 1} {escape(_clip(data['columns'][j]))}", count)
            label = ""  # the row's name once, on its first cell
    table.add_row("total", "", str(int(matrix.sum())), style="bold")
    return table


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_compare_html(data: dict) -> str:
    from .html import _environment

    matrix = np.asarray(data["table"])
    peak = matrix.max() or 1
    shades = [[round(0.08 + 0.72 * v / peak, 3) if v else 0 for v in row] for row in matrix]
    template = _environment().get_template("compare.html.j2")
    return template.render(d=data, shades=shades, row_totals=matrix.sum(axis=1).tolist(),
                           column_totals=matrix.sum(axis=0).tolist(), total=int(matrix.sum()))


def write_compare_html(data: dict, path: str | Path) -> None:
    path = Path(path)
    if not path.parent.exists():
        raise TextclustError(f"-o {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise TextclustError(f"-o {path}: is a directory")
    path.write_text(render_compare_html(data), encoding="utf-8")
