"""Terminal output: rich tables (colour on a terminal, plain text when piped)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..results import FINISHED, RunResult
from ..stats import ModelUsage
from .model import Spell, spelled, spelled_result
from .units import count_rows, count_texts, input_summary

EXAMPLE_CHARS = 90


def _console() -> Console:
    return Console(soft_wrap=False, width=None)


def _clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_summary(result: RunResult, console: Console | None = None, spell: Spell | None = None) -> None:
    """The run's explanations and counts; ``spell`` names the settings its notices mention
    (see :func:`textclust.report.model.spelled`)."""
    console = console or _console()
    result = spelled_result(result, spell)
    stats, corpus = result.stats, result.corpus
    console.print(f"[bold]Run {result.run_id}[/bold] · {_escape(corpus['name'])} · status {result.status}")
    console.print(f"Goal: {result.goal}", markup=False)
    if result.status not in FINISHED:
        if result.error:
            console.print(f"Error: {result.error}", markup=False)
        return
    console.print(input_summary(corpus["n_rows"], corpus["n_texts"], corpus["n_empty"], corpus["n_duplicate_rows"]))
    if result.notice:
        console.print(f"[yellow]Note:[/yellow] {result.notice}")
    if stats.goal_notice:
        console.print(f"Goal, offline: {stats.goal_notice}", markup=False)
    console.print(_explanations_table(result.clusters, console))
    truth_line = _truth_line(result.clusters)
    if truth_line:
        console.print(truth_line, markup=False)
    if stats.hierarchy:
        _print_hierarchy(console, stats.hierarchy, spell)
    non_empty = corpus["n_rows"] - corpus["n_empty"]
    console.print(
        # Input rows throughout (a duplicate text counts once per row), as the coverage figure.
        f"Covered {non_empty - stats.n_uncovered:,} of {count_rows(non_empty, 'non-empty')} ({stats.coverage:.1%}); "
        f"uncovered (fit no explanation): {count_rows(stats.n_uncovered)}; "
        f"in more than one explanation: {count_rows(stats.n_multi)}"
        + ("" if stats.clusterer in ("none", "kmeans", "spectral")  # a partition leaves no text as noise
           else f"; left as noise by {stats.clusterer or 'the'} clustering: {count_rows(stats.n_unclustered)}")
        + (f"; unparsed (the model's answer could not be used): {count_rows(stats.n_unparsed)}"
           if stats.n_unparsed else "")
    )
    if stats.model:
        console.print(llm_usage_line(stats.model), markup=False)
    for note in stats.notes:  # e.g. a fixed K that could not be met, unverified evidence
        console.print(f"Note: {note}", markup=False)
    console.print(
        f"{stats.n_selected} explanations selected from {stats.n_candidates} candidates in "
        f"{stats.rounds_used} round(s); embeddings {stats.embeddings_computed} computed, "
        f"{stats.embeddings_cached} cached; time "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    )


def _truth_line(clusters) -> str | None:
    """How often each "mentions …" explanation is literally true of its texts (issue 15)."""
    shares = [(c.number, c.truth) for c in clusters if c.truth is not None]
    if not shares:
        return None
    listed = ", ".join(f"#{i} {t:.0%}" for i, t in shares)
    return (f"Truthfulness (share of an explanation's distinct texts that mention one of its words): {listed}; "
            f"lowest {min(t for _, t in shares):.0%}")


def llm_usage_line(usage: ModelUsage) -> str:
    """One line: which model, how many requests the server received (by stage, retries and
    repairs included), tokens and cost."""
    by_stage = ", ".join(f"{n} {stage}" for stage, n in usage.calls_by_stage.items() if n)
    detail = "; ".join(part for part in (by_stage, f"{usage.retries} retries" if usage.retries else "") if part)
    cost = "cost unknown (no prices configured)" if usage.cost_usd is None else f"${usage.cost_usd:.4f}"
    # A retry is a request of its own: the record keeps it on its call's row.
    return (f"Language model {usage.model} at {usage.server}: {usage.calls + usage.retries} requests sent"
            + (f" ({detail})" if detail else "")
            + f", {usage.cached_calls} answered from the cache, {usage.failed_calls} failed; "
            f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens; {cost}")


def _print_hierarchy(console: Console, tree: list[dict], spell: Spell | None = None) -> None:
    from rich.tree import Tree

    root = Tree(spelled("Sub-explanations ({depth} 2)", spell))
    for node in tree:
        branch = root.add(f"{_escape(node['name'])} ({node['size']})")
        for child in node.get("children") or []:
            branch.add(f"{_escape(child['name'])} ({child['size']}): {_escape(child.get('explanation', ''))}")
    console.print(root)


# Below this width the examples go under their explanation instead of in a column of their own
# (two text columns of ~20 characters each read as a column of single words).
EXAMPLES_COLUMN_WIDTH = 72


def _explanations_table(clusters, console: Console) -> Table:
    """The run's explanations: name, explanation, evidence, size, share and examples. Text columns
    wrap and fold long words (a URL, an identifier) instead of cutting them to "…"."""
    side_by_side = console.width >= EXAMPLES_COLUMN_WIDTH
    table = Table(show_lines=True, title="Explanations")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("explanation" if side_by_side else "explanation and examples", overflow="fold",
                     min_width=20)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    if side_by_side:
        table.add_column("examples", overflow="fold", min_width=20)
    for c in clusters:
        i = c.number  # the explanation's #N: the exports' explanation_number, the reports' #N
        examples = _escape("\n".join(f"• {_clip(e)}" for e in c.examples))
        quotes = "".join(f"\n[dim]“{_escape(_clip(q, 60))}”[/dim]" for q in c.evidence[:2])
        explanation = f"[bold]{_escape(c.name)}[/bold]\n{_escape(c.explanation)}{quotes}"
        if side_by_side:
            table.add_row(str(i), explanation, str(c.size), f"{c.share:.1%}", examples)
        else:
            table.add_row(str(i), explanation + ("\n\n" + examples if examples else ""), str(c.size), f"{c.share:.1%}")
    return table


def fits_width(console: Console, table: Table) -> bool:
    """Whether a boxed ``table`` fits the console's width with no column squeezed below its
    minimum: the whole text of a ``no_wrap`` column, else its longest word (or ``min_width``).
    (rich itself would squeeze columns to zero width rather than give up.)"""
    from rich.cells import cell_len
    from rich.text import Text

    def plain(cell) -> str:
        return cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain

    needed = len(table.columns) + 1  # the vertical lines
    for column in table.columns:
        texts = [plain(column.header)] + [plain(cell) for cell in column.cells]
        if column.no_wrap:
            pieces = [line for text in texts for line in text.splitlines()]
        else:  # wrapped at spaces; a folded column also breaks long words (not its header)
            pieces = [word for text in (texts[:1] if column.overflow == "fold" else texts) for word in text.split()]
        width = max((cell_len(p) for p in pieces), default=0)
        needed += max(width, column.min_width or 0) + 2  # padding (0, 1)
    return needed <= console.width


# "rows": the corpus's input rows, the unit of the coverage beside it (and of the summary's counts).
RUN_COLUMNS = ("id", "created", "status", "corpus", "rows", "goal", "explainer", "explanations", "coverage")


def print_run_list(rows: list[dict], console: Console | None = None) -> None:
    """The runs as a table when it fits the terminal, else one block per run (never a table whose
    goal or corpus column is squeezed to nothing: runs of one corpus differ by their goal)."""
    console = console or _console()
    table = Table(title="Runs")
    # The whole goal, wrapped (goals often differ only at the end), at least 30 characters wide; the
    # corpus name whole up to 32 characters, folded beyond; the other columns never wrap.
    min_widths = {"goal": 30, "corpus": 32}
    for column in RUN_COLUMNS:
        if column in min_widths:
            longest = max((len(r[column]) for r in rows), default=0)
            table.add_column(column, overflow="fold", min_width=min(min_widths[column], longest))
        else:
            table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["id"]), r["created_at"], r["status"], _escape(r["corpus"]), f"{r['n_rows']:,}",
            _escape(r["goal"]), r["explainer"], "" if r["n_selected"] is None else str(r["n_selected"]),
            "" if r["coverage"] is None else f"{r['coverage']:.1%}",
        )
    if fits_width(console, table):
        console.print(table)
    else:
        console.print(_run_blocks(rows))


def _run_blocks(rows: list[dict]) -> Table:
    """One block per run, for a narrow terminal: the id, then its fields on wrapped lines."""
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.title = "Runs"
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(overflow="fold")
    for i, r in enumerate(rows):
        lines = [Text.assemble((r["status"], "bold"), f" · created {r['created_at']} · {r['explainer']}"),
                 Text.assemble("corpus ", (r["corpus"], "bold"),
                               f", {count_rows(r['n_rows'])} ({count_texts(r['n_texts'])})"),
                 Text.assemble("goal: ", r["goal"])]
        result = ([] if r["n_selected"] is None else [f"{r['n_selected']} explanations"]) + \
                 ([] if r["coverage"] is None else [f"coverage {r['coverage']:.1%} of non-empty rows"])
        if result:
            lines.append(Text(" · ".join(result)))
        if i:
            grid.add_row()  # a blank line between runs
        grid.add_row(Text(f"#{r['id']}", style="bold"), Text("\n").join(lines))
    return grid


def _escape(text: str) -> str:
    """Corpus text must print as itself, never as rich markup."""
    from rich.markup import escape

    return escape(text)
