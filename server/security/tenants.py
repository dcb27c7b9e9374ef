"""Tenants, API keys and collection grants.

Two files, both beside each other:

* the tenants file (TOML, edited by hand by operators)::

      [tenants.acme]
      collections = ["django*", "internal-handbook"]   # names or fnmatch globs
      requests_per_minute = 120
      daily_token_budget = 200000

* the keys file ``<tenants file stem>.keys.json``, written only by docgate. It holds keyed hashes
  (HMAC-SHA-256 under the server secret in ``<stem>.keys.secret``, see `server.security.keys`),
  never keys, and the identity of every tenant that has keys. JSON rather than TOML because the
  standard library can write it (``tomllib`` only reads), and because keeping machine-written
  records out of the hand-edited file means an operator's comments and layout are never rewritten.

A key looks like ``dg_<key id>_<secret>``: the key id finds the record in O(1), and the secret
(256 random bits) is checked with one constant-time comparison of keyed hashes.

Keys belong to a tenant *identity*, not to a name: a tenant's id is generated when its first key
is made (or set by the operator as ``id = "..."`` in its table) and is never reused. When a tenant
disappears from the tenants file, whoever notices first (the server on reload, any ``docgate keys``
command) revokes its keys and forgets its id, so a tenant re-added under the same name starts
with a new identity and the old keys stay dead.

Without a tenants file the server runs in single-user mode: one ``default`` tenant that may read
every collection, with no rate limit or budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import re
import secrets
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer.atomic import write_atomic
from server.security.keys import (
    KeySecretError,
    key_secret_path,
    keyed_hash,
    legacy_pbkdf2,
    load_or_create_secret,
    matches,
)
from server.security.throttle import FailureThrottle

log = structlog.get_logger()

DEFAULT_TENANT = "default"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KEY_PREFIX = "dg_"
TENANT_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
# Longest bearer string worth looking at; anything longer is rejected before any hashing.
MAX_BEARER_LENGTH = 256
_KEY_ID_BYTES = 6  # 12 hex characters
_SECRET_BYTES = 32  # 43 url-safe base64 characters
_BEARER_RE = re.compile(r"dg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", re.ASCII)


class TenantsError(Exception):
    """Base of the errors this module raises."""


class TenantsFileError(TenantsError):
    """The tenants file or keys file is missing, unreadable or invalid."""


class UnknownTenant(TenantsError, LookupError):
    """No tenant of that name is configured."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown tenant {name!r}: add a [tenants.{name}] table to the tenants file")
        self.name = name


class UnknownKey(TenantsError, LookupError):
    """No key with that key id exists in the keys file."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown key id {key_id!r}: `docgate keys list` shows the existing ones")
        self.key_id = key_id


class Tenant(BaseModel):
    """One team sharing the server: what it may read and how much it may use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    id: str | None = Field(
        default=None,
        pattern=TENANT_ID_PATTERN,
        description="Identity that keys are bound to; generated when absent. Never reuse one.",
    )
    collections: tuple[str, ...] = Field(
        default=(), description="Collection names or fnmatch globs this tenant may read."
    )
    requests_per_minute: int | None = Field(default=None, ge=1)
    daily_token_budget: int | None = Field(default=None, ge=1)

    def may_read(self, collection: str) -> bool:
        # fnmatchcase: collection names are case-sensitive on every platform.
        return any(fnmatchcase(collection, pattern) for pattern in self.collections)


