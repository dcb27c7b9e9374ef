"""Attack 1: wrong-secret floods must not stall the server, and key checks must not leak timing."""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from server.security.keys import legacy_pbkdf2
from server.security.keys_file import add_key, keys_path, load_keys
from server.security.registry import TenantRegistry
from tests.attack.conftest import Deployment, deployed
from tests.mcp_harness import INITIALIZE, JSON_RPC_HEADERS, call, http_session

SAMPLES = 60
ATTACKERS = 4
FLOOD_SECONDS = 8.0
REPO = Path(__file__).resolve().parents[2]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def wrong_secret(key: str) -> str:
    key_id = key.split("_")[1]
    return f"dg_{key_id}_{secrets.token_urlsafe(32)}"


async def latencies(url: str, key: str) -> list[float]:
    out: list[float] = []
    async with http_session(url, key) as session:
        await call(session, "list_collections")  # warm
        for _ in range(SAMPLES):
            started = time.perf_counter()
            await call(session, "list_collections")
            out.append(time.perf_counter() - started)
    return out


def test_wrong_secret_flood_from_four_connections_keeps_other_tenants_p95_within_3x(
    deployment: Deployment,
) -> None:
    # The server as configured by default (failed checks throttled per address and key id). Quiet
    # samples are taken before and after the flood, so drift in the machine's load hits both sides.
    quiet = anyio.run(latencies, deployment.url, deployment.keys["beta"])
    flooder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.attack.flooder",
            deployment.url,
            wrong_secret(deployment.keys["acme"]),
            str(FLOOD_SECONDS),
            str(ATTACKERS),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flooder.stdout is not None and flooder.stdin is not None
        assert flooder.stdout.readline().strip() == "ready"
        flooder.stdin.write("go\n")
        flooder.stdin.flush()
        time.sleep(1.0)  # let the flood reach full speed
        loud = anyio.run(latencies, deployment.url, deployment.keys["beta"])
    finally:
        out, _ = flooder.communicate(timeout=FLOOD_SECONDS + 30)
    quiet += anyio.run(latencies, deployment.url, deployment.keys["beta"])
    counts = json.loads(out)
    quiet_p95, loud_p95 = p95(quiet), p95(loud)
    print(
        json.dumps(
            {
                "quiet_p95_ms": round(quiet_p95 * 1000, 1),
                "flood_p95_ms": round(loud_p95 * 1000, 1),
                "ratio": round(loud_p95 / quiet_p95, 2),
                "attack_responses": counts,
            }
        )
    )
    # The flood really ran: the first failures were checked, then every retry was throttled, and
    # the throttle held each connection's retries to about one a second for the whole flood.
    assert counts.get("401", 0) >= 30 and counts.get("429", 0) >= ATTACKERS * (FLOOD_SECONDS - 3), counts
    assert loud_p95 <= 3 * quiet_p95, (quiet_p95, loud_p95)


def test_unknown_and_known_key_ids_take_the_same_time(tmp_path: Path) -> None:
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text('[tenants.acme]\ncollections = ["*"]\n', encoding="utf-8")
    _, key = add_key(tenants_file, "acme")
    registry = TenantRegistry(tenants_file, check_interval_s=3600, auth_failures_per_minute=1_000_000)
    known = wrong_secret(key)
    unknown = f"dg_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"

    def median_of(bearer: str) -> float:
        runs = []
        for _ in range(15):
            started = time.perf_counter()
            for _ in range(200):
                assert registry.authenticate(bearer, "10.0.0.1") is None
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    median_of(known), median_of(unknown)  # warm
    known_s, unknown_s = median_of(known), median_of(unknown)
    ratio = known_s / unknown_s
    print(json.dumps({"known_over_unknown": round(ratio, 3), "check_us": round(known_s / 200 * 1e6, 1)}))
    assert 0.5 < ratio < 2.0


