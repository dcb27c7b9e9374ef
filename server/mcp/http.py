"""Streamable HTTP serving: bearer auth, Host/Origin checks, HTTP 429 rate limits, audited denials.

Layers, outermost first:
1. `EdgeGuard` (ASGI): on the MCP path, checks Host (421) and Origin (403) by exact comparison
   of the parsed host and port, identifies the caller from the bearer key once (off the event
   loop where it is slow, throttled per address and key id: 429), answers an over-limit tenant
   with HTTP 429 + Retry-After before any MCP work (GET streams count too), and writes one audit
   record for every request that is refused (401, 403, 421, 429).
2. The SDK's Starlette app: `TokenVerifier` + `RequireAuthMiddleware` (401 + WWW-Authenticate),
   its own DNS-rebinding protection, the streamable HTTP transport.
"""

from __future__ import annotations

import json
import math
import uuid
from contextvars import ContextVar
from typing import Any

import anyio
import structlog
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.mcp.app import create_mcp_server
from server.mcp.origins import HostPolicy
from server.mcp.sessions import SessionBook
from server.runtime import Runtime
from server.security.audit import AuditEvent, args_digest
from server.security.registry import Principal, TenantRegistry
from server.security.tenants import UnknownTenant

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
    return str(client[0]) if client else "-"


class EdgeGuard:
    def __init__(self, app: ASGIApp, runtime: Runtime, path: str, hosts: HostPolicy | None = None) -> None:
        self.app = app
        self.runtime = runtime
        self.path = path
        self.hosts = hosts
        self._tarpitted = 0
        serve = runtime.settings.serve
        self.sessions = SessionBook(serve.max_sessions_per_tenant, serve.session_idle_timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").rstrip("/") != self.path.rstrip("/"):
            await self.app(scope, receive, send)
            return
        if self.hosts is not None:
            refusal = self.hosts.refusal(_header(scope, b"host"), _header(scope, b"origin"))
            if refusal is not None:
                code, reason = refusal
                await self._deny(scope, "-", None, "host_or_origin_rejected", code)
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
            result = await registry.authenticate_async(bearer, _client_address(scope)) if bearer else None
            if result is not None and result.retry_after_s is not None:
                await self._tarpit(result.retry_after_s)
                await self._deny(scope, "-", None, "auth_throttled", 429)
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
        # Every method counts: a GET opens a long-lived stream, which costs as much as a call.
        if tenant_name != "-":
            try:
                tenant = registry.tenant(tenant_name)
            except UnknownTenant:
                tenant = None
            if tenant is not None:
                decision = self.runtime.limiter.check(tenant)
                if not decision.allowed:
                    await self._deny(scope, tenant_name, key_id, "rate_limited", 429)
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
            await self._deny(scope, tenant_name, key_id, reason, code)
            await _respond(send, code, body, [(b"content-type", b"application/json")])
            return

        status: dict[str, int] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                opened = _response_header(message, b"mcp-session-id")
                if opened is not None and session_id is None and tenant_name != "-":
                    self.sessions.opened(opened, tenant_name)
            await send(message)

        await self.app(scope, receive, watch)
        code = status.get("code", 0)
        if session_id is not None and scope.get("method") == "DELETE" and 200 <= code < 300:
            self.sessions.closed(session_id)
        if code in (401, 403, 421) or (code == 400 and tenant_name == "-"):
            reason = (
                "unauthenticated"
                if code == 401
                else "host_or_origin_rejected"
                if code in (403, 421)
                else "bad_request"
            )
            await self._deny(scope, tenant_name, key_id, reason, code)

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

    async def _deny(self, scope: Scope, tenant: str, key_id: str | None, reason: str, code: int) -> None:
        await self.runtime.audit.append(
            AuditEvent(
                request_id=uuid.uuid4().hex,
                tenant=tenant,
                key_id=key_id,
                transport="http",
                tool="http",
                args_sha256=args_digest({"method": scope.get("method"), "path": scope.get("path")}),
                decision="deny",
                reason=reason,
                outcome="denied",
                error_code=f"http_{code}",
            )
        )
        log.info("http_denied", tenant=tenant, reason=reason, status=code)


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
        max_request_body_size=256 * 1024,
        session_idle_timeout=settings.serve.session_idle_timeout_s,
    )
    hosts = HostPolicy.for_server(host, port, settings.serve.allowed_hosts, settings.serve.allowed_origins)
    return EdgeGuard(app, runtime, settings.serve.path, hosts), app
