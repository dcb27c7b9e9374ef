"""A scripted fake of the OpenAI `/v1/embeddings` and Cohere/TEI `/rerank` APIs on 127.0.0.1.

A real HTTP server in a thread, so the clients run their real httpx, timeout and retry code.
Embeddings are real: the bundled local model's vectors for exactly the texts received, so an index
built through the fake searches like one built in process. Each request takes the next `Reply` of
the script (then the default, a normal answer); every request is recorded.

    with FakeServices(embedder) as fake:
        fake.script(Reply(status=429, retry_after="0.2"), Reply())
        ... point embedding.remote.url at fake.url + "/v1" ...
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from indexer.embedding import Embedder


@dataclass
class Reply:
    """One scripted reply; the defaults answer normally."""

    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    dimension: int | None = None  # cut or pad vectors to this size (a wrong model behind the URL)
    raw_body: str | None = None


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float


@dataclass
class FakeServices:
    embedder: Embedder
    # Scores for /rerank: a function of (query, document); default: prefer shorter documents.
    rerank_score: Callable[[str, str], float] = lambda query, document: -float(len(document))
    default: Reply = field(default_factory=Reply)
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._steps: list[Reply] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *steps: Reply) -> None:
        with self._lock:
            self._steps = list(steps)

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def __enter__(self) -> FakeServices:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self) -> Reply:
        with self._lock:
            return self._steps.pop(0) if self._steps else self.default

    def _embeddings(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = self.embedder.embed_passages(texts).tolist()
        if reply.dimension is not None:
            vectors = [(v + [0.0] * reply.dimension)[: reply.dimension] for v in vectors]
        tokens = sum(self.embedder.count_tokens(t) for t in texts)
        return {
            "object": "list",
            "model": body.get("model"),
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _rerank(self, body: dict[str, Any]) -> Any:
        query = str(body["query"])
        if "texts" in body:  # TEI shape
            return [{"index": i, "score": self.rerank_score(query, t)} for i, t in enumerate(body["texts"])]
        scored = [
            {"index": i, "relevance_score": self.rerank_score(query, d)}
            for i, d in enumerate(body["documents"])
        ]
        return {"results": sorted(scored, key=lambda r: -r["relevance_score"])}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real API servers do
            # The headers and the body leave in two writes: with Nagle's algorithm the body would
            # wait for the client's delayed ACK of the headers (40 ms on Linux), which API servers
            # avoid and which would be charged to the client under measurement.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                body = json.loads(raw or b"{}")
                with fake._lock:
                    fake.requests.append(
                        Recorded(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                        )
                    )
                reply = fake._next()
                if reply.delay_s and fake._stopping.wait(reply.delay_s):
                    return
                if reply.raw_body is not None or reply.status != 200:
                    payload = reply.raw_body or json.dumps({"error": {"message": f"scripted {reply.status}"}})
                elif self.path.split("?")[0].endswith("/embeddings"):
                    payload = json.dumps(fake._embeddings(body, reply))
                elif self.path.split("?")[0].endswith("/rerank"):
                    payload = json.dumps(fake._rerank(body))
                else:
                    reply, payload = Reply(status=404), json.dumps({"error": {"message": "unknown path"}})
                data = payload.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    if reply.retry_after is not None:
                        self.send_header("retry-after", reply.retry_after)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up

        return Handler
