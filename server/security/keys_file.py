"""The keys file beside the tenants file: key records, and creating, revoking and retiring keys.

``<tenants file stem>.keys.json`` is written only by docgate. It holds keyed hashes (HMAC-SHA-256
under the server secret in ``<stem>.keys.secret``, see `server.security.keys`), never keys, and
the identity of every tenant that has keys. JSON rather than TOML because the standard library
can write it (``tomllib`` only reads), and because keeping machine-written records out of the
hand-edited tenants file means an operator's comments and layout are never rewritten. Every
write takes a lock beside the file and replaces the file atomically.

Keys belong to a tenant *identity*, not to a name: a tenant's id is generated when its first key
is made (or set by the operator as ``id = "..."`` in its table) and is never reused. When a tenant
disappears from the tenants file, whoever notices first (the server on reload, any ``docgate keys``
command) revokes its keys and forgets its id, so a tenant re-added under the same name starts
with a new identity and the old keys stay dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer.atomic import write_atomic
from server.security.keys import (
    KEY_ID_BYTES,
    KEY_PREFIX,
    KEY_SECRET_BYTES,
    key_secret_path,
    keyed_hash,
    load_or_create_secret,
)
from server.security.tenants import (
    NAME_PATTERN,
    TENANT_ID_PATTERN,
    Tenant,
    TenantsError,
    TenantsFileError,
    UnknownTenant,
    first_error,
    load_tenants,
)

log = structlog.get_logger()


class UnknownKey(TenantsError, LookupError):
    """No key with that key id exists in the keys file."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown key id {key_id!r}: `docgate keys list` shows the existing ones")
        self.key_id = key_id


