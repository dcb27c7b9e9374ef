"""Pacing and retries: the shared request pacer, HTTP-date and Retry-After parsing, and backoff."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from datetime import UTC, datetime

from indexer.crawl.models import CrawlOptions


class Pacer:
    """Spaces request starts at least ``interval`` apart across all workers; can be pushed back."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)

    def slow_to(self, interval: float) -> None:
        """Widen the spacing, counting from the last request already made."""
        if interval > self.interval:
            self._next += interval - self.interval
            self.interval = interval

    def defer(self, seconds: float) -> None:
        # A 429/503 with Retry-After speaks for the whole site, not just for one URL.
        self._next = max(self._next, time.monotonic() + seconds)


def parse_retry_after(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    when = parse_http_date(value)
    if when is None:
        return None
    return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), cap)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (`Last-Modified`, `Retry-After`) as an aware UTC datetime; None if absent or malformed."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    # `-0000` (and obsolete zone names) parse as naive: HTTP dates are GMT by definition.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def backoff(options: CrawlOptions, attempt: int) -> float:
    # Exponential with "equal jitter": never below half the step, so retries stay spaced out.
    step = min(options.backoff_max_s, options.backoff_base_s * 2.0**attempt)
    return step / 2 + random.uniform(0, step / 2)
