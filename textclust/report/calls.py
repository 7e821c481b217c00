"""The language-model calls of a run, as ``textclust log`` prints them (like ``llm logs``).

Read from the call record (``llm_calls``, see :mod:`textclust.llm.record`): one entry per
request sent (with its retries) or answer served from the cache. What the record holds is
already scrubbed of the API key; request headers are never recorded, so never printed.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

PREVIEW_INDENT = "  "


def call_record(call) -> dict:
    """One ``llm_calls`` row as plain JSON-ready data (the full record: messages and answer)."""
    return {
        "id": call.id,
        "run_id": call.run_id,
        "created_at": call.created_at.isoformat(timespec="seconds") if call.created_at else None,
        "stage": call.stage,
        "model": call.model,
        "server": call.server,
        "status": call.status,
        "sent": call.status != "cached",
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "latency_s": call.latency_s,
        "waited_s": call.waited_s,
        "retries": call.retries,
        "repair_of": call.repair_of,
        "finish_reason": call.finish_reason,
        "response_format": call.response_format,
        "error": call.error,
        "cache_key": call.cache_key,
        "messages": call.messages,
        "response": call.response,
    }


def prompt_text(messages: list[dict] | None) -> str:
    """The prompt a call is about: its first user message (the system message is the same for
    every call of a stage); a repair's later messages follow it."""
    for message in messages or []:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def one_line(text: str | None, width: int) -> str:
    """``text`` with its whitespace collapsed, cut with "…" to ``width`` characters."""
    flat = " ".join((text or "").split())
    width = max(width, 1)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _status(record: dict) -> str:
    if record["status"] == "cached":
        return "cached (not sent)"
    retries = f", {record['retries']} retries" if record["retries"] else ""
    return f"{record['status']} (sent{retries})"


def _tokens(record: dict) -> str | None:
    p, c = record["prompt_tokens"], record["completion_tokens"]
    if p is None and c is None:
        return None
    return f"{p or 0}+{c or 0} tokens"


def call_heading(record: dict) -> str:
    """The call's line: id, when, stage, model, status, tokens, latency."""
    when = (record["created_at"] or "").replace("T", " ")[:19]
    parts = [f"#{record['id']}", when, record["stage"], record["model"], _status(record)]
    tokens = _tokens(record)
    if tokens:
        parts.append(tokens)
    if record["latency_s"] is not None and record["status"] != "cached":
        parts.append(f"{record['latency_s']:.1f}s")
    if record["repair_of"] is not None:
        parts.append(f"repair of #{record['repair_of']}")
    return " · ".join(p for p in parts if p)


def summary_line(run_id: int, records: list[dict], stage: str | None = None) -> str:
    sent = sum(1 for r in records if r["status"] != "cached")
    cached = len(records) - sent
    failed = sum(1 for r in records if r["status"] == "error")
    what = f"{stage} calls" if stage else "language-model calls"
    return f"Run {run_id}: {len(records)} {what} ({sent} sent, {cached} from the cache, {failed} failed)"


def print_calls(run_id: int, records: list[dict], console: Console | None = None,
                stage: str | None = None) -> None:
    """Each call: a heading (wrapped at the console's width), then one clipped line each of its
    prompt and its answer (or its error)."""
    console = console or Console(soft_wrap=False, width=None, highlight=False)
    width = console.width
    console.print(Text(summary_line(run_id, records, stage), style="bold"))
    for record in records:
        console.print()
        console.print(Text(call_heading(record)), overflow="fold")
        room = width - len(PREVIEW_INDENT) - len("prompt: ")
        console.print(Text(PREVIEW_INDENT + "prompt: " + one_line(prompt_text(record["messages"]), room)),
                      no_wrap=True, overflow="ellipsis")
        if record["error"]:
            line = "error:  " + one_line(record["error"], room)
        else:
            line = "answer: " + one_line(record["response"], room)
        console.print(Text(PREVIEW_INDENT + line), no_wrap=True, overflow="ellipsis")
