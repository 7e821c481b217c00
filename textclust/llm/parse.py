"""Reading JSON out of a model's answer, tolerantly, and checking it against a schema.

Servers without structured output (and some with it) wrap the JSON in prose or code
fences, think aloud first (``<think>…</think>``), leave trailing commas or use
typographic quotes. :func:`parse_json` copes with those; what it cannot read raises
:class:`ParseError` with a short reason that the repair request quotes back to the model.
:func:`check_schema` checks the common subset of JSON Schema (type, required, properties,
items, enum, minItems/maxItems, anyOf/oneOf) so a well-formed answer of the wrong shape
is caught too. Before that check, :func:`coerce_scalars` forgives the scalar types
models often get wrong (explanation numbers given as ``"3"``).
"""

from __future__ import annotations

import ast
import json
import re

_THINK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\n?(.*?)```", re.S)
_SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})


class ParseError(ValueError):
    """The answer holds no readable JSON; ``str(err)`` says why, in one line."""


class SchemaMismatch(ValueError):
    """The JSON does not have the requested shape; ``str(err)`` names the first problem."""


def parse_json(text: str | None) -> object:
    """The JSON value in ``text`` (an object or array, possibly wrapped in prose/fences)."""
    if text is None or not text.strip():
        raise ParseError("empty reply")
    body = _THINK.sub("", text)
    if re.match(r"\s*<think", body, re.I):  # reasoning never closed: drop it up to the JSON
        body = body.split("</think>")[-1] if "</think>" in body else body[body.find(">") + 1:]
    body = body.strip()
    try:
        return json.loads(body)
    except ValueError:
        pass
    fenced = _FENCE.findall(body)
    candidates = [f.strip() for f in fenced if f.strip()] + [body]
    problem = None
    for candidate in candidates:
        span = _outermost(candidate)
        if span is None:
            continue
        for variant in _variants(span):
            try:
                return json.loads(variant)
            except ValueError:
                pass
        try:  # a Python literal (single quotes, True/None) — evaluated as data only
            value = ast.literal_eval(span)
            if isinstance(value, (dict, list)):
                return json.loads(json.dumps(value))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
        try:
            json.loads(span)
        except ValueError as err:
            problem = problem or f"not valid JSON: {_describe(err)}"
    if problem:
        raise ParseError(problem)
    if any(c in body for c in "{["):
        raise ParseError("the JSON is cut off (brackets not closed)")
    raise ParseError("no JSON object or array in the reply")


def _variants(span: str):
    yield span
    fixed = _drop_trailing_commas(span)
    if fixed != span:
        yield fixed
    smart = span.translate(_SMART)
    if smart != span:
        yield smart
        yield _drop_trailing_commas(smart)


_CLOSES_NEXT = re.compile(r"\s*[}\]]")


def _structural(text: str, start: int = 0):
    """``(index, char)`` of the characters of ``text`` outside JSON string literals."""
    in_string, escaped = False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        else:
            yield i, c


def _outermost(text: str) -> str | None:
    """From the first ``{`` or ``[`` to its matching bracket (strings respected); None if unclosed."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    depth = 0
    for i, c in _structural(text, start):
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def _drop_trailing_commas(text: str) -> str:
    """``text`` without the commas (outside strings) that only whitespace separates from a ``}``/``]``."""
    dropped = set()
    for i, c in _structural(text):
        if c == "," and _CLOSES_NEXT.match(text, i + 1):
            dropped.add(i)
    return "".join(c for i, c in enumerate(text) if i not in dropped)


def _describe(err: Exception) -> str:
    return " ".join(str(err).split())[:160]


# --- schema --------------------------------------------------------------------------------------

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def check_schema(value: object, schema: dict, path: str = "$") -> None:
    """Raise :class:`SchemaMismatch` at the first place ``value`` breaks ``schema``."""
    if not isinstance(schema, dict):
        return
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            problems = []
            for option in options:
                try:
                    check_schema(value, option, path)
                    break
                except SchemaMismatch as err:
                    problems.append(str(err))
            else:
                raise SchemaMismatch(problems[0])
    wanted = schema.get("type")
    if wanted is not None:
        kinds = wanted if isinstance(wanted, list) else [wanted]
        if not any(_TYPES.get(k, lambda v: True)(value) for k in kinds):
            raise SchemaMismatch(f"{path}: expected {' or '.join(map(str, kinds))}, got {_kind(value)}")
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"][:10])
        raise SchemaMismatch(f"{path}: {json.dumps(value)[:60]} is not one of {allowed}")
    if isinstance(value, dict):
        for key in schema.get("required", []) or []:
            if key not in value:
                raise SchemaMismatch(f"{path}: missing required key {key!r}")
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if key in value:
                check_schema(value[key], sub, f"{path}.{key}")
    if isinstance(value, list):
        low, high = schema.get("minItems"), schema.get("maxItems")
        if isinstance(low, int) and len(value) < low:
            raise SchemaMismatch(f"{path}: {len(value)} items, at least {low} expected")
        if isinstance(high, int) and len(value) > high:
            raise SchemaMismatch(f"{path}: {len(value)} items, at most {high} expected")
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                check_schema(item, items, f"{path}[{i}]")


def coerce_scalars(value: object, schema: dict) -> object:
    """``value`` with the numbers a model commonly gives as text set to the schema's type: a
    digit string (``"3"``, ``" 3"``) or a whole float where an integer is wanted. Everything
    else is left for :func:`check_schema` to judge."""
    if not isinstance(schema, dict):
        return value
    wanted = schema.get("type")
    if wanted == "integer" and isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if wanted == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        return {k: coerce_scalars(v, properties[k]) if k in properties else v for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_scalars(item, schema["items"]) for item in value]
    return value


def _kind(value: object) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__
