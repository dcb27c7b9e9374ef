"""Attack 7: a deleted tenant's keys must not come back when a tenant of the same name returns."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from server.security.keys_file import add_key, list_keys
from server.security.registry import TenantRegistry
from tests.attack.conftest import TENANTS, deployed
from tests.mcp_harness import INITIALIZE, JSON_RPC_HEADERS

GAMMA = '\n[tenants.gamma]\ncollections = ["lumen"]\n'


def _status(url: str, key: str) -> int:
    headers = {**JSON_RPC_HEADERS, "Authorization": f"Bearer {key}"}
    return httpx.post(url, json=INITIALIZE, headers=headers, timeout=10).status_code


def _until(url: str, key: str, status: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = _status(url, key)
        if got == status:
            return got
        time.sleep(0.3)
    return got


def test_removed_and_re_added_tenant_does_not_revive_old_keys(tmp_path: Path, lumen_data_dir: Path) -> None:
    with deployed(tmp_path, lumen_data_dir, tenants=TENANTS + GAMMA) as dep:
        old = dep.keys["gamma"]
        assert _status(dep.url, old) == 200
        dep.tenants_file.write_text(TENANTS, encoding="utf-8")  # gamma removed ...
        assert _until(dep.url, old, 401) == 401
        dep.tenants_file.write_text(TENANTS + GAMMA, encoding="utf-8")  # ... and a new gamma added
        time.sleep(1.0)  # past the reload interval
        assert _status(dep.url, old) == 401
        _, new = add_key(dep.tenants_file, "gamma")
        assert _until(dep.url, new, 200) == 200
        assert _status(dep.url, old) == 401
        records = {r.key_id: r for r in list_keys(dep.tenants_file)}
        old_record, new_record = records[old.split("_")[1]], records[new.split("_")[1]]
        assert old_record.revoked is not None
        assert old_record.tenant_id != new_record.tenant_id


def test_re_added_tenant_with_a_new_id_rejects_old_keys_even_when_nobody_saw_it_go(tmp_path: Path) -> None:
    # With an explicit `id` the identity is in the tenants file itself: no observer is needed.
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text(
        '[tenants.gamma]\nid = "gamma-2024-0001"\ncollections = ["*"]\n', encoding="utf-8"
    )
    _, old = add_key(tenants_file, "gamma")
    assert TenantRegistry(tenants_file).authenticate(old) is not None
    tenants_file.write_text(
        '[tenants.gamma]\nid = "gamma-2025-0002"\ncollections = ["*"]\n', encoding="utf-8"
    )
    registry = TenantRegistry(tenants_file)
    assert registry.authenticate(old) is None
    _, new = add_key(tenants_file, "gamma")
    registry.reload()
    assert registry.authenticate(new) is not None
