"""Hostile use of token budgets and rate limits against real `docgate serve --http` processes.

Concurrent searches racing for a small budget, `kill -9` of the server with charges just made or
calls in flight, two servers on one data dir, and tool arguments holding non-finite numbers.
What the store records is compared with what the audit logs say each call was charged.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.server.mcpserver.exceptions import ToolError

from indexer.embedding import Embedder
from server.errors import IndexUnavailable
from server.mcp.gateway import CallRecord, Gateway
from server.retrieval.service import Access, CollectionList
from server.security.audit import AuditLog, args_digest
from server.security.audit_keys import AuditKeys
from server.security.keys_file import add_key
from server.security.limits import RateLimiter, TokenBudget
from server.security.registry import TenantRegistry
from server.security.usage_store import UsageStore
from tests.conftest import open_service
from tests.mcp_harness import INITIALIZE, JSON_RPC_HEADERS, free_port, http_session, running, server_env

BUDGET = 3000
MAX_TOKENS = 600
TOOLS = {"search", "fetch_chunk", "list_collections", "read_page", "grounded_answer"}
QUERIES = [
    "themes and templates",
    "cache settings",
    "build the site",
    "LUMEN_CACHE_DIR",
    "plugins and hooks",
    "deploy to a server",
    "configuration file",
    "ink theme",
]
TENANTS = f"""
[tenants.thrifty]
collections = ["lumen"]
daily_token_budget = {BUDGET}

[tenants.metered]
collections = ["lumen"]
daily_token_budget = 10000000

[tenants.slow]
collections = ["lumen"]
requests_per_minute = 10
"""


@pytest.fixture
def site(lumen_data_dir: Path, tmp_path: Path) -> dict[str, Any]:
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text(TENANTS, encoding="utf-8")
    keys = {name: add_key(tenants_file, name, None)[1] for name in ("thrifty", "metered", "slow")}
    return {"data_dir": data_dir, "tenants_file": tenants_file, "keys": keys, "tmp": tmp_path}


@contextlib.contextmanager
def server(site: dict[str, Any], audit: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A `docgate serve --http` process the test may kill -9; yields it with its /mcp URL."""
    port = free_port()
    env = server_env(
        site["data_dir"], DOCGATE_TENANTS_FILE=str(site["tenants_file"]), DOCGATE_AUDIT_LOG=str(audit)
    )
    command = [sys.executable, "-m", "server.cli", "serve", "--http", f"127.0.0.1:{port}"]
    with running(command, env, port, site["tmp"] / f"server-{port}.log", startup_timeout_s=60) as process:
        yield process, f"http://127.0.0.1:{port}/mcp"


