"""End-to-end: the real MCP Python client against `docgate serve` over stdio and streamable HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession

from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder
from tests.conftest import FIXTURE_CORPUS, settings_for
from tests.mcp_harness import (
    INITIALIZE,
    JSON_RPC_HEADERS,
    SessionFactory,
    call,
    call_error,
    http_server,
    run_session,
    server_env,
    session_factory,
    stdio_session,
)


@pytest.fixture
def data_dir(lumen_data_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's fixture index (servers write their own state into it)."""
    target = tmp_path / "served"
    shutil.copytree(lumen_data_dir, target)
    return target


@pytest.fixture(params=["stdio", "http"])
def open_session(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[SessionFactory]:
    with session_factory(request.param, data_dir) as factory:
        yield factory


def test_tools_are_listed_with_descriptions_and_schemas(open_session):
    async def body(session: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert {"search", "fetch_chunk", "list_collections"} <= set(tools)
        search = tools["search"]
        assert list(search.input_schema["properties"])[:6] == [
            "query",
            "collections",
            "version",
            "k",
            "max_tokens",
            "cursor",
        ]
        assert search.input_schema["required"] == ["query"]
        assert search.output_schema is not None and "hits" in search.output_schema["properties"]
        assert "fetch_chunk" in (search.description or "")
        fetch = tools["fetch_chunk"]
        assert list(fetch.input_schema["properties"]) == ["chunk_id", "neighbors", "max_tokens"]
        assert fetch.output_schema is not None
        for tool in tools.values():
            assert tool.annotations is not None and tool.annotations.read_only_hint

    run_session(open_session, body)


def test_search_returns_hits_with_provenance(open_session):
    async def body(session: ClientSession) -> None:
        result = await call(session, "search", query="How do I call build_site from Python?", k=5)
        assert result["hits"], result
        top = result["hits"][0]
        fetched = await call(session, "fetch_chunk", chunk_id=top["chunk_id"])
        assert "build_site" in fetched["chunk"]["text"]
        for key in (
            "chunk_id",
            "collection",
            "version",
            "title",
            "heading_path",
            "source",
            "snippet",
            "score",
            "generation",
            "indexed_at",
        ):
            assert top[key] not in (None, ""), key
        assert top["collection"] == "lumen" and top["version"] == "1.0" and top["generation"] == 1
        assert top["bm25_rank"] is not None or top["dense_rank"] is not None
        assert result["rewritten_queries"], "the keyword rewrite is recorded"
        assert "**" in json.dumps([h["snippet"] for h in result["hits"]])

    run_session(open_session, body)


def test_pagination_walks_every_page_without_duplicates(open_session):
    async def body(session: ClientSession) -> None:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            args: dict[str, Any] = {"query": "cache theme configuration", "k": 3}
            if cursor:
                args["cursor"] = cursor
            page = await call(session, "search", **args)
            seen.extend(h["chunk_id"] for h in page["hits"])
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None or pages > 20:
                break
        assert pages >= 2
        assert len(seen) == len(set(seen))
        full = await call(session, "search", query="cache theme configuration", k=50, max_tokens=20000)
        assert seen == [h["chunk_id"] for h in full["hits"]]

    run_session(open_session, body)


def test_response_never_exceeds_max_tokens(open_session, embedder: Embedder):
    async def body(session: ClientSession) -> None:
        for budget in (150, 400, 1200):
            result = await call(
                session, "search", query="site build templates themes", k=20, max_tokens=budget
            )
            assert embedder.count_tokens(json.dumps(result, ensure_ascii=False)) <= budget
        tight = await call(session, "search", query="site build templates themes", k=20, max_tokens=400)
        assert tight["truncated"] and tight["next_cursor"]
        nxt = await call(
            session,
            "search",
            query="site build templates themes",
            k=20,
            max_tokens=400,
            cursor=tight["next_cursor"],
        )
        assert nxt["hits"] and nxt["hits"][0]["chunk_id"] not in {h["chunk_id"] for h in tight["hits"]}

    run_session(open_session, body)


def test_fetch_chunk_returns_full_text_and_ordered_neighbours(open_session, embedder: Embedder):
    async def body(session: ClientSession) -> None:
        hits = (await call(session, "search", query="Lumen documentation installation quick start", k=10))[
            "hits"
        ]
        chosen = next(h for h in hits if h["source"].startswith("index.md"))
        alone = await call(session, "fetch_chunk", chunk_id=chosen["chunk_id"])
        assert (
            alone["chunk"]["chunk_id"] == chosen["chunk_id"]
            and alone["before"] == []
            and alone["after"] == []
        )
        assert len(alone["chunk"]["text"]) >= len(chosen["snippet"].replace("**", "")) - 5
        around = await call(session, "fetch_chunk", chunk_id=chosen["chunk_id"], neighbors=2)
        positions = [c["position"] for c in [*around["before"], around["chunk"], *around["after"]]]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert len(positions) > 1
        assert all(c["source"].startswith("index.md") for c in [*around["before"], *around["after"]])
        small = await call(session, "fetch_chunk", chunk_id=chosen["chunk_id"], neighbors=5, max_tokens=200)
        assert small["truncated"] and embedder.count_tokens(json.dumps(small, ensure_ascii=False)) <= 200
        assert small["before"] == [] and small["after"] == []
        too_small = await call_error(session, "fetch_chunk", chunk_id=chosen["chunk_id"], max_tokens=100)
        assert "too small for this chunk's metadata" in too_small

    run_session(open_session, body)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("search", {"query": ""}, "must not be empty"),
        ("search", {"query": "   \n "}, "must not be empty"),
        ("search", {"query": "x" * 2001}, "limit is 2000"),
        ("search", {"query": "themes", "k": 0}, "k: must be an integer from 1 to 50"),
        ("search", {"query": "themes", "k": 51}, "k: must be an integer from 1 to 50"),
        ("search", {"query": "themes", "collections": ["nope"]}, "unknown collection 'nope'"),
        ("search", {"query": "themes", "collections": ["../etc"]}, "not a collection name"),
        ("search", {"query": "themes", "version": "9.9"}, "no collection in scope has version"),
        ("search", {"query": "themes", "cursor": "not-a-cursor"}, "unknown or expired cursor"),
        ("search", {"query": "themes", "max_tokens": 10}, "max_tokens"),
        ("fetch_chunk", {"chunk_id": "../../etc/passwd"}, "is not a chunk ID"),
        ("fetch_chunk", {"chunk_id": "%2e%2e%2fmanifest.json"}, "is not a chunk ID"),
        ("fetch_chunk", {"chunk_id": "0123456789abcdef0123456789abcdef"}, "unknown chunk_id"),
        ("fetch_chunk", {"chunk_id": "0123456789abcdef0123456789abcdef", "neighbors": 99}, "neighbors"),
    ],
)
def test_bad_input_is_a_tool_error_the_agent_can_act_on(open_session, tool, arguments, expected):
    async def body(session: ClientSession) -> None:
        message = await call_error(session, tool, **arguments)
        assert expected in message, message

    run_session(open_session, body)


