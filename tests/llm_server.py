"""A scripted OpenAI-compatible Chat Completions server on 127.0.0.1, for tests.

The tests drive textclust's real ``openai`` client over real HTTP against this
server, so everything between the client and the wire (headers, status codes,
timeouts, Retry-After, JSON bodies) is exercised; only the "model" is scripted.

    def handler(request):            # {"path", "headers", "body"}
        return chat_completion('{"ok": true}')

    with ScriptedServer(handler) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        ...
        server.requests              # every chat-completion request received

A handler returns a :class:`Reply` (status, body, headers, delay), a dict (sent as
a 200 JSON body) or a str (sent as the assistant message's content).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    status: int = 200
    body: dict | str | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (slow-server tests)


def chat_completion(content: str | None, prompt_tokens: int = 10, completion_tokens: int = 5,
                    finish_reason: str = "stop", refusal: str | None = None, model: str = "scripted") -> dict:
    """An OpenAI ``chat.completion`` response body."""
    message = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def error_body(message: str, kind: str = "server_error", code: str | None = None) -> dict:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def user_prompt(request: dict) -> str:
    """The last user message of a chat-completion request."""
    messages = request["body"].get("messages", [])
    return next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")


class ScriptedServer:
    """Context manager: a threaded HTTP server answering ``POST /v1/chat/completions``."""

    def __init__(self, handler: Callable[[dict], "Reply | dict | str"]):
        self.handler = handler
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def sequence(cls, *replies) -> Callable[[dict], "Reply | dict | str"]:
        """A handler answering with ``replies`` in order, then repeating the last one."""
        remaining = list(replies)
        lock = threading.Lock()

        def handler(request):
            with lock:
                return remaining.pop(0) if len(remaining) > 1 else remaining[0]

        return handler

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def calls(self) -> int:
        return len(self.requests)

    def __enter__(self) -> "ScriptedServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(Reply(body={"object": "list", "data": [
                        {"id": "scripted", "object": "model", "created": 0, "owned_by": "tests"}]}))
                else:
                    self._send(Reply(404, error_body("not found", "invalid_request_error")))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(Reply(400, error_body("request body is not JSON", "invalid_request_error")))
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(Reply(404, error_body(f"no route {self.path}", "invalid_request_error")))
                    return
                request = {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                with server._lock:
                    server.requests.append(request)
                try:
                    reply = server.handler(request)
                except Exception as err:  # a broken script is a 500, visible in the test
                    reply = Reply(500, error_body(f"handler crashed: {type(err).__name__}: {err}"))
                self._send(reply)

            def _send(self, reply):
                if isinstance(reply, str):
                    reply = Reply(body=chat_completion(reply))
                elif isinstance(reply, dict):
                    reply = Reply(body=reply)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body or {})
                data = payload.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, str(value))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
