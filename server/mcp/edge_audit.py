"""The audit record the HTTP edge writes for a request that no tool call recorded.

`EdgeGuard` keeps an `Exchange` per request: what it decided (tenant, its own refusal), what the
request carried (HTTP method, a digest of the body, the JSON-RPC method when it is one MCP
defines) and how it was answered (status, a JSON-RPC error in the reply). From these `event()`
builds the one record. Its `tool` is never client text: a method name MCP defines, `unknown` for
any other JSON-RPC method, `response` for a client's answer to the server, `http` for a request
that carries no JSON-RPC message (a GET stream, a DELETE, an unparsable body).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp.types.methods import SPEC_CLIENT_METHODS, SPEC_CLIENT_NOTIFICATION_METHODS
from starlette.types import Message, Receive

from server.security.audit import AuditEvent, args_digest

KNOWN_METHODS = SPEC_CLIENT_METHODS | SPEC_CLIENT_NOTIFICATION_METHODS
HTTP_LABEL = "http"
RESPONSE_LABEL = "response"
UNKNOWN_METHOD = "unknown"
# Request bodies past this are refused (413) by the transport, so a longer head is never needed.
MAX_BODY = 256 * 1024
# Enough of a reply to read the JSON-RPC error of an answer the edge records (never a tool result).
_REPLY_HEAD = 64 * 1024

Verdict = tuple[Literal["allow", "deny"], str | None, Literal["ok", "error", "denied"], str | None]


@dataclass
class Exchange:
    """One HTTP request as the edge saw it, for its audit record."""

    method: str
    path: str
    client: str
    on_mcp_path: bool
    tenant: str = "-"
    key_id: str | None = None
    status: int | None = None
    denial: str | None = None  # the edge's own refusal reason (it answered itself)
    failure: Literal["internal", "cancelled"] | None = None
    recorded: bool = False
    _body_sha: Any = field(default_factory=hashlib.sha256)
    _body_head: bytearray = field(default_factory=bytearray)
    _body_size: int = 0
    _reply_head: bytearray = field(default_factory=bytearray)

    def receiving(self, receive: Receive) -> Receive:
        """`receive` that also digests the request body (and keeps its head for the label)."""

        async def watched() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = bytes(message.get("body", b""))
                self._body_sha.update(chunk)
                self._body_size += len(chunk)
                if len(self._body_head) < MAX_BODY:
                    self._body_head += chunk[: MAX_BODY - len(self._body_head)]
            return message

        return watched

    def saw(self, message: Message) -> None:
        """Note what the response says (called for each message sent)."""
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body" and len(self._reply_head) < _REPLY_HEAD:
            self._reply_head += bytes(message.get("body", b""))[: _REPLY_HEAD - len(self._reply_head)]

    def tally_kind(self) -> str | None:
        """For a request from nobody identified (no valid key, refused before the key was looked
        at, or off the MCP path): what its record is folded with per address (`RepeatTally`).
        None for a tenant's request: written one record per request."""
        if self.tenant != "-":
            return None
        if not self.on_mcp_path:
            return f"off_path_{self.status}"
        _, reason, _, error_code = self._verdict()
        return reason or error_code or "ok"

    def event(self) -> AuditEvent:
        decision, reason, outcome, error_code = self._verdict()
        return AuditEvent(
            request_id=uuid.uuid4().hex,
            tenant=self.tenant,
            key_id=self.key_id,
            transport="http",
            tool=self.label(),
            args_sha256=args_digest(
                {"method": self.method, "path": self.path, "body_sha256": self._body_sha.hexdigest()}
            ),
            decision=decision,
            reason=reason,
            outcome=outcome,
            error_code=error_code,
            client=self.client,
        )

    def label(self) -> str:
        if self.method != "POST" or not self.on_mcp_path or self._body_size > len(self._body_head):
            return HTTP_LABEL
        message = _json(bytes(self._body_head), integers=False)
        if not isinstance(message, dict):
            return HTTP_LABEL
        method = message.get("method")
        if method is None:
            return RESPONSE_LABEL if "result" in message or "error" in message else HTTP_LABEL
        return method if isinstance(method, str) and method in KNOWN_METHODS else UNKNOWN_METHOD

    def rpc_request_id(self) -> str | None:
        """The JSON-RPC id of the request in the body, in its JSON form (`5` and `"5"` differ), or
        None for a notification, a response, a batch or a body that is no JSON-RPC request."""
        if self.method != "POST" or self._body_size > len(self._body_head):
            return None
        message = _json(bytes(self._body_head))
        if not isinstance(message, dict) or "method" not in message:
            return None
        ident = message.get("id")
        if type(ident) is not int and not isinstance(ident, str):
            return None
        return json.dumps(ident)

    def _verdict(self) -> Verdict:
        code = self.status
        if self.denial is not None:
            return "deny", self.denial, "denied", f"http_{code}"
        if code == 401 or (code == 400 and self.tenant == "-" and self.on_mcp_path):
            return "deny", "unauthenticated" if code == 401 else "bad_request", "denied", f"http_{code}"
        if code in (403, 421):  # the SDK's own Host/Origin check, behind ours
            return "deny", "host_or_origin_rejected", "denied", f"http_{code}"
        if self.failure == "internal" or (self.failure is not None and code is None):
            return "allow", None, "error", self.failure
        if code is None:  # the inner app ended without answering: the client had left
            return "allow", None, "error", "client_closed"
        if code >= 400:
            return "allow", None, "error", f"http_{code}"
        rpc = self._rpc_error()
        return ("allow", None, "error", rpc) if rpc is not None else ("allow", None, "ok", None)

    def _rpc_error(self) -> str | None:
        """`jsonrpc_<code>` when the reply (JSON, or the first answer on an SSE stream) is an error."""
        head = bytes(self._reply_head)
        if head.lstrip().startswith(b"{"):
            candidates = [head]
        else:
            candidates = [line[5:] for line in head.splitlines() if line.startswith(b"data:")]
        for raw in candidates:
            message = _json(raw)
            if not isinstance(message, dict) or ("result" not in message and "error" not in message):
                continue
            error = message.get("error")
            if not isinstance(error, dict):
                return None
            code = error.get("code")
            return f"jsonrpc_{code}" if type(code) is int and abs(code) < 10**6 else "jsonrpc_error"
        return None


def _json(raw: bytes, *, integers: bool = True) -> Any:
    try:
        # A request's integers are not needed, only its shape: skipping them spares int()'s digit
        # limit (a 5000-digit id would make the body look like no JSON at all) and its cost.
        return json.loads(raw) if integers else json.loads(raw, parse_int=_no_int)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested past the parser's depth
        return None


def _no_int(digits: str) -> int:
    return 0
