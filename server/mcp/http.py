"""Streamable HTTP serving: bearer auth, Host/Origin checks, HTTP 429 rate limits, every request audited.

Layers, outermost first:
1. `EdgeGuard` (ASGI): on the MCP path, checks Host (421) and Origin (403) by exact comparison
   of the parsed host and port, identifies the caller from the bearer key once (off the event
   loop where it is slow, throttled per address and key id: 429), answers an over-limit tenant
   with HTTP 429 + Retry-After before any MCP work (GET streams count too). It writes the audit
   record of every request that no tool call recorded (`server.mcp.edge_audit`), refused or not:
   once, before its answer ends, or in a `finally` when the client left or something failed.
2. The SDK's Starlette app: `TokenVerifier` + `RequireAuthMiddleware` (401 + WWW-Authenticate),
   its own DNS-rebinding protection, the streamable HTTP transport.
"""

from __future__ import annotations

import json
import math
from contextvars import ContextVar
from typing import Any

import anyio
import structlog
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.mcp.app import create_mcp_server
from server.mcp.edge_audit import MAX_BODY, Exchange
from server.mcp.origins import HostPolicy
from server.mcp.request_audit import RequestAudit, current_request
from server.mcp.sessions import SessionBook
from server.runtime import Runtime
from server.security.audit import AuditError
from server.security.audit_tally import RepeatTally
from server.security.registry import Principal, TenantRegistry
from server.security.tenants import UnknownTenant
from server.settings import ServerSettings

log = structlog.get_logger()
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TARPIT_S = 1.0
TARPIT_MAX_WAITERS = 1024

# The bearer and principal `EdgeGuard` established for this request, so the SDK's verifier
# (which runs further in, in the same task) does not check the key a second time.
_edge_principal: ContextVar[tuple[str, Principal | None] | None] = ContextVar(
    "docgate_edge_principal", default=None
)


class KeyVerifier:
    """The SDK's `TokenVerifier`: a docgate API key → the tenant it belongs to."""

    def __init__(self, registry: TenantRegistry) -> None:
        self._registry = registry

    async def verify_token(self, token: str) -> AccessToken | None:
        known = _edge_principal.get()
        if known is not None and known[0] == token:
            principal = known[1]  # already checked (and, when it failed, counted) at the edge
        else:
            principal = (await self._registry.authenticate_async(token)).principal
        if principal is None:
            return None
        return AccessToken(
            token=token, client_id=principal.tenant, scopes=[], claims={"key_id": principal.key_id}
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _response_header(message: Message, name: bytes) -> str | None:
    for key, value in message.get("headers", []):
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0])[:64] if client else "-"


