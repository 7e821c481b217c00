"""The keys of the language-model record, with no database in sight: the client computes them,
the store files rows under them. (Plain functions of plain values: importing this module
imports neither the store nor SQLAlchemy.)"""

from __future__ import annotations

import hashlib
import json

# finish_reason of the llm_responses rows that memo a server's structured-output mode
# (they share the cache table; a cache lookup never returns one).
CAPABILITY_MARK = "capability"


def canonical_json(value: object) -> str:
    """The one JSON spelling of a value that keys hash (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def capability_key(server: str, model: str) -> str:
    """The cache key under which the structured-output mode of a server and model is memoed."""
    payload = {"capability": "structured_output", "server": server, "model": model}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