def test_cursor_is_bound_to_its_query(open_session):
    async def body(session: ClientSession) -> None:
        first = await call(session, "search", query="cache", k=1)
        assert first["next_cursor"]
        message = await call_error(session, "search", query="themes", k=1, cursor=first["next_cursor"])
        assert "different search" in message
        tampered = first["next_cursor"][:-3] + ("AAA" if not first["next_cursor"].endswith("AAA") else "BBB")
        assert "unknown or expired cursor" in await call_error(
            session, "search", query="cache", k=1, cursor=tampered
        )

    run_session(open_session, body)


def test_new_generation_is_served_without_restart(
    data_dir: Path, model_dir: Path, embedder: Embedder, tmp_path: Path
):
    corpus = tmp_path / "corpus"
    shutil.copytree(FIXTURE_CORPUS, corpus)

    async def main() -> None:
        async with stdio_session(data_dir) as session:
            before = await call(session, "search", query="zanzibar telemetry exporter", k=3)
            assert not any("zanzibar" in h["snippet"].lower() for h in before["hits"])
            (corpus / "telemetry.md").write_text(
                "# Telemetry\n\nThe zanzibar telemetry exporter ships build metrics to a collector.\n",
                encoding="utf-8",
            )
            await anyio.to_thread.run_sync(
                lambda: build_collection(
                    settings_for(data_dir, model_dir),
                    BuildRequest(collection="lumen", source=corpus, version="1.0", incremental=True),
                    embedder=embedder,
                )
            )
            deadline = time.monotonic() + 30  # generous: the machine may be busy
            while True:
                after = await call(session, "search", query="zanzibar telemetry exporter", k=3)
                if (after["hits"] and after["hits"][0]["generation"] == 2) or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
            assert after["hits"][0]["generation"] == 2
            assert any("zanzibar" in hit["snippet"].lower() for hit in after["hits"]), after["hits"]

    anyio.run(main)


def test_stdio_stdout_carries_only_json_rpc(data_dir: Path):
    requests = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "search", "arguments": {"query": "themes"}},
        },
    ]
    with subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(data_dir),
        text=True,
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        for message in requests:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
        lines = [process.stdout.readline(), process.stdout.readline()]
        _, stderr = process.communicate(timeout=30)
    for line in lines:
        assert json.loads(line)["jsonrpc"] == "2.0"
    assert json.loads(lines[1])["id"] == 2
    assert '"event": "tool_call"' in stderr  # logs went to stderr


def test_http_rejects_foreign_origin_and_host(data_dir: Path):
    import httpx

    with http_server(data_dir) as url:
        body, headers = INITIALIZE, JSON_RPC_HEADERS
        evil = httpx.post(url, json=body, headers={**headers, "Origin": "http://evil.example"}, timeout=10)
        assert evil.status_code == 403
        rebound = httpx.post(url, json=body, headers={**headers, "Host": "evil.example:80"}, timeout=10)
        assert rebound.status_code in (403, 421)
        origin = url.removesuffix("/mcp")
        ok = httpx.post(url, json=body, headers={**headers, "Origin": origin}, timeout=10)
        assert ok.status_code == 200


def test_single_user_mode_refuses_non_loopback_bind(data_dir: Path):
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--http", "0.0.0.0:8799"],
        env=server_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "refusing to bind 0.0.0.0" in result.stderr


CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "tools" / "mcp-conformance"


@pytest.mark.skipif(
    not CONFORMANCE.is_file(), reason=f"{CONFORMANCE} not found (it sits beside a development checkout)"
)
def test_official_conformance_suite_passes(data_dir: Path):
    with http_server(data_dir) as url:
        result = subprocess.run([str(CONFORMANCE), url], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "FAIL" not in result.stdout