class Principal(BaseModel):
    """Who is calling: a tenant, and the key that proved it (None on stdio)."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    key_id: str | None = None
    transport: Literal["stdio", "http"]


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


def _utcnow() -> datetime:
    return datetime.now(UTC)


def keys_path(tenants_file: Path) -> Path:
    """Where the keys for a tenants file live: ``tenants.toml`` → ``tenants.keys.json``."""
    return tenants_file.with_name(f"{tenants_file.stem}.keys.json")


# ---------------------------------------------------------------- reading


def load_tenants(tenants_file: Path) -> dict[str, Tenant]:
    """Parse the tenants file; raise TenantsFileError naming the problem."""
    try:
        raw = tomllib.loads(tenants_file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TenantsFileError(f"tenants file not found: {tenants_file}") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TenantsFileError(f"cannot read tenants file {tenants_file}: {exc}") from exc
    # Strict on unknown keys: a typo such as `request_per_minute` in a security config must fail
    # loudly rather than silently mean "unlimited".
    unknown = sorted(set(raw) - {"tenants"})
    if unknown:
        raise TenantsFileError(f"{tenants_file}: unknown top-level key(s) {unknown}; only [tenants.<name>]")
    tables = raw.get("tenants", {})
    if not isinstance(tables, dict):
        raise TenantsFileError(f"{tenants_file}: `tenants` must be a table of [tenants.<name>] tables")
    tenants: dict[str, Tenant] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise TenantsFileError(f"{tenants_file}: [tenants.{name}] must be a table")
        try:
            tenants[name] = Tenant(name=name, **table)
        except (ValidationError, TypeError) as exc:
            raise TenantsFileError(f"{tenants_file}: invalid [tenants.{name}]: {_first_error(exc)}") from exc
    return tenants


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
        raise TenantsFileError(f"invalid keys file {path}: {_first_error(exc)}") from exc
    records: dict[str, KeyRecord] = {}
    for record in parsed.keys:
        if record.key_id in records:
            raise TenantsFileError(f"invalid keys file {path}: key id {record.key_id} appears twice")
        records[record.key_id] = record
    return KeysFile(records=records, tenant_ids=dict(parsed.tenant_ids))


def load_keys(tenants_file: Path) -> dict[str, KeyRecord]:
    """The key records beside `tenants_file`, by key id."""
    return dict(read_keys_file(tenants_file).records)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "value"
        return f"{where}: {err['msg']}"
    return str(exc)


def parse_bearer(bearer: object) -> tuple[str, str] | None:
    """Split ``dg_<key id>_<secret>`` into its parts; None for anything else."""
    if not isinstance(bearer, str) or len(bearer) > MAX_BEARER_LENGTH:
        return None
    match = _BEARER_RE.fullmatch(bearer)
    return (match.group(1), match.group(2)) if match else None


# ---------------------------------------------------------------- writing the keys file


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
        records, tenant_ids, retired = _retire_removed(tenants, current, now or _utcnow())
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
    now = now or _utcnow()
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
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        while key_id in records:  # 48 bits make this vanishingly rare, but never reuse an id
            key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
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
            record = record.model_copy(update={"revoked": now or _utcnow()})
            _write_keys(tenants_file, {**current.records, key_id: record}.values(), dict(current.tenant_ids))
            log.info("api_key_revoked", key_id=key_id, tenant=record.tenant)
    return record


def _migrate_record(
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


# ---------------------------------------------------------------- the live registry


_Signature = tuple[int, int, int] | None


def _signature(path: Path) -> _Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    # Inode too: an atomic rename can leave mtime and size unchanged.
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class AuthResult(BaseModel):
    """The outcome of checking one bearer: a principal, or a refusal (throttled: wait that long)."""

    model_config = ConfigDict(frozen=True)

    principal: Principal | None = None
    retry_after_s: float | None = None


class TenantRegistry:
    """Tenants, grants and keys, re-read when their files change, no restart needed.

    Every lookup stats both files (at most once per `check_interval_s`); a changed file is
    re-parsed, and an invalid edit is logged and ignored so the last good config keeps serving.

    Failed authentications are throttled per client address and per key id
    (`auth_failures_per_minute` each). A throttled key id still accepts its right secret from
    addresses where it succeeded before: otherwise anybody who learnt a key id (it is not secret:
    it appears in the audit log) could lock its tenant out.
    """

    def __init__(
        self,
        tenants_file: Path | None,
        *,
        check_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        secret_file: Path | None = None,
        auth_failures_per_minute: int = 30,
    ) -> None:
        self._tenants_file = tenants_file
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._last_check = float("-inf")
        self._tenants: dict[str, Tenant] = {}
        self._keys: dict[str, KeyRecord] = {}
        self._tenant_ids: dict[str, str] = {}
        self._tenants_sig: _Signature = None
        self._keys_sig: _Signature = None
        self._server_secret = b""
        self._by_address = FailureThrottle(auth_failures_per_minute, 60.0, clock=clock)
        self._by_key_id = FailureThrottle(auth_failures_per_minute, 60.0, clock=clock)
        self._trusted: dict[str, set[str]] = {}  # key id -> addresses it succeeded from
        # The legacy KDF is slow: one at a time, so a flood cannot take every worker thread.
        self._legacy_slot = threading.Semaphore(1)
        if tenants_file is None:
            self._tenants = {DEFAULT_TENANT: Tenant(name=DEFAULT_TENANT, collections=("*",))}
        else:
            # At start-up an invalid or missing file is fatal: serving with no tenants (or, worse,
            # falling back to single-user mode) would hide a broken config.
            try:
                self._server_secret = load_or_create_secret(secret_file or key_secret_path(tenants_file))
            except KeySecretError as exc:
                raise TenantsFileError(str(exc)) from exc
            self._tenants_sig = _signature(tenants_file)
            self._tenants = load_tenants(tenants_file)
            retire_removed_tenants(tenants_file, self._tenants, now=self._now())
            self._keys_sig = _signature(keys_path(tenants_file))
            self._load_keys()
            self._last_check = self._clock()
            log.info(
                "tenants_loaded", path=str(tenants_file), tenants=len(self._tenants), keys=len(self._keys)
            )

    @property
    def single_user(self) -> bool:
        return self._tenants_file is None

    @property
    def tenants_file(self) -> Path | None:
        return self._tenants_file

    def tenants(self) -> dict[str, Tenant]:
        self._refresh()
        return dict(self._tenants)

    def tenant(self, name: str) -> Tenant:
        self._refresh()
        try:
            return self._tenants[name]
        except KeyError:
            raise UnknownTenant(name) from None

    def granted(self, tenant: str, collections: Iterable[str]) -> list[str]:
        """The subset of `collections` the tenant may read, in the given order."""
        grant = self.tenant(tenant)
        return [c for c in collections if grant.may_read(c)]

    def local_principal(self, tenant: str | None = None) -> Principal:
        """The principal for stdio: the operator picks the tenant (flag/env/config), never the client."""
        name = tenant or DEFAULT_TENANT
        self.tenant(name)  # raises UnknownTenant
        return Principal(tenant=name, key_id=None, transport="stdio")

    def authenticate(self, bearer: str, address: str = "-") -> Principal | None:
        """Map a bearer key to its principal; None for anything unknown, revoked, expired, malformed
        or throttled. Blocking (file checks, and the legacy KDF once per old key): the server calls
        `authenticate_async`."""
        self._refresh()
        outcome = self._check(bearer, address)
        if isinstance(outcome, tuple):
            record, secret = outcome
            outcome = self._settle(record, address, self._verify_legacy(record, secret))
        return outcome.principal

    async def authenticate_async(self, bearer: str, address: str = "-") -> AuthResult:
        """`authenticate` for the event loop: the fast keyed hash runs inline (microseconds);
        re-reading the files and the legacy KDF run on a worker thread."""
        await self.refresh_async()
        outcome = self._check(bearer, address)
        if isinstance(outcome, tuple):
            record, secret = outcome
            ok = await anyio.to_thread.run_sync(self._verify_legacy, record, secret)
            outcome = self._settle(record, address, ok)
        return outcome

    def _check(self, bearer: str, address: str) -> AuthResult | tuple[KeyRecord, str]:
        """Everything but the legacy KDF; a (record, secret) pair means "verify the legacy hash"."""
        wait = self._by_address.retry_after(address)
        if wait is not None:
            return AuthResult(retry_after_s=wait)
        parts = parse_bearer(bearer)
        if parts is None:
            self._by_address.fail(address)
            return AuthResult()
        key_id, secret = parts
        wait = self._by_key_id.retry_after(key_id)
        if wait is not None and address not in self._trusted.get(key_id, ()):
            return AuthResult(retry_after_s=wait)
        record = self._keys.get(key_id)
        if record is not None and record.algorithm == "pbkdf2_sha256":
            return (record, secret) if self._usable(record) else self._settle(record, address, False)
        stored = bytes.fromhex(record.hash) if record is not None else None
        # Unknown ids take the same HMAC and comparison as known ones: no timing tells them apart.
        ok = matches(self._server_secret, key_id, secret, stored)
        if record is None:
            self._fail(key_id, address)
            return AuthResult()
        return self._settle(record, address, ok and self._usable(record))

    def _usable(self, record: KeyRecord) -> bool:
        if not record.is_active(self._now()) or record.tenant not in self._tenants:
            return False
        if record.tenant_id is None:
            return True  # a legacy record: bound to its tenant on first use
        tenant = self._tenants[record.tenant]
        return record.tenant_id == (tenant.id or self._tenant_ids.get(record.tenant))

    def _settle(self, record: KeyRecord, address: str, ok: bool) -> AuthResult:
        if not ok:
            self._fail(record.key_id, address)
            return AuthResult()
        trusted = self._trusted.setdefault(record.key_id, set())
        if len(trusted) < 64:
            trusted.add(address)
        return AuthResult(principal=Principal(tenant=record.tenant, key_id=record.key_id, transport="http"))

    def _fail(self, key_id: str, address: str) -> None:
        self._by_address.fail(address)
        self._by_key_id.fail(key_id)

    def _verify_legacy(self, record: KeyRecord, secret: str) -> bool:
        """Check a PBKDF2 record once; on success rewrite it in the keyed form. Blocking."""
        if record.salt is None or record.iterations is None:
            return False
        with self._legacy_slot:
            derived = legacy_pbkdf2(secret, bytes.fromhex(record.salt), record.iterations)
        if not hmac.compare_digest(derived, bytes.fromhex(record.hash)) or not self._usable(record):
            return False
        if self._tenants_file is not None:
            tenant = self._tenants.get(record.tenant)
            new_hash = keyed_hash(self._server_secret, record.key_id, secret).hex()
            try:
                _migrate_record(
                    self._tenants_file, record.key_id, record.hash, new_hash, tenant.id if tenant else None
                )
            except (OSError, TenantsFileError) as exc:
                log.error("api_key_migration_failed", key_id=record.key_id, error=str(exc))
            self.reload()
        return True

    def reload(self) -> None:
        """Re-read both files now (e.g. on SIGHUP), regardless of the stat interval."""
        self._refresh(force=True)

    async def refresh_async(self) -> None:
        """Pick up edited tenants/keys files without touching the disk on the event loop."""
        if self._refresh_due():
            await anyio.to_thread.run_sync(self._refresh)

    def _refresh_due(self) -> bool:
        return self._tenants_file is not None and self._clock() - self._last_check >= self._check_interval_s

    def _load_keys(self) -> None:
        assert self._tenants_file is not None
        current = read_keys_file(self._tenants_file)
        self._keys = dict(current.records)
        self._tenant_ids = dict(current.tenant_ids)

    def _refresh(self, *, force: bool = False) -> None:
        path = self._tenants_file
        if path is None:
            return
        now = self._clock()
        if not force and now - self._last_check < self._check_interval_s:
            return
        with self._lock:
            if not force and now - self._last_check < self._check_interval_s:
                return
            self._last_check = now
            tenants_sig = _signature(path)
            if force or tenants_sig != self._tenants_sig:
                # Remember the signature even when the edit is bad, so one bad edit logs one error.
                self._tenants_sig = tenants_sig
                try:
                    self._tenants = load_tenants(path)
                    log.info("tenants_reloaded", path=str(path), tenants=len(self._tenants))
                    retire_removed_tenants(path, self._tenants, now=self._now())
                except TenantsFileError as exc:
                    log.error(
                        "tenants_reload_failed", path=str(path), error=str(exc), kept="last good config"
                    )
                except OSError as exc:
                    log.error("tenant_retirement_failed", path=str(path), error=str(exc))
            keys_sig = _signature(keys_path(path))
            if force or keys_sig != self._keys_sig:
                self._keys_sig = keys_sig
                try:
                    self._load_keys()
                    self._trusted = {k: v for k, v in self._trusted.items() if k in self._keys}
                    log.info("keys_reloaded", path=str(keys_path(path)), keys=len(self._keys))
                except TenantsFileError as exc:
                    log.error("keys_reload_failed", error=str(exc), kept="last good keys")
