"""Attacks 5 and 6 and the Host/Origin review items: what a client controls must not leak back,
be coerced, or reach the logs raw."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from tests.attack.conftest import Deployment
from tests.mcp_harness import INITIALIZE, JSON_RPC_HEADERS, http_session

MARKER = "zq-unique-marker-7731"  # a value whose echo would show the input came back

# (tool, arguments, the argument the message must name)
BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("search", {"query": "themes", "k": True}, "k"),
    ("search", {"query": "themes", "k": "3"}, "k"),
    ("search", {"query": "themes", "k": 2.0}, "k"),
    ("search", {"query": "themes", "k": 0}, "k"),
    ("search", {"query": "themes", "k": 10**30}, "k"),
    ("search", {"query": "themes", "max_tokens": "2000"}, "max_tokens"),
    ("search", {"query": 5}, "query"),
    ("search", {"query": [MARKER]}, "query"),
    ("search", {}, "query"),
    ("search", {"query": "themes", "collections": MARKER}, "collections"),
    ("search", {"query": "themes", "collections": [1, 2]}, "collections"),
    ("search", {"query": "themes", "version": 3.2}, "version"),
    ("search", {"query": "themes", "cursor": {"page": MARKER}}, "cursor"),
    ("search", {"query": "themes", "path_prefix": False}, "path_prefix"),
    ("search", {"query": "themes", MARKER: 1}, "unknown argument"),
    ("fetch_chunk", {"chunk_id": 123}, "chunk_id"),
    ("fetch_chunk", {"chunk_id": MARKER}, "chunk_id"),
    ("fetch_chunk", {"chunk_id": "0" * 32, "neighbors": 1.0}, "neighbors"),
    ("fetch_chunk", {"chunk_id": "0" * 32, "neighbors": "2"}, "neighbors"),
    ("fetch_chunk", {"chunk_id": "0" * 32, "max_tokens": True}, "max_tokens"),
    ("fetch_chunk", {}, "chunk_id"),
    ("list_collections", {"k": 1}, "unknown argument"),
    ("list_collections", {MARKER: MARKER}, "unknown argument"),
    ("grounded_answer", {"question": None}, "question"),
    ("grounded_answer", {"question": "how?", "max_tokens": 1500.0}, "max_tokens"),
    ("grounded_answer", {"question": "how?", "collections": [None]}, "collections"),
    ("grounded_answer", {"question": "how?", "version": ["3.2"]}, "version"),
    ("grounded_answer", {}, "question"),
    ("read_page", {"source": 5}, "source"),
    ("read_page", {"source": "guide.md", "max_tokens": "4000"}, "max_tokens"),
    ("read_page", {"source": "guide.md", "section": [MARKER]}, "section"),
    ("read_page", {"source": "guide.md", MARKER: 1}, "unknown argument"),
    ("read_page", {}, "source"),
]


def _call_all(url: str, key: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async def body() -> list[Any]:
        async with http_session(url, key) as session:
            return [await session.call_tool(tool, arguments) for tool, arguments in calls]

    return anyio.run(body)


def test_every_tool_is_covered_by_the_bad_argument_matrix(deployment: Deployment) -> None:
    async def names() -> set[str]:
        async with http_session(deployment.url, deployment.keys["acme"]) as session:
            return {tool.name for tool in (await session.list_tools()).tools}

    assert anyio.run(names) <= {tool for tool, _, _ in BAD_ARGUMENTS}


def test_off_schema_arguments_get_one_line_of_our_own_naming_the_argument(deployment: Deployment) -> None:
    results = _call_all(deployment.url, deployment.keys["acme"], [(t, a) for t, a, _ in BAD_ARGUMENTS])
    for (tool, arguments, named), result in zip(BAD_ARGUMENTS, results, strict=True):
        text = result.content[0].text
        case = f"{tool} {arguments!r}: {text!r}"
        assert result.is_error, case
        assert "\n" not in text, case
        assert "pydantic" not in text.lower() and "errors.pydantic.dev" not in text, case
        assert MARKER not in text and json.dumps(arguments) not in text, case
        assert named in text, case
        if named in ("k", "max_tokens", "neighbors"):
            assert "from" in text and "to" in text, case  # the allowed range is stated


def test_strict_arguments_still_accept_the_right_types(deployment: Deployment) -> None:
    results = _call_all(
        deployment.url,
        deployment.keys["acme"],
        [
            ("search", {"query": "themes", "k": 3, "collections": ["lumen"], "version": None}),
            ("list_collections", {}),
        ],
    )
    assert [r.is_error for r in results] == [False, False]


def test_client_chosen_tool_name_never_reaches_the_logs(deployment: Deployment) -> None:
    name = "unknown_tool_jane.doe@example.com"
    (result,) = _call_all(deployment.url, deployment.keys["acme"], [(name, {"query": "x"})])
    assert result.is_error
    assert "jane.doe" not in result.content[0].text
    audit = deployment.audit.read_text(encoding="utf-8")
    assert "jane.doe" not in audit
    assert "jane.doe" not in deployment.server_log.read_text(encoding="utf-8")
    # The session's other requests (initialize, its GET stream, DELETE) have records of their own.
    (record,) = [json.loads(line) for line in audit.splitlines() if '"unknown_tool"' in line]
    assert (record["tool"], record["tenant"]) == ("unknown", "acme")


LOOKALIKES = [
    ("host", "localhost:{port}@evil.com", 421),
    ("host", "127.0.0.1:1.evil.com", 421),
    ("host", "127.0.0.1:{port}.evil.com", 421),
    ("host", "evil.com:{port}", 421),
    ("host", "127.0.0.1:{other}", 421),
    ("origin", "http://127.0.0.1:{port}.evil.com", 403),
    ("origin", "http://127.0.0.1:{port}@evil.com", 403),
    ("origin", "http://evil.com", 403),
    ("origin", "null", 403),
    ("origin", "http://localhost:{other}", 403),
]


@pytest.mark.parametrize(("header", "value", "status"), LOOKALIKES)
def test_lookalike_host_or_origin_is_refused(
    deployment: Deployment, header: str, value: str, status: int
) -> None:
    # Refused before the key is looked at, so folded per address and interval like any request
    # from nobody identified; the first from an address is written at once: one address per case.
    source = f"127.0.1.{LOOKALIKES.index((header, value, status)) + 1}"
    value = value.format(port=deployment.port, other=deployment.port + 1)
    headers = {**JSON_RPC_HEADERS, "Authorization": f"Bearer {deployment.keys['acme']}", header: value}
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as client:
        response = client.post(deployment.url, json=INITIALIZE, headers=headers)
    assert response.status_code == status, response.text
    lines = deployment.audit.read_text(encoding="utf-8").splitlines()
    (record,) = [r for r in map(json.loads, lines) if r["client"] == source]
    assert (record["decision"], record["reason"], record["error_code"]) == (
        "deny",
        "host_or_origin_rejected",
        f"http_{status}",
    )


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
def test_exact_loopback_host_and_origin_are_accepted(deployment: Deployment, host: str) -> None:
    host = host.format(port=deployment.port)
    headers = {
        **JSON_RPC_HEADERS,
        "Authorization": f"Bearer {deployment.keys['acme']}",
        "host": host,
        "origin": f"http://{host}",
    }
    response = httpx.post(deployment.url, json=INITIALIZE, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
