"""User-facing errors.

Anything raised as :class:`TextclustError` is a problem with the user's input or
environment; the CLI prints its message as one line on stderr and exits non-zero
without a traceback. Every other exception is a bug.

A message names the settings it is about as ``{name}`` placeholders ("{k} must be at
least 1"), with the names a Python caller uses (the keywords of :func:`textclust.run`,
registered with :func:`register_settings`). ``str(err)`` spells each as that name (``k``);
the command line spells it as its flag (``--k``) through :meth:`TextclustError.render`.
Library code therefore never names a command-line flag. Braces around anything that is not
a registered setting (a path, a text) are left as they are.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
_SETTINGS: set[str] = {"goal"}


def register_settings(names: Iterable[str]) -> None:
    """Declare setting names that messages may name as ``{name}``."""
    _SETTINGS.update(names)


def render_settings(template: str, spell: Callable[[str], str]) -> str:
    """``template`` with each registered ``{name}`` spelled by ``spell(name)``."""
    return _PLACEHOLDER.sub(lambda m: spell(m.group(1)) if m.group(1) in _SETTINGS else m.group(0), template)


class TextclustError(Exception):
    """A problem the user can fix; ``str(err)`` is a complete one-line message."""

    exit_code = 2

    def __init__(self, template: str = "", *args):
        self.template = str(template)
        super().__init__(render_settings(self.template, lambda name: name), *args)

    @property
    def settings(self) -> list[str]:
        """The registered settings the message names, in order."""
        return [name for name in _PLACEHOLDER.findall(self.template) if name in _SETTINGS]

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each setting spelled by ``spell(name)`` (the CLI: its flag)."""
        return render_settings(self.template, spell)


class InputError(TextclustError):
    """The input file or its columns cannot be used."""


class SettingsError(TextclustError):
    """The requested settings cannot be satisfied (e.g. more clusters than texts)."""


class NotFoundError(TextclustError):
    """A run or other stored object does not exist."""


class BudgetExceeded(TextclustError):
    """A paid resource (language-model calls or tokens) would go over its budget.

    Defined here, below every stage, because the round loop stops on it whatever the
    proposer or assigner is; :mod:`textclust.llm.errors` raises it. ``partial``: the results of
    the requests of a batch that did complete (None for the others), when a batch was cut."""

    partial: list | None = None
