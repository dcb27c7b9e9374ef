"""Observability: per-call traces, OpenTelemetry export, trace summaries."""
