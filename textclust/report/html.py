"""The self-contained HTML report (and the Markdown / JSON renderings of the same content).

One file, no network: plotly.js, the styles and the data are all inlined, so the
report opens offline in any browser. Every piece of corpus text goes through
Jinja2's autoescaping (page) or :func:`html.escape` (plot labels and hover text),
so a text containing ``<script>`` shows as text and never runs.
"""

from __future__ import annotations

import html
import json
import textwrap
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ..errors import TextclustError
from .model import UNCOVERED, ReportOptions, build_report, cut_at_word, report_json
from .units import count_rows, count_texts

REPORT_FORMATS = ("html", "md", "json")
# Okabe and Ito's colour-blind-safe hues (black left out), then a violet picked to stay as far from
# them under simulated protanopia, deuteranopia and tritanopia (tests/test_report_html.py); the
# two closest, orange and vermillion, are not neighbours. Explanation #N gets the N-th.
EXPLANATION_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#7B3FE4")
# Explanations beyond those (the smallest: #N is the rank by size) share one neutral colour, as one
# "other" group; it is dark, the uncovered texts' grey is light, and neither is used for anything else.
OTHER_COLOUR = "#333333"
UNCOVERED_COLOUR = "#c0c0c0"
HOVER_WIDTH = 70  # characters per hover line


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("textclust.report", "templates"),
        autoescape=select_autoescape(["html", "htm", "j2"], default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v, digits=1: f"{(v or 0) * 100:.{digits}f}%"
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) else v
    env.filters["seconds"] = lambda v: f"{v:.1f} s"
    env.filters["rows"] = count_rows  # "1,500 rows", "4 empty rows" (rows|rows("empty"))
    env.filters["texts"] = count_texts  # "1,454 distinct texts"
    env.filters["cut"] = cut_at_word  # the start of a long text, or None when it is short
    return env


def palette(n: int) -> list[str]:
    """The colours of n explanations, in their order: distinct for the first
    len(EXPLANATION_COLOURS), then :data:`OTHER_COLOUR`."""
    return [EXPLANATION_COLOURS[i] if i < len(EXPLANATION_COLOURS) else OTHER_COLOUR for i in range(n)]


def colour_map(report: dict) -> dict[str, str]:
    """Explanation label ("#N name", as the map's points carry it) -> colour."""
    names = [e["label"] for e in report["explanations"]]
    colours = dict(zip(names, palette(len(names))))
    colours[UNCOVERED] = UNCOVERED_COLOUR
    return colours


def other_group(report: dict) -> tuple[list[str], str | None]:
    """The labels of the explanations drawn in :data:`OTHER_COLOUR`, and the name the map's legend
    gives them (None when there are none)."""
    grouped = [e["label"] for e in report["explanations"][len(EXPLANATION_COLOURS):]]
    if len(grouped) > 1:
        return grouped, f"other ({len(grouped)} explanations)"
    return grouped, grouped[0] if grouped else None


def _plot_text(text: str, width: int = HOVER_WIDTH) -> str:
    """Corpus text for a plotly label: escaped (plotly reads a subset of HTML), wrapped with <br>."""
    lines = textwrap.wrap(text, width=width, break_long_words=True, replace_whitespace=True) or [""]
    return "<br>".join(html.escape(line, quote=True) for line in lines)


def _label(name: str, limit: int = 40) -> str:
    name = name if len(name) <= limit else name[: limit - 1] + "…"
    return html.escape(name, quote=True)


PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def map_figure(report: dict, colours: dict[str, str]):
    import plotly.graph_objects as go

    points = report["map"]["points"]
    grouped, other = other_group(report)
    # One trace (legend entry) per explanation with a colour of its own, one for the "other" group.
    traces = [(e["label"], [e["label"]]) for e in report["explanations"] if e["label"] not in grouped]
    traces += [(other, grouped)] if grouped else []
    traces += [(UNCOVERED, [UNCOVERED])]
    fig = go.Figure()
    for name, labels in traces:
        group = [p for p in points if p["label"] in labels]
        if not group:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p["x"] for p in group],
                y=[p["y"] for p in group],
                mode="markers",
                name=_label(name),
                marker={"size": 6, "color": colours.get(labels[0], OTHER_COLOUR), "opacity": 0.75},
                hovertext=[f"<b>{_label(p['label'])}</b><br>{_plot_text(p['text'])}" for p in group],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        height=620,
        margin={"l": 20, "r": 20, "t": 30, "b": 20},
        legend={"itemsizing": "constant", "font": {"size": 11}},
        xaxis={"showticklabels": False, "zeroline": False, "title": None},
        yaxis={"showticklabels": False, "zeroline": False, "title": None},
        plot_bgcolor="#fafafa",
        hoverlabel={"align": "left"},
    )
    return fig


