"""Prompt templates, shipped as package data from the repository's prompts/ folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from jinja2 import Environment, StrictUndefined

_environment = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def prompt_source(name: str) -> str:
    """The raw text of ``prompts/<name>.txt``."""
    return _prompts_folder().joinpath(f"{name}.txt").read_text(encoding="utf-8")


def _prompts_folder():
    # Installed (wheel): the folder is package data ``textclust.prompts``. Run from a
    # source checkout, ``textclust`` is imported from the repository, beside prompts/.
    checkout = Path(__file__).resolve().parent.parent / "prompts"
    if checkout.is_dir():
        return checkout
    return resources.files("textclust.prompts")


def render_prompt(name: str, **variables) -> str:
    """Render a template; a missing variable is an error, not an empty string."""
    return _environment.from_string(prompt_source(name)).render(**variables)
