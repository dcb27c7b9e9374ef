"""Stage timings of one request, recorded once: a `spans_ms` trace field and an OpenTelemetry span.

Retrieval and answering time their stages (rewrite, bm25, embed, dense, fuse, generate, ground)
with a `StageTimer`. Each finished stage adds its milliseconds to `spans` (the `spans_ms` of the
`tool_call` log event, summed when a stage runs twice) and, when the current span records (OTel
configured, see `server.observability.otel`), ends a child span of it with the stage's exact start
and end. The current span of a tool call is the MCP SDK's `tools/call` span; worker threads
inherit it because anyio copies the context into them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace

_tracer = trace.get_tracer("docgate")


class StageTimer:
    def __init__(self, spans: dict[str, float] | None = None) -> None:
        self.spans: dict[str, float] = dict(spans or {})

    def span(self, name: str, started: float) -> None:
        """Record stage `name`, begun at `started` (a `time.perf_counter()` reading), as ended now."""
        elapsed = time.perf_counter() - started
        self.spans[name] = round(self.spans.get(name, 0.0) + elapsed * 1000, 3)
        if trace.get_current_span().is_recording():
            end_ns = time.time_ns()
            child = _tracer.start_span(name, start_time=end_ns - int(elapsed * 1e9))
            child.end(end_time=end_ns)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body as stage `name`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.span(name, started)
