"""Local stand-ins for the AI providers: real HTTP servers speaking each provider's wire
protocol (OpenAI chat completions, Anthropic messages, Ollama /api/chat), driven by the
providers' own SDKs in the tests. Each answers from a script of recorded-style replies and
records every request it got.

    with running_llm("openai", [reply_with(answer)]) as llm:
        ...  # base_url: llm.url
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "ollama": "/api/chat"}


@dataclass(frozen=True)
class Scripted:
    """One reply: the model's answer (JSON text or an object), or an HTTP error, maybe late."""

    answer: str | dict[str, Any] | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    delay: float = 0.0
    finish: str | None = None  # a provider's own stop reason, e.g. truncation
    refusal: str | None = None  # OpenAI's refusal field


def reply_with(answer: str | dict[str, Any], **kw: Any) -> Scripted:
    return Scripted(answer=answer, **kw)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        srv = self.server
        srv.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path != PATHS[srv.provider]:
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        step = srv.script[min(len(srv.requests), len(srv.script)) - 1]
        if step.delay:
            time.sleep(step.delay)
        if step.status != 200:
            return self._send(step.status, _error_body(srv.provider, step), step.headers)
        self._send(200, _answer_body(srv.provider, body, step))

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


def _error_body(provider: str, step: Scripted) -> dict[str, Any]:
    if provider == "anthropic":
        return {"type": "error", "error": {"type": "rate_limit_error" if step.status == 429 else "api_error", "message": step.error}}
    if provider == "ollama":
        return {"error": step.error}
    return {"error": {"message": step.error, "type": "requests", "param": None, "code": "rate_limit_exceeded" if step.status == 429 else None}}


def _text(answer: str | dict[str, Any] | None) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer)


def _answer_body(provider: str, request: dict[str, Any], step: Scripted) -> dict[str, Any]:
    model = request.get("model", "?")
    if provider == "openai":
        return {
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1741570283,
            "model": model, "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"index": 0, "logprobs": None, "finish_reason": step.finish or "stop",
                         "message": {"role": "assistant", "content": None if step.refusal else _text(step.answer),
                                     "refusal": step.refusal, "annotations": []}}],
            "usage": {"prompt_tokens": 4210, "completion_tokens": 312, "total_tokens": 4522},
        }
    if provider == "anthropic":
        if isinstance(step.answer, dict):
            content = [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": request["tool_choice"]["name"], "input": step.answer}]
        else:
            content = [{"type": "text", "text": _text(step.answer)}]
        return {"id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": step.finish or ("tool_use" if isinstance(step.answer, dict) else "end_turn"),
                "stop_sequence": None, "usage": {"input_tokens": 3950, "output_tokens": 288}}
    return {"model": model, "created_at": "2025-06-02T12:00:00.000000Z",
            "message": {"role": "assistant", "content": _text(step.answer)}, "done": True,
            "done_reason": step.finish or "stop", "total_duration": 5191566416, "load_duration": 2154458,
            "prompt_eval_count": 4012, "prompt_eval_duration": 383809000, "eval_count": 301, "eval_duration": 4709213000}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: str, script: Sequence[Scripted]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.provider = provider
        self.script = list(script)
        self.requests: list[Request] = []


@dataclass
class RunningLlm:
    provider: str
    url: str  # the base URL each SDK takes
    requests: list[Request]


@contextlib.contextmanager
def running_llm(provider: str, script: Sequence[Scripted]) -> Iterator[RunningLlm]:
    server = _Server(provider, script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield RunningLlm(provider, host + "/v1" if provider == "openai" else host, server.requests)
    finally:
        server.shutdown()
        server.server_close()
