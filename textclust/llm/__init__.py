"""The language-model stage's access to a model: any OpenAI-compatible Chat Completions
server (or an in-process GGUF model), with structured output, a response cache, budgets,
retries and a complete record of every call in the database.

    config = LLMConfig.resolve(model=..., base_url=...)   # None: no model configured
    client = LLMClient(config, db, run_id=run_id)
    result = client.complete_json("propose", messages, schema, "explanations", validate)
"""

from .client import LLMClient, LLMResult
from .config import LLMConfig
from .errors import BudgetExceeded, LLMError, PermanentError, TransientError, UnsupportedFormat
from .transport import ChatResponse, OpenAITransport, Transport

__all__ = [
    "BudgetExceeded",
    "ChatResponse",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "LLMResult",
    "OpenAITransport",
    "PermanentError",
    "Transport",
    "TransientError",
    "UnsupportedFormat",
]
