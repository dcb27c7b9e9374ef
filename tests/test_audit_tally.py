"""Repeated records of one address folded per interval: one at once, one count when it ends."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.security.audit import AuditEvent, AuditLog, args_digest
from server.security.audit_keys import AuditKeys
from server.security.audit_tally import OVERFLOW_CLIENT, RepeatTally


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusal(client: str = "10.0.0.1") -> AuditEvent:
    return AuditEvent(
        request_id=uuid.uuid4().hex,
        tenant="-",
        transport="http",
        tool="http",
        args_sha256=args_digest({}),
        decision="deny",
        reason="unauthenticated",
        outcome="denied",
        error_code="http_401",
        client=client,
    )


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl", AuditKeys.load_or_create(tmp_path / "keys"))


def test_repeats_from_one_address_are_one_record_at_once_and_one_count_when_the_interval_ends(
    audit: AuditLog,
) -> None:
    clock = Clock()
    tally = RepeatTally(audit, 60, clock=clock)

    async def flood() -> None:
        for _ in range(500):
            await tally.add("unauthenticated", refusal())
        assert [r["count"] for r in records(audit.path)] == [1]  # the flood shows at once
        clock.now += 59
        await tally.flush()
        assert len(records(audit.path)) == 1 and tally.pending() == 499
        clock.now += 1
        await tally.flush()
        await tally.add("unauthenticated", refusal())  # a new interval: written at once again

    anyio.run(flood)
    assert [(r["count"], r["client"]) for r in records(audit.path)] == [
        (1, "10.0.0.1"),
        (499, "10.0.0.1"),
        (1, "10.0.0.1"),
    ]
    assert len({r["request_id"] for r in records(audit.path)}) == 3


def test_a_repeat_after_the_interval_writes_the_count_before_opening_the_next(audit: AuditLog) -> None:
    clock = Clock()
    tally = RepeatTally(audit, 10, clock=clock)

    async def body() -> None:
        for _ in range(3):
            await tally.add("unauthenticated", refusal())
        clock.now += 11  # no flush ran in between
        await tally.add("unauthenticated", refusal())

    anyio.run(body)
    assert [r["count"] for r in records(audit.path)] == [1, 2, 1]


def test_kinds_and_addresses_are_folded_apart_and_past_the_bound_together(audit: AuditLog) -> None:
    tally = RepeatTally(audit, 60, max_clients=2, clock=Clock())

    async def body() -> None:
        for client in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"):
            await tally.add("unauthenticated", refusal(client))
        await tally.add("auth_throttled", refusal("10.0.0.1"))  # a third key: past the bound
        await tally.flush(everything=True)  # as at shutdown

    anyio.run(body)
    written = [(r["client"], r["count"]) for r in records(audit.path)]
    assert written == [
        ("10.0.0.1", 1),
        ("10.0.0.2", 1),
        (OVERFLOW_CLIENT, 1),
        (OVERFLOW_CLIENT, 1),  # the auth_throttled kind of the overflow entry
        ("10.0.0.1", 1),  # the folded repeat, written at shutdown
        (OVERFLOW_CLIENT, 2),
    ]
