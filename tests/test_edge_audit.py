"""The HTTP edge's audit record of each request no tool call recorded: its label and outcome.

`EdgeGuard` runs here in front of stand-in ASGI apps (one that fails, hangs, streams, refuses or
plays the gateway), so each way a request can end is exercised exactly.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from server.mcp.edge_audit import Exchange
from server.mcp.http import EdgeGuard
from server.mcp.request_audit import claim_for_gateway
from server.security.audit import AuditLog
from server.security.audit_keys import AuditKeys
from server.security.limits import RateLimiter
from server.security.registry import TenantRegistry
from server.security.usage_store import UsageStore
from server.settings import ServerSettings

Message = MutableMapping[str, Any]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------- labels and outcomes


def exchange(body: bytes = b"", **fields: Any) -> Exchange:
    ex = Exchange(method="POST", path="/mcp", client="127.0.0.1", on_mcp_path=True, tenant="acme")
    for name, value in fields.items():
        setattr(ex, name, value)

    async def feed() -> None:
        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        await ex.receiving(receive)()

    anyio.run(feed)
    return ex


@pytest.mark.parametrize(
    ("body", "label"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', "tools/list"),
        (b'{"jsonrpc":"2.0","method":"notifications/initialized"}', "notifications/initialized"),
        (b'{"jsonrpc":"2.0","id":1,"method":"jane.doe@example.com"}', "unknown"),
        (b'{"jsonrpc":"2.0","id":1,"method":["tools/list"]}', "unknown"),
        (b'{"jsonrpc":"2.0","id":1,"result":{}}', "response"),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","x":NaN}', "ping"),
        (b"[" * 100_000, "http"),
        (b"\xff\xfe{", "http"),
        (b"", "http"),
        (b'"tools/list"', "http"),
    ],
)
def test_the_record_names_only_methods_mcp_defines(body: bytes, label: str) -> None:
    event = exchange(body, status=200).event()
    assert event.tool == label
    assert "jane.doe" not in event.model_dump_json()


@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        ({"status": 202}, ("allow", None, "ok", None)),
        ({"status": 400}, ("allow", None, "error", "http_400")),
        ({"status": 406}, ("allow", None, "error", "http_406")),
        ({"status": 500}, ("allow", None, "error", "http_500")),
        ({"status": 401, "tenant": "-"}, ("deny", "unauthenticated", "denied", "http_401")),
        ({"status": 421}, ("deny", "host_or_origin_rejected", "denied", "http_421")),
        ({"status": 429, "denial": "rate_limited"}, ("deny", "rate_limited", "denied", "http_429")),
        ({"status": None, "failure": "cancelled"}, ("allow", None, "error", "cancelled")),
        ({"status": 200, "failure": "cancelled"}, ("allow", None, "ok", None)),  # a stream ended
        ({"status": 200, "failure": "internal"}, ("allow", None, "error", "internal")),
        ({"status": None}, ("allow", None, "error", "client_closed")),
    ],
)
def test_the_outcome_follows_the_answer(fields: dict[str, Any], verdict: tuple[Any, ...]) -> None:
    event = exchange(**fields).event()
    assert (event.decision, event.reason, event.outcome, event.error_code) == verdict


def test_a_json_rpc_error_answered_with_200_is_an_error() -> None:
    ex = exchange(status=200)
    body = b'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}\r\n\r\n'
    ex.saw({"type": "http.response.body", "body": body, "more_body": False})
    assert (ex.event().outcome, ex.event().error_code) == ("error", "jsonrpc_-32601")


def test_only_requests_from_nobody_identified_are_folded() -> None:
    assert exchange(status=400).tally_kind() is None
    assert exchange(status=401, tenant="-").tally_kind() == "unauthenticated"
    assert exchange(status=429, tenant="-", denial="auth_throttled").tally_kind() == "auth_throttled"
    assert exchange(status=404, tenant="-", on_mcp_path=False).tally_kind() == "off_path_404"


# ---------------------------------------------------------------- the edge, end to end


def edge(tmp_path: Path, app: Any) -> EdgeGuard:
    settings = ServerSettings.load(None, data_dir=tmp_path / "data")
    runtime = SimpleNamespace(
        settings=settings,
        registry=TenantRegistry(None),  # single-user: every request is the default tenant's
        limiter=RateLimiter(UsageStore(tmp_path / "usage.sqlite3")),
        audit=AuditLog(tmp_path / "audit.jsonl", AuditKeys.load_or_create(tmp_path / "keys")),
    )
    return EdgeGuard(app, runtime, "/mcp")  # type: ignore[arg-type]  # what the edge uses of a Runtime


PING = {"type": "http.request", "body": b'{"jsonrpc":"2.0","id":1,"method":"ping"}'}


def serve(
    guard: EdgeGuard,
    method: str = "POST",
    *,
    cancel_after_s: float | None = None,
    arriving: tuple[Message, ...] = (PING,),
) -> list[Message]:
    sent: list[Message] = []
    scope = {"type": "http", "method": method, "path": "/mcp", "headers": [], "client": ("127.0.0.9", 5)}
    messages = list(arriving)

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append({**message, "records_then": len(records(guard.runtime.audit.path))})

    async def main() -> None:
        with anyio.move_on_after(cancel_after_s if cancel_after_s is not None else 30):
            await guard(scope, receive, send)

    anyio.run(main)
    return sent


def test_a_failing_app_gets_one_error_record_and_a_500_of_ours(tmp_path: Path) -> None:
    async def fails(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("library bug")

    guard = edge(tmp_path, fails)
    sent = serve(guard)
    assert sent[0]["status"] == 500
    assert b"library bug" not in sent[1]["body"] and b"Traceback" not in sent[1]["body"]
    (record,) = records(guard.runtime.audit.path)
    assert (record["tool"], record["outcome"], record["error_code"]) == ("ping", "error", "internal")
    assert (record["tenant"], record["client"]) == ("default", "127.0.0.9")


def test_a_request_cancelled_before_any_answer_is_recorded(tmp_path: Path) -> None:
    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep_forever()

    guard = edge(tmp_path, hangs)
    assert serve(guard, cancel_after_s=0.2) == []
    (record,) = records(guard.runtime.audit.path)
    assert (record["outcome"], record["error_code"]) == ("error", "cancelled")


def test_a_stream_the_client_left_is_recorded_with_its_status(tmp_path: Path) -> None:
    async def streams(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
        await anyio.sleep_forever()

    guard = edge(tmp_path, streams)
    serve(guard, "GET", cancel_after_s=0.2)
    (record,) = records(guard.runtime.audit.path)
    assert (record["tool"], record["outcome"]) == ("http", "ok")


def test_a_refusal_of_the_transport_is_recorded_before_its_answer_ends(tmp_path: Path) -> None:
    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 406, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error":"not acceptable"}'})

    guard = edge(tmp_path, refuses)
    sent = serve(guard)
    assert [m["records_then"] for m in sent] == [0, 1]
    (record,) = records(guard.runtime.audit.path)
    assert (record["tool"], record["outcome"], record["error_code"]) == ("ping", "error", "http_406")


def test_an_answer_of_known_length_starts_only_once_it_is_recorded(tmp_path: Path) -> None:
    async def accepts(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        # A 202 is complete for the client with its headers: they must not leave before the record.
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    guard = edge(tmp_path, accepts)
    sent = serve(guard)
    assert [(m["type"], m["records_then"]) for m in sent] == [
        ("http.response.start", 1),
        ("http.response.body", 1),
    ]


def test_a_request_the_gateway_recorded_gets_no_second_record(tmp_path: Path) -> None:
    async def gateway(scope: Any, receive: Any, send: Any) -> None:
        assert claim_for_gateway()  # what the gateway does when a call starts
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = edge(tmp_path, gateway)
    serve(guard)
    assert records(guard.runtime.audit.path) == []


def test_a_call_starting_after_the_edge_recorded_its_request_is_not_run(tmp_path: Path) -> None:
    claimed: list[bool] = []

    async def late(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        claimed.append(claim_for_gateway())  # a message handled after its answer was sent

    guard = edge(tmp_path, late)
    serve(guard)
    assert claimed == [False]
    assert len(records(guard.runtime.audit.path)) == 1


def test_a_client_gone_before_its_body_arrived_is_recorded_and_nothing_runs(tmp_path: Path) -> None:
    ran: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran.append(True)

    guard = edge(tmp_path, app)
    partial = {"type": "http.request", "body": b'{"jsonrpc":', "more_body": True}
    assert serve(guard, arriving=(partial, {"type": "http.disconnect"})) == []
    assert ran == []
    (record,) = records(guard.runtime.audit.path)
    assert (record["tool"], record["outcome"], record["error_code"]) == ("http", "error", "client_closed")


def test_a_body_read_ahead_reaches_the_app_whole(tmp_path: Path) -> None:
    bodies: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        bodies.append(message["body"])
        assert not message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = edge(tmp_path, app)
    chunks = [b'{"jsonrpc":"2.0",', b'"id":1,', b'"method":"tools/list"}']
    serve(
        guard,
        arriving=tuple({"type": "http.request", "body": c, "more_body": i < 2} for i, c in enumerate(chunks)),
    )
    assert bodies == [b"".join(chunks)]
    assert records(guard.runtime.audit.path)[0]["tool"] == "tools/list"
