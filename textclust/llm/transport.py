"""How a chat request reaches a model: the :class:`Transport` protocol and its
OpenAI-compatible implementation.

A transport sends ONE request and maps every failure to an error of
:mod:`textclust.llm.errors`; retrying, caching, budgets and recording are the
client's job (:mod:`textclust.llm.client`). ``OpenAITransport`` speaks the Chat
Completions API through the ``openai`` package, so it works with OpenAI, Azure
OpenAI's v1 endpoint, vLLM, Ollama, the llama.cpp server, LM Studio and any other
server that implements ``POST {base_url}/chat/completions``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import register_settings
from .errors import PermanentError, TransientError, UnsupportedFormat, scrub

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "unused"  # local servers ignore the key, but the openai client insists on one
# Settings of LLMConfig its messages name ("check {model} and {base_url}"); registered here too
# because a transport may be used without textclust.llm.config.
register_settings(("model", "base_url"))

# A 400/422 whose message mentions one of these rejected the structured-output request.
_FORMAT_WORDS = ("response_format", "response format", "json_schema", "json schema", "json_object",
                 "structured output", "schema", "grammar")
# A 500 is normally transient; one naming these is a rejected response_format.
_FORMAT_500_WORDS = ("response_format", "json_schema", "'json_object'")
# "Unsupported parameter: 'max_tokens' …" / "Unsupported value: 'temperature' …" (newer OpenAI models).
_UNSUPPORTED_PARAM = re.compile(r"unsupported (?:parameter|value)\W+(\w+)", re.I)


@dataclass
class ChatResponse:
    """One answer of the model (the first choice)."""

    content: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    refusal: str | None = None


@runtime_checkable
class Transport(Protocol):
    """Sends one chat request; raises :mod:`textclust.llm.errors` errors on failure.

    ``name`` says what kind of transport it is ("openai", "llama.cpp", …); ``server`` is
    its identity in the response cache (the base URL, a model file path; never a key).
    """

    name: str
    server: str

    def chat(self, *, model: str, messages: list[dict], temperature: float | None, seed: int | None,
             max_tokens: int | None, response_format: dict | None, timeout: float) -> ChatResponse: ...


class OpenAITransport:
    """Chat Completions over HTTP with the ``openai`` client (its own retries disabled)."""

    name = "openai"

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float):
        import openai

        self._openai = openai
        url = base_url or OPENAI_DEFAULT_BASE_URL
        self._secrets = [s for s in [api_key, *url_secrets(url)] if s]
        self._client = openai.OpenAI(base_url=url, api_key=api_key or NO_KEY, timeout=timeout, max_retries=0)
        self.server = public_url(str(self._client.base_url)).rstrip("/")
        # Adapted on the fly when a server refuses a parameter (e.g. newer OpenAI models
        # want max_completion_tokens and only their default temperature).
        self._token_param = "max_tokens"
        self._omit: set[str] = set()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAITransport(server={self.server!r})"

    def chat(self, *, model, messages, temperature, seed, max_tokens, response_format, timeout) -> ChatResponse:
        for _ in range(4):  # at most one adaptation per parameter
            kwargs: dict = {"model": model, "messages": messages, "timeout": timeout}
            if temperature is not None and "temperature" not in self._omit:
                kwargs["temperature"] = temperature
            if seed is not None and "seed" not in self._omit:
                kwargs["seed"] = seed
            if max_tokens is not None:
                kwargs[self._token_param] = max_tokens
            if response_format is not None:
                kwargs["response_format"] = response_format
            try:
                completion = self._client.chat.completions.create(**kwargs)
            except self._openai.APIStatusError as err:
                if self._adapt(err, kwargs):
                    continue
                mapped = self._map_status_error(err, response_format)
                if isinstance(mapped, _Refused):
                    return ChatResponse(None, None, None, "content_filter", refusal=mapped.reason)
                raise mapped from None
            except self._openai.APITimeoutError:
                raise TransientError(f"no reply within {timeout:g}s (timeout) from {self.server}") from None
            except self._openai.APIConnectionError as err:
                cause = err.__cause__ or err
                raise TransientError(
                    f"cannot connect to {self.server}: {self._scrub(_one_line(cause))}", connection=True
                ) from None
            except self._openai.APIError as err:  # e.g. a reply that is not a chat completion
                raise PermanentError(f"bad reply from {self.server}: {self._scrub(_one_line(err))}") from None
            except (ValueError, TypeError) as err:  # a body that is not JSON at all
                raise PermanentError(f"bad reply from {self.server}: not JSON ({_one_line(err)[:120]})") from None
            return self._to_response(completion)
        raise PermanentError(f"{self.server} refused the request parameters")  # pragma: no cover

    def check(self, timeout: float = 10.0) -> None:
        """Fail now, before any heavy work, when the server cannot be reached or refuses the
        key (``GET /models``: free, and served by OpenAI, vLLM, llama.cpp and Ollama). Any
        other answer, a 404 included (a server without that route), counts as reachable."""
        try:
            self._client.models.list(timeout=timeout)
        except self._openai.APIStatusError as err:
            if err.status_code in (401, 403):
                raise self._map_status_error(err, None) from None
        except self._openai.APITimeoutError:
            raise TransientError(f"no reply within {timeout:g}s (timeout) from {self.server}") from None
        except self._openai.APIConnectionError as err:
            cause = err.__cause__ or err
            raise TransientError(f"cannot connect to {self.server}: {self._scrub(_one_line(cause))}",
                                 connection=True) from None
        except (self._openai.APIError, ValueError, TypeError):
            pass  # it answered, if oddly: the chat calls will say more

    # --- helpers -----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets) or ""

    def _adapt(self, err, kwargs: dict) -> bool:
        """Drop or rename a parameter the server says it does not support; True to resend."""
        if err.status_code != 400:
            return False
        match = _UNSUPPORTED_PARAM.search(_error_message(err))
        if not match:
            return False
        param = match.group(1)
        if param == "max_tokens" and self._token_param == "max_tokens" and "max_tokens" in kwargs:
            self._token_param = "max_completion_tokens"
            return True
        if param in ("temperature", "seed") and param in kwargs:
            self._omit.add(param)
            return True
        return False

    def _map_status_error(self, err, response_format):
        status = err.status_code
        message = self._scrub(f"{status} from {self.server}: {_error_message(err)}")
        if status == 400 and getattr(err, "code", None) == "content_filter":  # Azure: the prompt was filtered
            return _Refused(self._scrub(_error_message(err)))
        lowered = message.lower()
        if response_format is not None and status == 500 and any(w in lowered for w in _FORMAT_500_WORDS):
            # llama-cpp-python answers an unknown response_format type with a 500 (a validation
            # error it does not map to 400); retrying would only repeat it.
            return UnsupportedFormat(message)
        if status == 429 or status in (408, 409) or status >= 500:
            return TransientError(message, retry_after_seconds(err.response.headers))
        if response_format is not None and status in (400, 422) and any(w in lowered for w in _FORMAT_WORDS):
            return UnsupportedFormat(message)
        if status == 401:
            message += " (check the API key; its environment variable is named by api_key_env)"
        elif status == 404:
            message += " (check {model} and {base_url})"
        return PermanentError(message, status)

    def _to_response(self, completion) -> ChatResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            shown = completion if isinstance(completion, str) else getattr(completion, "model_dump", lambda: "")()
            raise PermanentError(
                f"bad reply from {self.server}: not a chat completion ({self._scrub(_one_line(shown))[:160]})"
            )
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        refusal = getattr(message, "refusal", None)
        usage = getattr(completion, "usage", None)
        return ChatResponse(
            content=content if isinstance(content, str) else (None if content is None else json.dumps(content)),
            prompt_tokens=_int_or_none(getattr(usage, "prompt_tokens", None)),
            completion_tokens=_int_or_none(getattr(usage, "completion_tokens", None)),
            finish_reason=getattr(choice, "finish_reason", None),
            refusal=refusal if isinstance(refusal, str) and refusal.strip() else None,
        )


@dataclass
class _Refused:
    reason: str


_SECRET_PARAM = re.compile(r"key|token|secret|sig|password|auth", re.I)


def public_url(url: str) -> str:
    """``url`` without credentials: the password of ``user:password@`` and key-like query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The credential parts of ``url`` (to scrub from messages)."""
    parts = urlsplit(url)
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.append(userinfo.split(":", 1)[1] if ":" in userinfo else userinfo)
    found += [v for k, v in parse_qsl(parts.query) if _SECRET_PARAM.search(k) and v]
    return found


def retry_after_seconds(headers, now: float | None = None) -> float | None:
    """The server's requested wait: ``retry-after-ms``, else ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_message(err) -> str:
    """The server's own error message (OpenAI-style body), else the body or exception text."""
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return _one_line(inner["message"])[:500]
        if isinstance(inner, str):
            return _one_line(inner)[:500]
        return _one_line(json.dumps(body))[:300]
    if isinstance(body, str) and body.strip():
        return _one_line(body)[:300]
    return _one_line(getattr(err, "message", None) or err)[:300]


def _one_line(value) -> str:
    return " ".join(str(value).split())


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
