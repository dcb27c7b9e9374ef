"""`docgate trace summarize LOGFILE`: latency, errors and spend from the server's `tool_call` events.

The server writes one structlog JSON line per tool call on stderr (see `tools.py`). This module
reads such a log — other events and non-JSON lines (tracebacks, uvicorn chatter) are skipped —
and reports per tool the p50/p95 of the total latency and of every span in `spans_ms`, error
counts by code, and per tenant the tokens and estimated cost.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

TOOL_EVENT = "tool_call"
FAILED_EVENT = "tool_call_failed"  # an unexpected exception: logged with its traceback, code "internal"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


class Quantiles(BaseModel):
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Quantiles:
        return cls(
            count=len(values),
            p50_ms=round(percentile(values, 50), 3),
            p95_ms=round(percentile(values, 95), 3),
            max_ms=round(max(values, default=0.0), 3),
        )


class ToolSummary(BaseModel):
    calls: int
    errors: int
    latency: Quantiles
    spans: dict[str, Quantiles] = Field(description="Per span of `spans_ms`, over the calls that have it.")
    error_codes: dict[str, int]


class TenantSummary(BaseModel):
    calls: int
    tokens_in: int
    tokens_out: int
    estimated_cost_usd: float


class TraceSummary(BaseModel):
    events: int = Field(description="tool_call events read.")
    skipped_lines: int = Field(description="Lines that were not JSON or were other events.")
    tools: dict[str, ToolSummary]
    error_codes: dict[str, int]
    tenants: dict[str, TenantSummary]


def read_events(lines: Iterable[str]) -> tuple[list[dict[str, Any]], int]:
    """The tool-call events of a log, in order, and how many lines were skipped."""
    events: list[dict[str, Any]] = []
    skipped = 0
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            skipped += 1
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(record, dict) and record.get("event") in (TOOL_EVENT, FAILED_EVENT):
            events.append(record)
        else:
            skipped += 1
    return events, skipped


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def summarize(events: Sequence[dict[str, Any]], skipped_lines: int = 0) -> TraceSummary:
    latencies: dict[str, list[float]] = defaultdict(list)
    spans: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    calls: dict[str, int] = defaultdict(int)
    tool_errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    all_errors: dict[str, int] = defaultdict(int)
    tenants: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    for event in events:
        tool = str(event.get("tool") or "-")
        calls[tool] += 1
        failed = event.get("event") == FAILED_EVENT
        code = "internal" if failed else event.get("error_code")
        if failed or event.get("outcome") == "error":
            code = str(code or "error")
            tool_errors[tool][code] += 1
            all_errors[code] += 1
        latency = _number(event.get("latency_ms"))
        # Calls refused before a handler ran log no latency; they still count as calls and errors.
        if latency is not None:
            latencies[tool].append(latency)
        raw_spans = event.get("spans_ms")
        if isinstance(raw_spans, dict):
            for name, value in raw_spans.items():
                number = _number(value)
                if number is not None:
                    spans[tool][str(name)].append(number)
        tenant = tenants[str(event.get("tenant") or "-")]
        tenant["calls"] += 1
        tenant["tokens_in"] += _number(event.get("tokens_in")) or 0.0
        tenant["tokens_out"] += _number(event.get("tokens_out")) or 0.0
        tenant["cost"] += _number(event.get("estimated_cost_usd")) or 0.0

    return TraceSummary(
        events=len(events),
        skipped_lines=skipped_lines,
        tools={
            tool: ToolSummary(
                calls=calls[tool],
                errors=sum(tool_errors[tool].values()),
                latency=Quantiles.of(latencies[tool]),
                spans={name: Quantiles.of(values) for name, values in sorted(spans[tool].items())},
                error_codes=dict(sorted(tool_errors[tool].items())),
            )
            for tool in sorted(calls)
        },
        error_codes=dict(sorted(all_errors.items())),
        tenants={
            name: TenantSummary(
                calls=int(values["calls"]),
                tokens_in=int(values["tokens_in"]),
                tokens_out=int(values["tokens_out"]),
                estimated_cost_usd=round(values["cost"], 8),
            )
            for name, values in sorted(tenants.items())
        },
    )


def summarize_file(path: Path) -> TraceSummary:
    with path.open(encoding="utf-8", errors="replace") as handle:
        events, skipped = read_events(handle)
    return summarize(events, skipped)


def render(summary: TraceSummary, console: Console) -> None:
    latency = Table(title=f"Tool calls ({summary.events} events)")
    for column in ("tool", "span", "count", "p50 ms", "p95 ms", "max ms"):
        latency.add_column(column, justify="left" if column in ("tool", "span") else "right")
    for tool, data in summary.tools.items():
        rows = [("total", data.latency), *data.spans.items()]
        for index, (name, q) in enumerate(rows):
            latency.add_row(
                tool if index == 0 else "",
                name,
                str(q.count),
                f"{q.p50_ms:.1f}",
                f"{q.p95_ms:.1f}",
                f"{q.max_ms:.1f}",
            )
    console.print(latency)

    errors = Table(title="Errors")
    errors.add_column("tool")
    errors.add_column("code")
    errors.add_column("count", justify="right")
    for tool, data in summary.tools.items():
        for code, count in data.error_codes.items():
            errors.add_row(tool, code, str(count))
    if errors.row_count:
        console.print(errors)
    else:
        console.print("No errors.")

    spend = Table(title="Tenants")
    for column in ("tenant", "calls", "tokens in", "tokens out", "est. cost USD"):
        spend.add_column(column, justify="left" if column == "tenant" else "right")
    for name, tenant in summary.tenants.items():
        spend.add_row(
            name,
            str(tenant.calls),
            str(tenant.tokens_in),
            str(tenant.tokens_out),
            f"{tenant.estimated_cost_usd:.6f}",
        )
    console.print(spend)


trace_app = typer.Typer(help="Read the server's trace events.", no_args_is_help=True)


@trace_app.command("summarize")
def summarize_command(
    logfile: Annotated[Path, typer.Argument(help="A server log (stderr) with tool_call JSON lines.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """p50/p95 latency per tool and span, error counts by code, tokens and cost per tenant."""
    if not logfile.is_file():
        sys.stderr.write(f"error: {logfile} is not a file; pass the server's log (its stderr)\n")
        raise typer.Exit(2)
    summary = summarize_file(logfile)
    if as_json:
        sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
        return
    render(summary, Console(soft_wrap=True))
