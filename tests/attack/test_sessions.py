"""Review items: MCP sessions are bounded per tenant and owned by their tenant; GET streams count
against the rate limit."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.attack.conftest import TENANTS, Deployment, deployed
from tests.mcp_harness import INITIALIZE, JSON_RPC_HEADERS

IDLE_S = 4.0
LIMITED = '\n[tenants.gamma]\ncollections = ["lumen"]\nrequests_per_minute = 3\n'


def _headers(dep: Deployment, tenant: str, session: str | None = None) -> dict[str, str]:
    headers = {**JSON_RPC_HEADERS, "Authorization": f"Bearer {dep.keys[tenant]}"}
    if session is not None:
        headers["mcp-session-id"] = session
    return headers


def _open(dep: Deployment, tenant: str) -> httpx.Response:
    return httpx.post(dep.url, json=INITIALIZE, headers=_headers(dep, tenant), timeout=10)


def test_sessions_are_bounded_per_tenant_owned_by_it_and_expire_when_idle(
    tmp_path: Path, lumen_data_dir: Path
) -> None:
    env = {
        "DOCGATE_SERVE__MAX_SESSIONS_PER_TENANT": "2",
        "DOCGATE_SERVE__SESSION_IDLE_TIMEOUT_S": str(IDLE_S),
    }
    with deployed(tmp_path, lumen_data_dir, tenants=TENANTS + LIMITED, **env) as dep:
        first, second = _open(dep, "acme"), _open(dep, "acme")
        assert first.status_code == second.status_code == 200
        third = _open(dep, "acme")
        assert third.status_code == 429 and "open sessions" in third.text
        assert _open(dep, "beta").status_code == 200  # another tenant is not affected
        session = first.headers["mcp-session-id"]
        # Another tenant's key cannot use acme's session: it looks like an unknown one.
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        stolen = httpx.post(dep.url, json=ping, headers=_headers(dep, "beta", session), timeout=10)
        assert stolen.status_code == 404
        closed = httpx.delete(dep.url, headers=_headers(dep, "acme", session), timeout=10)
        assert closed.status_code < 300
        assert _open(dep, "acme").status_code == 200  # a slot came free
        assert _open(dep, "acme").status_code == 429
        time.sleep(IDLE_S + 1.0)
        assert _open(dep, "acme").status_code == 200  # idle sessions expired
        # GET streams count against the rate limit like calls do.
        opened = _open(dep, "gamma")
        gamma_session = opened.headers["mcp-session-id"]
        statuses = []
        for _ in range(4):
            headers = {**_headers(dep, "gamma", gamma_session), "Accept": "text/event-stream"}
            with httpx.stream("GET", dep.url, headers=headers, timeout=10) as response:
                statuses.append(response.status_code)
        assert 429 in statuses, statuses
