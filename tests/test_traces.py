"""`docgate trace summarize`: latency per tool and span, errors by code, spend per tenant, from a server log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from server.cli.main import app
from server.observability.traces import percentile, read_events, summarize, summarize_file


def _line(**fields: Any) -> str:
    return json.dumps({"event": "tool_call", "level": "info", "timestamp": "2026-01-01T00:00:00Z", **fields})


LOG_LINES = [
    '{"event": "generation_loaded", "collection": "lumen", "level": "info"}',
    "INFO:     Started server process [123]",
    *(
        _line(
            tool="search",
            tenant="acme",
            outcome="ok",
            latency_ms=float(ms),
            tokens_in=10,
            tokens_out=200,
            spans_ms={"rewrite": 0.1, "bm25": 2.0, "embed": float(ms) / 2, "dense": 1.0, "fuse": 0.5},
        )
        for ms in range(10, 110, 10)
    ),
    _line(tool="fetch_chunk", tenant="acme", outcome="ok", latency_ms=3.0, tokens_in=0, tokens_out=500),
    _line(tool="fetch_chunk", tenant="acme", outcome="error", error_code="unknown_chunk", latency_ms=1.0),
    _line(tool="search", tenant="beta", outcome="error", error_code="rate_limited", latency_ms=0.5),
    _line(
        tool="grounded_answer",
        tenant="beta",
        outcome="ok",
        latency_ms=900.0,
        tokens_in=1200,
        tokens_out=150,
        estimated_cost_usd=0.0021,
        spans_ms={"bm25": 3.0, "answer_total": 880.0},
    ),
    json.dumps({"event": "tool_call_failed", "tool": "search", "tenant": "acme", "latency_ms": 5.0}),
    "Traceback (most recent call last):",
    '{"event": "tool_call", "tool": "search", "tenant": "acme", "latency_ms": "fast"',  # cut off mid-line
]


def test_percentile_interpolates_between_ranks():
    assert percentile([], 95) == 0.0
    assert percentile([7.0], 50) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)


def test_only_tool_call_events_are_read():
    events, skipped = read_events(LOG_LINES)
    assert len(events) == 15
    assert skipped == 4


def test_summary_has_latency_per_tool_and_span():
    summary = summarize(*read_events(LOG_LINES))
    search = summary.tools["search"]
    assert search.calls == 12
    assert search.latency.count == 12
    assert search.spans["embed"].count == 10
    assert search.spans["embed"].p50_ms == pytest.approx(27.5)
    assert search.spans["bm25"].p95_ms == 2.0
    assert set(search.spans) == {"rewrite", "bm25", "embed", "dense", "fuse"}
    assert summary.tools["grounded_answer"].spans["answer_total"].max_ms == 880.0


def test_summary_counts_errors_by_code():
    summary = summarize(*read_events(LOG_LINES))
    assert summary.error_codes == {"internal": 1, "rate_limited": 1, "unknown_chunk": 1}
    assert summary.tools["search"].errors == 2
    assert summary.tools["fetch_chunk"].error_codes == {"unknown_chunk": 1}
    assert summary.tools["grounded_answer"].errors == 0


def test_summary_adds_up_tokens_and_cost_per_tenant():
    summary = summarize(*read_events(LOG_LINES))
    acme, beta = summary.tenants["acme"], summary.tenants["beta"]
    assert (acme.calls, acme.tokens_in, acme.tokens_out) == (13, 100, 2500)
    assert (beta.calls, beta.tokens_in, beta.tokens_out) == (2, 1200, 150)
    assert beta.estimated_cost_usd == pytest.approx(0.0021)
    assert acme.estimated_cost_usd == 0.0


def test_trace_summarize_prints_tables_or_json(tmp_path: Path):
    log = tmp_path / "server.log"
    log.write_text("\n".join(LOG_LINES) + "\n")
    runner = CliRunner()
    as_json = runner.invoke(app, ["trace", "summarize", str(log), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == summarize_file(log).model_dump(mode="json")

    table = runner.invoke(app, ["trace", "summarize", str(log)])
    assert table.exit_code == 0, table.output
    for text in ("search", "embed", "unknown_chunk", "beta", "0.002100"):
        assert text in table.stdout


def test_trace_summarize_of_a_missing_file_fails_with_a_message(tmp_path: Path):
    result = CliRunner().invoke(app, ["trace", "summarize", str(tmp_path / "nope.log")])
    assert result.exit_code == 2
    assert "is not a file" in result.stderr
