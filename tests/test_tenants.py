"""Tenants, API keys and grants: verification, hot reload, and the keys file on disk."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from server.security.keys import MAX_BEARER_LENGTH
from server.security.keys_file import UnknownKey, add_key, keys_path, list_keys, revoke_key
from server.security.registry import Principal, TenantRegistry
from server.security.tenants import DEFAULT_TENANT, TenantsFileError, UnknownTenant

TENANTS = """\
# hand-written by an operator; docgate must never rewrite this file
[tenants.acme]
collections = ["django*", "internal-handbook"]
requests_per_minute = 120
daily_token_budget = 200000

[tenants.beta]
collections = ["python-3.12"]
"""


def write(path: Path, text: str) -> None:
    """Rewrite a watched file and move its mtime on, as a later edit by an operator would."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(old + 2_000_000_000, old + 2_000_000_000))


@pytest.fixture
def tenants_file(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS, encoding="utf-8")
    return path


@pytest.fixture
def registry(tenants_file: Path) -> TenantRegistry:
    return TenantRegistry(tenants_file, check_interval_s=0)


# ---------------------------------------------------------------- key verification


def test_new_key_authenticates_as_its_tenant(tenants_file: Path, registry: TenantRegistry) -> None:
    record, key = add_key(tenants_file, "acme")
    assert key.startswith(f"dg_{record.key_id}_")
    assert registry.authenticate(key) == Principal(tenant="acme", key_id=record.key_id, transport="http")


def test_second_check_of_a_key_gives_the_same_principal(tenants_file: Path, registry: TenantRegistry) -> None:
    _, key = add_key(tenants_file, "acme")
    first = registry.authenticate(key)
    assert first is not None
    assert registry.authenticate(key) == first


def test_key_with_wrong_secret_is_rejected(tenants_file: Path, registry: TenantRegistry) -> None:
    record, key = add_key(tenants_file, "acme")
    assert registry.authenticate(key) is not None  # a cached success must not help a forgery
    prefix = f"dg_{record.key_id}_"
    secret = key[len(prefix) :]
    forged = prefix + ("A" if secret[0] != "A" else "B") + secret[1:]
    assert registry.authenticate(forged) is None


def test_key_with_unknown_key_id_is_rejected(tenants_file: Path, registry: TenantRegistry) -> None:
    record, key = add_key(tenants_file, "acme")
    other_id = "0" * 12 if record.key_id != "0" * 12 else "1" * 12
    assert registry.authenticate(key.replace(record.key_id, other_id)) is None


def test_revoked_key_stops_working_without_a_restart(tenants_file: Path, registry: TenantRegistry) -> None:
    record, key = add_key(tenants_file, "acme")
    assert registry.authenticate(key) is not None
    revoked = revoke_key(tenants_file, record.key_id)
    assert revoked.revoked is not None
    assert registry.authenticate(key) is None


def test_revoking_twice_keeps_the_first_revocation_time(tenants_file: Path) -> None:
    record, _ = add_key(tenants_file, "acme")
    first = revoke_key(tenants_file, record.key_id)
    second = revoke_key(tenants_file, record.key_id)
    assert second.revoked == first.revoked


def test_revoking_an_unknown_key_id_raises(tenants_file: Path) -> None:
    with pytest.raises(UnknownKey, match="keys list"):
        revoke_key(tenants_file, "abcdefabcdef")


def test_expired_key_is_rejected(tenants_file: Path) -> None:
    now = datetime.now(UTC)
    _, key = add_key(tenants_file, "acme", expires=now + timedelta(days=1))
    clock = {"now": now}
    registry = TenantRegistry(tenants_file, check_interval_s=0, now=lambda: clock["now"])
    assert registry.authenticate(key) is not None
    clock["now"] = now + timedelta(days=1, seconds=1)
    assert registry.authenticate(key) is None


def test_key_cannot_be_created_already_expired(tenants_file: Path) -> None:
    with pytest.raises(ValueError, match="not in the future"):
        add_key(tenants_file, "acme", expires=datetime.now(UTC) - timedelta(seconds=1))


def test_key_for_unknown_tenant_is_refused(tenants_file: Path) -> None:
    with pytest.raises(UnknownTenant, match=r"\[tenants.nobody\]"):
        add_key(tenants_file, "nobody")
    assert not keys_path(tenants_file).exists()