def sizes_figure(report: dict, colours: dict[str, str]):
    import plotly.graph_objects as go

    counts = report["counts"]
    names = [e["label"] for e in report["explanations"]] + [UNCOVERED]
    sizes = [e["size"] for e in report["explanations"]] + [counts["uncovered"]]
    total = counts["non_empty"] or 1
    labels = [_label(n, 32) for n in names[:-1]] + [f"({UNCOVERED})"]
    fig = go.Figure(
        go.Bar(
            x=sizes,
            y=labels,
            orientation="h",
            marker={"color": [colours[n] for n in names]},
            text=[f"{s:,} ({s / total:.1%})" for s in sizes],
            textposition="outside",
            cliponaxis=False,
            hovertext=[f"<b>{_label(n)}</b><br>{count_rows(s)}, {s / total:.1%}" for n, s in zip(names, sizes)],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        height=max(220, 28 * len(names) + 90),
        margin={"l": 10, "r": 90, "t": 40, "b": 30},
        title={"text": f"Coverage {counts['coverage']:.1%}: {counts['covered']:,} of "
                       f"{count_rows(counts['non_empty'], 'non-empty')} explained", "font": {"size": 14}},
        yaxis={"autorange": "reversed", "automargin": True},
        xaxis={"title": "input rows"},
        plot_bgcolor="#fafafa",
    )
    return fig


def render_html(report: dict) -> str:
    import plotly.io as pio

    from plotly.offline import get_plotlyjs

    colours = colour_map(report)
    # plotly.js is inlined once in <head> (never a CDN); the figures only carry their data.
    sizes_div = pio.to_html(sizes_figure(report, colours), include_plotlyjs=False, full_html=False,
                            div_id="sizes-chart", config=PLOT_CONFIG)
    map_div = None
    if report["map"] and report["map"]["points"]:
        map_div = pio.to_html(map_figure(report, colours), include_plotlyjs=False, full_html=False,
                              div_id="map-chart", config=PLOT_CONFIG)
    template = _environment().get_template("report.html.j2")
    return template.render(r=report, colours=colours, sizes_div=sizes_div, map_div=map_div,
                           uncovered=UNCOVERED, other=other_group(report)[1], plotly_js=get_plotlyjs())


def render_markdown(report: dict) -> str:
    from .markdown import report_markdown

    return report_markdown(report)


def write_report(db, run_id: int, path: str | Path, fmt: str | None = None,
                 options: ReportOptions | None = None) -> str:
    """Write the report of run ``run_id`` to ``path``; return the format used."""
    path, fmt = report_target(path, fmt)
    report = build_report(db, run_id, options, with_map=(fmt == "html"))
    if fmt == "html":
        content = render_html(report)
    elif fmt == "md":
        content = render_markdown(report)
    else:
        content = json.dumps(report_json(report), ensure_ascii=False, indent=2, default=str) + "\n"
    path.write_text(content, encoding="utf-8")
    return fmt


def report_target(path: str | Path, fmt: str | None = None) -> tuple[Path, str]:
    """The file and format a report goes to, checked before any work: ``fmt``, else the suffix's."""
    path = Path(path)
    fmt = fmt or format_from_suffix(path)
    if fmt not in REPORT_FORMATS:
        raise TextclustError(f"unknown report format '{fmt}'; choose one of {', '.join(REPORT_FORMATS)}")
    if not path.parent.exists():
        raise TextclustError(f"-o {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise TextclustError(f"-o {path}: is a directory")
    return path, fmt


def format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"md": "md", "markdown": "md", "json": "json"}.get(suffix, "html")
