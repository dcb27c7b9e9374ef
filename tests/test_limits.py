"""Per-tenant rate limits and daily token budgets on the shared SQLite usage store, driven by a fake
clock: exact counts under threads, several connections and several processes on one file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from server.errors import LimitsUnavailable
from server.security.limits import SECONDS_PER_DAY, RateLimiter, TokenBudget, reservation_tokens
from server.security.tenants import Tenant
from server.security.usage_store import UsageStore, process_identity

REPO = Path(__file__).resolve().parents[1]

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


# ---------------------------------------------------------------- rate limits on a shared file


def test_two_connections_on_one_file_share_one_bucket(tmp_path: Path) -> None:
    """Two stores on one file are what two server processes hold: one bucket, not one each."""
    clock = FakeClock()
    path = tmp_path / "usage.sqlite3"
    first, second = RateLimiter(UsageStore(path), clock=clock), RateLimiter(UsageStore(path), clock=clock)
    acme = tenant(rpm=10)
    outcomes = [(first if i % 2 else second).check(acme).allowed for i in range(20)]
    assert sum(outcomes) == 10
    assert not first.check(acme).allowed and not second.check(acme).allowed


def test_an_unusable_store_denies_requests_instead_of_waving_them_through(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    limiter = RateLimiter(UsageStore(path, busy_timeout_s=0.05), clock=FakeClock())
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock past the timeout
    try:
        with capture_logs() as logs:
            decision = limiter.check(tenant(rpm=10))
    finally:
        blocker.execute("ROLLBACK")
    assert (decision.allowed, decision.reason) == (False, "limits_unavailable")
    assert decision.retry_after_s == pytest.approx(1.0)
    assert [e["event"] for e in logs] == ["rate_limit_store_unavailable"]
    assert limiter.check(tenant(rpm=10)).allowed  # lock released: counting resumes


# ---------------------------------------------------------------- daily budget


def test_reservation_within_budget_is_allowed_and_held() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    decision = budget.reserve(acme, 600)
    assert decision.allowed and decision.reservation is not None
    assert budget.remaining(acme) == 400
    assert (budget.used("acme"), budget.reserved("acme")) == (0, 600)


def test_reservation_over_budget_is_denied_until_utc_midnight() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    budget.settle(acme, budget.reserve(acme, 600).reservation, 600)
    decision = budget.reserve(acme, 500)
    assert not decision.allowed
    assert decision.reason == "token_budget_exhausted"
    assert decision.retry_after_s == pytest.approx(43_200)
    assert decision.tokens_left == 400
    assert budget.remaining(acme) == 400  # a denied reservation holds nothing


def test_reservation_blocked_only_by_calls_in_flight_is_told_to_retry_soon() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    first = budget.reserve(acme, 800)
    decision = budget.reserve(acme, 500)
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(1.0)  # the 800 settle within seconds
    budget.settle(acme, first.reservation, 300)
    assert budget.reserve(acme, 500).allowed


def test_settling_charges_the_real_cost_and_releases_the_rest() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    decision = budget.reserve(acme, 800)
    budget.settle(acme, decision.reservation, 300)
    assert (budget.used("acme"), budget.reserved("acme"), budget.remaining(acme)) == (300, 0, 700)


def test_releasing_a_failed_call_charges_nothing() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    budget.release(acme, budget.reserve(acme, 800).reservation)
    assert (budget.used("acme"), budget.remaining(acme)) == (0, 1000)


def test_a_call_costing_more_than_it_reserved_is_charged_in_full() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=1000)
    budget.settle(acme, budget.reserve(acme, 900).reservation, 1200)
    assert budget.used("acme") == 1200
    assert budget.remaining(acme) == 0 and not budget.check(acme).allowed


def test_a_call_without_max_tokens_needs_one_token_left() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=100)
    assert budget.reserve(acme, 0).allowed
    budget.charge(acme, 100)
    assert not budget.reserve(acme, 0).allowed


def test_a_settlement_after_midnight_counts_on_the_day_it_was_reserved() -> None:
    clock = FakeClock()
    budget = TokenBudget(clock=clock)
    acme = tenant(budget=1000)
    decision = budget.reserve(acme, 500)
    clock.advance(43_200 + 60)  # past midnight while the call ran
    budget.settle(acme, decision.reservation, 400)
    assert budget.used("acme") == 0 and budget.remaining(acme) == 1000
    clock.advance(-120)
    assert budget.used("acme") == 400


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


def test_tenant_without_budget_is_never_denied_and_nothing_is_stored() -> None:
    budget = TokenBudget(clock=FakeClock())
    free = tenant(budget=None)
    decision = budget.reserve(free, 10**9)
    assert decision.allowed and decision.reservation is None
    budget.settle(free, None, 10**9)
    assert budget.remaining(free) is None and budget.used("acme") == 0


def test_negative_token_counts_are_refused() -> None:
    budget = TokenBudget(clock=FakeClock())
    with pytest.raises(ValueError, match="never negative"):
        budget.charge(tenant(budget=10), -1)
    with pytest.raises(ValueError, match="never negative"):
        budget.reserve(tenant(budget=10), -1)


def test_concurrent_reservations_never_exceed_the_budget() -> None:
    budget = TokenBudget(clock=FakeClock())
    acme = tenant(budget=3000)
    barrier = threading.Barrier(16)
    decisions = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        decision = budget.reserve(acme, 600)
        with lock:
            decisions.append(decision)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(d.allowed for d in decisions) == 5
    assert budget.reserved("acme") == 3000


def test_reservation_counts_max_tokens_and_the_question() -> None:
    def count(text: str) -> int:
        return len(text.split())

    assert reservation_tokens({"query": "three word query", "max_tokens": 500}, count) == 503
    assert reservation_tokens({"question": "two words", "max_tokens": 10**9}, count) == 20_002
    assert reservation_tokens({"max_tokens": 1}, count) == 100  # clamped to what the guards accept
    assert reservation_tokens({"max_tokens": True, "query": None}, count) == 0
    assert reservation_tokens({}, count) == 0
    assert reservation_tokens({"query": "x " * 10_000, "max_tokens": 100}, count) == 1100  # cut at the limit


# ---------------------------------------------------------------- persistence


def test_usage_survives_a_restart_the_same_day(tmp_path: Path) -> None:
    path = tmp_path / "data" / "usage.sqlite3"
    clock = FakeClock()
    first = TokenBudget(UsageStore(path), clock=clock)
    first.charge(tenant(budget=1000), 250)
    first.close()
    second = TokenBudget(UsageStore(path), clock=clock)
    assert second.remaining(tenant(budget=1000)) == 750


def test_usage_from_yesterday_is_not_carried_over(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    clock = FakeClock()
    first = TokenBudget(UsageStore(path), clock=clock)
    first.charge(tenant(budget=1000), 250)
    first.close()
    clock.advance(SECONDS_PER_DAY)
    assert TokenBudget(UsageStore(path), clock=clock).remaining(tenant(budget=1000)) == 1000


def test_the_store_is_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "server" / "usage.sqlite3"
    TokenBudget(UsageStore(path), clock=FakeClock()).charge(tenant(budget=10), 1)
    for name in ("usage.sqlite3", "usage.sqlite3-wal", "usage.sqlite3-shm"):
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name


def test_a_store_locked_past_the_timeout_fails_with_a_docgate_error(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    budget = TokenBudget(UsageStore(path, busy_timeout_s=0.05), clock=FakeClock())
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LimitsUnavailable, match="usage store is unavailable"):
            budget.reserve(tenant(budget=100), 10)
    finally:
        blocker.execute("ROLLBACK")
    assert budget.remaining(tenant(budget=100)) == 100


def test_an_unopenable_store_fails_with_a_docgate_error(tmp_path: Path) -> None:
    (tmp_path / "usage.sqlite3").mkdir()
    with pytest.raises(LimitsUnavailable, match="cannot open the usage store"):
        UsageStore(tmp_path / "usage.sqlite3")


# ---------------------------------------------------------------- migration of the JSON checkpoint


def _legacy(path: Path, day: str = "2025-03-01", used: dict[str, int] | None = None) -> Path:
    path.write_text(json.dumps({"day": day, "used": used or {"acme": 250, "beta": 40}}), encoding="utf-8")
    return path


def test_todays_json_checkpoint_is_migrated_once(tmp_path: Path) -> None:
    legacy = _legacy(tmp_path / "token-usage.json")
    path = tmp_path / "usage.sqlite3"
    with capture_logs() as logs:
        budget = TokenBudget(UsageStore(path), clock=FakeClock(), legacy_file=legacy)
    assert (budget.used("acme"), budget.used("beta")) == (250, 40)
    assert not legacy.exists() and (tmp_path / "token-usage.json.migrated").exists()
    assert "budget_state_migrated" in [e["event"] for e in logs]
    # The file comes back (an old server still running, a restored backup): never counted twice.
    _legacy(legacy)
    again = TokenBudget(UsageStore(path), clock=FakeClock(), legacy_file=legacy)
    assert (again.used("acme"), again.used("beta")) == (250, 40)


def test_yesterdays_json_checkpoint_is_not_carried_over(tmp_path: Path) -> None:
    legacy = _legacy(tmp_path / "token-usage.json", day="2025-02-28")
    budget = TokenBudget(UsageStore(tmp_path / "usage.sqlite3"), clock=FakeClock(), legacy_file=legacy)
    assert budget.used("acme") == 0
    assert not legacy.exists()


def test_damaged_json_checkpoint_is_logged_and_counting_goes_on(tmp_path: Path) -> None:
    legacy = tmp_path / "token-usage.json"
    legacy.write_text("{broken", encoding="utf-8")
    with capture_logs() as logs:
        budget = TokenBudget(UsageStore(tmp_path / "usage.sqlite3"), clock=FakeClock(), legacy_file=legacy)
    assert budget.remaining(tenant(budget=10)) == 10
    assert [e["event"] for e in logs][:1] == ["budget_state_unreadable"]


# ---------------------------------------------------------------- several processes on one file

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from server.security.limits import RateLimiter, TokenBudget
    from server.security.tenants import Tenant
    from server.security.usage_store import UsageStore

    path, go, mode, n = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    clock = lambda: float(sys.argv[5])
    acme = Tenant(name="acme", collections=("*",), requests_per_minute=50, daily_token_budget=1000)
    store = UsageStore(path, busy_timeout_s=30)
    limiter, budget = RateLimiter(store, clock=clock), TokenBudget(store, clock=clock)
    while not go.exists():
        time.sleep(0.01)
    if mode == "rate":
        print(sum(limiter.check(acme).allowed for _ in range(n)))
    elif mode == "reserve":
        print(sum(budget.reserve(acme, 100).allowed for _ in range(n)))
    else:  # hold: reserve, report, then wait to be killed
        print(budget.reserve(acme, int(mode.split(":")[1])).reservation, flush=True)
        time.sleep(600)
    """
)


