"""Real MCP clients against a real `docgate serve` subprocess, over stdio or streamable HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.client.session import SamplingFnT
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

# The benchmarks and these tests start servers the same way; the scripts own that code.
SCRIPTS = str(Path(__file__).resolve().parents[1] / "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)

# Re-exported: some tests start a server of their own on a port they pick themselves.
from bench_common import free_port as free_port  # noqa: E402
from bench_common import running as running  # noqa: E402


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCGATE_")}
    env["DOCGATE_DATA_DIR"] = str(data_dir)
    env["DOCGATE_EMBEDDING__MODEL_DIR"] = os.environ["DOCGATE_EMBEDDING__MODEL_DIR"]
    env["DOCGATE_SERVE__RELOAD_INTERVAL_S"] = "0.2"
    env.update(extra)
    return env


@contextlib.contextmanager
def http_server(data_dir: Path, *, args: tuple[str, ...] = (), **env: str) -> Iterator[str]:
    """`docgate serve --http` on a free loopback port; yields the /mcp URL."""
    port = free_port()
    command = [sys.executable, "-m", "server.cli", "serve", "--http", f"127.0.0.1:{port}", *args]
    log_path = data_dir.parent / f"server-{port}.log"
    with running(command, server_env(data_dir, **env), port, log_path, startup_timeout_s=60):
        yield f"http://127.0.0.1:{port}/mcp"


@contextlib.asynccontextmanager
async def stdio_session(data_dir: Path, *extra_args: str, **env: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "server.cli", "serve", "--stdio", *extra_args],
        env=server_env(data_dir, **env),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def http_session(url: str, token: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


# What a client's model answers to the Lumen build-cache question: a cited answer in the JSON shape
# the sampling backend asks for.
LUMEN_CACHE_REPLY = json.dumps(
    {
        "answer": "The build cache lives in the directory named by LUMEN_CACHE_DIR, "
        "which defaults to .lumen-cache inside the project [1].",
        "citations": [{"n": 1}],
    }
)


def fixed_reply_sampler(reply: str) -> tuple[SamplingFnT, list[types.CreateMessageRequestParams]]:
    """A client's sampling callback that answers every request with `reply`, and the requests it saw."""
    requests: list[types.CreateMessageRequestParams] = []

    async def sample(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        requests.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=reply), model="client-model"
        )

    return sample, requests


SessionFactory = Callable[[], contextlib.AbstractAsyncContextManager[ClientSession]]


@contextlib.contextmanager
def session_factory(
    transport: Literal["stdio", "http"], data_dir: Path, **env: str
) -> Iterator[SessionFactory]:
    """Opens client sessions to one server over `data_dir`: a fresh stdio server per session, or one
    HTTP server for as long as the context lasts."""
    if transport == "stdio":
        yield lambda: stdio_session(data_dir, **env)
        return
    with http_server(data_dir, args=(), **env) as url:
        yield lambda: http_session(url)


def run_session(factory: SessionFactory, body: Callable[[ClientSession], Any]) -> Any:
    """Run `body` in one session from `factory`, from synchronous test code."""

    async def main() -> Any:
        async with factory() as session:
            return await body(session)

    return anyio.run(main)


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; returns its structured content."""
    result = await session.call_tool(tool, arguments)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    assert not result.is_error, text
    assert result.structured_content is not None
    # The text content carries the same JSON for clients without structured output support.
    assert json.loads(text) == result.structured_content
    return dict(result.structured_content)


async def call_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail with a tool error; returns the message."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    message = result.content[0].text  # type: ignore[union-attr]
    assert "Traceback" not in message
    return str(message)


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "tests", "version": "1"},
    },
}
JSON_RPC_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
