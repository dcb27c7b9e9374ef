"""Per-tenant request rate and daily token budget, shared by every request and process on one host.

* `RateLimiter`: a token bucket per tenant, capacity `requests_per_minute` (the burst), refilled
  continuously at rpm/60 tokens per second.
* `TokenBudget`: tokens spent per tenant per UTC day. A call first `reserve`s what it may cost at
  most (its `max_tokens` plus its question, see `reservation_tokens`); the reservation is admitted
  only if it fits beside today's usage and every other call in flight; afterwards `settle` charges
  what the call really cost and releases the rest. So concurrent calls cannot together spend more
  than the budget, however they interleave.

Both keep their state in a `UsageStore` (SQLite, WAL): each decision is one `BEGIN IMMEDIATE`
transaction, atomic across threads and processes, and a charge is fsynced before the call's result
is returned. The calls block for a transaction (sub-millisecond; a charge ~5 ms for its fsync, longer
while another process holds the write lock), so async callers run them in a worker thread. Both take
a wall `clock` (a monotonic clock means nothing to another process), so tests move time without
sleeping. Tenants without a limit (None) are never throttled and nothing is stored for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict

from server.errors import LimitsUnavailable
from server.security.guards import MAX_TOKENS_MAX, MAX_TOKENS_MIN, QUERY_MAX_CHARS
from server.security.tenants import Tenant
from server.security.usage_store import UsageStore, release_dead_holds

log = structlog.get_logger()

SECONDS_PER_DAY = 86_400
# A reservation that fails only because other calls hold tokens right now: those settle within
# seconds, so the caller is told to retry soon rather than at midnight.
IN_FLIGHT_RETRY_S = 1.0
LEGACY_MIGRATED_KEY = "token_usage_json_migrated"


class Decision(BaseModel):
    """Whether a request may proceed; when not, how long to wait and why."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    retry_after_s: float = 0.0
    reason: str | None = None  # "rate_limited" | "token_budget_exhausted" | "limits_unavailable"
    # The hold to settle after the call; None when nothing was reserved (no budget, or denied).
    reservation: int | None = None
    tokens_left: int | None = None  # on a budget denial: what today's budget still has


ALLOW = Decision(allowed=True)


def reservation_tokens(arguments: Mapping[str, Any], count_tokens: Callable[[str], int]) -> int:
    """The most a tool call can be charged: its `max_tokens` plus the tokens of its query/question.

    `max_tokens` is clamped into the range the guards accept (a value outside it fails validation
    and is released unspent); the text is cut at the guards' length limit so an oversized argument
    costs no more tokenizing here than the rejection it will get."""
    limit = arguments.get("max_tokens")
    reserved = 0
    if isinstance(limit, int) and not isinstance(limit, bool):
        reserved = min(max(limit, MAX_TOKENS_MIN), MAX_TOKENS_MAX)
    for name in ("query", "question"):
        text = arguments.get(name)
        if isinstance(text, str):
            reserved += count_tokens(text[:QUERY_MAX_CHARS])
    return reserved


