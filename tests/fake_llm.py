"""A scripted fake of the OpenAI chat completions and Anthropic Messages APIs on 127.0.0.1.

A real HTTP server in a thread, so the backends run their real httpx, timeout and retry code.
Each request takes the next `Step` of the script (then `default`); the reply is wrapped in the
shape of the API the request path names. Every request is recorded for assertions.

    with FakeLLM() as fake:
        fake.script(Step.error(429, retry_after="0.2"), Step.answer("Use X [1].", [(1, "abc")]))
        ... point a backend at fake.url ...
        fake.requests[0].headers["x-api-key"]
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from server.settings import ProviderSettings


@dataclass
class Step:
    """One scripted reply."""

    status: int = 200
    content: str | None = None  # model text, wrapped in the API's response shape
    raw_body: str | None = None  # sent verbatim instead (error bodies, broken shapes)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    input_tokens: int = 120
    output_tokens: int = 30

    @classmethod
    def answer(cls, answer: str, citations: list[tuple[int, str]] | None = None, **kw: Any) -> Step:
        payload = {"answer": answer, "citations": [{"n": n, "chunk_id": c} for n, c in citations or []]}
        return cls(content=json.dumps(payload), **kw)

    @classmethod
    def text(cls, content: str, **kw: Any) -> Step:
        return cls(content=content, **kw)

    @classmethod
    def error(cls, status: int, *, retry_after: str | None = None, body: str = "") -> Step:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        message = body or json.dumps({"error": {"type": "fake_error", "message": f"scripted {status}"}})
        return cls(status=status, raw_body=message, headers=headers)

    @classmethod
    def hang(cls, seconds: float) -> Step:
        return cls(content='{"answer": "too late [1]", "citations": []}', delay_s=seconds)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]
    received_at: float  # time.monotonic()

    @property
    def prompt_text(self) -> str:
        """Everything the client sent as message text (system prompt included)."""
        return json.dumps(self.body, ensure_ascii=False)


def _openai_body(step: Step, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": step.content}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": step.input_tokens,
            "completion_tokens": step.output_tokens,
            "total_tokens": step.input_tokens + step.output_tokens,
        },
    }


def _anthropic_body(step: Step, model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": step.content}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": step.input_tokens, "output_tokens": step.output_tokens},
    }


class FakeLLM:
    """Context manager running the fake on a random port of 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._steps: list[Step] = []
        self._default = Step.error(500, body='{"error": {"message": "fake script exhausted"}}')
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-llm", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *steps: Step, default: Step | None = None) -> None:
        """Replies for the next requests in order; `default` answers every request after them."""
        with self._lock:
            self._steps = list(steps)
            if default is not None:
                self._default = default

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()  # releases handlers waiting out a scripted hang
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_step(self) -> Step:
        with self._lock:
            return self._steps.pop(0) if self._steps else self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                with fake._lock:
                    fake.requests.append(
                        RecordedRequest(
                            method="POST",
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            received_at=time.monotonic(),
                        )
                    )
                step = fake._next_step()
                if step.delay_s and fake._stopping.wait(step.delay_s):
                    return  # server shutting down: drop the connection
                if step.raw_body is not None:
                    payload = step.raw_body
                elif self.path.endswith("/chat/completions"):
                    payload = json.dumps(_openai_body(step, str(body.get("model", "fake"))))
                elif self.path.endswith("/messages"):
                    payload = json.dumps(_anthropic_body(step, str(body.get("model", "fake"))))
                else:
                    step, payload = Step(status=404), json.dumps({"error": {"message": "unknown path"}})
                data = payload.encode("utf-8")
                try:
                    self.send_response(step.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in step.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (deadline): nothing to report

        return Handler


def provider_settings(kind: str, url: str, key_env: str, /, **overrides: object) -> ProviderSettings:
    """Settings for a backend pointed at a `FakeLLM`: short timeouts and backoff so tests stay fast."""
    values: dict[str, object] = {
        "kind": kind,
        "base_url": url,
        "model": "fake-model",
        "api_key_env": key_env,
        "timeout_s": 5.0,
        "connect_timeout_s": 1.0,
        "deadline_s": 5.0,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "price_per_mtok_in": 3.0,
        "price_per_mtok_out": 15.0,
    }
    values.update(overrides)
    return ProviderSettings.model_validate(values)
