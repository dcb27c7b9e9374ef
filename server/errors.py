"""Errors a tool call can end with; each message tells the calling agent what to do next.

    ServiceError                 (code)
    ├── UnknownCollection        unknown_collection  — also for collections the tenant may not read
    │   └── UnknownVersion       unknown_version     — a version that selects nothing in scope
    ├── UnknownPage              unknown_page        — also for pages in collections the tenant may not read
    ├── UnknownChunk             unknown_chunk       — also for chunks in collections the tenant may not read
    ├── InvalidCursor            invalid_cursor
    ├── IndexUnavailable         index_unavailable   — nothing published yet, or a generation failed to open
    ├── RateLimited              rate_limited        (retry_after seconds)
    ├── BudgetExhausted          budget_exhausted    (retry_after seconds)
    └── LimitsUnavailable        limits_unavailable  — the shared usage store cannot be read or written

`guards.InvalidArgument` (code invalid_argument) covers malformed arguments. The MCP layer turns
all of them into tool errors at one place (`tools.py`); anything else is logged with its
traceback and reaches the client only as "internal error" with a request id.
"""

from __future__ import annotations


class ServiceError(Exception):
    code = "error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownCollection(ServiceError):
    code = "unknown_collection"


class UnknownVersion(UnknownCollection):
    code = "unknown_version"


class UnknownPage(ServiceError):
    code = "unknown_page"


class UnknownChunk(ServiceError):
    code = "unknown_chunk"


class InvalidCursor(ServiceError):
    code = "invalid_cursor"


class IndexUnavailable(ServiceError):
    code = "index_unavailable"


class RateLimited(ServiceError):
    code = "rate_limited"


class BudgetExhausted(ServiceError):
    code = "budget_exhausted"


class LimitsUnavailable(ServiceError):
    code = "limits_unavailable"
