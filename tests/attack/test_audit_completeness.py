"""Requests that would leave no trace in the audit log.

Tool calls with fuzzed names and arguments (NaN, Infinity, 1e999, huge and odd strings, wrong
types, nested junk) and HTTP requests the transport refuses (bad JSON, wrong Content-Type or
Accept, oversized bodies, unknown sessions, bad JSON-RPC, wrong methods), all with a valid key,
against a real `docgate serve --http`: each leaves exactly one record, none gets a 5xx, and the
server logs no traceback. Floods without a key are folded, one record at once and one count per
address and interval, so they cannot fill the disk.
"""

from __future__ import annotations

import json
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from server.mcp.edge_audit import KNOWN_METHODS
from server.security.audit_keys import VerifyKeys
from server.security.audit_verify import verify
from tests.attack.conftest import Deployment, deployed
from tests.mcp_harness import INITIALIZE, JSON_RPC_HEADERS

TOOL_CALLS = 1000
MALFORMED = 100
TOOLS = ["search", "fetch_chunk", "list_collections", "read_page", "grounded_answer"]
# What a record's `tool` may be: never text the client chose.
LABELS = {*TOOLS, *KNOWN_METHODS, "unknown", "http", "response"}
UNKNOWN_NAMES = ["", "Search", "search ", "tools/call", "jane.doe@example.com", "💥", "a" * 300, "../x"]
ARGUMENT_NAMES = [
    "query",
    "question",
    "k",
    "max_tokens",
    "collections",
    "collection",
    "version",
    "cursor",
    "chunk_id",
    "neighbors",
    "path_prefix",
    "source",
    "section",
]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
SENSIBLE = [
    ("search", '{"query": "themes and templates", "k": 2}'),
    ("list_collections", "{}"),
    ("fetch_chunk", '{"chunk_id": "' + "0" * 32 + '"}'),
    ("read_page", '{"source": "index.md", "max_tokens": 300}'),
]


