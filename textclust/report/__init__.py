"""Stage 8 — report / export: terminal summary, CSV / JSON / Markdown files."""

from .export import EXPORT_FORMATS, export_run
from .summary import print_run_list, print_summary

__all__ = ["EXPORT_FORMATS", "export_run", "print_run_list", "print_summary"]