def kill_9(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


def charged(*audits: Path, tenant: str) -> list[int]:
    """Tokens each successful tool call of `tenant` was charged, as the audit logs record them (the
    session's other requests, initialize and the like, have records too, of no tokens)."""
    records = [
        json.loads(line) for audit in audits if audit.exists() for line in audit.read_text().splitlines()
    ]
    return [
        r["tokens_in"] + r["tokens_out"]
        for r in records
        if r["tenant"] == tenant and r["outcome"] == "ok" and r["tool"] in TOOLS
    ]


def recorded(site: dict[str, Any], tenant: str) -> tuple[int, int]:
    """(tokens used today, tokens still held by calls in flight) as the usage store has them."""
    budget = TokenBudget(UsageStore(site["data_dir"] / "server" / "usage.sqlite3"))
    try:
        return budget.used(tenant), budget.reserved(tenant)
    finally:
        budget.close()


async def search_many(urls: list[str], key: str, count: int) -> list[dict[str, Any] | str]:
    """`count` searches at once, spread over sessions on `urls`; each outcome is the result or the error."""
    outcomes: list[dict[str, Any] | str] = []
    sessions_per_url = 2

    async def session_on(url: str, share: list[int]) -> None:
        async with http_session(url, key) as session:

            async def one(i: int) -> None:
                query = QUERIES[i % len(QUERIES)]
                result = await session.call_tool(
                    "search", {"query": query, "k": 10, "max_tokens": MAX_TOKENS}
                )
                text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
                assert "Traceback" not in text
                outcomes.append(text if result.is_error else dict(result.structured_content or {}))

            async with anyio.create_task_group() as group:
                for i in share:
                    group.start_soon(one, i)

    lanes = [(url, lane) for url in urls for lane in range(sessions_per_url)]
    async with anyio.create_task_group() as group:
        for n, (url, _) in enumerate(lanes):
            group.start_soon(session_on, url, list(range(n, count, len(lanes))))
    return outcomes


def test_concurrent_searches_overspend_a_small_budget_by_at_most_one_max_tokens(site: dict[str, Any]) -> None:
    audit = site["tmp"] / "audit.jsonl"
    with server(site, audit) as (_, url):
        outcomes = anyio.run(search_many, [url], site["keys"]["thrifty"], 16)
    allowed = [o for o in outcomes if isinstance(o, dict)]
    denied = [o for o in outcomes if isinstance(o, str)]
    assert len(outcomes) == 16 and len(allowed) >= 2 and denied
    assert all("daily token budget" in m and "retry after" in m for m in denied), denied[:2]
    spent = charged(audit, tenant="thrifty")
    assert len(spent) == len(allowed)
    # Unreserved, all 16 ran (about 8,000 tokens here); reserved, the sum stays near the budget.
    assert sum(spent) <= BUDGET + MAX_TOKENS, spent
    assert recorded(site, "thrifty") == (sum(spent), 0)


def test_kill_9_right_after_the_responses_loses_no_charge(site: dict[str, Any]) -> None:
    audit = site["tmp"] / "audit.jsonl"
    key = site["keys"]["metered"]

    async def searches(url: str, queries: list[str]) -> None:
        async with http_session(url, key) as session:
            for query in queries:
                result = await session.call_tool("search", {"query": query, "k": 5})
                assert not result.is_error

    with server(site, audit) as (process, url):
        anyio.run(searches, url, QUERIES[:5])
        kill_9(process)  # no shutdown hook runs: only what was committed survives
    first = sum(charged(audit, tenant="metered"))
    assert first > 0
    assert recorded(site, "metered") == (first, 0)
    with server(site, audit) as (process, url):  # a restart counts on from there
        anyio.run(searches, url, QUERIES[5:])
        kill_9(process)
    spent = charged(audit, tenant="metered")
    assert len(spent) == len(QUERIES)
    assert recorded(site, "metered") == (sum(spent), 0)


def test_kill_9_with_calls_in_flight_charges_only_settled_calls_and_frees_their_holds(
    site: dict[str, Any],
) -> None:
    audit = site["tmp"] / "audit.jsonl"
    key = site["keys"]["metered"]
    with server(site, audit) as (process, url):

        async def flood() -> None:
            # The session's own teardown fails too once its server is gone: only the kill matters.
            with anyio.fail_after(120), contextlib.suppress(Exception):
                async with http_session(url, key) as session:

                    async def one(i: int) -> None:
                        with contextlib.suppress(Exception):  # the server dies under these calls
                            await session.call_tool(
                                "search", {"query": QUERIES[i % len(QUERIES)], "k": 10, "max_tokens": 3000}
                            )

                    async with anyio.create_task_group() as group:
                        for i in range(24):
                            group.start_soon(one, i)
                        # Kill once some calls have completed and others are still running.
                        while len(charged(audit, tenant="metered")) < 3:
                            await anyio.sleep(0.02)
                        await anyio.to_thread.run_sync(kill_9, process)
                        group.cancel_scope.cancel()

        anyio.run(flood)
    assert process.returncode == -signal.SIGKILL
    spent = charged(audit, tenant="metered")
    assert 3 <= len(spent) < 24
    used, held = recorded(site, "metered")  # opening the store releases the dead server's holds
    assert held == 0
    # Nothing audited is refunded. A call is charged just before its audit line is written (and the
    # audit writes one line at a time), so calls killed in between are charged but not audited: each
    # at most its reservation, and never one that had not run.
    assert sum(spent) <= used <= sum(spent) + (24 - len(spent)) * (3000 + 20)
    with server(site, audit) as (_, url):  # the restarted server sees the same usage, no holds

        async def one_more() -> None:
            async with http_session(url, key) as session:
                assert not (await session.call_tool("search", {"query": "ink theme"})).is_error

        anyio.run(one_more)
    assert recorded(site, "metered") == (used + charged(audit, tenant="metered")[-1], 0)


def test_two_servers_on_one_data_dir_share_one_budget(site: dict[str, Any]) -> None:
    audits = (site["tmp"] / "audit-a.jsonl", site["tmp"] / "audit-b.jsonl")
    with server(site, audits[0]) as (_, first), server(site, audits[1]) as (_, second):
        outcomes = anyio.run(search_many, [first, second], site["keys"]["thrifty"], 16)
    allowed = [o for o in outcomes if isinstance(o, dict)]
    assert len(outcomes) == 16 and 2 <= len(allowed) < 16
    spent = charged(*audits, tenant="thrifty")
    assert len(spent) == len(allowed)
    for audit in audits:  # both servers took part: each audited searches of the tenant
        assert any(json.loads(line)["tool"] == "search" for line in audit.read_text().splitlines())
    # Each process enforcing its own 3,000 would let about twice that through.
    assert sum(spent) <= BUDGET + MAX_TOKENS, spent
    assert recorded(site, "thrifty") == (sum(spent), 0)


def test_two_servers_on_one_data_dir_share_one_rate_limit(site: dict[str, Any]) -> None:
    audits = (site["tmp"] / "audit-a.jsonl", site["tmp"] / "audit-b.jsonl")
    headers = {**JSON_RPC_HEADERS, "Authorization": f"Bearer {site['keys']['slow']}"}
    with server(site, audits[0]) as (_, first), server(site, audits[1]) as (_, second):
        started = time.monotonic()
        statuses = [
            httpx.post(url, json=INITIALIZE, headers=headers, timeout=10).status_code
            for url in [first, second] * 12
        ]
        elapsed = time.monotonic() - started
    allowed = statuses.count(200)
    assert set(statuses) <= {200, 429}
    # A bucket of 10 refilled at 10 per minute, shared; per process it would be 20 or more.
    assert 10 <= allowed <= 10 + int(elapsed / 6) + 1, (allowed, elapsed)
    assert 200 in statuses[0::2] and 200 in statuses[1::2]


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]