class EdgeGuard:
    def __init__(self, app: ASGIApp, runtime: Runtime, path: str, hosts: HostPolicy | None = None) -> None:
        self.app = app
        self.runtime = runtime
        self.path = path
        self.hosts = hosts
        self._tarpitted = 0
        serve = runtime.settings.serve
        self.sessions = SessionBook(serve.max_sessions_per_tenant, serve.session_idle_timeout_s)
        self.tally = RepeatTally(runtime.audit, runtime.settings.audit.unauthenticated_interval_s)
        # (session, JSON-RPC id) of the requests being answered: the transport keys a request's
        # answer by its id, so a second request with the same id would take over the first's.
        self._in_flight: set[tuple[str, str]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        on_path = scope.get("path", "").rstrip("/") == self.path.rstrip("/")
        exchange = Exchange(
            method=str(scope.get("method", "")),
            path=str(scope.get("path", "")),
            client=_client_address(scope),
            on_mcp_path=on_path,
        )
        request = RequestAudit(client=exchange.client)
        token = current_request.set(request)
        held: Message | None = None  # the start of an answer of known length, until its body
        started = False  # whether anything went out yet

        async def sending(message: Message) -> None:
            nonlocal held, started
            exchange.saw(message)
            if message["type"] == "http.response.start" and _response_header(message, b"content-length"):
                # A client has an answer of known length once it has all of it (a 202's, once it
                # has the headers): they leave with the body, after the record is written.
                held = message
                return
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Written before the answer ends: a client that has its answer finds it audited.
                await self._record(exchange, request)
            started = True
            if held is not None:
                start, held = held, None
                await send(start)
            await send(message)

        try:
            if on_path:
                await self._serve(exchange, scope, exchange.receiving(receive), sending)
            else:
                await self.app(scope, exchange.receiving(receive), sending)
        except Exception:
            exchange.failure = "internal"
            log.exception("http_request_failed", status=exchange.status)
            if not started:  # the client gets our line, never a library's error page
                held = None
                await _respond(
                    sending,
                    500,
                    b'{"error":"internal","message":"internal error; it was logged"}',
                    [(b"content-type", b"application/json")],
                )
        except anyio.get_cancelled_exc_class():
            exchange.failure = "cancelled"
            raise
        finally:
            current_request.reset(token)
            await self._record(exchange, request)  # the client left, or the request failed

    async def _serve(self, exchange: Exchange, scope: Scope, receive: Receive, send: Send) -> None:
        """The MCP path: Host/Origin, key, throttles, limits and session ownership, then the SDK."""
        if self.hosts is not None:
            refusal = self.hosts.refusal(_header(scope, b"host"), _header(scope, b"origin"))
            if refusal is not None:
                code, reason = refusal
                exchange.denial = "host_or_origin_rejected"
                await _respond(
                    send,
                    code,
                    f'{{"error":"{reason}","message":"request refused: {reason.replace("_", " ")}"}}'.encode(),
                    [(b"content-type", b"application/json")],
                )
                return
        registry = self.runtime.registry
        tenant_name, key_id = self.runtime.settings.serve.tenant, None
        authorization = _header(scope, b"authorization") or ""
        if not registry.single_user:
            bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
            result = await registry.authenticate_async(bearer, exchange.client) if bearer else None
            if result is not None and result.retry_after_s is not None:
                await self._tarpit(result.retry_after_s)
                exchange.denial = "auth_throttled"
                await _respond(
                    send,
                    429,
                    b'{"error":"auth_throttled","message":"too many failed authentications; retry later"}',
                    [
                        (b"retry-after", str(max(1, math.ceil(result.retry_after_s))).encode()),
                        (b"content-type", b"application/json"),
                    ],
                )
                return
            principal = result.principal if result is not None else None
            _edge_principal.set((bearer, principal))
            if principal is not None:
                tenant_name, key_id = principal.tenant, principal.key_id
            else:
                tenant_name = "-"
        exchange.tenant, exchange.key_id = tenant_name, key_id
        # Every method counts: a GET opens a long-lived stream, which costs as much as a call.
        if tenant_name != "-":
            try:
                tenant = registry.tenant(tenant_name)
            except UnknownTenant:
                tenant = None
            if tenant is not None:
                # The bucket lives in SQLite, shared with other server processes: a write lock
                # held elsewhere must not stall this event loop.
                decision = await anyio.to_thread.run_sync(self.runtime.limiter.check, tenant)
                if not decision.allowed:
                    exchange.denial = "rate_limited"
                    retry = str(max(1, math.ceil(decision.retry_after_s)))
                    await _respond(
                        send,
                        429,
                        b'{"error":"rate_limited","message":"rate limit reached for your tenant; retry later"}',
                        [(b"retry-after", retry.encode()), (b"content-type", b"application/json")],
                    )
                    return

        session_id = _header(scope, b"mcp-session-id")
        session_refusal = self._session_refusal(tenant_name, session_id)
        if session_refusal is not None:
            code, reason, body = session_refusal
            exchange.denial = reason
            await _respond(send, code, body, [(b"content-type", b"application/json")])
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                opened = _response_header(message, b"mcp-session-id")
                if opened is not None and session_id is None and tenant_name != "-":
                    self.sessions.opened(opened, tenant_name)
            await send(message)

        if tenant_name != "-" and scope.get("method") == "POST":
            read_ahead = await _read_ahead(receive, MAX_BODY)
            if read_ahead is None:
                return  # the client left before its body arrived: recorded as such, nothing to run
            receive = read_ahead
        flight = None
        if session_id is not None and (ident := exchange.rpc_request_id()) is not None:
            flight = (session_id, ident)
            if flight in self._in_flight:
                exchange.denial = "duplicate_request_id"
                await _respond(
                    send, 409, _duplicate_id_error(ident), [(b"content-type", b"application/json")]
                )
                return
            self._in_flight.add(flight)
        try:
            await self.app(scope, receive, watch)
        finally:
            if flight is not None:
                self._in_flight.discard(flight)
        code = exchange.status or 0
        if session_id is not None and scope.get("method") == "DELETE" and 200 <= code < 300:
            self.sessions.closed(session_id)

    async def _record(self, exchange: Exchange, request: RequestAudit) -> None:
        """The request's one audit record, unless the gateway wrote it (a tool call) or it is
        already written. Repeats without a valid key are folded per address (`RepeatTally`)."""
        if exchange.recorded or not request.claim("edge"):
            return
        exchange.recorded = True
        event = exchange.event()
        kind = exchange.tally_kind()
        # Shielded: a request being cancelled (its client left) still leaves its record.
        with anyio.CancelScope(shield=True):
            if kind is not None:
                await self.tally.add(kind, event)
            else:
                try:
                    await self.runtime.audit.append(event)
                except (AuditError, OSError) as error:  # answered already: say so loudly instead
                    log.error("audit_write_failed", error=str(error), tool=event.tool)
        if event.decision == "deny":
            log.info("http_denied", tenant=event.tenant, reason=event.reason, status=exchange.status)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's lifespan, plus the tally: its ended intervals are written as they end, and what
        it still counts at shutdown is written before the runtime signs its last checkpoint."""

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.tally.flush(everything=True)
            return message

        async with anyio.create_task_group() as group:
            group.start_soon(self.tally.run)
            try:
                await self.app(scope, receiving, send)
            finally:
                group.cancel_scope.cancel()

    def _session_refusal(self, tenant: str, session_id: str | None) -> tuple[int, str, bytes] | None:
        """Refuse a new session over the tenant's bound, and any use of another tenant's session
        (answered like an unknown session, so ids of other tenants cannot be probed)."""
        if tenant == "-":
            return None  # unauthenticated: the SDK answers 401
        if session_id is None:
            if self.sessions.may_open(tenant):
                return None
            limit = self.sessions.max_per_tenant
            message = f"your tenant already has {limit} open sessions; close one (HTTP DELETE) or wait"
            return (
                429,
                "too_many_sessions",
                json.dumps({"error": "too_many_sessions", "message": message}).encode(),
            )
        if self.sessions.owner_ok(session_id, tenant):
            return None
        body = {"error": "session_not_found", "message": "unknown or expired session; initialize a new one"}
        return 404, "session_not_owned", json.dumps(body).encode()

    async def _tarpit(self, retry_after_s: float) -> None:
        """Hold a throttled caller's answer for up to a second (no CPU, just a timer): a client that
        retries back to back then costs the server a request a second per connection, not hundreds.
        Bounded, so a huge number of throttled connections cannot pin unbounded waiters."""
        if self._tarpitted >= TARPIT_MAX_WAITERS:
            return
        self._tarpitted += 1
        try:
            await anyio.sleep(min(TARPIT_S, retry_after_s))
        finally:
            self._tarpitted -= 1


def _duplicate_id_error(ident: str) -> bytes:
    """A JSON-RPC error for a request whose id another request of the session still uses."""
    message = f"request id {ident} is in use by a request still being answered on this session; use a new id"
    return json.dumps(
        {"jsonrpc": "2.0", "id": json.loads(ident), "error": {"code": -32600, "message": message}}
    ).encode()


async def _read_ahead(receive: Receive, limit: int) -> Receive | None:
    """`receive` with the request body read in advance (up to `limit` + 1 bytes: the transport
    answers 413 past `limit`), or None when the client disconnected before sending all of it.

    Read here because the SDK's transport, handed a disconnect instead of a body, logs a traceback
    and answers 500 to nobody: a client that hangs up early must cost one audit record, no more."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more and size <= limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] == "http.request":
            chunk = bytes(message.get("body", b""))
            chunks.append(chunk)
            size += len(chunk)
            more = bool(message.get("more_body", False))
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": more}]

    async def replaying() -> Message:
        return pending.pop() if pending else await receive()

    return replaying


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def transport_security(
    host: str, port: int, extra_hosts: list[str], extra_origins: list[str]
) -> TransportSecuritySettings:
    hosts = [f"{host}:{port}", f"{host}:*"]
    origins = [f"http://{host}:{port}", f"https://{host}:{port}"]
    if host in LOOPBACK or host in ("0.0.0.0", "::"):  # noqa: S104 - listing, not binding
        hosts += ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        origins += ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*hosts, *extra_hosts],
        allowed_origins=[*origins, *extra_origins],
    )


