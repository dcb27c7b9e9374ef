"""How `docgate serve --http` answers a POST: one JSON body by default, an event stream when a tool
must message the client mid-call (the sampling answer backend), as `serve.http_responses` says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from indexer.settings import Settings
from server.mcp.http import json_responses
from tests.mcp_harness import (
    INITIALIZE,
    JSON_RPC_HEADERS,
    LUMEN_CACHE_REPLY,
    fixed_reply_sampler,
    http_server,
)

pytestmark = pytest.mark.slow

QUESTION = "Where does Lumen keep its build cache?"
SEARCH = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "search", "arguments": {"query": "build cache", "k": 3}},
}


@pytest.mark.parametrize(
    ("mode", "backend", "expected"),
    [
        ("auto", "extractive", True),
        ("auto", "sampling", False),
        ("json", "extractive", True),
        ("sse", "extractive", False),
        ("sse", "sampling", False),
    ],
)
def test_the_response_mode_follows_the_setting_and_the_backend(
    mode: str, backend: str, expected: bool
) -> None:
    settings = Settings.model_validate({"serve": {"http_responses": mode}, "answer": {"backend": backend}})
    assert json_responses(settings) is expected


def tool_call_over_raw_http(url: str) -> httpx2.Response:
    """initialize, initialized, then tools/call search, as plain HTTP requests: the last reply."""
    with httpx2.Client(timeout=30) as client:
        started = client.post(url, json=INITIALIZE, headers=JSON_RPC_HEADERS)
        assert started.status_code == 200, started.text
        headers = {
            **JSON_RPC_HEADERS,
            "mcp-session-id": started.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-06-18",
        }
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert client.post(url, json=note, headers=headers).status_code == 202
        return client.post(url, json=SEARCH, headers=headers)


async def sockets_behind_searches(url: str, calls: int) -> int:
    """How many TCP connections the MCP SDK's client used for `calls` searches in one session."""
    sockets: set[int] = set()

    async def note(response: httpx2.Response) -> None:
        if response.request.method == "POST" and b"tools/call" in response.request.content:
            stream = response.extensions["network_stream"]
            sockets.add(id(stream.get_extra_info("socket")))

    async with (
        httpx2.AsyncClient(timeout=30, event_hooks={"response": [note]}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        for _ in range(calls):
            result = await session.call_tool("search", {"query": "build cache", "k": 3})
            assert not result.is_error
    return len(sockets)


def test_a_tool_call_is_answered_with_one_json_body_by_default(lumen_data_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    with http_server(data_dir) as url:
        reply = tool_call_over_raw_http(url)
        connections = anyio.run(sockets_behind_searches, url, 4)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    message = reply.json()
    assert message["id"] == 2 and message["result"]["structuredContent"]["hits"]
    # An event stream that the client stops reading once the answer came costs it its connection.
    assert connections == 1, f"{connections} connections for 4 calls"


def test_sse_is_kept_when_configured(lumen_data_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    with http_server(data_dir, DOCGATE_SERVE__HTTP_RESPONSES="sse") as url:
        reply = tool_call_over_raw_http(url)
        connections = anyio.run(sockets_behind_searches, url, 4)
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert connections > 1  # what the default avoids (above)
    events = [json.loads(line[5:]) for line in reply.text.splitlines() if line.startswith("data:")]
    assert any(e.get("id") == 2 and e["result"]["structuredContent"]["hits"] for e in events)


async def answer_with_sampling(url: str, reply: str) -> dict[str, Any]:
    sample, requests = fixed_reply_sampler(reply)

    async with (
        httpx2.AsyncClient(timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, sampling_callback=sample) as session,
    ):
        await session.initialize()
        result = await session.call_tool("grounded_answer", {"question": QUESTION})
    return {"result": result, "requests": requests}


def test_the_sampling_backend_streams_so_it_can_ask_the_clients_model_over_http(
    lumen_data_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    with http_server(data_dir, DOCGATE_ANSWER__BACKEND="sampling") as url:
        raw = tool_call_over_raw_http(url)
        out = anyio.run(answer_with_sampling, url, LUMEN_CACHE_REPLY)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert out["requests"], "the server never asked the client's model"
    answer = out["result"].structured_content
    assert answer is not None and answer["backend"] == "sampling", answer