class KeyRecord(BaseModel):
    """One API key as stored: a keyed hash, never the key itself.

    `pbkdf2_sha256` records (with `iterations` and `salt`) are the legacy form: still accepted,
    rewritten as `hmac_sha256` on their first successful use.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(pattern=r"^[0-9a-f]{12}$")
    tenant: str = Field(pattern=NAME_PATTERN)
    tenant_id: str | None = Field(default=None, pattern=TENANT_ID_PATTERN)
    algorithm: Literal["hmac_sha256", "pbkdf2_sha256"] = "hmac_sha256"
    iterations: int | None = Field(default=None, ge=100_000)
    salt: str | None = Field(default=None, pattern=r"^[0-9a-f]{32,128}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    created: datetime
    expires: datetime | None = None
    revoked: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)

    def status(self, now: datetime) -> Literal["active", "revoked", "expired"]:
        if self.revoked is not None:
            return "revoked"
        return "active" if self.is_active(now) else "expired"

    def describe(self, now: datetime) -> dict[str, Any]:
        """Everything an operator may see: no salt, no hash."""
        info = self.model_dump(
            mode="json", include={"key_id", "tenant", "tenant_id", "created", "expires", "revoked"}
        )
        info["status"] = self.status(now)
        return info


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    # tenant name -> identity its keys are bound to; an entry is dropped when the tenant goes.
    tenant_ids: dict[str, str] = Field(default_factory=dict)
    keys: list[KeyRecord] = Field(default_factory=list)


def utcnow() -> datetime:
    return datetime.now(UTC)


def keys_path(tenants_file: Path) -> Path:
    """Where the keys for a tenants file live: ``tenants.toml`` → ``tenants.keys.json``."""
    return tenants_file.with_name(f"{tenants_file.stem}.keys.json")


class KeysFile(BaseModel):
    """The keys file as read: records by key id, and the identity of each tenant with keys."""

    model_config = ConfigDict(frozen=True)

    records: dict[str, KeyRecord]
    tenant_ids: dict[str, str]


def read_keys_file(tenants_file: Path) -> KeysFile:
    """Read the keys file beside `tenants_file` (absent means no keys yet)."""
    path = keys_path(tenants_file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return KeysFile(records={}, tenant_ids={})
    except OSError as exc:
        raise TenantsFileError(f"cannot read keys file {path}: {exc}") from exc
    try:
        parsed = _KeysFile.model_validate_json(data)
    except ValidationError as exc:
        raise TenantsFileError(f"invalid keys file {path}: {first_error(exc)}") from exc
    records: dict[str, KeyRecord] = {}
    for record in parsed.keys:
        if record.key_id in records:
            raise TenantsFileError(f"invalid keys file {path}: key id {record.key_id} appears twice")
        records[record.key_id] = record
    return KeysFile(records=records, tenant_ids=dict(parsed.tenant_ids))


def load_keys(tenants_file: Path) -> dict[str, KeyRecord]:
    """The key records beside `tenants_file`, by key id."""
    return dict(read_keys_file(tenants_file).records)


@contextlib.contextmanager
def _keys_lock(tenants_file: Path) -> Iterator[None]:
    # A sidecar lock file: the keys file itself is replaced by rename, so a lock on it would
    # guard an inode that the next writer no longer opens.
    lock_path = keys_path(tenants_file).with_suffix(".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_keys(tenants_file: Path, records: Iterable[KeyRecord], tenant_ids: dict[str, str]) -> None:
    """Replace the keys file atomically: temp file, fsync, rename, fsync the directory."""
    path = keys_path(tenants_file)
    payload = _KeysFile(keys=list(records), tenant_ids=dict(sorted(tenant_ids.items())))
    text = payload.model_dump_json(indent=2, exclude_none=True) + "\n"
    # 0600: hashes only, but still nobody else's business.
    write_atomic(path, text.encode("utf-8"), mode=0o600)


def _new_tenant_id() -> str:
    return f"t_{secrets.token_hex(8)}"


def _retire_removed(
    tenants: dict[str, Tenant], current: KeysFile, now: datetime
) -> tuple[dict[str, KeyRecord], dict[str, str], list[str]]:
    """Revoke the keys of tenants no longer configured and forget their ids (pure; no I/O)."""
    records = dict(current.records)
    tenant_ids = {name: tid for name, tid in current.tenant_ids.items() if name in tenants}
    retired = sorted(set(current.tenant_ids) - set(tenants))
    for key_id, record in current.records.items():
        if record.revoked is None and record.tenant not in tenants:
            records[key_id] = record.model_copy(update={"revoked": now})
            if record.tenant not in retired:
                retired.append(record.tenant)
    return records, tenant_ids, retired


def retire_removed_tenants(
    tenants_file: Path, tenants: dict[str, Tenant] | None = None, *, now: datetime | None = None
) -> list[str]:
    """Revoke the keys of every tenant missing from the tenants file; return the tenants retired."""
    tenants = load_tenants(tenants_file) if tenants is None else tenants
    with _keys_lock(tenants_file):
        current = read_keys_file(tenants_file)
        records, tenant_ids, retired = _retire_removed(tenants, current, now or utcnow())
        if retired:
            _write_keys(tenants_file, records.values(), tenant_ids)
    if retired:
        log.warning("tenant_keys_revoked", tenants=retired, reason="tenant removed from tenants file")
    return retired


def add_key(
    tenants_file: Path,
    tenant: str,
    expires: datetime | None = None,
    *,
    now: datetime | None = None,
    secret_file: Path | None = None,
) -> tuple[KeyRecord, str]:
    """Create a key for `tenant`; return its record and the plaintext key (shown once, never stored).

    Raises UnknownTenant when the tenants file has no such tenant, ValueError for an expiry that
    is not in the future, and KeySecretError when the server secret cannot be read or created.
    A naive `expires` is taken as UTC.
    """
    now = now or utcnow()
    if expires is not None:
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        if expires <= now:
            raise ValueError(f"expiry {expires.isoformat()} is not in the future")
    tenants = load_tenants(tenants_file)
    if tenant not in tenants:
        raise UnknownTenant(tenant)
    server_secret = load_or_create_secret(secret_file or key_secret_path(tenants_file))
    with _keys_lock(tenants_file):
        records, tenant_ids, _ = _retire_removed(tenants, read_keys_file(tenants_file), now)
        tenant_id = tenants[tenant].id or tenant_ids.get(tenant) or _new_tenant_id()
        tenant_ids[tenant] = tenant_id
        key_id = secrets.token_hex(KEY_ID_BYTES)
        while key_id in records:  # 48 bits make this vanishingly rare, but never reuse an id
            key_id = secrets.token_hex(KEY_ID_BYTES)
        secret = secrets.token_urlsafe(KEY_SECRET_BYTES)
        record = KeyRecord(
            key_id=key_id,
            tenant=tenant,
            tenant_id=tenant_id,
            hash=keyed_hash(server_secret, key_id, secret).hex(),
            created=now,
            expires=expires,
        )
        records[key_id] = record
        _write_keys(tenants_file, records.values(), tenant_ids)
    log.info("api_key_added", key_id=key_id, tenant=tenant, expires=expires.isoformat() if expires else None)
    return record, f"{KEY_PREFIX}{key_id}_{secret}"


def list_keys(tenants_file: Path) -> list[KeyRecord]:
    """All key records, oldest first."""
    return sorted(load_keys(tenants_file).values(), key=lambda r: (r.created, r.key_id))


def revoke_key(tenants_file: Path, key_id: str, *, now: datetime | None = None) -> KeyRecord:
    """Mark a key revoked (idempotent: an already revoked key keeps its first revocation time)."""
    with _keys_lock(tenants_file):
        current = read_keys_file(tenants_file)
        record = current.records.get(key_id)
        if record is None:
            raise UnknownKey(key_id)
        if record.revoked is None:
            record = record.model_copy(update={"revoked": now or utcnow()})
            _write_keys(tenants_file, {**current.records, key_id: record}.values(), dict(current.tenant_ids))
            log.info("api_key_revoked", key_id=key_id, tenant=record.tenant)
    return record


def migrate_record(
    tenants_file: Path, key_id: str, legacy_hash: str, new_hash: str, tenant_id: str | None
) -> None:
    """Rewrite one legacy PBKDF2 record in the keyed form (only if nobody changed it meanwhile)."""
    with _keys_lock(tenants_file):
        current = read_keys_file(tenants_file)
        record = current.records.get(key_id)
        if record is None or record.algorithm != "pbkdf2_sha256" or record.hash != legacy_hash:
            return
        tenant_ids = dict(current.tenant_ids)
        tenant_id = tenant_id or tenant_ids.get(record.tenant) or _new_tenant_id()
        tenant_ids.setdefault(record.tenant, tenant_id)
        migrated = record.model_copy(
            update={
                "algorithm": "hmac_sha256",
                "iterations": None,
                "salt": None,
                "hash": new_hash,
                "tenant_id": record.tenant_id or tenant_id,
            }
        )
        _write_keys(tenants_file, {**current.records, key_id: migrated}.values(), tenant_ids)
    log.info("api_key_migrated", key_id=key_id, algorithm="hmac_sha256")