@pytest.mark.parametrize(
    "bearer",
    [
        "",
        " ",
        "dg_",
        "dg__",
        "Bearer dg_0123456789ab_" + "A" * 43,
        "0123456789ab_" + "A" * 43,  # no prefix
        "dg_0123456789AB_" + "A" * 43,  # upper-case key id
        "dg_0123456789ab_" + "A" * 42,  # secret too short
        "dg_0123456789ab_" + "A" * 44,  # secret too long
        "dg_0123456789ab_" + "A" * 43 + "\n",  # trailing newline
        "dg_0123456789ab_" + "Ä" * 43,  # non-ASCII secret
        "dg_٠١٢٣٤٥٦٧٨٩ab_" + "A" * 43,  # Arabic-Indic digits in the key id
        "dg_0123456789ab_" + "A" * 10_000,  # huge
        "x" * (MAX_BEARER_LENGTH * 100),
        "\x00" * 64,
        "dg_../../etc/pas_" + "A" * 43,
        "\ud800",  # lone surrogate
    ],
)
def test_malformed_bearer_is_rejected_without_raising(registry: TenantRegistry, bearer: str) -> None:
    assert registry.authenticate(bearer) is None


def test_non_string_bearer_is_rejected_without_raising(registry: TenantRegistry) -> None:
    assert registry.authenticate(None) is None  # type: ignore[arg-type]
    assert registry.authenticate(b"dg_0123456789ab_" + b"A" * 43) is None  # type: ignore[arg-type]


def test_key_stops_working_when_its_tenant_is_removed(tenants_file: Path, registry: TenantRegistry) -> None:
    _, key = add_key(tenants_file, "beta")
    assert registry.authenticate(key) is not None
    write(tenants_file, TENANTS.split("[tenants.beta]")[0])
    assert registry.authenticate(key) is None


# ---------------------------------------------------------------- the keys file


def test_keys_file_sits_beside_the_tenants_file_and_holds_no_key(tenants_file: Path) -> None:
    before = tenants_file.read_bytes()
    record, key = add_key(tenants_file, "acme")
    path = keys_path(tenants_file)
    assert path == tenants_file.parent / "tenants.keys.json"
    text = path.read_text(encoding="utf-8")
    assert key not in text
    assert key[len(f"dg_{record.key_id}_") :] not in text
    stored = json.loads(text)["keys"][0]
    assert stored["key_id"] == record.key_id
    # A keyed hash under the server secret, which lives in its own 0600 file, not in this one.
    assert stored["algorithm"] == "hmac_sha256"
    assert stored["tenant_id"]
    secret_file = tenants_file.parent / "tenants.keys.secret"
    assert secret_file.stat().st_mode & 0o077 == 0
    assert secret_file.read_text().strip() not in text
    assert tenants_file.read_bytes() == before  # the hand-edited file is untouched
    assert path.stat().st_mode & 0o077 == 0


def test_each_key_gets_its_own_hash(tenants_file: Path) -> None:
    add_key(tenants_file, "acme")
    add_key(tenants_file, "acme")
    hashes = {r.hash for r in list_keys(tenants_file)}
    assert len(hashes) == 2


def test_listing_keys_of_a_fresh_setup_is_empty(tenants_file: Path) -> None:
    assert list_keys(tenants_file) == []


def test_concurrent_key_creation_loses_no_record(tenants_file: Path) -> None:
    created: list[str] = []

    def create() -> None:
        record, _ = add_key(tenants_file, "acme")
        created.append(record.key_id)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.key_id for r in list_keys(tenants_file)) == sorted(created)
    assert not list(tenants_file.parent.glob("*.tmp"))


# ---------------------------------------------------------------- grants and modes


def test_glob_grants_filter_collections(registry: TenantRegistry) -> None:
    offered = ["django-5.1", "django", "flask", "internal-handbook", "internal-handbook-old", "Django-4"]
    assert registry.granted("acme", offered) == ["django-5.1", "django", "internal-handbook"]
    assert registry.granted("beta", offered) == []


def test_single_user_mode_grants_every_collection_without_limits() -> None:
    registry = TenantRegistry(None)
    assert registry.single_user
    tenant = registry.tenant(DEFAULT_TENANT)
    assert tenant.requests_per_minute is None
    assert tenant.daily_token_budget is None
    assert registry.granted(DEFAULT_TENANT, ["a", "b.c"]) == ["a", "b.c"]
    assert registry.local_principal() == Principal(tenant=DEFAULT_TENANT, transport="stdio")
    assert registry.authenticate("dg_0123456789ab_" + "A" * 43) is None


