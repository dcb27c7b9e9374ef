"""`max_tokens` counts one copy of the result JSON in docgate's tokenizer, as the tool schemas say.

The SDK sends a tool's result twice: as structured content and as a text copy of the same JSON
(indented). WordPiece ignores whitespace, so both copies count the same; the bound holds for what a
model reads, whichever copy its client shows it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from indexer.embedding import Embedder
from server.mcp.app import MAX_TOKENS_HELP, create_mcp_server
from server.runtime import build_runtime
from tests.conftest import settings_for

CALLS = [
    ("search", {"query": "site build templates themes cache", "k": 20, "max_tokens": 300}),
    ("search", {"query": "How do I switch to the ink theme?", "k": 8, "max_tokens": 2000}),
    ("grounded_answer", {"question": "How do I switch to the ink theme?", "max_tokens": 400}),
]


@pytest.fixture(scope="module")
def results(lumen_data_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    data_dir = tmp_path_factory.mktemp("unit") / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    runtime = build_runtime(settings_for(data_dir, model_dir))
    mcp, _ = create_mcp_server(runtime, "stdio")

    async def body() -> Any:
        async with Client(mcp) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            hit = (await client.call_tool("search", {"query": "themes", "k": 1})).structured_content
            assert hit is not None
            fetch = (
                "fetch_chunk",
                {"chunk_id": hit["hits"][0]["chunk_id"], "neighbors": 5, "max_tokens": 300},
            )
            replies = [(name, args, await client.call_tool(name, args)) for name, args in [*CALLS, fetch]]
            return tools, replies

    return anyio.run(body)


def test_every_copy_the_client_receives_fits_max_tokens(results: Any, embedder: Embedder) -> None:
    _, replies = results
    for name, arguments, reply in replies:
        assert not reply.is_error, (name, reply.content)
        text = reply.content[0].text
        structured = reply.structured_content
        assert json.loads(text) == structured
        compact = json.dumps(structured, ensure_ascii=False)
        assert embedder.count_tokens(text) == embedder.count_tokens(compact), name
        assert embedder.count_tokens(compact) <= arguments["max_tokens"], name


def test_the_unit_is_stated_in_every_tool_schema(results: Any) -> None:
    tools, _ = results
    with_budget = [t for t in tools.values() if "max_tokens" in t.input_schema["properties"]]
    assert {t.name for t in with_budget} >= {"search", "fetch_chunk", "grounded_answer"}
    for tool in with_budget:
        assert tool.input_schema["properties"]["max_tokens"]["description"] == MAX_TOKENS_HELP
    assert "all-MiniLM-L6-v2" in MAX_TOKENS_HELP and "not counted again" in MAX_TOKENS_HELP