def _workers(path: Path, mode: str, n: int, count: int) -> list[int]:
    go = path.parent / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(go), mode, str(n), str(NOON)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(count)
    ]
    time.sleep(1.0)  # let them import and open the store, then start them together
    go.touch()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return [int(out.strip()) for out in outputs]


def test_rate_limit_is_exact_across_processes(tmp_path: Path) -> None:
    allowed = _workers(tmp_path / "usage.sqlite3", "rate", 30, 4)
    assert sum(allowed) == 50, allowed  # one bucket of 50 for four processes, not 50 each


def test_reservations_are_exact_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    allowed = _workers(path, "reserve", 8, 4)
    assert sum(allowed) == 10, allowed  # 1000 / 100, however the four interleave
    assert TokenBudget(UsageStore(path), clock=FakeClock()).reserved("acme") == 0  # all four exited


def test_holds_of_a_killed_process_are_released_and_of_a_live_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    go = tmp_path / "go"
    go.touch()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(path), str(go), "hold:700", "1", str(NOON)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip().isdigit()
        budget = TokenBudget(UsageStore(path), clock=FakeClock())
        acme = tenant(budget=1000)
        assert process_identity(holder.pid) is not None
        assert budget.reserved("acme") == 700
        assert not budget.reserve(acme, 500).allowed  # a live call in flight keeps its hold
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert process_identity(holder.pid) is None
    assert budget.reserve(acme, 500).allowed  # the dead server's hold is released on the way
    assert (budget.used("acme"), budget.reserved("acme")) == (0, 500)


def test_limits_benchmark_reports_each_store_operation(tmp_path: Path) -> None:
    out = tmp_path / "bench_limits.json"
    options = ["--calls", "20", "--writers", "1", "--dir", str(tmp_path), "--out", str(out)]
    completed = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_limits.py"), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    for section in ("in_memory", "file", "file_with_writers"):
        assert set(report[section]) == {"rate_check", "reserve", "settle"}
        assert all(v["count"] == 20 for v in report[section].values())
    assert report["writer_calls_settled"] > 0  # the other process really wrote meanwhile
