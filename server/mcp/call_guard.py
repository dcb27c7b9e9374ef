"""The MCP middleware in front of every tools/call: strict argument checks before the SDK coerces
anything, and a record for every call that never reached a tool handler (unknown tool, arguments
off-schema, a malformed request, a call cancelled before it started)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError

from server.mcp.request_audit import claim_for_gateway
from server.security.guards import InvalidArgument
from server.security.validation import check_arguments

if TYPE_CHECKING:  # the gateway imports `mark_audited` from here
    from server.mcp.gateway import Gateway

INVALID_PARAMS = -32602  # JSON-RPC
ABANDONED = "the request ended before this call started; nothing was run"

# Set per tools/call by `AuditEveryCall`; the gateway marks it once it wrote the call's record.
_audit_marker: ContextVar[dict[str, bool] | None] = ContextVar("docgate_audit_marker", default=None)


class AuditEveryCall:
    """MCP middleware: checks tools/call arguments strictly against the tool's schema, and makes
    sure a call that never reached a handler still leaves an audit record."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        if not claim_for_gateway():  # the edge recorded the request already: its client left
            return CallToolResult(content=[TextContent(type="text", text=ABANDONED)], is_error=True)
        marker = {"audited": False}
        token = _audit_marker.set(marker)
        try:
            refusal = await self._refusal(ctx.params)
            if refusal is not None:
                code, message = refusal
                await self.gateway.audit_rejected_call(ctx.params, code)
                return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
            result = await call_next(ctx)
        except anyio.get_cancelled_exc_class():
            if not marker["audited"]:  # cancelled before a record was under way
                await self.gateway.audit_rejected_call(ctx.params, "cancelled")
            raise
        except Exception as error:
            if not marker["audited"]:
                await self.gateway.audit_rejected_call(ctx.params, "invalid_request")
            if isinstance(error, ValidationError):
                # The SDK's report of a malformed request quotes the input: answer in one line instead.
                raise MCPError(
                    INVALID_PARAMS, "invalid tools/call request: expected a tool name and arguments"
                ) from None
            raise
        finally:
            _audit_marker.reset(token)
        if not marker["audited"]:
            await self.gateway.audit_rejected_call(ctx.params, "invalid_arguments")
        return result

    async def _refusal(self, params: Any) -> tuple[str, str] | None:
        """(error code, one-line message) for a call to refuse before the SDK coerces anything."""
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            return None  # malformed request: the SDK answers it (and we audit it above)
        schemas = await self.gateway.tool_schemas()
        schema = schemas.get(params["name"])
        if schema is None:
            return "unknown_tool", "unknown tool; tools/list shows the tools this server offers"
        arguments = params.get("arguments")
        try:
            check_arguments(params["name"], schema, {} if arguments is None else arguments)
        except InvalidArgument as error:
            return "invalid_argument", str(error)
        return None


def mark_audited() -> None:
    """Tell `AuditEveryCall` this call's record is written (or being written): it adds none."""
    marker = _audit_marker.get()
    if marker is not None:
        marker["audited"] = True
