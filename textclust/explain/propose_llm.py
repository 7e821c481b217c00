"""Propose with a language model: read sample texts, write explanations for the goal.

Also home of the prompt data format both stages share. Corpus texts reach a prompt
only as data: one JSON object per line between the marker lines ``<<<TEXTS`` and
``TEXTS>>>``, serialised with ``json.dumps(ensure_ascii=False)`` and then ``<`` →
``\\u003c`` and ``>`` → ``\\u003e``, so that no text can forge a marker or a tag. (The
line separators U+0085, U+2028 and U+2029 are escaped too, so that no text can break
its line for a reader that splits on them; every line still decodes with
``json.loads`` to exactly the text given.) The system prompts say that everything
between the markers is third-party data whose instructions must be ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..prompts_loader import render_prompt

OPEN_MARKER = "<<<TEXTS"
CLOSE_MARKER = "TEXTS>>>"
ELLIPSIS = "…"
MAX_NAME_WORDS = 6
MAX_EXPLANATION_CHARS = 400
_SENTINEL = "\x00DATA-BLOCK\x00"

PROPOSE_SCHEMA = {
    "type": "object",
    "properties": {
        "explanations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "explanation": {"type": "string"}},
                "required": ["name", "explanation"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["explanations"],
    "additionalProperties": False,
}
PROPOSE_SCHEMA_NAME = "proposed_explanations"
MAX_NAME_CHARS = 80
# The proposer is shown the candidates so far, so that it proposes what they miss; past this
# many the prompt would grow with every round for little gain (the latest are shown).
MAX_LISTED_CANDIDATES = 60


def propose_schema(n_explanations: int) -> dict:
    """PROPOSE_SCHEMA with limits: servers that turn the schema into a grammar (llama.cpp)
    then cannot let a small model list explanations until the token cap."""
    schema = json.loads(json.dumps(PROPOSE_SCHEMA))
    explanations = schema["properties"]["explanations"]
    explanations["maxItems"] = n_explanations
    explanations["items"]["properties"]["name"]["maxLength"] = MAX_NAME_CHARS
    explanations["items"]["properties"]["explanation"]["maxLength"] = MAX_EXPLANATION_CHARS
    return schema


# --- the shared prompt data format ------------------------------------------------------------


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, the cut marked with "…"."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    return text[: max(1, max_chars - 1)].rstrip() + ELLIPSIS


def data_line(item: dict) -> str:
    """One data object as a line that cannot end the block or open a tag."""
    line = json.dumps(item, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"),
                         ("\u0085", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        line = line.replace(char, escape)
    return line


def data_block(items: list[dict]) -> str:
    """The marker-delimited block of data lines."""
    return "\n".join([OPEN_MARKER, *(data_line(item) for item in items), CLOSE_MARKER])


def one_line(text: str) -> str:
    """Trusted text (the goal, examples, model-written explanations) as one line in which
    no marker can appear: whitespace collapsed, runs of three or more ``<``/``>`` shortened."""
    text = " ".join(str(text).split())
    text = re.sub(r"<{3,}", "<<", text)
    return re.sub(r">{3,}", ">>", text)


def render_split(template: str, **variables) -> tuple[str, str]:
    """The template rendered around its data block: ``(before, after)``. The data block is
    spliced in between, so everything before it is byte-identical whatever the data."""
    rendered = render_prompt(template, data_block=_SENTINEL, **variables)
    if rendered.count(_SENTINEL) != 1:
        raise ValueError(f"prompts/{template}.txt must use {{{{ data_block }}}} exactly once")
    before, after = rendered.split(_SENTINEL)
    return before, after


# --- propose ----------------------------------------------------------------------------------


@dataclass
class Proposal:
    name: str
    explanation: str


def propose_messages(goal: str, samples: list[str], n_explanations: int, examples=(),
                     max_chars: int = 1000, existing=()) -> list[dict]:
    """System and user messages asking for up to ``n_explanations`` explanations of ``samples``
    that the ``existing`` explanations (``(name, explanation)`` pairs) do not already give."""
    system = render_prompt("propose_system").strip()
    existing = list(existing)[-MAX_LISTED_CANDIDATES:]  # the latest, when there are very many
    before, after = render_split(
        "propose",
        goal=one_line(goal),
        n_explanations=int(n_explanations),
        n_samples=len(samples),
        examples=[one_line(e) for e in examples if str(e).strip()],
        existing=[{"name": one_line(name), "text": truncate(one_line(text), MAX_EXPLANATION_CHARS)}
                  for name, text in existing],
    )
    block = data_block([{"id": k, "text": truncate(t, max_chars)} for k, t in enumerate(samples, 1)])
    return [{"role": "system", "content": system}, {"role": "user", "content": before + block + after}]


def validate_proposals(data) -> dict:
    """Structural check for the client (a ValueError makes it ask the model to repair)."""
    if not isinstance(data, dict) or not isinstance(data.get("explanations"), list):
        raise ValueError('expected an object {"explanations": [...]}')
    if data["explanations"] and not parse_proposals(data, limit=None):  # an empty list is an answer
        raise ValueError('no usable explanation: each needs a non-empty "name" and "explanation" string')
    return data


def parse_proposals(data, limit: int | None) -> list[Proposal]:
    """The usable proposals in order: strings only, whitespace collapsed, names cut to six
    words (an empty name becomes the explanation's first words), exact repeats dropped."""
    out: list[Proposal] = []
    seen: set[str] = set()
    items = data.get("explanations") if isinstance(data, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        name, text = item.get("name"), item.get("explanation")
        if not isinstance(text, str) or not text.strip():
            continue
        text = one_line(text)
        if len(text) > MAX_EXPLANATION_CHARS:
            text = truncate(text, MAX_EXPLANATION_CHARS)
        name = one_line(name) if isinstance(name, str) else ""
        name = " ".join((name or text).split()[:MAX_NAME_WORDS])
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        out.append(Proposal(name, text))
        if limit is not None and len(out) >= limit:
            break
    return out


def propose(client, goal: str, samples: list[str], n_explanations: int, examples=(), max_chars: int = 1000,
            stage: str = "propose", existing=()):
    """One propose call: ``(proposals, LLMResult)``; no proposals when the call failed."""
    messages = propose_messages(goal, samples, n_explanations, examples, max_chars, existing)
    result = client.complete_json(stage, messages, propose_schema(n_explanations), PROPOSE_SCHEMA_NAME,
                                  validate=validate_proposals)
    proposals = parse_proposals(result.data, n_explanations) if result.ok else []
    return proposals, result