def test_legacy_pbkdf2_key_keeps_working_and_is_migrated_once(tmp_path: Path) -> None:
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text('[tenants.acme]\ncollections = ["*"]\n', encoding="utf-8")
    key_id, secret, salt = "a1b2c3d4e5f6", secrets.token_urlsafe(32), secrets.token_bytes(16)
    legacy = {
        "format": 1,
        "keys": [
            {
                "key_id": key_id,
                "tenant": "acme",
                "algorithm": "pbkdf2_sha256",
                "iterations": 200_000,
                "salt": salt.hex(),
                "hash": legacy_pbkdf2(secret, salt, 200_000).hex(),
                "created": datetime.now(UTC).isoformat(),
            }
        ],
    }
    keys_path(tenants_file).write_text(json.dumps(legacy), encoding="utf-8")
    registry = TenantRegistry(tenants_file, check_interval_s=0)
    bearer = f"dg_{key_id}_{secret}"

    async def check(value: str) -> Any:
        return (await registry.authenticate_async(value, "127.0.0.1")).principal

    assert anyio.run(check, wrong_secret(bearer)) is None  # a wrong secret is still refused
    principal = anyio.run(check, bearer)
    assert principal is not None and principal.tenant == "acme"
    record = load_keys(tenants_file)[key_id]
    assert (record.algorithm, record.salt, record.iterations) == ("hmac_sha256", None, None)
    assert record.tenant_id is not None
    # Now the fast form: the slow KDF is never run again for this key.
    started = time.perf_counter()
    for _ in range(50):
        assert anyio.run(check, bearer) is not None
    assert (time.perf_counter() - started) / 50 < 0.02


def test_failed_attempts_are_throttled_per_address_and_per_key_id(
    tmp_path: Path, lumen_data_dir: Path
) -> None:
    with deployed(tmp_path, lumen_data_dir, DOCGATE_AUTH__AUTH_FAILURES_PER_MINUTE="5") as dep:

        def post(bearer: str, source: str) -> httpx.Response:
            transport = httpx.HTTPTransport(local_address=source)
            with httpx.Client(transport=transport, timeout=30) as client:
                headers = {**JSON_RPC_HEADERS, "Authorization": f"Bearer {bearer}"}
                return client.post(dep.url, json=INITIALIZE, headers=headers)

        # The rightful owner first succeeds from 127.0.0.1: that address is then trusted for the key.
        assert post(dep.keys["acme"], "127.0.0.1").status_code == 200
        # Unknown key ids from one address: only that address's budget is spent.
        statuses = [
            post(f"dg_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}", "127.0.0.2").status_code
            for _ in range(7)
        ]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429], statuses
        assert int(post(dep.keys["beta"], "127.0.0.2").headers["retry-after"]) >= 1  # even a right key waits
        assert post(dep.keys["beta"], "127.0.0.1").status_code == 200  # other addresses are unaffected
        # Five addresses each fail once on acme's key id: the key id is throttled ...
        for n in range(3, 8):
            assert post(wrong_secret(dep.keys["acme"]), f"127.0.0.{n}").status_code == 401
        assert post(dep.keys["acme"], "127.0.0.9").status_code == 429
        # ... but not for the address it already proved itself from, so the tenant is not locked out.
        assert post(dep.keys["acme"], "127.0.0.1").status_code == 200
    # Every refusal is accounted for once the server has stopped (what was still being counted is
    # written at shutdown), and repeats from one address take one record at once, one folded.
    records = [json.loads(line) for line in dep.audit.read_text(encoding="utf-8").splitlines()]

    def refused(reason: str, client: str) -> list[int]:
        return [r["count"] for r in records if (r["reason"], r["client"]) == (reason, client)]

    assert refused("unauthenticated", "127.0.0.2") == [1, 4]
    assert refused("auth_throttled", "127.0.0.2") == [1, 2]
    assert refused("auth_throttled", "127.0.0.9") == [1]
    assert [refused("unauthenticated", f"127.0.0.{n}") for n in range(3, 8)] == [[1]] * 5


@pytest.mark.parametrize("bearer", ["dg_short", "x" * 5000, "dg_" + "g" * 12 + "_" + "a" * 43])
def test_malformed_bearer_is_refused_without_a_lookup(tmp_path: Path, bearer: str) -> None:
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text('[tenants.acme]\ncollections = ["*"]\n', encoding="utf-8")
    registry = TenantRegistry(tenants_file, check_interval_s=3600)
    assert registry.authenticate(bearer, "10.0.0.1") is None
