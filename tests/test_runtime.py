"""The runtime is the MCP server's lifespan: opened once, closed at shutdown on stdio and HTTP alike."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from server.mcp.app import create_mcp_server
from server.runtime import build_runtime
from tests.conftest import settings_for
from tests.mcp_harness import call, http_server, http_session, server_env


def _events(log_text: str) -> list[dict[str, Any]]:
    events = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _lifecycle(log_text: str) -> list[dict[str, Any]]:
    return [e for e in _events(log_text) if e.get("event") in ("runtime_started", "runtime_closed")]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_shutdown_closes_the_runtime_once(lumen_data_dir: Path, tmp_path: Path, transport: str) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    log_path = tmp_path / "stdio-server.log"

    async def body() -> None:
        if transport == "stdio":
            params = StdioServerParameters(
                command=sys.executable,
                args=["-m", "server.cli", "serve", "--stdio"],
                env=server_env(data_dir),
            )
            with log_path.open("w") as errlog:
                async with (
                    stdio_client(params, errlog=errlog) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    await call(session, "search", query="themes", k=2)
        else:
            with http_server(data_dir) as url:
                # Two sessions share the one runtime: the lifespan is not per session.
                for _ in range(2):
                    async with http_session(url) as session:
                        await call(session, "search", query="themes", k=2)

    anyio.run(body)
    if transport == "http":
        (log_path,) = tmp_path.glob("server-*.log")
    lifecycle = _lifecycle(log_path.read_text())
    assert [e["event"] for e in lifecycle] == ["runtime_started", "runtime_closed"], log_path.read_text()
    assert lifecycle[-1]["http_client_closed"] is True


def test_leaving_the_lifespan_closes_the_client_and_writes_usage(
    lumen_data_dir: Path, model_dir: Path
) -> None:
    runtime = build_runtime(settings_for(lumen_data_dir, model_dir))
    mcp, _ = create_mcp_server(runtime, "stdio")
    assert mcp.settings.lifespan is not None

    async def body() -> None:
        async with runtime.lifespan(mcp) as state:
            assert state is runtime and not runtime.http_client.is_closed
        assert runtime.http_client.is_closed and runtime.closed
        await runtime.aclose()  # a second close changes nothing and does not raise

    anyio.run(body)
