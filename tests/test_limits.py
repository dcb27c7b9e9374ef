"""Per-tenant rate limiting and daily token budgets, driven by a fake clock."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from server.security.limits import SECONDS_PER_DAY, RateLimiter, TokenBudget
from server.security.tenants import Tenant

# 2025-03-01 12:00:00 UTC: half a day before midnight.
NOON = 20_148 * SECONDS_PER_DAY + 43_200.0


class FakeClock:
    def __init__(self, start: float = NOON) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tenant(name: str = "acme", rpm: int | None = None, budget: int | None = None) -> Tenant:
    return Tenant(name=name, collections=("*",), requests_per_minute=rpm, daily_token_budget=budget)


# ---------------------------------------------------------------- rate limiter


def test_burst_up_to_the_per_minute_limit_then_denied_with_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    acme = tenant(rpm=60)
    assert all(limiter.check(acme).allowed for _ in range(60))
    decision = limiter.check(acme)
    assert not decision.allowed
    assert decision.reason == "rate_limited"
    assert decision.retry_after_s == pytest.approx(1.0)


def test_bucket_refills_continuously() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    acme = tenant(rpm=120)  # two per second
    for _ in range(120):
        limiter.check(acme)
    assert not limiter.check(acme).allowed
    clock.advance(0.5)
    assert limiter.check(acme).allowed
    assert not limiter.check(acme).allowed
    clock.advance(0.25)
    assert limiter.check(acme).retry_after_s == pytest.approx(0.25)


def test_bucket_never_holds_more_than_one_minute_of_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    acme = tenant(rpm=10)
    limiter.check(acme)
    clock.advance(3600)
    assert sum(limiter.check(acme).allowed for _ in range(20)) == 10


def test_tenants_have_separate_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    acme, beta = tenant("acme", rpm=5), tenant("beta", rpm=5)
    for _ in range(5):
        assert limiter.check(acme).allowed
    assert not limiter.check(acme).allowed
    assert all(limiter.check(beta).allowed for _ in range(5))


def test_tenant_without_a_rate_limit_is_never_throttled() -> None:
    limiter = RateLimiter(clock=FakeClock())
    free = tenant(rpm=None)
    assert all(limiter.check(free).allowed for _ in range(10_000))


def test_lowered_limit_applies_at_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.check(tenant(rpm=100))
    assert sum(limiter.check(tenant(rpm=3)).allowed for _ in range(10)) == 3


def test_limiter_counts_exactly_under_concurrent_calls() -> None:
    limiter = RateLimiter(clock=FakeClock())
    acme = tenant(rpm=500)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        results = [limiter.check(acme).allowed for _ in range(100)]
        with lock:
            allowed.extend(results)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 500


# ---------------------------------------------------------------- daily budget


def test_reservation_within_budget_is_allowed_and_counted() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    assert budget.reserve(acme, 600).allowed
    assert budget.remaining(acme) == 400


def test_reservation_over_budget_is_denied_until_utc_midnight() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    budget.reserve(acme, 600)
    decision = budget.reserve(acme, 500)
    assert not decision.allowed
    assert decision.reason == "token_budget_exhausted"
    assert decision.retry_after_s == pytest.approx(43_200)
    assert budget.remaining(acme) == 400  # a denied reservation spends nothing


def test_settling_refunds_the_unused_part_of_a_reservation() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    budget.reserve(acme, 800)
    budget.settle(acme, reserved=800, actual=300)
    assert budget.remaining(acme) == 700


def test_charge_may_overshoot_and_then_checks_deny() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    assert budget.check(acme).allowed
    budget.charge(acme, 1500)
    assert budget.remaining(acme) == 0
    assert not budget.check(acme).allowed


def test_budget_resets_at_utc_midnight() -> None:
    clock = FakeClock()
    budget = TokenBudget(clock=clock)
    acme = tenant(budget=100)
    budget.charge(acme, 100)
    clock.advance(43_199)
    assert not budget.check(acme).allowed
    assert budget.check(acme).retry_after_s == pytest.approx(1)
    clock.advance(1)
    assert budget.check(acme).allowed
    assert budget.remaining(acme) == 100


def test_budgets_are_per_tenant() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme, beta = tenant("acme", budget=100), tenant("beta", budget=100)
    budget.charge(acme, 100)
    assert not budget.check(acme).allowed
    assert budget.check(beta).allowed
    assert budget.remaining(beta) == 100


def test_tenant_without_budget_is_never_denied() -> None:
    budget = TokenBudget(clock=FakeClock())
    free = tenant(budget=None)
    assert budget.reserve(free, 10**9).allowed
    assert budget.remaining(free) is None


def test_negative_token_counts_are_refused() -> None:
    budget = TokenBudget(clock=FakeClock())
    with pytest.raises(ValueError, match="never negative"):
        budget.charge(tenant(budget=10), -1)


def test_usage_survives_a_restart_the_same_day(tmp_path: Path) -> None:
    state = tmp_path / "data" / "budget.json"
    clock = FakeClock()
    first = TokenBudget(state, clock=clock)
    first.charge(tenant(budget=1000), 250)
    first.close()
    assert json.loads(state.read_text(encoding="utf-8")) == {"day": "2025-03-01", "used": {"acme": 250}}
    second = TokenBudget(state, clock=clock)
    assert second.remaining(tenant(budget=1000)) == 750


def test_usage_from_yesterday_is_not_carried_over(tmp_path: Path) -> None:
    state = tmp_path / "budget.json"
    clock = FakeClock()
    first = TokenBudget(state, clock=clock)
    first.charge(tenant(budget=1000), 250)
    first.close()
    clock.advance(SECONDS_PER_DAY)
    assert TokenBudget(state, clock=clock).remaining(tenant(budget=1000)) == 1000


def test_usage_is_written_at_most_once_per_flush_interval(tmp_path: Path) -> None:
    state = tmp_path / "budget.json"
    clock = FakeClock()
    budget = TokenBudget(state, clock=clock, flush_interval_s=5)
    acme = tenant(budget=1000)
    budget.charge(acme, 1)
    assert not state.exists()
    clock.advance(5)
    budget.charge(acme, 1)
    assert json.loads(state.read_text(encoding="utf-8"))["used"] == {"acme": 2}
    budget.charge(acme, 1)
    assert json.loads(state.read_text(encoding="utf-8"))["used"] == {"acme": 2}


def test_damaged_state_file_is_logged_and_counting_starts_afresh(tmp_path: Path) -> None:
    state = tmp_path / "budget.json"
    state.write_text("{broken", encoding="utf-8")
    with capture_logs() as logs:
        budget = TokenBudget(state, clock=FakeClock())
    assert budget.remaining(tenant(budget=10)) == 10
    assert [e["event"] for e in logs] == ["budget_state_unreadable"]
