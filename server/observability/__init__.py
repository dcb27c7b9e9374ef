"""Observability: request context on log lines, stage timings as spans, trace summaries."""
