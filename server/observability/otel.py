"""Optional OpenTelemetry export of tool calls: one span per call, one child span per `spans_ms` entry.

Off unless both hold: the OpenTelemetry SDK and an OTLP exporter package are importable, and
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Neither package is
a dependency of docgate; the standard `OTEL_*` variables configure the exporter (headers,
protocol, timeouts). When off, `record` costs one attribute check.

`spans_ms` holds the total time of each stage, not when it started, so child spans are laid out
one after another from the start of the call in the order the stages ran — their durations are
exact, their offsets approximate.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from typing import Any

import structlog

log = structlog.get_logger()

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXPORTERS = (  # the HTTP/protobuf exporter first: it needs no gRPC runtime
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
# Scalar fields of a `tool_call` event that become span attributes (never query text).
ATTRIBUTES = (
    "trace_id",
    "tenant",
    "tool",
    "transport",
    "outcome",
    "error_code",
    "tokens_in",
    "tokens_out",
    "backend",
    "model",
    "abstained",
    "cached",
    "grounding_score",
    "estimated_cost_usd",
)


class _Exporter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._tracer: Any = None
        self._trace_api: Any = None

    def _setup(self) -> None:
        """Build the tracer once; leave it None when export is not configured or not installed."""
        self._ready = True
        if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
            return
        try:
            trace_api = importlib.import_module("opentelemetry.trace")
            sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
            sdk_export = importlib.import_module("opentelemetry.sdk.trace.export")
            resources = importlib.import_module("opentelemetry.sdk.resources")
        except ImportError:
            log.warning("otel_disabled", reason="opentelemetry-sdk is not installed")
            return
        exporter_cls = None
        for module in EXPORTERS:
            try:
                exporter_cls = importlib.import_module(module).OTLPSpanExporter
                break
            except ImportError:
                continue
        if exporter_cls is None:
            log.warning("otel_disabled", reason="no OTLP exporter package (opentelemetry-exporter-otlp)")
            return
        provider = sdk_trace.TracerProvider(resource=resources.Resource.create({"service.name": "docgate"}))
        provider.add_span_processor(sdk_export.BatchSpanProcessor(exporter_cls()))
        self._tracer = provider.get_tracer("docgate")
        self._trace_api = trace_api
        log.info("otel_enabled", exporter=exporter_cls.__module__)

    @property
    def tracer(self) -> Any:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._setup()
        return self._tracer

    def record(self, event: dict[str, Any]) -> None:
        tracer = self.tracer
        if tracer is None:
            return
        end = time.time_ns()
        latency = event.get("latency_ms")
        total_ns = int(float(latency) * 1_000_000) if isinstance(latency, int | float) else 0
        start = end - total_ns
        attributes = {
            f"docgate.{name}": event[name]
            for name in ATTRIBUTES
            if isinstance(event.get(name), str | int | float | bool)
        }
        span = tracer.start_span(
            f"docgate.{event.get('tool', 'tool_call')}", start_time=start, attributes=attributes
        )
        if event.get("outcome") == "error":
            span.set_status(
                self._trace_api.Status(self._trace_api.StatusCode.ERROR, str(event.get("error_code")))
            )
        context = self._trace_api.set_span_in_context(span)
        cursor = start
        spans = event.get("spans_ms")
        for name, value in spans.items() if isinstance(spans, dict) else []:
            if not isinstance(value, int | float) or name.endswith("_total"):
                continue
            duration = int(float(value) * 1_000_000)
            child = tracer.start_span(str(name), context=context, start_time=cursor)
            child.end(end_time=min(cursor + duration, end))
            cursor = min(cursor + duration, end)
        span.end(end_time=end)


_exporter = _Exporter()


def record(event: dict[str, Any]) -> None:
    """Export one `tool_call` event (the fields `tools.py` logs) as spans; never raises."""
    try:
        _exporter.record(event)
    except Exception as error:  # telemetry must never fail a tool call
        log.warning("otel_export_failed", error=f"{type(error).__name__}: {error}")


def enabled() -> bool:
    """True when spans are being exported."""
    return _exporter.tracer is not None
