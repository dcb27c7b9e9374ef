"""Repeated records of one kind from one client address, folded into one per interval.

Anyone who can reach the port can send requests without a valid key, as fast as the network
allows; writing (and fsyncing) one audit record for each would let them fill the disk. So records
of such requests go through a `RepeatTally`: the first of a kind from an address in an interval
is written at once (an operator sees a flood begin when it begins), later ones are only counted,
and the count is written as one record (`count` = how many) when the interval is over, or at
shutdown. Per (address, kind) and interval that is at most two records, however long the flood.

At most `max_clients` keys are tracked per interval; past that, new addresses share one entry
(client "*"), so a flood from many addresses is bounded too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import structlog

from server.security.audit import AuditError, AuditEvent, AuditLog

log = structlog.get_logger()
OVERFLOW_CLIENT = "*"


@dataclass
class _Window:
    started: float
    latest: AuditEvent  # what the folded record says, besides its count
    unwritten: int = 0


class RepeatTally:
    def __init__(
        self,
        audit: AuditLog,
        interval_s: float,
        *,
        max_clients: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.interval_s = interval_s
        self.max_clients = max_clients
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    async def add(self, kind: str, event: AuditEvent) -> None:
        """Record `event` (of `kind`, from `event.client`): written now if it opens an interval."""
        now = self._clock()
        key = (event.client or "-", kind)
        if key not in self._windows and len(self._windows) >= self.max_clients:
            key = (OVERFLOW_CLIENT, kind)
            event = event.model_copy(update={"client": OVERFLOW_CLIENT})
        window = self._windows.get(key)
        if window is not None and now - window.started < self.interval_s:
            window.unwritten += 1
            window.latest = event
            return
        self._windows[key] = _Window(started=now, latest=event)
        if window is not None:
            await self._write_folded(window)
        await self._write(event)

    async def flush(self, *, everything: bool = False) -> None:
        """Write the counts of the intervals that are over (all of them at shutdown)."""
        now = self._clock()
        ended = [
            key
            for key, window in self._windows.items()
            if everything or now - window.started >= self.interval_s
        ]
        for key in ended:
            window = self._windows.pop(key)  # before the await: an add meanwhile opens a new interval
            await self._write_folded(window)

    async def run(self) -> None:
        """Flush ended intervals until cancelled (the server's lifespan runs this)."""
        tick = min(self.interval_s, 1.0)
        while True:
            await anyio.sleep(tick)
            await self.flush()

    def pending(self) -> int:
        """Requests counted but not yet written."""
        return sum(window.unwritten for window in self._windows.values())

    async def _write_folded(self, window: _Window) -> None:
        if window.unwritten:
            await self._write(
                window.latest.model_copy(update={"request_id": uuid.uuid4().hex, "count": window.unwritten})
            )

    async def _write(self, event: AuditEvent) -> None:
        # Shielded: a request cancelled mid-write (its client left) must not lose the record.
        with anyio.CancelScope(shield=True):
            try:
                await self.audit.append(event)
            except (AuditError, OSError) as error:  # the request was answered already: say so loudly
                log.error("audit_write_failed", error=str(error), count=event.count)