class Fuzz:
    """Seeded tools/call bodies, written as JSON text so they can hold what strict JSON cannot."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def text(self) -> str:
        rng = self.rng
        pick = rng.randrange(6)
        if pick == 0:
            return rng.choice(["", " ", "themes", "lumen", "0" * 32, "../../etc/passwd", "\x00", "%2e%2e"])
        if pick == 1:
            return "x" * rng.choice([1_000, 20_000, 60_000])
        if pick == 2:
            return "".join(
                chr(rng.choice([rng.randint(0x80, 0x7FF), rng.randint(0x10000, 0x10FFFF)])) for _ in range(40)
            )
        if pick == 3:
            return "docgate://lumen/" + "/".join(
                rng.choice(["latest", "..", "%00", "index.md"]) for _ in range(3)
            )
        return "".join(chr(rng.randint(32, 126)) for _ in range(rng.randint(1, 80)))

    def value(self, depth: int = 0) -> str:
        rng = self.rng
        pick = rng.randrange(11 if depth < 4 else 8)
        if pick == 0:
            return rng.choice(NON_FINITE)
        if pick == 1:
            return str(rng.choice([0, -1, 2, 10**6, -(10**30), 10**30]))
        if pick == 2:
            return rng.choice(["9" * 5000, "1e-999", "-0", "0.5", "1E400", str(rng.uniform(-1e9, 1e9))])
        if pick == 3:
            return rng.choice(["true", "false", "null"])
        if pick in (4, 5):
            return json.dumps(self.text(), ensure_ascii=rng.random() < 0.5)
        if pick == 6:
            return rng.choice(['"\\ud800"', '"\\udfff x"', '"a\\u0000b"'])  # lone surrogates, NUL
        if pick == 7:
            return json.dumps(rng.choice(["lumen", "latest", "2.x", "*"]))
        if pick in (8, 9):
            return "[" + ", ".join(self.value(depth + 1) for _ in range(rng.randint(0, 4))) + "]"
        return self.object(depth + 1)

    def object(self, depth: int = 0) -> str:
        names = [
            self.rng.choice(ARGUMENT_NAMES) if self.rng.random() < 0.8 else self.text()
            for _ in range(self.rng.randint(0, 4))
        ]
        return "{" + ", ".join(f"{json.dumps(n)}: {self.value(depth)}" for n in names) + "}"

    def call(self, request_id: int) -> bytes:
        rng = self.rng
        if rng.random() < 0.08:
            name, arguments = rng.choice(SENSIBLE)
            params = f'{{"name": {json.dumps(name)}, "arguments": {arguments}}}'
        else:
            pick = rng.random()
            if pick < 0.7:
                name_json = json.dumps(rng.choice(TOOLS))
            elif pick < 0.9:
                name_json = json.dumps(rng.choice(UNKNOWN_NAMES))
            else:
                name_json = self.value()
            shape = rng.random()
            if shape < 0.75:
                arguments = self.object()
            elif shape < 0.9:
                arguments = self.value()
            else:
                arguments = None
            params = f'{{"name": {name_json}' + (f', "arguments": {arguments}}}' if arguments else "}")
        return (
            f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/call", "params": {params}}}'.encode()
        )


@dataclass
class Sent:
    what: str
    status: int


class Client:
    """Raw HTTP on one MCP session: one request at a time, each answer read to its end."""

    def __init__(self, deployment: Deployment) -> None:
        self.url = deployment.url
        self.http = httpx.Client(timeout=60)
        self.auth = {"Authorization": f"Bearer {deployment.keys['acme']}"}
        self.sent: list[Sent] = []
        opened = self.post("initialize", json.dumps(INITIALIZE).encode(), {**JSON_RPC_HEADERS, **self.auth})
        self.session = {
            **JSON_RPC_HEADERS,
            **self.auth,
            "mcp-protocol-version": "2025-06-18",
            "mcp-session-id": opened.headers["mcp-session-id"],
        }
        initialized = b'{"jsonrpc": "2.0", "method": "notifications/initialized"}'
        self.post("notifications/initialized", initialized, self.session)

    def post(self, what: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        return self.request("POST", what, body, headers)

    def request(self, method: str, what: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        response = self.http.request(method, self.url, content=body, headers=headers)
        self.sent.append(Sent(what, response.status_code))
        assert response.status_code < 500, (what, response.status_code, response.text[:300])
        assert "Traceback" not in response.text, what
        return response

    def close(self) -> None:
        self.request("DELETE", "close the session", None, self.session)
        self.http.close()


def malformed(client: Client) -> Iterator[tuple[str, str, Any, dict[str, str]]]:
    """(HTTP method, what, body, headers) for requests the transport or the server must refuse."""
    session = client.session
    without = {k: v for k, v in session.items() if k != "mcp-session-id"}
    ping = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
    bodies = [
        ("truncated JSON", b'{"jsonrpc": "2.0", "id": 1,'),
        ("not JSON", b"not json at all"),
        ("empty body", b""),
        ("not UTF-8", b"\xff\xfe\x00{}"),
        ("nesting past any parser", b"[" * 60_000),
        ("a string", b'"tools/list"'),
        ("an empty batch", b"[]"),
        ("a batch", b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]'),
        ("JSON-RPC 1.0", b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}'),
        ("no jsonrpc member", b'{"id": 1, "method": "ping"}'),
        ("a numeric method", b'{"jsonrpc": "2.0", "id": 1, "method": 5}'),
        ("an object id", b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}'),
        ("an unknown method", b'{"jsonrpc": "2.0", "id": 1, "method": "jane.doe@example.com"}'),
        ("positional params", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1, 2]}'),
        ("a response to nothing", b'{"jsonrpc": "2.0", "id": 424242, "result": {}}'),
        (
            "a tools/call notification",
            b'{"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "search"}}',
        ),
        (
            "a cancel of nothing",
            b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}',
        ),
        ("a second initialize", json.dumps(INITIALIZE).encode()),
        ("NaN in params", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": NaN}}'),
    ]
    for what, body in bodies:
        yield "POST", what, body, session
    yield "POST", "Content-Type text/plain", ping, {**session, "Content-Type": "text/plain"}
    yield "POST", "form Content-Type", ping, {**session, "Content-Type": "application/x-www-form-urlencoded"}
    yield "POST", "Accept text/html", ping, {**session, "Accept": "text/html"}
    yield "POST", "Accept JSON only", ping, {**session, "Accept": "application/json"}
    oversized = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "' + b"x" * 300_000 + b'"}}'
    yield "POST", "an oversized body", oversized, session
    yield "POST", "an oversized chunked body", iter([b"x" * 65_536] * 5), session
    yield "POST", "an unknown session", ping, {**session, "mcp-session-id": "deadbeef" * 4}
    yield "POST", "a huge session id", ping, {**session, "mcp-session-id": "a" * 5000}
    yield "POST", "no session", ping, without
    yield "POST", "an unknown protocol version", ping, {**session, "mcp-protocol-version": "1999-01-01"}
    yield "GET", "a stream without text/event-stream", None, {**session, "Accept": "application/json"}
    yield "GET", "a stream of an unknown session", None, {**session, "mcp-session-id": "0" * 32}
    yield "DELETE", "an unknown session", None, {**session, "mcp-session-id": "0" * 32}
    yield "DELETE", "no session", None, without
    for method in ("PUT", "PATCH", "OPTIONS"):
        yield method, f"method {method}", ping, session


def audit_lines(deployment: Deployment) -> list[dict[str, Any]]:
    return [json.loads(line) for line in deployment.audit.read_text(encoding="utf-8").splitlines()]


def server_log_since(deployment: Deployment, offset: int) -> str:
    with deployment.server_log.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


def test_every_fuzzed_call_and_malformed_request_leaves_exactly_one_record(deployment: Deployment) -> None:
    started = time.perf_counter()
    log_start = deployment.server_log.stat().st_size
    before = len(audit_lines(deployment))
    client = Client(deployment)
    fuzz = Fuzz(seed=20240607)
    for i in range(TOOL_CALLS):
        client.post("tools/call", fuzz.call(100 + i), client.session)
    cases = list(malformed(client))
    for i in range(MALFORMED):
        method, what, body, headers = cases[i % len(cases)]
        client.request(method, what, body, headers)
    client.close()
    elapsed = time.perf_counter() - started

    records = audit_lines(deployment)[before:]
    statuses = Counter(s.status for s in client.sent)
    print(
        json.dumps(
            {
                "requests": len(client.sent),
                "records": len(records),
                "seconds": round(elapsed, 1),
                "statuses": statuses,
                "error_codes": Counter(r["error_code"] for r in records),
            }
        )
    )
    assert len(client.sent) == 2 + TOOL_CALLS + MALFORMED + 1
    assert len(records) == len(client.sent)
    # One request at a time, each record written before its answer ended: the log is in step.
    for sent, record in zip(client.sent, records, strict=True):
        assert record["tool"] in LABELS, (sent.what, record["tool"])
        assert (record["tenant"], record["client"], record["count"]) == ("acme", "127.0.0.1", 1), sent.what
        if sent.status >= 400:
            assert record["error_code"] == f"http_{sent.status}", (sent.what, record)
    unknown = next(r for s, r in zip(client.sent, records, strict=True) if s.what == "an unknown method")
    assert (unknown["tool"], unknown["outcome"], unknown["error_code"]) == (
        "unknown",
        "error",
        "jsonrpc_-32601",
    )
    assert all(s.status < 500 for s in client.sent)
    # A call the gateway took is recorded under its tool's name (or `unknown`), one the transport
    # refused (a lone surrogate, an integer past the parser's range) as the method it tried, or as
    # `http` when its body was too large (413) to be read at all.
    calls = list(zip(client.sent[2 : 2 + TOOL_CALLS], records[2 : 2 + TOOL_CALLS], strict=True))
    for sent, record in calls:
        expected = {200: {*TOOLS, "unknown"}, 400: {"tools/call"}, 413: {"http"}}[sent.status]
        assert record["tool"] in expected, (sent, record)
    assert sum(1 for s, _ in calls if s.status == 200) > TOOL_CALLS // 2
    assert "jane.doe" not in deployment.audit.read_text(encoding="utf-8")
    server_log = server_log_since(deployment, log_start)
    assert "Traceback" not in server_log and "Exception in ASGI application" not in server_log
    assert verify(deployment.audit, VerifyKeys.load(deployment.key_dir)).ok


def raw_search(client: Client, host: str, port: int, ident: int) -> bytes:
    """A whole HTTP request: tools/call search on the client's session, with JSON-RPC id `ident`."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": ident,
            "method": "tools/call",
            "params": {"name": "search", "arguments": {"query": "themes"}},
        }
    ).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {**client.session, "Content-Length": str(len(body))}.items())
    return f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n{head}\r\n".encode() + body


