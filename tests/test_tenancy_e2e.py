"""Two tenants over real streamable HTTP: isolation inside retrieval, keys, limits, audit, hostile input."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder
from server.security.audit_keys import VerifyKeys
from server.security.audit_verify import verify
from server.security.keys_file import add_key, revoke_key
from server.security.limits import TokenBudget
from server.security.usage_store import UsageStore
from tests.conftest import settings_for
from tests.mcp_harness import (
    INITIALIZE,
    JSON_RPC_HEADERS,
    call,
    call_error,
    http_server,
    http_session,
    stdio_session,
)

HANDBOOK = {
    "onboarding.md": "# Onboarding\n\nNew staff receive the quasar vault passphrase from the security desk on day one.\n\n"
    "## Laptops\n\nLaptops are imaged with the orchid baseline before hand-over.\n",
    "expenses.md": "# Expenses\n\nFile expenses in the ledger tool within thirty days; receipts over fifty euros need a scan.\n",
}

TENANTS = """
[tenants.acme]
collections = ["lumen"]
requests_per_minute = 600

[tenants.beta]
collections = ["hand*"]
requests_per_minute = 600

[tenants.both]
collections = ["*"]
requests_per_minute = 600

[tenants.slow]
collections = ["lumen"]
requests_per_minute = 4

