"""Terminal output: rich tables (colour on a terminal, plain text when piped)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..results import FINISHED, RunResult

EXAMPLE_CHARS = 90


def _console() -> Console:
    return Console(soft_wrap=False, width=None)


def _clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_summary(result: RunResult, console: Console | None = None) -> None:
    console = console or _console()
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
    if result.stats.get("goal_notice"):
        console.print(f"Goal not served offline: {result.stats['goal_notice']}", markup=False)
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
    if stats.get("hierarchy"):
        _print_hierarchy(console, stats["hierarchy"])
    non_empty = corpus["n_rows"] - corpus["n_empty"]
    console.print(
        f"Covered {non_empty - stats['n_uncovered']} of {non_empty} texts ({stats['coverage']:.1%}); "
        f"uncovered (fit no explanation): {stats['n_uncovered']}; "
        f"in more than one explanation: {stats['n_multi']}"
        + ("" if stats.get("clusterer") == "none"
           else f"; left as noise by {stats.get('clusterer', 'the')} clustering: {stats['n_unclustered']}")
        + (f"; unparsed (the model's answer could not be used): {stats['n_unparsed']}"
           if stats.get("n_unparsed") else "")
    )
    if stats.get("llm"):
        console.print(llm_usage_line(stats["llm"]), markup=False)
    console.print(
        f"{stats['n_selected']} explanations selected from {stats['n_candidates']} candidates in "
        f"{stats['rounds_used']} round(s); embeddings {stats['embeddings_computed']} computed, "
        f"{stats['embeddings_cached']} cached; time "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    )


def llm_usage_line(llm: dict) -> str:
    """One line: which model, how many calls (by stage), tokens and cost."""
    stages = llm.get("calls_by_stage") or {}
    by_stage = ", ".join(f"{n} {stage}" for stage, n in stages.items() if n)
    cost = "cost unknown (no prices configured)" if llm.get("cost_usd") is None else f"${llm['cost_usd']:.4f}"
    return (f"Language model {llm.get('model')} at {llm.get('server')}: {llm.get('calls', 0)} calls sent"
            + (f" ({by_stage} requests incl. cached)" if by_stage else "")
            + f", {llm.get('cached_calls', 0)} answered from the cache, {llm.get('failed_calls', 0)} failed; "
            f"{llm.get('prompt_tokens', 0)} prompt + {llm.get('completion_tokens', 0)} completion tokens; {cost}")


def _print_hierarchy(console: Console, tree: list[dict]) -> None:
    from rich.tree import Tree

    root = Tree("Sub-explanations (--depth 2)")
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
