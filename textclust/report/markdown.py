"""The report as Markdown: the HTML report's content in tables and lists (no map).

Meant for pasting into docs and tickets. Corpus text is made inert with
:func:`md_cell` (``<`` → ``&lt;``, pipes escaped, one line),
so it never turns into HTML or breaks a table when rendered.
"""

from __future__ import annotations

from .model import UNCOVERED
from .units import count_rows, count_texts


def md_cell(text) -> str:
    """Make a value safe inside a Markdown table cell (and inert as HTML)."""
    if text is None:
        return ""
    value = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("|", "\\|").replace("\n", " ")


def _pct(value: float) -> str:
    return f"{(value or 0) * 100:.1f}%"


def _text(text: str) -> str:
    return md_cell(text)


def report_markdown(r: dict) -> str:
    c = r["counts"]
    lines = [f"# textclust run {r['run_id']}: {md_cell(r['corpus']['name'])}", "",
             f"**Goal:** {md_cell(r['goal'])}", ""]
    if r["notice"]:
        lines += [f"> **Note:** {md_cell(r['notice'])}", ""]

    lines += ["## Overview", "", "| | |", "|---|---|",
              f"| corpus | {md_cell(r['corpus']['name'])} ({md_cell(r['corpus']['source'])}, column "
              f"{md_cell(r['corpus']['text_column'])}) |",
              f"| input | {count_rows(c['rows'])} ({count_rows(c['empty'], 'empty')}, "
              f"{count_rows(c['duplicate_rows'], 'duplicate')}) |",
              f"| distinct texts | {count_texts(c['texts'])} |",
              f"| explanations | {c['selected']} selected of {c['candidates']} candidates ({c['rounds']} round(s)) |",
              f"| covered | {c['covered']:,} of {count_rows(c['non_empty'], 'non-empty')} ({_pct(c['coverage'])}) |",
              f"| uncovered | {count_rows(c['uncovered'])} (fit no explanation) |",
              f"| in 2+ explanations | {count_rows(c['multi'])} |",
              f"| unclustered | {count_rows(c['unclustered'])} (noise of the {md_cell(r['clusterer'])} clustering) |"]
    for key, value in r["models"].items():
        lines.append(f"| {md_cell(key)} | {md_cell(value)} |")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in r["timings"].items())
    lines.append(f"| time | {r['total_seconds']:.1f} s ({timing}) |")
    usage = r["llm"]  # ModelUsage or None
    if usage:
        cost = "unknown" if usage.cost_usd is None else f"${usage.cost_usd:.4f}"
        lines.append(f"| LLM calls, tokens, cost | {usage.calls} calls, {usage.prompt_tokens} in / "
                     f"{usage.completion_tokens} out, {cost} |")
    else:
        lines.append(f"| LLM calls, tokens, cost | {r['llm_note']} |")
    lines.append(f"| run | {r['run_id']}, {r['status']}, created {r['created_at']} |")
    settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
    lines += ["", f"Settings: {md_cell(settings)}", ""]

    lines += ["## Explanations", "", "| # | name | explanation | rows | share | mean score |",
              "|---:|---|---|---:|---:|---:|"]
    for e in r["explanations"]:
        lines.append(f"| #{e['number']} | {md_cell(e['name'])} | {md_cell(e['explanation'])} | {e['size']:,} | "
                     f"{_pct(e['share'])} | {e['mean_score']:.3f} |")
    lines.append(f"| | _{UNCOVERED}_ | | {c['uncovered']:,} | {_pct(c['uncovered'] / c['non_empty'] if c['non_empty'] else 0)} | |")
    for e in r["explanations"]:
        lines += ["", f"### #{e['number']} {md_cell(e['name'])}", "", md_cell(e["explanation"]), "",
                  f"- size: {count_rows(e['size'])} ({_pct(e['share'])}); matched by {count_rows(e['matched'])} "
                  f"including secondary matches; mean assignment score {e['mean_score']:.3f}; {md_cell(e['source'])}"
                  + (f"; true of {_pct(e['truth'])} of its distinct texts" if e.get("truth") is not None else "")]
        if e["terms"]:
            lines.append("- distinctive terms: " + ", ".join(f"`{md_cell(t).replace('`', '')}`" for t in e["terms"]))
        if e["representative"]:
            lines += ["- most representative texts:"]
            lines += [f"  {i}. {_text(t['text'])} (score {t['score'] or 0:.3f})"
                      for i, t in enumerate(e["representative"], start=1)]
        if e["evidence"]:
            lines += ["- evidence quotes:"] + [f"  > {_text(q)}" for q in e["evidence"]]

    ov = r["overlaps"]
    lines += ["", f"## Texts in two or more explanations: {count_rows(ov['n_rows'])} ({count_texts(ov['n_texts'])})",
              ""]
    if ov["texts"]:
        lines += _shown(len(ov["texts"]), ov["n_texts"])
        lines += ["| text | primary explanation | also matches |", "|---|---|---|"]
        lines += [f"| {_text(t['text'])} | {md_cell(t['primary'])} | {md_cell(', '.join(t['also']))} |"
                  for t in ov["texts"]]
    elif ov["n_texts"]:
        lines.append(r["not_listed"])
    else:
        lines.append("No text matches more than one selected explanation.")

    for key, title, empty in (("uncovered", "Uncovered texts (fit no explanation)", "Every text fits an explanation."),
                              ("unclustered", "Unclustered texts (noise of the clustering)",
                               "The clustering left no text as noise.")):
        section = r[key]
        lines += ["", f"## {title}: {count_rows(section['n_rows'])} ({count_texts(section['n_texts'])})", ""]
        if not section["texts"]:
            lines.append(r["not_listed"] if section["n_texts"] else empty)
            continue
        lines += _shown(len(section["texts"]), section["n_texts"])
        for t in section["texts"]:
            suffix = f" → {md_cell(t['explanation'] or UNCOVERED)}" if key == "unclustered" else ""
            lines.append(f"- {_text(t['text'])}{suffix}")

    if r["hierarchy"]:
        lines += ["", "## Hierarchy", ""]
        lines += _tree(r["hierarchy"], 0)
    return "\n".join(lines) + "\n"


def _shown(shown: int, total: int) -> list[str]:
    return [f"_The first {shown:,} of {count_texts(total)}._", ""] if shown < total else []


def _tree(nodes, depth: int) -> list[str]:
    lines = []
    for n in nodes:
        size = f" ({n['size']})" if "size" in n else ""
        lines.append("  " * depth + f"- {md_cell(n.get('name'))}{size}")
        lines += _tree(n.get("children") or [], depth + 1)
    return lines