[tenants.thrifty]
collections = ["lumen"]
requests_per_minute = 600
daily_token_budget = 2500
"""


@pytest.fixture(scope="module")
def two_collections(
    tmp_path_factory: pytest.TempPathFactory, lumen_data_dir: Path, model_dir: Path, embedder: Embedder
) -> Path:
    data_dir = tmp_path_factory.mktemp("tenancy") / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    source = data_dir.parent / "handbook"
    source.mkdir()
    for name, text in HANDBOOK.items():
        (source / name).write_text(text, encoding="utf-8")
    build_collection(
        settings_for(data_dir, model_dir),
        BuildRequest(collection="handbook", source=source),
        embedder=embedder,
    )
    return data_dir


@pytest.fixture
def deployment(two_collections: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path / "data"
    shutil.copytree(two_collections, data_dir)
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text(TENANTS, encoding="utf-8")
    keys = {
        name: add_key(tenants_file, name, None)[1] for name in ("acme", "beta", "both", "slow", "thrifty")
    }
    audit = tmp_path / "audit.jsonl"
    with http_server(data_dir, DOCGATE_TENANTS_FILE=str(tenants_file), DOCGATE_AUDIT_LOG=str(audit)) as url:
        yield {"url": url, "keys": keys, "tenants_file": tenants_file, "audit": audit, "data_dir": data_dir}


def run(body: Any) -> Any:
    return anyio.run(body)


def _handbook_chunk_id(url: str, key: str) -> str:
    async def body() -> str:
        async with http_session(url, key) as session:
            hits = (await call(session, "search", query="quasar vault passphrase", collections=["handbook"]))[
                "hits"
            ]
            return str(hits[0]["chunk_id"])

    return str(run(body))


def test_tenants_see_only_their_collections_in_search_fetch_and_listing(deployment):
    url, keys = deployment["url"], deployment["keys"]
    secret_id = _handbook_chunk_id(url, keys["beta"])

    async def body() -> None:
        async with http_session(url, keys["acme"]) as acme:
            listing = await call(acme, "list_collections")
            assert [c["name"] for c in listing["collections"]] == ["lumen"]
            hits = (
                await call(
                    acme, "search", query="quasar vault passphrase security desk", k=50, max_tokens=20000
                )
            )["hits"]
            assert hits and all(h["collection"] == "lumen" for h in hits)
            assert "quasar" not in json.dumps(hits).lower()
            # Naming the other tenant's collection looks exactly like naming one that does not exist.
            denied = await call_error(acme, "search", query="passphrase", collections=["handbook"])
            missing = await call_error(acme, "search", query="passphrase", collections=["handbooc"])
            assert denied.replace("handbook", "X") == missing.replace("handbooc", "X")
            # Guessing (or knowing) a chunk ID of another tenant looks exactly like an unknown ID.
            guessed = await call_error(acme, "fetch_chunk", chunk_id=secret_id)
            unknown = await call_error(acme, "fetch_chunk", chunk_id="f" * 32)
            assert guessed.replace(secret_id, "X") == unknown.replace("f" * 32, "X")
        async with http_session(url, keys["both"]) as both:
            names = [c["name"] for c in (await call(both, "list_collections"))["collections"]]
            assert names == ["handbook", "lumen"]
            fetched = await call(both, "fetch_chunk", chunk_id=secret_id)
            assert "quasar" in fetched["chunk"]["text"]

    run(body)


def test_pagination_cursors_do_not_cross_tenants(deployment):
    url, keys = deployment["url"], deployment["keys"]

    async def body() -> None:
        async with http_session(url, keys["both"]) as both:
            page = await call(both, "search", query="laptops onboarding", k=1)
            assert page["next_cursor"]
        async with http_session(url, keys["acme"]) as acme:
            message = await call_error(
                acme, "search", query="laptops onboarding", k=1, cursor=page["next_cursor"]
            )
            assert "cursor" in message

    run(body)


def test_missing_unknown_revoked_and_expired_keys_get_401(deployment):
    url, keys, tenants_file = deployment["url"], deployment["keys"], deployment["tenants_file"]
    body, headers = INITIALIZE, JSON_RPC_HEADERS

    def post(token: str | None) -> httpx.Response:
        extra = {"Authorization": f"Bearer {token}".strip()} if token is not None else {}
        return httpx.post(url, json=body, headers={**headers, **extra}, timeout=10)

    for token in (None, "", "dg_000000000000_" + "A" * 43, "not-a-key", keys["acme"] + "x"):
        response = post(token)
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert post(keys["acme"]).status_code == 200

    # Revocation takes effect without a restart.
    key_id = keys["acme"].split("_")[1]
    revoke_key(tenants_file, key_id)
    for _ in range(40):
        if post(keys["acme"]).status_code == 401:
            break
        anyio.run(anyio.sleep, 0.1)
    assert post(keys["acme"]).status_code == 401

    from datetime import UTC, datetime, timedelta

    _, expiring = add_key(tenants_file, "beta", datetime.now(UTC) + timedelta(seconds=2))
    anyio.run(anyio.sleep, 0.7)
    assert post(expiring).status_code == 200
    anyio.run(anyio.sleep, 2.0)
    assert post(expiring).status_code == 401


def test_rate_limit_answers_429_with_retry_after_and_spares_other_tenants(deployment):
    url, keys = deployment["url"], deployment["keys"]
    body, headers = INITIALIZE, JSON_RPC_HEADERS
    statuses = [
        httpx.post(url, json=body, headers={**headers, "Authorization": f"Bearer {keys['slow']}"}, timeout=10)
        for _ in range(6)
    ]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["retry-after"]) >= 1
    other = httpx.post(
        url, json=body, headers={**headers, "Authorization": f"Bearer {keys['acme']}"}, timeout=10
    )
    assert other.status_code == 200


def test_daily_token_budget_is_enforced_per_tenant(deployment):
    url, keys = deployment["url"], deployment["keys"]

    async def body() -> None:
        async with http_session(url, keys["thrifty"]) as thrifty:
            message = ""
            for _ in range(10):
                result = await thrifty.call_tool("search", {"query": "themes and templates", "k": 10})
                if result.is_error:
                    message = result.content[0].text  # type: ignore[union-attr]
                    break
            assert "daily token budget" in message and "retry after" in message
        async with http_session(url, keys["acme"]) as acme:
            assert (await call(acme, "search", query="themes and templates", k=10))["hits"]

    run(body)


def test_every_call_is_audited_and_the_chain_verifies_after_200_concurrent_requests(deployment):
    url, keys, audit = deployment["url"], deployment["keys"], deployment["audit"]

    async def body() -> None:
        async with http_session(url, keys["both"]) as both:

            async def one(i: int) -> None:
                if i % 10 == 0:
                    await both.call_tool("fetch_chunk", {"chunk_id": "0" * 32})
                else:
                    await call(both, "search", query=f"cache settings {i % 7}", k=2, max_tokens=500)

            async with anyio.create_task_group() as group:
                for i in range(200):
                    group.start_soon(one, i)

    run(body)
    httpx.post(
        url, json={}, headers={"Content-Type": "application/json"}, timeout=10
    )  # an unauthenticated request
    audit_keys = VerifyKeys.load(deployment["data_dir"] / "server" / "audit-keys")
    result = verify(audit, audit_keys)
    assert result.ok, result
    records = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    calls = [r for r in records if r["tool"] in ("search", "fetch_chunk")]
    assert len(calls) == 200
    assert sum(1 for r in calls if r["error_code"] == "unknown_chunk") == 20
    assert any(r["decision"] == "deny" and r["reason"] == "unauthenticated" for r in records)
    assert all(r["tenant"] == "both" for r in calls)
    # No secrets or raw query text in the log.
    text = audit.read_text(encoding="utf-8")
    assert keys["both"] not in text and "cache settings" not in text
    # Tampering with any line is detected.
    lines = text.splitlines()
    lines[5] = re.sub(r'"latency_ms":[0-9.]+', '"latency_ms":1.0', lines[5])
    audit.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert verify(audit, audit_keys).first_bad_line == 6


def test_ungranted_access_is_recorded_as_a_denial(deployment):
    url, keys, audit = deployment["url"], deployment["keys"], deployment["audit"]
    secret_id = _handbook_chunk_id(url, keys["beta"])

    async def body() -> None:
        async with http_session(url, keys["acme"]) as acme:
            await acme.call_tool("search", {"query": "x", "collections": ["handbook"]})
            await acme.call_tool("fetch_chunk", {"chunk_id": secret_id})

    run(body)
    records = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    reasons = {r["reason"] for r in records if r["tenant"] == "acme" and r["decision"] == "deny"}
    assert reasons == {"collection_not_granted", "chunk_not_granted"}


_text = (
    st.text(st.characters(codec="utf-8"), max_size=300)
    | st.text(max_size=3000)
    | st.sampled_from(["", " ", "../", "%2e%2e%2f", "\x00", "🙂" * 50])
)
_arguments = st.fixed_dictionaries(
    {},
    optional={
        "query": _text | st.integers() | st.none(),
        "collections": st.lists(_text, max_size=4) | _text,
        "version": _text | st.none(),
        "k": st.integers(-(10**6), 10**6) | _text,
        "max_tokens": st.integers(-(10**9), 10**9) | st.floats(allow_nan=False, allow_infinity=False),
        "cursor": _text,
        "chunk_id": _text,
        "neighbors": st.integers(-100, 100) | st.booleans(),
        "path_prefix": _text,
    },
)


def test_arbitrary_tool_arguments_never_crash_the_server(deployment):
    url, key = deployment["url"], deployment["keys"]["both"]
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
    }
    with httpx.Client(timeout=30) as client:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "1"},
            },
        }
        response = client.post(url, json=init, headers=headers)
        session = response.headers.get("mcp-session-id")
        session_headers = {
            **headers,
            **({"mcp-session-id": session} if session else {}),
            "mcp-protocol-version": "2025-06-18",
        }
        client.post(
            url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session_headers
        )

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            tool=st.sampled_from(["search", "fetch_chunk", "list_collections", "nope"]), arguments=_arguments
        )
        def check(tool: str, arguments: dict[str, Any]) -> None:
            message = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            }
            reply = client.post(url, json=message, headers=session_headers)
            assert reply.status_code < 500, reply.text[:500]
            assert "Traceback" not in reply.text
            payloads = [
                json.loads(line[5:]) for line in reply.text.splitlines() if line.startswith("data:")
            ] or [reply.json()]
            assert any("result" in p or "error" in p for p in payloads)

        check()


def test_grant_changes_apply_without_restart(deployment):
    url, keys, tenants_file = deployment["url"], deployment["keys"], deployment["tenants_file"]
    tenants_file.write_text(
        TENANTS.replace(
            '[tenants.acme]\ncollections = ["lumen"]', '[tenants.acme]\ncollections = ["lumen", "handbook"]'
        ),
        encoding="utf-8",
    )

    async def body() -> list[str]:
        names: list[str] = []
        async with http_session(url, keys["acme"]) as acme:
            for _ in range(40):
                names = [c["name"] for c in (await call(acme, "list_collections"))["collections"]]
                if "handbook" in names:
                    break
                await anyio.sleep(0.1)
        return names

    assert run(body) == ["handbook", "lumen"]


def test_answers_and_their_cache_stay_within_a_tenant(deployment):
    url, keys = deployment["url"], deployment["keys"]
    question = "Who hands out the quasar vault passphrase to new staff?"

    async def body() -> None:
        async with http_session(url, keys["both"]) as both:
            first = await call(both, "grounded_answer", question=question)
            again = await call(both, "grounded_answer", question=question)
            assert again["cached"] is True
            assert "quasar" in json.dumps(first).lower()
        async with http_session(url, keys["acme"]) as acme:
            other = await call(acme, "grounded_answer", question=question)
            assert other["cached"] is False
            assert "quasar" not in json.dumps(other).lower()
            assert not any(c["source"].split("#")[0] in HANDBOOK for c in other["citations"])

    run(body)


def test_stdio_tenant_comes_from_the_operator_never_from_arguments(two_collections: Path, tmp_path: Path):
    data_dir = tmp_path / "data"
    shutil.copytree(two_collections, data_dir)
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text(
        TENANTS.replace("requests_per_minute = 4", "requests_per_minute = 2"), encoding="utf-8"
    )

    async def body() -> None:
        async with stdio_session(
            data_dir, "--tenant", "acme", DOCGATE_TENANTS_FILE=str(tenants_file)
        ) as acme:
            listing = await call(acme, "list_collections")
            assert [c["name"] for c in listing["collections"]] == ["lumen"]
            # An argument naming another tenant is refused: it is not part of any tool's input.
            result = await acme.call_tool(
                "search", {"query": "passphrase", "tenant": "both", "collections": ["handbook"]}
            )
            assert result.is_error and "unknown argument" in result.content[0].text  # type: ignore[union-attr]
            result = await acme.call_tool("search", {"query": "passphrase", "collections": ["handbook"]})
            assert result.is_error and "unknown collection" in result.content[0].text  # type: ignore[union-attr]
        async with stdio_session(
            data_dir, "--tenant", "slow", DOCGATE_TENANTS_FILE=str(tenants_file)
        ) as slow:
            outcomes = [(await slow.call_tool("search", {"query": "themes"})).is_error for _ in range(4)]
            assert outcomes[:2] == [False, False] and outcomes[-1] is True
            limited = await slow.call_tool("search", {"query": "themes"})
            assert "rate limit" in limited.content[0].text and "retry after" in limited.content[0].text  # type: ignore[union-attr]

    run(body)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_token_usage_is_written_when_the_server_stops(two_collections: Path, tmp_path: Path, transport: str):
    """Every call's charge is committed before its result returns; nothing is lost at shutdown."""
    data_dir = tmp_path / "data"
    shutil.copytree(two_collections, data_dir)
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text('[tenants.metered]\ncollections = ["lumen"]\ndaily_token_budget = 1000000\n')
    key = add_key(tenants_file, "metered", None)[1]
    audit = tmp_path / "audit.jsonl"

    async def three_searches(session: Any) -> None:
        for query in ("themes", "cache settings", "build_site"):
            await call(session, "search", query=query, k=3)

    async def body() -> None:
        if transport == "stdio":
            async with stdio_session(
                data_dir,
                DOCGATE_SERVE__TENANT="metered",
                DOCGATE_TENANTS_FILE=str(tenants_file),
                DOCGATE_AUDIT_LOG=str(audit),
            ) as session:
                await three_searches(session)
        else:
            with http_server(
                data_dir, DOCGATE_TENANTS_FILE=str(tenants_file), DOCGATE_AUDIT_LOG=str(audit)
            ) as url:
                async with http_session(url, key) as session:
                    await three_searches(session)

    run(body)
    # The server process has exited: its audit log and its usage file are final.
    searches = [json.loads(line) for line in audit.read_text().splitlines()]
    searches = [r for r in searches if r["tool"] == "search"]
    spent = sum(r["tokens_in"] + r["tokens_out"] for r in searches)
    assert len(searches) == 3 and spent > 0
    store = UsageStore(data_dir / "server" / "usage.sqlite3")
    assert TokenBudget(store).used("metered") == spent
