"""In-process language model: a GGUF file run by llama.cpp (``--llm-gguf PATH``).

:class:`LlamaCppTransport` implements :class:`textclust.llm.transport.Transport` with
``llama_cpp.Llama.create_chat_completion`` instead of HTTP, so a run needs no server
and no network. It needs the optional package ``llama-cpp-python``
(``pip install 'textclust[local]'``); without it, or with a path that is not a GGUF
file, constructing the transport raises :class:`PermanentError` with a one-line message.

Structured output: the OpenAI-style ``response_format`` the client sends is translated
into the form llama-cpp-python understands, which turns a JSON schema into a sampling
grammar (the answer is constrained token by token, so it always parses):

* ``{"type": "json_schema", "json_schema": {"schema": S, ...}}`` -> ``{"type": "json_object", "schema": S}``
* ``{"type": "json_object"}`` -> unchanged (any JSON value)
* ``None`` / ``{"type": "text"}`` -> no constraint

(llama-cpp-python 0.3 knows only ``json_object`` with an optional ``schema``; schema
keywords its grammar converter cannot handle fall back to plain JSON.)

Chat format ``gemma`` (the default) drops ``system`` messages; their text is therefore
put in front of the first user message, so instructions are not lost.

The model is loaded on the first call (not in the constructor) and calls are serialised
with a lock: one ``Llama`` object is not safe to use from several threads, and the
client may send requests concurrently. ``timeout`` is not enforced in-process
(``max_tokens`` bounds a call's length).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .errors import PermanentError, UnsupportedFormat
from .transport import ChatResponse

INSTALL_HINT = "the in-process backend needs: pip install 'textclust[local]'"
GGUF_MAGIC = b"GGUF"
# Chat formats whose prompt template has no place for a system message.
_NO_SYSTEM_ROLE = {"gemma"}


def _one_line(value) -> str:
    return " ".join(str(value).split())


class LlamaCppTransport:
    """Chat completions from a local GGUF model, in this process (llama-cpp-python)."""

    name = "llama-cpp (in-process)"

    def __init__(self, gguf_path: str | os.PathLike, n_ctx: int = 8192, chat_format: str | None = "gemma",
                 n_threads: int | None = None):
        try:
            import llama_cpp  # noqa: F401  (checked here, used when the model is loaded)
        except ImportError as err:
            raise PermanentError(f"{INSTALL_HINT} ({_one_line(err)})") from None
        path = Path(gguf_path).expanduser()
        try:
            path = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise PermanentError(f"{gguf_path}: model file not found") from None
        if not path.is_file():
            raise PermanentError(f"{path}: not a file (expected a .gguf model file)")
        try:
            with path.open("rb") as f:
                magic = f.read(4)
            size = path.stat().st_size
        except OSError as err:
            raise PermanentError(f"{path}: cannot read the model file ({_one_line(err)})") from None
        if magic != GGUF_MAGIC:
            raise PermanentError(f"{path}: not a GGUF model file (it does not start with 'GGUF')")
        self.path = path
        self.n_ctx = int(n_ctx)
        self.chat_format = chat_format
        # None: llama.cpp's default (half the CPUs). More threads than free cores is far
        # slower, not faster: on a busy 2-core machine 2 threads ran 8x slower than 1.
        self.n_threads = n_threads
        self.server = f"gguf:{path}:{size}"
        self._llama = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LlamaCppTransport(server={self.server!r}, chat_format={self.chat_format!r})"

    # --- Transport -----------------------------------------------------------------------------

    def chat(self, *, model, messages, temperature, seed, max_tokens, response_format, timeout) -> ChatResponse:
        # ``model`` only names the answer (the file decides the model); ``timeout``: see module doc.
        kwargs: dict = {
            "messages": self._messages(messages),
            "response_format": to_llama_response_format(response_format),
        }
        if temperature is not None:
            kwargs["temperature"] = float(temperature)
        if seed is not None:
            kwargs["seed"] = int(seed)
        if max_tokens is not None:
            kwargs["max_tokens"] = int(max_tokens)
        if model:
            kwargs["model"] = model
        with self._lock:
            llama = self._load()
            try:
                completion = llama.create_chat_completion(**kwargs)
            except ValueError as err:
                text = _one_line(err)
                if "context window" in text or "exceed" in text:
                    raise PermanentError(f"prompt too long for {self.path.name} (n_ctx={self.n_ctx}): {text}") from None
                raise PermanentError(f"llama.cpp rejected the request: {text}") from None
            except Exception as err:  # anything from the native library: not worth retrying
                raise PermanentError(f"llama.cpp failed on {self.path.name}: {type(err).__name__}: "
                                     f"{_one_line(err)}") from None
        return _to_response(completion)

    # --- helpers -------------------------------------------------------------------------------

    def _load(self):
        if self._llama is None:
            from llama_cpp import Llama

            avoid_weight_repacking()
            try:
                options = {"n_threads": self.n_threads} if self.n_threads else {}
                self._llama = Llama(model_path=str(self.path), n_ctx=self.n_ctx, chat_format=self.chat_format,
                                    verbose=False, **options)
            except Exception as err:
                raise PermanentError(f"llama.cpp cannot load {self.path}: {_one_line(err)}") from None
        return self._llama

    def _messages(self, messages: list[dict]) -> list[dict]:
        if self.chat_format not in _NO_SYSTEM_ROLE:
            return messages
        system = [str(m.get("content") or "") for m in messages if m.get("role") in ("system", "developer")]
        rest = [dict(m) for m in messages if m.get("role") not in ("system", "developer")]
        if not system:
            return rest
        preface = "\n\n".join(s for s in system if s)
        for m in rest:
            if m.get("role") == "user":
                m["content"] = f"{preface}\n\n{m.get('content') or ''}" if preface else m.get("content")
                break
        else:
            rest.insert(0, {"role": "user", "content": preface})
        return rest


def to_llama_response_format(response_format: dict | None) -> dict | None:
    """The OpenAI-style ``response_format`` in the form llama-cpp-python accepts."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        out = {"type": "json_object"}
        if isinstance(response_format.get("schema"), dict):
            out["schema"] = response_format["schema"]
        return out
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return {"type": "json_object", "schema": schema} if isinstance(schema, dict) else {"type": "json_object"}
    raise UnsupportedFormat(f"response_format type {kind!r} is not supported by the in-process backend")


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _to_response(completion: dict) -> ChatResponse:
    choices = completion.get("choices") or []
    if not choices:
        raise PermanentError("llama.cpp returned no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    usage = completion.get("usage") or {}
    content = message.get("content")
    return ChatResponse(
        content=content if isinstance(content, str) or content is None else str(content),
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        finish_reason=choice.get("finish_reason"),
    )


REPACK_ENV = "TEXTCLUST_LLAMA_REPACK"  # "1": keep llama.cpp's weight repacking even where it is avoided


def cpu_advertises_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            return any(line.startswith("flags") and " amx_" in line for line in f)
    except OSError:
        return False


def avoid_weight_repacking() -> bool:
    """Load GGUF models without llama.cpp's extra buffer types (weight repacking) on CPUs that
    advertise AMX, unless ``$TEXTCLUST_LLAMA_REPACK`` is 1. Why: on virtual machines that
    advertise AMX without fully supporting it (seen on this project's CI machines), the
    repacked kernels crash the whole process with a general protection fault in
    libggml-cpu, with no error to catch; without repacking the model runs, somewhat slower.
    Returns whether repacking is now avoided. Also used by the tests for the llama.cpp server.

    Not needed with the project's prebuilt wheel (``../shared/wheels``, built with
    ``GGML_NATIVE=OFF``: AVX2 kernels only, no AMX): kept for users' own native builds, which
    compile the AMX kernels on a machine that advertises AMX. (This session's machine did
    not advertise AMX, so the crash could not be re-checked; the 9 llama tests passed with
    the prebuilt wheel and repacking on.)"""
    if os.environ.get(REPACK_ENV) == "1" or not cpu_advertises_amx():
        return False
    import llama_cpp.llama_cpp as native

    if getattr(native.llama_model_default_params, "_textclust_no_repack", False):
        return True
    original = native.llama_model_default_params

    def without_repacking():
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    without_repacking._textclust_no_repack = True
    native.llama_model_default_params = without_repacking
    return True
