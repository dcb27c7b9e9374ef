"""OpenTelemetry on the MCP SDK's own seam: one tracer provider, the SDK's span as the parent.

The `mcp` SDK wraps every inbound request in a span of its own (`tools/call search`, from its
`OpenTelemetryMiddleware`, made with the *global* tracer provider). docgate adds no second
provider and no parallel span beside it:

- `configure()` installs an exporting `TracerProvider` as the global one when OTLP export is
  configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), so the SDK's
  spans and docgate's leave through the same exporter. A provider someone else installed (e.g.
  `opentelemetry-instrument`) is kept. The standard `OTEL_*` variables configure the exporter.
- stage timings (`server.observability.stages.StageTimer`) become child spans of the current span;
- `annotate()` puts a call's outcome (tenant, tool, tokens, error code…) on the SDK's span.

Without a configured provider the OpenTelemetry API hands out non-recording spans and every call
here costs one `is_recording()` check. The SDK and an exporter package are optional: neither is a
dependency of docgate.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import structlog
from opentelemetry import trace

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


def configure() -> bool:
    """Install the exporting provider when OTLP export is configured; True when spans are exported."""
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return False
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        log.info("otel_enabled", exporter="provider installed by the environment")
        return True
    try:
        sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
        sdk_export = importlib.import_module("opentelemetry.sdk.trace.export")
        resources = importlib.import_module("opentelemetry.sdk.resources")
    except ImportError:
        log.warning("otel_disabled", reason="opentelemetry-sdk is not installed")
        return False
    exporter_cls = None
    for module in EXPORTERS:
        try:
            exporter_cls = importlib.import_module(module).OTLPSpanExporter
            break
        except ImportError:
            continue
    if exporter_cls is None:
        log.warning("otel_disabled", reason="no OTLP exporter package (opentelemetry-exporter-otlp)")
        return False
    provider = sdk_trace.TracerProvider(resource=resources.Resource.create({"service.name": "docgate"}))
    provider.add_span_processor(sdk_export.BatchSpanProcessor(exporter_cls()))
    trace.set_tracer_provider(provider)
    log.info("otel_enabled", exporter=exporter_cls.__module__)
    return True


def annotate(event: dict[str, Any]) -> None:
    """Put the scalar outcome fields of a `tool_call` event on the current (the SDK's) span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attributes(
        {
            f"docgate.{name}": event[name]
            for name in ATTRIBUTES
            if isinstance(event.get(name), str | int | float | bool)
        }
    )


def record(event: dict[str, Any]) -> None:
    """`annotate`, never raising: telemetry must not fail a tool call."""
    try:
        annotate(event)
    except Exception as error:
        log.warning("otel_export_failed", error=f"{type(error).__name__}: {error}")