def json_responses(settings: ServerSettings) -> bool:
    """Whether POSTs are answered with one JSON body instead of an event stream
    (`serve.http_responses`): only the sampling answer backend sends requests mid-call."""
    mode = settings.serve.http_responses
    return mode == "json" or (mode == "auto" and settings.answer.backend != "sampling")


def create_http_app(runtime: Runtime, host: str, port: int) -> Any:
    """The ASGI app for `docgate serve --http`."""
    settings = runtime.settings
    options: dict[str, Any] = {}
    if not runtime.registry.single_user:
        base = f"http://{host}:{port}"
        options["token_verifier"] = KeyVerifier(runtime.registry)
        options["auth"] = AuthSettings(issuer_url=base, resource_server_url=f"{base}{settings.serve.path}")
    mcp, _ = create_mcp_server(runtime, "http", **options)
    app = mcp.streamable_http_app(
        streamable_http_path=settings.serve.path,
        transport_security=transport_security(
            host, port, settings.serve.allowed_hosts, settings.serve.allowed_origins
        ),
        host=host,
        max_request_body_size=MAX_BODY,
        session_idle_timeout=settings.serve.session_idle_timeout_s,
        json_response=json_responses(settings),
    )
    hosts = HostPolicy.for_server(host, port, settings.serve.allowed_hosts, settings.serve.allowed_origins)
    return EdgeGuard(app, runtime, settings.serve.path, hosts), app
