"""Limits benchmark: what the shared usage store costs per tool call, alone and beside other writers.

Usage:
    python scripts/bench_limits.py [--calls 500] [--writers 2] [--out reports/bench_limits.json]

Measures, on a fresh SQLite store in a temporary directory (the file system of `--dir`, default
the system temp dir), the three store operations of a tool call: the rate-limit `check` (it runs on
the HTTP edge's event loop, so it must stay sub-millisecond), the budget `reserve` and the durable
`settle` (fsynced, run in a worker thread). Each is timed alone, then again while `--writers`
other processes reserve and settle on the same file as fast as they can (two server processes on
one data dir, under load). The in-memory store (one process, no file, no fsync) is the baseline;
the report gives each figure and its ratio to that baseline, within this run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/bench_limits.py` from a checkout
    sys.path.insert(0, str(REPO))

from bench_common import latency_summary, machine_info, setup_logging, write_report  # noqa: E402

from server.security.limits import RateLimiter, TokenBudget  # noqa: E402
from server.security.tenants import Tenant  # noqa: E402
from server.security.usage_store import UsageStore  # noqa: E402

TENANT = Tenant(name="bench", collections=("*",), requests_per_minute=10**9, daily_token_budget=10**15)
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from server.security.limits import TokenBudget
    from server.security.tenants import Tenant
    from server.security.usage_store import UsageStore
    tenant = Tenant(name="other", collections=("*",), daily_token_budget=10**15)
    budget = TokenBudget(UsageStore(Path(sys.argv[1])))
    stop = Path(sys.argv[2])
    while not stop.exists():
        budget.settle(tenant, budget.reserve(tenant, 600).reservation, 400)
    """
)


def timed(operation: Callable[[], Any], calls: int) -> list[float]:
    values = []
    for _ in range(calls):
        started = time.perf_counter()
        operation()
        values.append((time.perf_counter() - started) * 1000)
    return values


def measure(store: UsageStore, calls: int) -> dict[str, dict[str, float]]:
    limiter, budget = RateLimiter(store), TokenBudget(store)
    holds: list[int | None] = []
    return {
        "rate_check": latency_summary(timed(lambda: limiter.check(TENANT), calls)),
        "reserve": latency_summary(
            timed(lambda: holds.append(budget.reserve(TENANT, 600).reservation), calls)
        ),
        "settle": latency_summary(timed(lambda: budget.settle(TENANT, holds.pop(), 400), calls)),
    }


def ratios(figures: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]]) -> dict[str, float]:
    return {
        name: round(values["p50_ms"] / max(baseline[name]["p50_ms"], 1e-6), 1)
        for name, values in figures.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench_limits.json")
    args = parser.parse_args()
    setup_logging()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "usage.sqlite3"
        baseline = measure(UsageStore(), args.calls)
        alone = measure(UsageStore(path), args.calls)
        stop = Path(tmp) / "stop"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        writers = [
            subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(stop)], env=env)
            for _ in range(args.writers)
        ]
        try:
            time.sleep(2.0)  # let them start writing
            contended = measure(UsageStore(path), args.calls)
        finally:
            stop.touch()
            for writer in writers:
                writer.wait(timeout=60)
        other = TokenBudget(UsageStore(path)).used("other")
    report = {
        "machine": machine_info(),
        "calls": args.calls,
        "writers": args.writers,
        "in_memory": baseline,
        "file": alone,
        "file_with_writers": contended,
        "writer_calls_settled": other // 400,
        "ratio_p50_file_to_memory": ratios(alone, baseline),
        "ratio_p50_contended_to_memory": ratios(contended, baseline),
    }
    write_report(args.out, report)
    for label, figures in (("in memory", baseline), ("file", alone), ("file + writers", contended)):
        print(
            f"{label:>15}: "
            + "  ".join(
                f"{name} p50 {v['p50_ms']:.3f} ms p99 {v['p99_ms']:.3f} ms" for name, v in figures.items()
            )
        )


if __name__ == "__main__":
    main()