class RateLimiter:
    """Token bucket per tenant: up to `requests_per_minute` at once, then rpm/60 per second."""

    def __init__(self, store: UsageStore | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store if store is not None else UsageStore()
        self._clock = clock

    def check(self, tenant: Tenant) -> Decision:
        """Take one request from the tenant's bucket, or say how long until one is available.

        A store that cannot be used denies (fail closed) for a second rather than letting every
        request through uncounted."""
        rpm = tenant.requests_per_minute
        if rpm is None:
            return ALLOW
        rate = rpm / 60.0
        now = self._clock()
        try:
            with self.store.transaction() as conn:
                row = conn.execute(
                    "SELECT tokens, updated FROM rate_buckets WHERE tenant = ?", (tenant.name,)
                ).fetchone()
                tokens, updated = (float(rpm), now) if row is None else (float(row[0]), float(row[1]))
                # min(): a limit lowered by a tenants-file reload applies at once. max(0, ...): a
                # clock stepped back never drains the bucket.
                tokens = min(float(rpm), tokens + max(0.0, now - updated) * rate)
                allowed = tokens >= 1.0
                if allowed:
                    tokens -= 1.0
                conn.execute(
                    "INSERT INTO rate_buckets (tenant, tokens, updated) VALUES (?, ?, ?) "
                    "ON CONFLICT (tenant) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
                    (tenant.name, tokens, max(now, updated)),
                )
        except LimitsUnavailable as exc:
            log.error("rate_limit_store_unavailable", error=str(exc))
            return Decision(allowed=False, retry_after_s=1.0, reason="limits_unavailable")
        if allowed:
            return ALLOW
        return Decision(allowed=False, retry_after_s=round((1.0 - tokens) / rate, 3), reason="rate_limited")


class TokenBudget:
    """Daily token allowance per tenant, reset at UTC midnight, with reserve/settle for calls.

    `reserve` before work whose cost is bounded and `settle` with the real count afterwards (or
    `release` when the call failed and returned nothing); `check` and `charge` serve costs known
    only afterwards. Store failures raise `LimitsUnavailable`: a call is refused, never uncounted.
    """

    def __init__(
        self,
        store: UsageStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        legacy_file: Path | None = None,
    ) -> None:
        self.store = store if store is not None else UsageStore()
        self._clock = clock  # wall clock: the budget day is a UTC calendar day
        with self.store.transaction(durable=True) as conn:
            release_dead_holds(conn, self.store.owner)
            # Old days are never read again; keep a month for operators who look.
            today = self._today()
            conn.execute("DELETE FROM token_usage WHERE day < ?", (today - 31,))
            conn.execute("DELETE FROM token_reservations WHERE day < ?", (today,))
        if legacy_file is not None:
            self._migrate(legacy_file)

    # ------------------------------------------------------------ queries

    def used(self, tenant: str) -> int:
        """Tokens charged (settled) today."""
        with self.store.transaction() as conn:
            return _used(conn, tenant, self._today())

    def reserved(self, tenant: str) -> int:
        """Tokens held right now by this tenant's calls in flight (in every process)."""
        with self.store.transaction() as conn:
            return _held(conn, tenant, self._today())

    def remaining(self, tenant: Tenant) -> int | None:
        """Tokens left today beside what calls in flight hold, or None when there is no budget."""
        budget = tenant.daily_token_budget
        if budget is None:
            return None
        today = self._today()
        with self.store.transaction() as conn:
            return max(0, budget - _used(conn, tenant.name, today) - _held(conn, tenant.name, today))

    def check(self, tenant: Tenant) -> Decision:
        """Allowed while any budget is left today."""
        remaining = self.remaining(tenant)
        return ALLOW if remaining is None or remaining > 0 else self._denied(remaining, soon=False)

    # ------------------------------------------------------------ spending

    def reserve(self, tenant: Tenant, tokens: int) -> Decision:
        """Hold `tokens` if they fit beside today's usage and the holds of calls in flight.

        A zero reservation (a call without `max_tokens`) is admitted while at least one token is
        left. Denied, nothing is held; `retry_after_s` is short when the budget would fit once the
        calls in flight settle, else the time to UTC midnight."""
        _require_non_negative(tokens)
        budget = tenant.daily_token_budget
        if budget is None:
            return ALLOW
        today = self._today()
        with self.store.transaction() as conn:
            used, held = _used(conn, tenant.name, today), _held(conn, tenant.name, today)
            # Holds of a server that died with calls in flight would otherwise block until midnight.
            over = used + held + max(tokens, 1) > budget
            if over and held and release_dead_holds(conn, self.store.owner):
                held = _held(conn, tenant.name, today)
            if used + held + max(tokens, 1) > budget:
                soon = used + max(tokens, 1) <= budget
                return self._denied(max(0, budget - used - held), soon=soon)
            cursor = conn.execute(
                "INSERT INTO token_reservations (tenant, day, tokens, owner) VALUES (?, ?, ?, ?)",
                (tenant.name, today, tokens, self.store.owner),
            )
            return Decision(allowed=True, reservation=cursor.lastrowid)

    def settle(self, tenant: Tenant, reservation: int | None, actual: int) -> None:
        """Replace a reservation by the tokens really spent, durably (fsynced) before returning.

        The tokens are charged to the day the reservation was made, even past the budget (a call
        whose real cost exceeded its reservation): the next reservation is the one denied."""
        _require_non_negative(actual)
        charged = tenant.daily_token_budget is not None and actual > 0
        if reservation is None and not charged:
            return
        with self.store.transaction(durable=True) as conn:
            day = self._today()
            if reservation is not None:
                row = conn.execute(
                    "SELECT day FROM token_reservations WHERE id = ?", (reservation,)
                ).fetchone()
                conn.execute("DELETE FROM token_reservations WHERE id = ?", (reservation,))
                if row is not None:
                    day = int(row[0])
            if charged:
                _add(conn, tenant.name, day, actual)

    def release(self, tenant: Tenant, reservation: int | None) -> None:
        """Give a reservation back unspent: the call failed and returned nothing."""
        if reservation is None:
            return
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM token_reservations WHERE id = ?", (reservation,))

    def charge(self, tenant: Tenant, tokens: int) -> None:
        """Record tokens spent, even past the budget: the next request is the one denied."""
        self.settle(tenant, None, tokens)

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------ days

    def _today(self) -> int:
        # POSIX time has no leap seconds, so UTC days are exact multiples of 86 400 s.
        return int(self._clock() // SECONDS_PER_DAY)

    def _denied(self, tokens_left: int, *, soon: bool) -> Decision:
        until_midnight = SECONDS_PER_DAY - self._clock() % SECONDS_PER_DAY
        return Decision(
            allowed=False,
            retry_after_s=round(min(IN_FLIGHT_RETRY_S, until_midnight) if soon else until_midnight, 3),
            reason="token_budget_exhausted",
            tokens_left=tokens_left,
        )

    # ------------------------------------------------------------ migration

    def _migrate(self, path: Path) -> None:
        """Take over today's usage from the JSON checkpoint earlier versions wrote, exactly once.

        The flag in `meta` is set in the same transaction that adds the usage, so two processes
        starting together, or a rename that failed, never count it twice."""
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            day = _day_number(str(data["day"]))
            used = {str(k): int(v) for k, v in data["used"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # A damaged checkpoint must not stop the server; counting goes on from the store.
            log.warning("budget_state_unreadable", path=str(path), error=str(exc))
            day, used = None, {}
        with self.store.transaction(durable=True) as conn:
            if conn.execute("SELECT 1 FROM meta WHERE key = ?", (LEGACY_MIGRATED_KEY,)).fetchone():
                return
            if day == self._today():
                for tenant, tokens in used.items():
                    if tokens > 0:
                        _add(conn, tenant, day, tokens)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                (LEGACY_MIGRATED_KEY, datetime.fromtimestamp(self._clock(), UTC).isoformat()),
            )
        log.info("budget_state_migrated", path=str(path), tenants=len(used), today=day == self._today())
        try:
            path.replace(path.with_name(path.name + ".migrated"))
        except OSError as exc:
            log.warning("budget_state_rename_failed", path=str(path), error=str(exc))


def _used(conn: Any, tenant: str, day: int) -> int:
    row = conn.execute("SELECT used FROM token_usage WHERE tenant = ? AND day = ?", (tenant, day)).fetchone()
    return 0 if row is None else int(row[0])


def _held(conn: Any, tenant: str, day: int) -> int:
    (held,) = conn.execute(
        "SELECT COALESCE(SUM(tokens), 0) FROM token_reservations WHERE tenant = ? AND day = ?",
        (tenant, day),
    ).fetchone()
    return int(held)


def _add(conn: Any, tenant: str, day: int, tokens: int) -> None:
    conn.execute(
        "INSERT INTO token_usage (tenant, day, used) VALUES (?, ?, ?) "
        "ON CONFLICT (tenant, day) DO UPDATE SET used = used + excluded.used",
        (tenant, day, tokens),
    )


def _day_number(label: str) -> int:
    return date.fromisoformat(label).toordinal() - date(1970, 1, 1).toordinal()


def _require_non_negative(tokens: int) -> None:
    if tokens < 0:
        raise ValueError(f"token counts are never negative, got {tokens}")
