"""Streamable HTTP serving: bearer auth, Host/Origin checks, HTTP 429 rate limits, audited denials.

Layers, outermost first:
1. `EdgeGuard` (ASGI): on the MCP path, identifies the caller from the bearer key, answers an
   over-limit tenant with HTTP 429 + Retry-After before any MCP work, and writes one audit
   record for every request that is refused (401 unauthenticated, 403 rejected Host/Origin, 429).
2. The SDK's Starlette app: `TokenVerifier` + `RequireAuthMiddleware` (401 + WWW-Authenticate),
   DNS-rebinding protection (Host/Origin allow-lists), the streamable HTTP transport.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import structlog
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.mcp.app import create_mcp_server
from server.runtime import Runtime
from server.security.audit import AuditEvent, args_digest
from server.security.tenants import TenantRegistry, UnknownTenant

log = structlog.get_logger()
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class KeyVerifier:
    """The SDK's `TokenVerifier`: a docgate API key → the tenant it belongs to."""

    def __init__(self, registry: TenantRegistry) -> None:
        self._registry = registry

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = self._registry.authenticate(token)
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


class EdgeGuard:
    def __init__(self, app: ASGIApp, runtime: Runtime, path: str) -> None:
        self.app = app
        self.runtime = runtime
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").rstrip("/") != self.path.rstrip("/"):
            await self.app(scope, receive, send)
            return
        registry = self.runtime.registry
        tenant_name, key_id = self.runtime.settings.serve.tenant, None
        authorization = _header(scope, b"authorization") or ""
        if not registry.single_user:
            bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
            principal = registry.authenticate(bearer) if bearer else None
            if principal is not None:
                tenant_name, key_id = principal.tenant, principal.key_id
            else:
                tenant_name = "-"
        if tenant_name != "-" and scope.get("method") == "POST":
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

        status: dict[str, int] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        code = status.get("code", 0)
        if code in (401, 403, 421) or (code == 400 and tenant_name == "-"):
            reason = (
                "unauthenticated"
                if code == 401
                else "host_or_origin_rejected"
                if code in (403, 421)
                else "bad_request"
            )
            await self._deny(scope, tenant_name, key_id, reason, code)

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
    )
    return EdgeGuard(app, runtime, settings.serve.path), app
