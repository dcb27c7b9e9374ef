"""read_page, versions, code search and page resources through real MCP clients (stdio and HTTP)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.shared.exceptions import MCPError
from mcp.types import PaginatedRequestParams, ResourceTemplateReference

from server.mcp.resources import URI_TEMPLATE
from server.security.audit_keys import VerifyKeys
from server.security.audit_verify import verify
from server.security.keys_file import add_key
from tests.mcp_harness import (
    SessionFactory,
    call,
    call_error,
    http_server,
    http_session,
    run_session,
    session_factory,
)

TEMPLATE = ResourceTemplateReference(type="ref/resource", uri=URI_TEMPLATE)

TENANTS = """
[tenants.acme]
collections = ["lumen"]
requests_per_minute = 600

[tenants.beta]
collections = ["shop"]
requests_per_minute = 600
"""


@pytest.fixture(scope="module")
def both_collections(
    tmp_path_factory: pytest.TempPathFactory, lumen_data_dir: Path, shop_data_dir: Path
) -> Path:
    data_dir = tmp_path_factory.mktemp("pages-mcp") / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    shutil.copytree(shop_data_dir / "collections" / "shop", data_dir / "collections" / "shop")
    return data_dir


@pytest.fixture
def data_dir(both_collections: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(both_collections, target)
    return target


@pytest.fixture(params=["stdio", "http"])
def open_session(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[SessionFactory]:
    with session_factory(request.param, data_dir, DOCGATE_SERVE__RESOURCE_PAGE_SIZE="3") as factory:
        yield factory


async def all_resources(session: ClientSession) -> tuple[list[str], int]:
    uris: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        result = await session.list_resources(params=PaginatedRequestParams(cursor=cursor))
        pages += 1
        assert len(result.resources) <= 3
        uris.extend(r.uri for r in result.resources)
        cursor = result.next_cursor
        if cursor is None:
            return uris, pages


def test_read_page_search_and_versions_over_both_transports(open_session):
    async def body(session: ClientSession) -> None:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert list(tools["read_page"].input_schema["properties"])[:4] == [
            "source",
            "section",
            "max_tokens",
            "cursor",
        ]
        assert tools["search"].input_schema["properties"]["kind"]["enum"] == ["any", "code"]

        listing = await call(session, "list_collections")
        shop = next(c for c in listing["collections"] if c["name"] == "shop")
        assert shop["latest"] == "2.0" and shop["default_version"] == "latest"
        assert {v["label"]: v["kind"] for v in shop["version_details"]}["draft"] == "prerelease"

        found = await call(
            session, "search", query="expired coupons raise CouponExpired", collections=["shop"], k=3
        )
        top = found["hits"][0]
        assert top["version"] == "2.0" and top["url"] == "https://shop.example/docs/v2.0/guide#coupons"
        page = await call(session, "read_page", source=top["source"], collection="shop")
        assert page["section"][-1] == "Coupons" and page["text"].startswith("### Coupons")
        whole = await call(session, "read_page", source=top["url"].split("#")[0])
        assert "```python" in whole["text"] and whole["toc"][0]["anchor"] == "install"

        code = await call(session, "search", query="checkout receipt", collections=["shop"], kind="code")
        assert code["hits"] and all(h["has_code"] for h in code["hits"])
        old = await call(session, "search", query="checkout coupons", version="1.x", collections=["shop"])
        assert {h["version"] for h in old["hits"]} <= {"1.0", "docs"}

    run_session(open_session, body)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("read_page", {"source": "v2.0/nothing.md"}, "unknown page 'v2.0/nothing.md'"),
        ("read_page", {"source": "v2.0/guide.md", "section": "nope"}, "is not a heading of this page"),
        ("read_page", {"source": "v2.0/guide.md", "cursor": "forged"}, "cursor"),
        ("search", {"query": "checkout", "version": ">=abc"}, "is not a version range"),
        (
            "search",
            {"query": "checkout", "version": "9.9"},
            "available versions: lumen: 1.0; shop: 2.1rc1, 2.0",
        ),
        ("search", {"query": "checkout", "kind": "snippets"}, "kind"),
        ("search", {"query": "checkout", "kind": True}, "kind"),
    ],
)
def test_bad_page_and_version_input_is_a_tool_error(open_session, tool, arguments, expected):
    async def body(session: ClientSession) -> None:
        message = await call_error(session, tool, **arguments)
        assert expected in message

    run_session(open_session, body)


def test_pages_are_paginated_resources_with_template_and_completions(open_session):
    async def body(session: ClientSession) -> None:
        uris, pages = await all_resources(session)
        assert pages > 2 and len(uris) == len(set(uris))
        assert "docgate://shop/2.0/v2.0/guide.md" in uris and "docgate://shop/docs/about.md" in uris
        assert any(uri.startswith("docgate://lumen/1.0/") for uri in uris)
        templates = (await session.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == [URI_TEMPLATE]

        read = await session.read_resource("docgate://shop/2.0/v2.0/guide.md")
        text = read.contents[0].text  # type: ignore[union-attr]
        assert text.startswith("# Shop guide") and "### Coupons" in text and "```python" in text
        with pytest.raises(MCPError, match="unknown page"):
            await session.read_resource("docgate://shop/9.9/v2.0/guide.md")

        collections = await session.complete(TEMPLATE, {"name": "collection", "value": "sh"})
        assert collections.completion.values == ["shop"]
        versions = await session.complete(TEMPLATE, {"name": "version", "value": "2"}, {"collection": "shop"})
        assert versions.completion.values == ["2.0", "2.1rc1"]
        paths = await session.complete(TEMPLATE, {"name": "path", "value": "v2"}, {"collection": "shop"})
        assert paths.completion.values == ["v2.0/guide.md", "v2.1rc1/guide.md"]

    run_session(open_session, body)


@pytest.fixture
def tenants(data_dir: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text(TENANTS, encoding="utf-8")
    keys = {name: add_key(tenants_file, name, None)[1] for name in ("acme", "beta")}
    audit = tmp_path / "audit.jsonl"
    with http_server(
        data_dir,
        DOCGATE_TENANTS_FILE=str(tenants_file),
        DOCGATE_AUDIT_LOG=str(audit),
        DOCGATE_SERVE__RESOURCE_PAGE_SIZE="3",
    ) as url:
        yield {"url": url, "keys": keys, "audit": audit, "data_dir": data_dir}


def test_another_tenants_pages_look_unknown_in_tools_and_resources(tenants):
    url, keys = tenants["url"], tenants["keys"]

    async def body() -> None:
        async with http_session(url, keys["beta"]) as beta:
            assert (await call(beta, "read_page", source="v2.0/guide.md"))["collection"] == "shop"
        async with http_session(url, keys["acme"]) as acme:
            hidden = await call_error(acme, "read_page", source="v2.0/guide.md")
            missing = await call_error(acme, "read_page", source="v9.9/guide.md")
            assert hidden.replace("v2.0", "X") == missing.replace("v9.9", "X")
            uris, _ = await all_resources(acme)
            assert uris and all(uri.startswith("docgate://lumen/") for uri in uris)
            with pytest.raises(MCPError) as hidden_resource:
                await acme.read_resource("docgate://shop/2.0/v2.0/guide.md")
            with pytest.raises(MCPError) as missing_resource:
                await acme.read_resource("docgate://shop/2.0/v9.9/guide.md")
            assert str(hidden_resource.value).replace("v2.0", "X") == str(missing_resource.value).replace(
                "v9.9", "X"
            )
            names = await acme.complete(TEMPLATE, {"name": "collection", "value": ""})
            assert names.completion.values == ["lumen"]
            paths = await acme.complete(TEMPLATE, {"name": "path", "value": "v2"}, {"collection": "shop"})
            assert paths.completion.values == []

    anyio.run(body)
    records = [json.loads(line) for line in tenants["audit"].read_text().splitlines()]
    tools = [r["tool"] for r in records]
    assert {"read_page", "resources/list", "resources/read", "completion/complete"} <= set(tools)
    denied = [r for r in records if r["decision"] == "deny"]
    assert {r["tool"] for r in denied} == {"read_page", "resources/read"}
    assert all(r["reason"] == "page_not_granted" and r["tenant"] == "acme" for r in denied)
    assert verify(tenants["audit"], VerifyKeys.load(tenants["data_dir"] / "server" / "audit-keys")).ok
