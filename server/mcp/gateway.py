"""Thin MCP tool handlers: validate → identify → limit → call the core → audit → shape.

Every call, allowed, refused, failed or cancelled, leaves exactly one audit record and one trace
event; over HTTP the gateway claims the request's record from the edge when the call starts
(`server.mcp.request_audit`), so the edge does not write a second one. Anticipated
failures become MCP tool errors with an actionable message; anything else is logged with its
traceback and reaches the client only as "internal error" plus a request id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
import structlog
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from indexer.errors import IndexerError
from server.errors import BudgetExhausted, LimitsUnavailable, RateLimited, ServiceError
from server.mcp.call_guard import ABANDONED, mark_audited
from server.mcp.request_audit import claim_for_gateway, client_address
from server.observability import otel
from server.retrieval.service import Access, DocService
from server.security.audit import AuditEvent, AuditLog, args_digest
from server.security.guards import InvalidArgument
from server.security.limits import RateLimiter, TokenBudget, reservation_tokens
from server.security.registry import Principal, TenantRegistry
from server.security.tenants import UnknownTenant

log = structlog.get_logger()
T = TypeVar("T", bound=BaseModel)
UNKNOWN_TOOL = "unknown"  # what the audit log and traces record for a name no tool has


@dataclass
class CallRecord:
    """What a core call reports back for the audit record and the trace."""

    chunk_ids: list[str] = field(default_factory=list)
    generations: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    # Size of the result in tokens when the core already measured it (else the gateway counts it).
    tokens_out: int | None = None
    trace: dict[str, Any] = field(default_factory=dict)
    denied_reason: str | None = None
    request_id: str = ""


class Gateway:
    """The per-call pipeline shared by every tool."""

    def __init__(
        self,
        service: DocService,
        registry: TenantRegistry,
        audit: AuditLog,
        limiter: RateLimiter,
        budget: TokenBudget,
        transport: Literal["stdio", "http"],
        stdio_tenant: str,
    ) -> None:
        self.service = service
        self.registry = registry
        self.audit = audit
        self.limiter = limiter
        self.budget = budget
        self.transport = transport
        self.stdio_tenant = stdio_tenant
        self._list_tools: Callable[[], Awaitable[list[Any]]] | None = None
        self._schemas: dict[str, dict[str, Any]] | None = None

    def use_tool_schemas(self, list_tools: Callable[[], Awaitable[list[Any]]]) -> None:
        """Where the published tools come from (`MCPServer.list_tools`): their names are the only
        ones ever logged, and their input schemas are enforced strictly before any handler runs."""
        self._list_tools = list_tools
        self._schemas = None

    async def tool_schemas(self) -> dict[str, dict[str, Any]]:
        if self._schemas is None:
            tools = await self._list_tools() if self._list_tools is not None else []
            self._schemas = {tool.name: dict(tool.input_schema) for tool in tools}
        return self._schemas

    async def known_tool(self, name: object) -> str:
        """The tool name fit for a log: a published tool's name, else `unknown` (never client text)."""
        return name if isinstance(name, str) and name in await self.tool_schemas() else UNKNOWN_TOOL

    def principal(self) -> Principal:
        """Who is calling. Never derived from tool arguments."""
        if self.transport == "stdio":
            return Principal(tenant=self.stdio_tenant, key_id=None, transport="stdio")
        token = get_access_token()
        if token is None:
            if self.registry.single_user:
                return Principal(tenant=self.stdio_tenant, key_id=None, transport="http")
            # The bearer middleware rejects unauthenticated requests before they get here.
            raise ToolError("authentication required")
        claims = token.claims or {}
        return Principal(tenant=token.client_id, key_id=claims.get("key_id"), transport="http")

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        core: Callable[[Access, CallRecord], T],
        *,
        admission: bool = True,
    ) -> T:
        """Run a synchronous core in a worker thread (retrieval and embedding block)."""

        async def in_thread(access: Access, record: CallRecord) -> T:
            return await anyio.to_thread.run_sync(core, access, record)

        return await self.call_async(tool, arguments, in_thread, admission=admission)

    async def call_async(
        self,
        tool: str,
        arguments: dict[str, Any],
        core: Callable[[Access, CallRecord], Awaitable[T]],
        *,
        admission: bool = True,
    ) -> T:
        """Run an async core (one that awaits remote models or the client) on the event loop.

        Every log line of the call, from any module and worker thread, carries its trace_id, tenant
        and tool: they are bound as structlog context variables for the call's duration."""
        request_id = uuid.uuid4().hex
        principal = self.principal()
        if not claim_for_gateway():  # the edge recorded the request already: its client left
            raise ToolError(ABANDONED)
        with structlog.contextvars.bound_contextvars(trace_id=request_id, tenant=principal.tenant, tool=tool):
            return await self._call(request_id, principal, tool, arguments, core, admission=admission)

    async def _call(
        self,
        request_id: str,
        principal: Principal,
        tool: str,
        arguments: dict[str, Any],
        core: Callable[[Access, CallRecord], Awaitable[T]],
        *,
        admission: bool,
    ) -> T:
        started = time.perf_counter()
        record = CallRecord(request_id=request_id)
        event: dict[str, Any] = {
            "request_id": request_id,
            "tenant": principal.tenant,
            "key_id": principal.key_id,
            "transport": principal.transport,
            "tool": tool,
            "args_sha256": args_digest(arguments),
            "client": client_address(),
        }
        tenant: Any = None
        hold: int | None = None  # the budget reservation until it is settled or released
        try:
            await self.registry.refresh_async()  # so the lookup below never reads files on the loop
            try:
                tenant = self.registry.tenant(principal.tenant)
            except UnknownTenant as error:
                raise ToolError(f"tenant {principal.tenant!r} is not configured on this server") from error
            if admission:
                hold = await self._admit(tenant, arguments, rate_limit=self.transport == "stdio")
            access = Access(tenant=tenant.name, allowed=tenant.may_read)
            result = await core(access, record)
            tokens_out = record.tokens_out if record.tokens_out is not None else self.service.tokens(result)
            # Charged (fsynced) before the result leaves: a crash after this cannot refund it. A
            # tenant without a budget has nothing to charge (`settle` would return at once).
            if hold is not None or tenant.daily_token_budget is not None:
                await anyio.to_thread.run_sync(
                    self.budget.settle, tenant, hold, record.tokens_in + tokens_out
                )
            hold = None
        # IndexerError too: its messages are one actionable line (e.g. a remote embedding API down).
        except (InvalidArgument, ServiceError, ToolError, IndexerError) as error:
            code = getattr(
                error, "code", "invalid_argument" if isinstance(error, InvalidArgument) else "error"
            )
            denied = isinstance(error, RateLimited | BudgetExhausted) or record.denied_reason is not None
            await self._audit(
                event,
                record,
                started,
                decision="deny" if denied else "allow",
                reason=record.denied_reason or (code if denied else None),
                outcome="denied" if denied else "error",
                error_code=code,
            )
            _trace(log, event, outcome="error", error_code=code, latency_ms=_ms(started), **record.trace)
            if isinstance(error, ToolError):
                raise
            raise ToolError(_with_retry(str(error), getattr(error, "retry_after", None))) from error
        except Exception as error:
            log.exception("tool_call_failed", latency_ms=_ms(started))
            await self._audit(
                event, record, started, decision="allow", reason=None, outcome="error", error_code="internal"
            )
            raise ToolError(f"internal error while running {tool}; request id {request_id}") from error
        except anyio.get_cancelled_exc_class():
            # The client cancelled the call, closed its session, or the server is stopping: the
            # call returns nothing, and is still audited.
            await self._audit(
                event, record, started, decision="allow", reason=None, outcome="error", error_code="cancelled"
            )
            _trace(log, event, outcome="error", error_code="cancelled", latency_ms=_ms(started))
            raise
        finally:
            if hold is not None:  # the call failed or was cancelled: it returned nothing
                await self._release(tenant, hold)
        await self._audit(
            event,
            record,
            started,
            decision="allow",
            reason=None,
            outcome="ok",
            error_code=None,
            tokens_out=tokens_out,
        )
        _trace(
            log,
            event,
            outcome="ok",
            latency_ms=_ms(started),
            tokens_in=record.tokens_in,
            tokens_out=tokens_out,
            returned=record.chunk_ids[:50],
            generations=record.generations,
            **record.trace,
        )
        return result

    async def _admit(self, tenant: Any, arguments: dict[str, Any], *, rate_limit: bool) -> int | None:
        """Rate limit (stdio only), then hold the most this call may cost; returns the hold."""
        # Over HTTP the rate limit is enforced per request at the edge (HTTP 429 + Retry-After),
        # so a tool call is not counted twice.
        decision = await anyio.to_thread.run_sync(self.limiter.check, tenant) if rate_limit else None
        if decision is not None and not decision.allowed:
            if decision.reason == "limits_unavailable":
                raise LimitsUnavailable(
                    "the rate limit store is unavailable", retry_after=decision.retry_after_s
                )
            raise RateLimited(
                f"rate limit of {tenant.requests_per_minute} requests per minute reached for your tenant",
                retry_after=decision.retry_after_s,
            )
        if tenant.daily_token_budget is None:
            return None
        wanted = reservation_tokens(arguments, self.service.embedder.count_tokens)
        # Shielded: a call cancelled while its hold is being taken must still get the hold back to
        # release it, or the hold would block that much budget until midnight.
        with anyio.CancelScope(shield=True):
            hold = await anyio.to_thread.run_sync(self.budget.reserve, tenant, wanted)
        if not hold.allowed:
            raise BudgetExhausted(
                f"your tenant's daily token budget of {tenant.daily_token_budget} has "
                f"{hold.tokens_left} tokens left, fewer than this call may use ({wanted}: "
                "max_tokens plus the query); a smaller max_tokens may fit",
                retry_after=hold.retry_after_s,
            )
        return hold.reservation

    async def _release(self, tenant: Any, hold: int) -> None:
        # Shielded: a cancelled call must still give its hold back, or it blocks budget until midnight.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self.budget.release, tenant, hold)
            except LimitsUnavailable as error:
                log.error("budget_release_failed", reservation=hold, error=str(error))

    async def _audit(
        self,
        event: dict[str, Any],
        record: CallRecord,
        started: float,
        *,
        decision: Literal["allow", "deny"],
        reason: str | None,
        outcome: Literal["ok", "error", "denied"],
        error_code: str | None,
        tokens_out: int = 0,
    ) -> None:
        mark_audited()
        # Shielded: once a call has a result (or an error) its record is written, even when the
        # call is being cancelled meanwhile (the write would otherwise be skipped, not just cut).
        with anyio.CancelScope(shield=True):
            await self.audit.append(
                AuditEvent(
                    **event,
                    decision=decision,
                    reason=reason,
                    chunk_ids=record.chunk_ids,
                    generations=record.generations,
                    latency_ms=_ms(started),
                    tokens_in=record.tokens_in,
                    tokens_out=tokens_out,
                    outcome=outcome,
                    error_code=error_code,
                )
            )

    async def audit_rejected_call(self, params: Any, error_code: str) -> None:
        """A tools/call refused before our handler ran (unknown tool, arguments off-schema)."""
        principal = self.principal()
        params = params if isinstance(params, dict) else {}
        arguments = params.get("arguments")
        mark_audited()
        with anyio.CancelScope(shield=True):  # as in `_audit`
            tool = await self.known_tool(params.get("name"))
            await self.audit.append(
                AuditEvent(
                    request_id=uuid.uuid4().hex,
                    tenant=principal.tenant,
                    key_id=principal.key_id,
                    transport=principal.transport,
                    tool=tool,
                    args_sha256=args_digest(
                        arguments if isinstance(arguments, dict) else {"raw": repr(arguments)[:10_000]}
                    ),
                    decision="allow",
                    reason=None,
                    outcome="error",
                    error_code=error_code,
                    client=client_address(),
                )
            )
        log.info("tool_call", outcome="error", error_code=error_code, tenant=principal.tenant, tool=tool)


def _trace(logger: Any, event: dict[str, Any], **fields: Any) -> None:
    """The one trace event of a tool call: a JSON log line, and an OpenTelemetry span when enabled."""
    log.info("tool_call", **fields)
    otel.record(
        {
            "trace_id": event["request_id"],
            "tenant": event["tenant"],
            "tool": event["tool"],
            "transport": event["transport"],
            **fields,
        }
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _with_retry(message: str, retry_after: float | None) -> str:
    if retry_after is None:
        return message
    return f"{message}; retry after {max(1, round(retry_after))} seconds"
