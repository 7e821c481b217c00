"""User-facing errors.

Anything raised as :class:`TextclustError` is a problem with the user's input or
environment; the CLI prints its message as one line on stderr and exits non-zero
without a traceback. Every other exception is a bug.
"""


class TextclustError(Exception):
    """A problem the user can fix; ``str(err)`` is a complete one-line message."""

    exit_code = 2


class InputError(TextclustError):
    """The input file or its columns cannot be used."""


class SettingsError(TextclustError):
    """The requested settings cannot be satisfied (e.g. more clusters than texts)."""


class NotFoundError(TextclustError):
    """A run or other stored object does not exist."""
