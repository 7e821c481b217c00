"""The language-model stage's access to a model: any OpenAI-compatible Chat Completions
server (or an in-process GGUF model), with structured output, a response cache, budgets,
retries and a complete record of every call in the database.

    config = LLMConfig.resolve(model=..., base_url=...)   # None: no model configured
    client = LLMClient(config, db, run_id=run_id)
    result = client.complete_json("propose", messages, schema, "explanations", validate)

Names are imported on first use, so that reading a configuration (``textclust.config``)
does not import the HTTP client.
"""

from importlib import import_module

_WHERE = {
    "BudgetExceeded": "errors", "LLMError": "errors", "PermanentError": "errors", "TransientError": "errors",
    "UnsupportedFormat": "errors", "LLMClient": "client", "LLMResult": "client", "LLMConfig": "config",
    "ChatResponse": "transport", "OpenAITransport": "transport", "Transport": "transport",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
