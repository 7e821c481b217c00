"""Terminal output: rich tables (colour on a terminal, plain text when piped)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..results import FINISHED, RunResult
from ..stats import ModelUsage
from .model import Spell, spelled, spelled_result

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
    console.print(
        f"{corpus['n_rows']} rows → {corpus['n_texts']} distinct texts "
        f"({corpus['n_empty']} empty, {corpus['n_duplicate_rows']} duplicate rows)"
    )
    if result.notice:
        console.print(f"[yellow]Note:[/yellow] {result.notice}")
    if stats.goal_notice:
        console.print(f"Goal not served offline: {stats.goal_notice}", markup=False)
    table = Table(show_lines=True, title="Explanations")
    table.add_column("#", justify="right")
    table.add_column("explanation")
    table.add_column("size", justify="right")
    table.add_column("share", justify="right")
    table.add_column("examples")
    for i, c in enumerate(result.clusters, start=1):
        examples = "\n".join(f"• {_clip(e)}" for e in c.examples)
        quotes = "".join(f"\n[dim]“{_escape(_clip(q, 60))}”[/dim]" for q in c.evidence[:2])
        table.add_row(str(i), f"[bold]{_escape(c.name)}[/bold]\n{_escape(c.explanation)}{quotes}", str(c.size),
                      f"{c.share:.1%}", _escape(examples))
    console.print(table)
    if stats.hierarchy:
        _print_hierarchy(console, stats.hierarchy, spell)
    non_empty = corpus["n_rows"] - corpus["n_empty"]
    console.print(
        f"Covered {non_empty - stats.n_uncovered} of {non_empty} texts ({stats.coverage:.1%}); "
        f"uncovered (fit no explanation): {stats.n_uncovered}; "
        f"in more than one explanation: {stats.n_multi}"
        + ("" if stats.clusterer == "none"
           else f"; left as noise by {stats.clusterer or 'the'} clustering: {stats.n_unclustered}")
        + (f"; unparsed (the model's answer could not be used): {stats.n_unparsed}" if stats.n_unparsed else "")
    )
    if stats.model:
        console.print(llm_usage_line(stats.model), markup=False)
    console.print(
        f"{stats.n_selected} explanations selected from {stats.n_candidates} candidates in "
        f"{stats.rounds_used} round(s); embeddings {stats.embeddings_computed} computed, "
        f"{stats.embeddings_cached} cached; time "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    )


def llm_usage_line(usage: ModelUsage) -> str:
    """One line: which model, how many calls (by stage), tokens and cost."""
    by_stage = ", ".join(f"{n} {stage}" for stage, n in usage.calls_by_stage.items() if n)
    cost = "cost unknown (no prices configured)" if usage.cost_usd is None else f"${usage.cost_usd:.4f}"
    return (f"Language model {usage.model} at {usage.server}: {usage.calls} calls sent"
            + (f" ({by_stage} requests incl. cached)" if by_stage else "")
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


def print_run_list(rows: list[dict], console: Console | None = None) -> None:
    console = console or _console()
    table = Table(title="Runs")
    for column in ("id", "created", "status", "corpus", "texts", "goal", "explainer", "explanations", "coverage"):
        table.add_column(column, no_wrap=column not in ("goal", "corpus", "created"))
    for r in rows:
        table.add_row(
            str(r["id"]), r["created_at"], r["status"], _escape(r["corpus"]), str(r["n_texts"]),
            _escape(_clip(r["goal"], 60)), r["explainer"], "" if r["n_selected"] is None else str(r["n_selected"]),
            "" if r["coverage"] is None else f"{r['coverage']:.1%}",
        )
    console.print(table)


def _escape(text: str) -> str:
    """Corpus text must print as itself, never as rich markup."""
    from rich.markup import escape

    return escape(text)
