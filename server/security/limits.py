"""Per-tenant request rate and daily token budget.

* `RateLimiter`: a token bucket per tenant, capacity `requests_per_minute` (the burst), refilled
  continuously at rpm/60 tokens per second.
* `TokenBudget`: tokens spent per tenant per UTC day. Over budget, requests are denied until
  UTC midnight. Usage can be checkpointed to a small JSON file so a restart does not hand every
  tenant a fresh day.

Both keep state in memory for one server process, are thread-safe, and take a `clock` so tests
can move time without sleeping. Tenants without a limit (None) are never throttled.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict

from indexer.atomic import write_atomic
from server.security.tenants import Tenant

log = structlog.get_logger()

SECONDS_PER_DAY = 86_400


class Decision(BaseModel):
    """Whether a request may proceed; when not, how long to wait and why."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    retry_after_s: float = 0.0
    reason: str | None = None  # "rate_limited" | "token_budget_exhausted"


ALLOW = Decision(allowed=True)


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """Token bucket per tenant: up to `requests_per_minute` at once, then rpm/60 per second."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def check(self, tenant: Tenant) -> Decision:
        """Take one request from the tenant's bucket, or say how long until one is available."""
        rpm = tenant.requests_per_minute
        if rpm is None:
            return ALLOW
        rate = rpm / 60.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(tenant.name)
            if bucket is None:
                bucket = self._buckets[tenant.name] = _Bucket(float(rpm), now)
            # min(): a limit lowered by a tenants-file reload applies at once.
            bucket.tokens = min(float(rpm), bucket.tokens + max(0.0, now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return ALLOW
            wait = (1.0 - bucket.tokens) / rate
        return Decision(allowed=False, retry_after_s=round(wait, 3), reason="rate_limited")


class TokenBudget:
    """Daily token allowance per tenant, reset at UTC midnight.

    Use `reserve` before work whose cost is bounded (e.g. `max_tokens`) and `settle` with the
    real count afterwards; or `check` before and `charge` after when the cost is only known then.

    With `state_file`, usage is written atomically at most every `flush_interval_s` seconds
    (and on `flush()`/`close()`). Writing on every call would put an fsync on each request's path;
    a crash loses at most a few seconds of counting, which lets a tenant overspend only slightly.
    """

    def __init__(
        self,
        state_file: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
        flush_interval_s: float = 5.0,
    ) -> None:
        self._clock = clock  # wall clock: the budget day is a UTC calendar day
        self._state_file = state_file
        self._flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._day = self._today()
        self._used: dict[str, int] = {}
        self._dirty = False
        self._last_flush = self._clock()
        if state_file is not None:
            self._load(state_file)

    # ------------------------------------------------------------ queries

    def remaining(self, tenant: Tenant) -> int | None:
        """Tokens left today, or None when the tenant has no budget."""
        budget = tenant.daily_token_budget
        if budget is None:
            return None
        with self._lock:
            self._roll_day()
            return max(0, budget - self._used.get(tenant.name, 0))

    def used(self, tenant: str) -> int:
        with self._lock:
            self._roll_day()
            return self._used.get(tenant, 0)

    def check(self, tenant: Tenant) -> Decision:
        """Allowed while any budget is left today."""
        remaining = self.remaining(tenant)
        return ALLOW if remaining is None or remaining > 0 else self._denied()

    # ------------------------------------------------------------ spending

    def reserve(self, tenant: Tenant, tokens: int) -> Decision:
        """Spend `tokens` now if they fit in today's budget; otherwise spend nothing and deny."""
        _require_non_negative(tokens)
        budget = tenant.daily_token_budget
        if budget is None:
            return ALLOW
        with self._lock:
            self._roll_day()
            used = self._used.get(tenant.name, 0)
            if used + tokens > budget:
                return self._denied()
            self._used[tenant.name] = used + tokens
            self._dirty = True
        self._maybe_flush()
        return ALLOW

    def settle(self, tenant: Tenant, reserved: int, actual: int) -> None:
        """Replace a reservation by the tokens really spent (refunds or adds the difference)."""
        _require_non_negative(reserved)
        _require_non_negative(actual)
        self._add(tenant, actual - reserved)

    def charge(self, tenant: Tenant, tokens: int) -> None:
        """Record tokens spent, even past the budget: the next request is the one denied."""
        _require_non_negative(tokens)
        self._add(tenant, tokens)

    def _add(self, tenant: Tenant, delta: int) -> None:
        if tenant.daily_token_budget is None or delta == 0:
            return
        with self._lock:
            self._roll_day()
            self._used[tenant.name] = max(0, self._used.get(tenant.name, 0) + delta)
            self._dirty = True
        self._maybe_flush()

    # ------------------------------------------------------------ days

    def _today(self) -> int:
        # POSIX time has no leap seconds, so UTC days are exact multiples of 86 400 s.
        return int(self._clock() // SECONDS_PER_DAY)

    def _roll_day(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self._used = {}
            self._dirty = True

    def _denied(self) -> Decision:
        until_midnight = SECONDS_PER_DAY - self._clock() % SECONDS_PER_DAY
        return Decision(
            allowed=False, retry_after_s=round(until_midnight, 3), reason="token_budget_exhausted"
        )

    # ------------------------------------------------------------ persistence

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            day = data["day"]
            used = {str(k): int(v) for k, v in data["used"].items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # A damaged checkpoint must not stop the server; counting restarts from zero.
            log.warning("budget_state_unreadable", path=str(path), error=str(exc))
            return
        if day == _day_label(self._day):
            self._used = {k: v for k, v in used.items() if v > 0}

    def _maybe_flush(self) -> None:
        if self._state_file is not None and self._clock() - self._last_flush >= self._flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write usage to the state file now if anything changed (atomic replace)."""
        path = self._state_file
        if path is None:
            return
        with self._write_lock:
            with self._lock:
                if not self._dirty:
                    return
                snapshot = {"day": _day_label(self._day), "used": dict(self._used)}
                self._dirty = False
                self._last_flush = self._clock()
            try:
                # 0600: per-tenant usage is nobody else's business.
                write_atomic(path, json.dumps(snapshot, sort_keys=True).encode(), mode=0o600)
            except OSError as exc:
                with self._lock:
                    self._dirty = True
                log.warning("budget_state_write_failed", path=str(path), error=str(exc))

    def close(self) -> None:
        self.flush()


def _day_label(day: int) -> str:
    return datetime.fromtimestamp(day * SECONDS_PER_DAY, UTC).date().isoformat()


def _require_non_negative(tokens: int) -> None:
    if tokens < 0:
        raise ValueError(f"token counts are never negative, got {tokens}")