def test_a_request_id_in_use_on_the_session_is_refused_and_recorded(deployment: Deployment) -> None:
    # The transport keys each answer by its request id: a second request with the id of one still
    # being answered would take the first's answer over (the first then got a 500 for nothing).
    before = len(audit_lines(deployment))
    client = Client(deployment)
    host, port = "127.0.0.1", deployment.port
    raw = raw_search(client, host, port, 7)
    sockets = [socket.create_connection((host, port)) for _ in range(6)]
    for sock in sockets:
        sock.settimeout(30)  # a request whose answer was taken over would never be answered
        sock.sendall(raw)
    replies = []
    for sock in sockets:
        with sock:
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            replies.append(b"".join(chunks).decode())
    client.close()
    statuses = [int(reply.split(" ", 2)[1]) for reply in replies]
    assert set(statuses) <= {200, 409}, statuses
    assert 200 in statuses and 409 in statuses, statuses
    for reply, status in zip(replies, statuses, strict=True):
        body = json.loads(reply.split("\r\n\r\n", 1)[1])
        if status == 409:
            assert body["id"] == 7 and "request id 7 is in use" in body["error"]["message"]
        else:
            assert body["id"] == 7 and body["result"]["structuredContent"]["hits"]
    expected = len(client.sent) + len(sockets)
    deadline = time.monotonic() + 20
    while len(audit_lines(deployment)) - before < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    records = audit_lines(deployment)[before:]
    assert len(records) == expected
    refused = [r for r in records if r["reason"] == "duplicate_request_id"]
    assert len(refused) == statuses.count(409)
    assert all((r["decision"], r["outcome"], r["tool"]) == ("deny", "denied", "tools/call") for r in refused)
    assert sum(1 for r in records if r["tool"] == "search") == statuses.count(200)


