"""Who writes an HTTP request's audit record, so that each request leaves exactly one.

`EdgeGuard` opens a `RequestAudit` for every request it serves and binds it to a context variable
before the SDK runs. The SDK hands each JSON-RPC message to its handler in a copy of the sending
request's context, so the gateway sees the same object. Claims are first come, first served:

- the gateway claims a request when it starts a call it audits (tools/call, resources/list,
  resources/read, completion/complete): its record is the richer one (tool, tokens, chunk ids);
- the edge claims whatever is left when the response ends, or in its `finally` when the client
  left, the request was cancelled or something failed.

A request the edge already recorded (its client went away before the call started) must not
start a call: nobody waits for the answer, and its record is written.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

Writer = Literal["edge", "gateway"]


@dataclass
class RequestAudit:
    client: str  # the peer address, for the record
    writer: Writer | None = None

    def claim(self, writer: Writer) -> bool:
        """Whether `writer` is (now) the one to write this request's record."""
        if self.writer is None:
            self.writer = writer
        return self.writer == writer


current_request: ContextVar[RequestAudit | None] = ContextVar("docgate_request_audit", default=None)


def claim_for_gateway() -> bool:
    """True when the gateway is to audit the call it is starting (always over stdio: no edge)."""
    request = current_request.get()
    return request is None or request.claim("gateway")


def client_address() -> str | None:
    """The HTTP peer of the request being served; None over stdio."""
    request = current_request.get()
    return request.client if request is not None else None
