"""Errors of the language-model stage.

All are :class:`textclust.errors.TextclustError`: their message is one complete line
for the user. Messages never contain the API key (see :func:`scrub`).
"""

from __future__ import annotations

import re

from ..errors import BudgetExceeded as _BudgetExceeded
from ..errors import TextclustError


class LLMError(TextclustError):
    """A problem talking to the language model."""


class TransientError(LLMError):
    """Worth retrying: rate limit (429), server error (5xx), timeout, connection problem.

    ``retry_after`` is the server's Retry-After in seconds, when it sent one.
    ``connection`` is True when the server could not be reached at all.
    """

    def __init__(self, message: str, retry_after: float | None = None, *, connection: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.connection = connection


class UnsupportedFormat(LLMError):
    """The server rejected the requested ``response_format`` (structured output)."""


class PermanentError(LLMError):
    """A 4xx other than 429 (bad key, unknown model, bad request): not retried.

    ``status`` is the HTTP status code (None when unknown). ``fatal`` is True when every
    further call would fail the same way (401, 403, 404: key or model wrong), so the
    stage stops instead of recording the same failure for every request.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def fatal(self) -> bool:
        return self.status in (401, 403, 404)


class BudgetExceeded(_BudgetExceeded, LLMError):
    """Raised before sending a call that would go over ``max_calls`` / ``max_tokens``.

    ``partial`` is set by :meth:`LLMClient.complete_many`: the results of the requests
    that did complete (None for the others), in order.
    """

    partial: list | None = None


# Things that look like credentials, whatever key is configured.
_KEY_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"\b(sk-)[A-Za-z0-9_\-*]{6,}"),
    re.compile(r"(?i)((?:api[-_]?key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"),
]


def scrub(text: str | None, secrets=(), *, patterns: bool = True) -> str | None:
    """``text`` with every secret replaced by ``***``.

    With ``patterns`` (for error messages), anything that looks like a credential
    (``Bearer …``, ``sk-…``, ``api_key=…``) is masked too; stored prompts and answers
    are scrubbed of the configured secrets only, so the user's data is kept as it is.
    """
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    if not patterns:
        return text
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text