def test_unknown_tenant_raises_with_a_fix(registry: TenantRegistry) -> None:
    with pytest.raises(UnknownTenant, match=r"\[tenants.ghost\]"):
        registry.tenant("ghost")
    with pytest.raises(UnknownTenant):
        registry.granted("ghost", ["django"])


def test_stdio_principal_uses_the_operators_tenant(registry: TenantRegistry) -> None:
    assert registry.local_principal("beta") == Principal(tenant="beta", key_id=None, transport="stdio")
    with pytest.raises(UnknownTenant):
        registry.local_principal()  # no `default` tenant in a multi-tenant file


def test_missing_tenants_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(TenantsFileError, match="not found"):
        TenantRegistry(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[tenants.acme]\ncollections = ['x']\nrequest_per_minute = 5\n", "request_per_minute"),
        ("[tenants.acme]\ncollections = 'x'\n", "collections"),
        ("[tenants.acme]\nrequests_per_minute = 0\n", "requests_per_minute"),
        ('[tenants."bad name"]\n', "bad name"),
        ("[tenant.acme]\n", "unknown top-level"),
        ("[tenants.acme\n", "cannot read"),
    ],
)
def test_invalid_tenants_file_is_refused_with_the_reason(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TenantsFileError, match=complaint):
        TenantRegistry(path)


# ---------------------------------------------------------------- hot reload


def test_grant_changes_apply_without_a_restart(tenants_file: Path, registry: TenantRegistry) -> None:
    assert registry.granted("beta", ["flask"]) == []
    write(tenants_file, TENANTS.replace('["python-3.12"]', '["python-3.12", "flask"]'))
    assert registry.granted("beta", ["flask"]) == ["flask"]
    write(tenants_file, TENANTS + '\n[tenants.gamma]\ncollections = ["*"]\n')
    assert registry.tenant("gamma").collections == ("*",)


def test_key_added_later_works_without_a_restart(tenants_file: Path, registry: TenantRegistry) -> None:
    assert registry.authenticate("dg_0123456789ab_" + "A" * 43) is None
    _, key = add_key(tenants_file, "acme")
    assert registry.authenticate(key) is not None


def test_invalid_edit_keeps_the_last_good_config(tenants_file: Path, registry: TenantRegistry) -> None:
    _, key = add_key(tenants_file, "acme")
    with capture_logs() as logs:
        write(tenants_file, TENANTS + "\n[tenants.acme\n")
        assert registry.granted("acme", ["django"]) == ["django"]
        assert registry.authenticate(key) is not None
        assert registry.tenant("beta").collections == ("python-3.12",)
        registry.tenant("acme")  # a second look must not log the same bad edit again
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == ["tenants_reload_failed"]
    write(tenants_file, TENANTS.replace('["python-3.12"]', '["flask"]'))
    assert registry.tenant("beta").collections == ("flask",)


def test_damaged_keys_file_keeps_the_last_good_keys(tenants_file: Path, registry: TenantRegistry) -> None:
    _, key = add_key(tenants_file, "acme")
    assert registry.authenticate(key) is not None
    with capture_logs() as logs:
        write(keys_path(tenants_file), "{not json")
        assert registry.authenticate(key) is not None
    assert any(e["event"] == "keys_reload_failed" for e in logs)


def test_file_changes_are_noticed_only_after_the_check_interval(tenants_file: Path) -> None:
    now = {"t": 100.0}
    registry = TenantRegistry(tenants_file, check_interval_s=0.5, clock=lambda: now["t"])
    write(tenants_file, TENANTS.replace('["python-3.12"]', '["flask"]'))
    now["t"] += 0.2
    assert registry.tenant("beta").collections == ("python-3.12",)
    now["t"] += 0.4
    assert registry.tenant("beta").collections == ("flask",)


def test_reload_reads_the_files_at_once(tenants_file: Path) -> None:
    registry = TenantRegistry(tenants_file, check_interval_s=3600)
    write(tenants_file, TENANTS.replace('["python-3.12"]', '["flask"]'))
    registry.reload()
    assert registry.tenant("beta").collections == ("flask",)