def test_a_client_leaving_mid_call_still_leaves_exactly_one_record(deployment: Deployment) -> None:
    # However early the client hangs up (right after sending, or once the answer started), the
    # request has one record: the gateway's when its call started, else the edge's.
    log_start = deployment.server_log.stat().st_size
    before = len(audit_lines(deployment))
    client = Client(deployment)
    host, port = "127.0.0.1", deployment.port
    hang_ups = 20
    for i in range(hang_ups):
        with socket.create_connection((host, port)) as sock:
            # Each with its own id, as a client's requests have (a reused id is refused: below).
            sock.sendall(raw_search(client, host, port, 100 + i))
            if i % 2:
                sock.recv(1)  # the answer has started
            time.sleep(0.003 * (i % 5))
    client.close()
    expected = len(client.sent) + hang_ups
    deadline = time.monotonic() + 20
    while len(audit_lines(deployment)) - before < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # nothing more arrives late
    records = audit_lines(deployment)[before:]
    outcomes = Counter((r["tool"], r["error_code"]) for r in records)
    print(json.dumps({f"{tool} {code}": n for (tool, code), n in outcomes.items()}))
    assert len(records) == expected, outcomes
    assert outcomes[("initialize", None)] == outcomes[("notifications/initialized", None)] == 1
    left = [r for r in records if r["tool"] not in ("initialize", "notifications/initialized")]
    assert len(left) == hang_ups + 1  # and the DELETE that closed the session
    # A call that ran is the gateway's record; one whose client left first, the edge's (`http`
    # when the request was dropped before its body was read).
    assert all(r["tool"] in ("search", "tools/call", "http") for r in left), left
    assert all(r["error_code"] in (None, "cancelled", "client_closed") for r in left), left
    assert "Traceback" not in server_log_since(deployment, log_start)


def test_a_flood_without_a_key_leaves_one_record_at_once_and_one_count_per_interval(
    tmp_path: Path, lumen_data_dir: Path
) -> None:
    interval = 2.0
    flood = 300
    with deployed(tmp_path, lumen_data_dir, DOCGATE_AUDIT__UNAUTHENTICATED_INTERVAL_S=str(interval)) as dep:
        transport = httpx.HTTPTransport(local_address="127.0.0.7")

        def refused() -> list[dict[str, Any]]:
            return [r for r in audit_lines(dep) if r["client"] == "127.0.0.7"]

        with httpx.Client(transport=transport, timeout=30) as attacker:
            started = time.monotonic()
            for _ in range(flood):
                response = attacker.post(dep.url, content=json.dumps(INITIALIZE), headers=JSON_RPC_HEADERS)
                assert response.status_code == 401
            elapsed = time.monotonic() - started
            assert refused()[0]["count"] == 1  # the flood shows when it begins
            time.sleep(interval + 1.5)  # the interval is over: its count is written while serving
            intervals = math.ceil(elapsed / interval) + 1
            assert sum(r["count"] for r in refused()) == flood
            assert len(refused()) <= 2 * intervals
            for _ in range(10):
                attacker.post(dep.url, content=b"{}", headers=JSON_RPC_HEADERS)
    records = refused()  # the server stopped: what it was still counting is written
    assert sum(r["count"] for r in records) == flood + 10
    assert all(
        (r["tenant"], r["decision"], r["reason"], r["error_code"])
        == ("-", "deny", "unauthenticated", "http_401")
        for r in records
    )
    assert verify(dep.audit, VerifyKeys.load(dep.key_dir)).ok