def test_tool_calls_with_non_finite_numbers_are_still_audited(site: dict[str, Any]) -> None:
    audit = site["tmp"] / "audit.jsonl"
    headers = {**JSON_RPC_HEADERS, "Authorization": f"Bearer {site['keys']['metered']}"}
    with server(site, audit) as (_, url), httpx.Client(timeout=30) as client:
        session = client.post(url, json=INITIALIZE, headers=headers).headers.get("mcp-session-id")
        headers = {
            **headers,
            "mcp-protocol-version": "2025-06-18",
            **({"mcp-session-id": session} if session else {}),
        }
        client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        for arguments in [
            shape.format(literal)
            for literal in NON_FINITE
            for shape in (
                '{{"query": "themes", "max_tokens": {}}}',
                '{{"query": {}}}',
                '{{"query": "themes", "collections": [{}]}}',
            )
        ]:
            body = f'{{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {{"name": "search", "arguments": {arguments}}}}}'
            reply = client.post(url, content=body.encode(), headers=headers)
            assert reply.status_code < 500 and "Traceback" not in reply.text
        after = client.post(
            url,
            json={
                "jsonrpc": "2.0",
                "id": 8,
                "method": "tools/call",
                "params": {"name": "list_collections", "arguments": {}},
            },
            headers=headers,
        )
        assert after.status_code == 200  # the server still answers
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    calls = [r for r in records if r["tool"] in ("search", "list_collections")]
    assert [r["tool"] for r in calls] == ["search"] * 12 + ["list_collections"]
    assert all(r["outcome"] == "error" for r in calls[:12])


def test_argument_digest_is_total_over_non_finite_numbers() -> None:
    nan, inf = float("nan"), float("inf")
    digests = {
        args_digest({"max_tokens": nan}),
        args_digest({"max_tokens": inf}),
        args_digest({"max_tokens": -inf}),
        args_digest({"collections": [inf, {"deep": nan}]}),
    }
    assert len(digests) == 4 and all(len(d) == 64 for d in digests)
    assert args_digest({"k": 3, "query": "q"}) == args_digest({"query": "q", "k": 3})
    assert args_digest({"max_tokens": inf}) != args_digest({"max_tokens": 1e308})
    # A lone surrogate parses from JSON ("\\ud800") but has no UTF-8 form: it is hashed escaped.
    assert len(args_digest({"query": "\ud800"})) == 64
    assert args_digest({"query": "\ud800"}) != args_digest({"query": "\udfff"})


def _gateway(site: dict[str, Any], model_dir: Path, embedder: Embedder) -> tuple[Gateway, TokenBudget]:
    budget = TokenBudget(UsageStore(site["tmp"] / "usage.sqlite3"))
    gateway = Gateway(
        open_service(site["data_dir"], model_dir, embedder),
        TenantRegistry(site["tenants_file"]),
        AuditLog(site["tmp"] / "audit.jsonl", AuditKeys.load_or_create(site["tmp"] / "audit-keys")),
        RateLimiter(budget.store),
        budget,
        "stdio",
        "thrifty",
    )
    return gateway, budget


def test_a_failed_or_cancelled_call_gives_its_hold_back_and_is_audited(
    site: dict[str, Any], model_dir: Path, embedder: Embedder
) -> None:
    gateway, budget = _gateway(site, model_dir, embedder)
    arguments = {"query": "themes", "max_tokens": 2000}
    started = anyio.Event()

    async def hangs(access: Access, record: CallRecord) -> CollectionList:
        assert budget.reserved("thrifty") == 2000 + embedder.count_tokens("themes")
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    def fails(access: Access, record: CallRecord) -> CollectionList:
        assert budget.reserved("thrifty") > 2000
        raise IndexUnavailable("the index is being rebuilt")

    async def body() -> None:
        with anyio.move_on_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(gateway.call_async, "search", arguments, hangs)
                await started.wait()
                group.cancel_scope.cancel()  # the client went away mid-call
        assert budget.reserved("thrifty") == 0
        with pytest.raises(ToolError, match="being rebuilt"):
            await gateway.call("search", arguments, fails)
        assert (budget.used("thrifty"), budget.reserved("thrifty")) == (0, 0)
        # A call that fits is charged exactly what its result measures.
        listing = await gateway.call("list_collections", {}, lambda a, r: gateway.service.collections(a))
        assert budget.used("thrifty") == gateway.service.tokens(listing) > 0

    anyio.run(body)
    records = [json.loads(line) for line in (site["tmp"] / "audit.jsonl").read_text().splitlines()]
    assert [(r["tool"], r["outcome"], r["error_code"]) for r in records] == [
        ("search", "error", "cancelled"),
        ("search", "error", "index_unavailable"),
        ("list_collections", "ok", None),
    ]
