"""Stage 8 — report / export: terminal summary, CSV / JSON / Markdown files."""

from .export import EXPORT_FORMATS, export_run
from .summary import print_run_list, print_summary

__all__ = ["EXPORT_FORMATS", "REPORT_FORMATS", "ReportOptions", "build_report", "compare_runs", "export_run",
           "print_comparison", "print_run_list", "print_summary", "render_compare_html", "write_report"]


def __getattr__(name):  # the report modules import plotly/jinja2 lazily: `textclust show` stays fast
    if name in ("REPORT_FORMATS", "write_report"):
        from . import html

        return getattr(html, name)
    if name in ("ReportOptions", "build_report"):
        from . import model

        return getattr(model, name)
    if name in ("compare_runs", "print_comparison", "render_compare_html"):
        from . import compare

        return getattr(compare, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
