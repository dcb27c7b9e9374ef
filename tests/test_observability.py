"""Request context on every log line, and stage timings as OpenTelemetry children of the SDK's span."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from mcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder
from server.mcp.app import create_mcp_server
from server.observability import otel
from server.runtime import Runtime, build_runtime
from server.settings import AnswerSettings, ServeSettings
from tests.conftest import settings_for
from tests.fake_llm import FakeLLM, Step, provider_settings

EXPORTER = InMemorySpanExporter()
SEARCH_STAGES = {"rewrite", "bm25", "embed", "dense", "fuse"}


@pytest.fixture
def recorded_spans() -> Any:
    """The global provider records into EXPORTER (a process has one global provider: set it once)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def _runtime(lumen_data_dir: Path, tmp_path: Path, model_dir: Path, **overrides: Any) -> Runtime:
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    return build_runtime(settings_for(data_dir, model_dir, **overrides))


def _call(runtime: Runtime, tool: str, arguments: dict[str, Any]) -> Any:
    mcp, _ = create_mcp_server(runtime, "stdio")

    async def body() -> Any:
        async with Client(mcp) as client:
            return await client.call_tool(tool, arguments)

    return anyio.run(body)


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    assert parent.context is not None
    return {
        s.name: s
        for s in spans
        if s.parent is not None
        and s.parent.span_id == parent.context.span_id
        and s.context is not None
        and s.context.trace_id == parent.context.trace_id
    }


def test_search_stages_are_child_spans_of_the_sdks_tools_call_span(
    recorded_spans: InMemorySpanExporter, lumen_data_dir: Path, tmp_path: Path, model_dir: Path
) -> None:
    runtime = _runtime(lumen_data_dir, tmp_path, model_dir)
    result = _call(runtime, "search", {"query": "how do I change the theme", "k": 3})
    assert not result.is_error
    spans = list(recorded_spans.get_finished_spans())
    (call,) = [s for s in spans if s.name == "tools/call search"]
    children = _children(spans, call)
    assert set(children) >= SEARCH_STAGES, [s.name for s in spans]
    # Each stage lies inside the call, and the call carries docgate's outcome fields.
    assert call.start_time is not None and call.end_time is not None
    for name in SEARCH_STAGES:
        child = children[name]
        assert child.start_time is not None and child.end_time is not None
        assert call.start_time <= child.start_time <= child.end_time <= call.end_time
    attributes = dict(call.attributes or {})
    assert attributes["docgate.tenant"] == "default"
    assert attributes["docgate.outcome"] == "ok"
    assert isinstance(attributes["docgate.tokens_out"], int)
    # One mechanism: every stage span hangs under the SDK's span; docgate makes no root span of its own.
    assert all(s.parent is not None for s in spans if s.name in SEARCH_STAGES)
    assert not [s.name for s in spans if s.parent is None and not s.name.split(" ")[0].count("/")]


def test_stage_spans_are_not_made_when_nothing_records(
    lumen_data_dir: Path, tmp_path: Path, model_dir: Path
) -> None:
    # The trace field is there either way; the span is made only under a recording parent.
    from server.observability.stages import StageTimer

    timer = StageTimer({"bm25": 1.0})
    with timer.stage("bm25"):
        pass
    assert timer.spans["bm25"] >= 1.0


def test_every_log_line_of_a_call_carries_its_trace_id_tenant_and_tool(
    lumen_data_dir: Path, tmp_path: Path, model_dir: Path, embedder: Embedder
) -> None:
    runtime = _runtime(lumen_data_dir, tmp_path, model_dir, serve=ServeSettings(reload_interval_s=0.05))
    # A collection published while the server runs is opened by the catalog inside the next call.
    docs = tmp_path / "notes"
    docs.mkdir()
    (docs / "index.md").write_text(
        "# Notes\n\nThe notes collection mentions themes once.\n", encoding="utf-8"
    )
    build_collection(runtime.settings, BuildRequest(collection="notes", source=docs), embedder=embedder)
    anyio.run(anyio.sleep, 0.1)
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        result = _call(runtime, "search", {"query": "themes", "k": 2})
    assert not result.is_error
    (loaded,) = [e for e in logs if e["event"] == "generation_loaded"]
    (summary,) = [e for e in logs if e["event"] == "tool_call"]
    assert loaded["collection"] == "notes"
    assert len(summary["trace_id"]) == 32
    for event in (loaded, summary):
        assert (event["trace_id"], event["tenant"], event["tool"]) == (
            summary["trace_id"],
            "default",
            "search",
        )
    # Nothing leaks into lines logged after the call.
    structlog.get_logger().info("after_the_call")
    assert "trace_id" not in structlog.contextvars.get_contextvars()


def test_provider_log_lines_carry_the_request_context_and_answer_stages_become_spans(
    recorded_spans: InMemorySpanExporter,
    lumen_data_dir: Path,
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCGATE_TEST_PROVIDER_KEY", "sk-test")
    with FakeLLM() as fake:
        fake.script(Step.error(500), Step.answer("Themes live in the theme folder [1]."))
        answer = AnswerSettings(
            backend="openai", provider=provider_settings("openai", fake.url, "DOCGATE_TEST_PROVIDER_KEY")
        )
        runtime = _runtime(lumen_data_dir, tmp_path, model_dir, answer=answer)
        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            result = _call(runtime, "grounded_answer", {"question": "How do I change the theme?"})
    assert not result.is_error
    provider_lines = [e for e in logs if e["event"] in ("provider_response", "provider_retry")]
    assert {e["event"] for e in provider_lines} == {"provider_response", "provider_retry"}
    (summary,) = [e for e in logs if e["event"] == "tool_call"]
    for event in provider_lines:
        assert (event["trace_id"], event["tenant"], event["tool"]) == (
            summary["trace_id"],
            "default",
            "grounded_answer",
        )
    spans = list(recorded_spans.get_finished_spans())
    (call,) = [s for s in spans if s.name == "tools/call grounded_answer"]
    assert {"generate", "ground", "bm25", "dense"} <= set(_children(spans, call))


def test_otel_configure_stays_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in otel.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = trace.get_tracer_provider()
    assert otel.configure() is False
    assert trace.get_tracer_provider() is before


def test_otel_configure_keeps_a_provider_the_environment_installed(
    recorded_spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    installed = trace.get_tracer_provider()
    assert otel.configure() is True
    assert trace.get_tracer_provider() is installed


def test_logging_configured_under_a_borrowed_stderr_still_works_once_it_is_closed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from server.cli.main import app

    # Every `docgate` command configures logging first, here while CliRunner has swapped stderr.
    CliRunner().invoke(app, ["trace", "summarize", str(tmp_path / "missing.log")])
    structlog.get_logger().info("after_the_runner")
    assert "after_the_runner" in capsys.readouterr().err
