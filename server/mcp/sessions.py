"""Open MCP sessions per tenant over streamable HTTP: a bound on how many, and whose they are.

The SDK caps sessions for the whole server and reaps idle ones; it knows nothing of tenants. This
book records which tenant opened each session (from the `mcp-session-id` response header), so
that one tenant cannot hold every slot, and a session id is only ever usable by the tenant that
opened it. Entries idle longer than the idle timeout are forgotten, as the SDK reaps the sessions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    tenant: str
    last_seen: float


class SessionBook:
    def __init__(
        self, max_per_tenant: int, idle_timeout_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_per_tenant = max_per_tenant
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Entry] = {}

    def _prune(self, now: float) -> None:
        stale = [sid for sid, e in self._sessions.items() if now - e.last_seen > self.idle_timeout_s]
        for sid in stale:
            del self._sessions[sid]

    def may_open(self, tenant: str) -> bool:
        """Whether `tenant` may open one more session now."""
        with self._lock:
            self._prune(self._clock())
            return sum(1 for e in self._sessions.values() if e.tenant == tenant) < self.max_per_tenant

    def opened(self, session_id: str, tenant: str) -> None:
        with self._lock:
            self._sessions[session_id] = _Entry(tenant, self._clock())

    def owner_ok(self, session_id: str, tenant: str) -> bool:
        """A request naming `session_id`: True when `tenant` owns it (refreshing its idle time) or
        the book does not know it (the SDK then answers an unknown session as it does)."""
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is None:
                return True
            if entry.tenant != tenant:
                return False
            entry.last_seen = self._clock()
            return True

    def closed(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def count(self, tenant: str) -> int:
        with self._lock:
            self._prune(self._clock())
            return sum(1 for e in self._sessions.values() if e.tenant == tenant)
