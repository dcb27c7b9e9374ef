"""Review item: the rate-limit store is SQLite shared by every server process on a data dir; a
write lock held by another process must delay only the requests that need it, never the event loop."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.attack.conftest import TENANTS, deployed
from tests.mcp_harness import INITIALIZE, JSON_RPC_HEADERS

LIMITED = '\n[tenants.gamma]\ncollections = ["lumen"]\nrequests_per_minute = 1000\n'
LOCK_HELD_S = 3.0


def test_a_locked_usage_store_stalls_only_the_rate_limited_tenant(
    tmp_path: Path, lumen_data_dir: Path
) -> None:
    with deployed(tmp_path, lumen_data_dir, tenants=TENANTS + LIMITED) as dep:

        def open_session(tenant: str) -> httpx.Response:
            headers = {**JSON_RPC_HEADERS, "Authorization": f"Bearer {dep.keys[tenant]}"}
            return httpx.post(dep.url, json=INITIALIZE, headers=headers, timeout=30)

        assert open_session("gamma").status_code == 200  # the store exists and works
        store = sqlite3.connect(dep.data_dir / "server" / "usage.sqlite3", isolation_level=None)
        store.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
        limited: dict[str, float | int] = {}

        def limited_request() -> None:
            started = time.monotonic()
            limited["status"] = open_session("gamma").status_code
            limited["elapsed"] = time.monotonic() - started

        waiting = threading.Thread(target=limited_request)
        try:
            waiting.start()
            time.sleep(0.5)  # gamma's rate check is now waiting on the lock
            started = time.monotonic()
            unlimited = open_session("beta")  # no rate limit, no budget: needs no store
            beta_elapsed = time.monotonic() - started
            time.sleep(max(0.0, LOCK_HELD_S - 0.5 - beta_elapsed))
        finally:
            store.execute("ROLLBACK")
            store.close()
            waiting.join(timeout=30)
        assert unlimited.status_code == 200
        # Checked on the event loop, gamma's wait would have held beta for the rest of the lock.
        assert beta_elapsed < 1.5, beta_elapsed
        # Gamma waited for the lock and was then served (or refused as unavailable), never lost.
        assert limited["status"] in (200, 429), limited
        assert float(limited["elapsed"]) >= LOCK_HELD_S - 1.0, limited
