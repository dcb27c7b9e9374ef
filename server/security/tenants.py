"""Tenants, API keys and collection grants.

Two files, both beside each other:

* the tenants file (TOML, edited by hand by operators)::

      [tenants.acme]
      collections = ["django*", "internal-handbook"]   # names or fnmatch globs
      requests_per_minute = 120
      daily_token_budget = 200000

* the keys file ``<tenants file stem>.keys.json``, written only by ``docgate keys``. It holds salted
  PBKDF2 hashes, never keys. JSON rather than TOML because the standard library can write it
  (``tomllib`` only reads), and because keeping machine-written records out of the hand-edited
  file means an operator's comments and layout are never rewritten.

A key looks like ``dg_<key id>_<secret>``: the key id finds the record in O(1), and the secret
(256 random bits) is checked with one constant-time comparison of derived hashes.

Without a tenants file the server runs in single-user mode: one ``default`` tenant that may read
every collection, with no rate limit or budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
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

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer.atomic import write_atomic

log = structlog.get_logger()

DEFAULT_TENANT = "default"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KEY_PREFIX = "dg_"
# PBKDF2 cost. Keys carry 256 random bits, so the stretch guards against a leaked keys file
# being useful for nothing more than it already is; 200k keeps the first check near 60 ms.
# Stored per record so it can be raised later without invalidating existing keys.
PBKDF2_ITERATIONS = 200_000
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
    """One API key as stored: a salted hash, never the key itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(pattern=r"^[0-9a-f]{12}$")
    tenant: str = Field(pattern=NAME_PATTERN)
    algorithm: Literal["pbkdf2_sha256"] = "pbkdf2_sha256"
    iterations: int = Field(ge=100_000)
    salt: str = Field(pattern=r"^[0-9a-f]{32,128}$")
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
        info = self.model_dump(mode="json", include={"key_id", "tenant", "created", "expires", "revoked"})
        info["status"] = self.status(now)
        return info


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
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


def load_keys(tenants_file: Path) -> dict[str, KeyRecord]:
    """Read the keys file beside `tenants_file` (absent means no keys yet)."""
    path = keys_path(tenants_file)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
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
    return records


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "value"
        return f"{where}: {err['msg']}"
    return str(exc)


# ---------------------------------------------------------------- hashing


def _derive(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode("ascii"), salt, iterations)


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


def _write_keys(tenants_file: Path, records: Iterable[KeyRecord]) -> None:
    """Replace the keys file atomically: temp file, fsync, rename, fsync the directory."""
    path = keys_path(tenants_file)
    payload = _KeysFile(keys=list(records)).model_dump_json(indent=2) + "\n"
    # 0600: hashes only, but still nobody else's business.
    write_atomic(path, payload.encode("utf-8"), mode=0o600)


def add_key(
    tenants_file: Path, tenant: str, expires: datetime | None = None, *, now: datetime | None = None
) -> tuple[KeyRecord, str]:
    """Create a key for `tenant`; return its record and the plaintext key (shown once, never stored).

    Raises UnknownTenant when the tenants file has no such tenant, and ValueError for an
    expiry that is not in the future. A naive `expires` is taken as UTC.
    """
    now = now or _utcnow()
    if expires is not None:
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        if expires <= now:
            raise ValueError(f"expiry {expires.isoformat()} is not in the future")
    if tenant not in load_tenants(tenants_file):
        raise UnknownTenant(tenant)
    with _keys_lock(tenants_file):
        records = load_keys(tenants_file)
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        while key_id in records:  # 48 bits make this vanishingly rare, but never reuse an id
            key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        salt = secrets.token_bytes(16)
        record = KeyRecord(
            key_id=key_id,
            tenant=tenant,
            iterations=PBKDF2_ITERATIONS,
            salt=salt.hex(),
            hash=_derive(secret, salt, PBKDF2_ITERATIONS).hex(),
            created=now,
            expires=expires,
        )
        records[key_id] = record
        _write_keys(tenants_file, records.values())
    log.info("api_key_added", key_id=key_id, tenant=tenant, expires=expires.isoformat() if expires else None)
    return record, f"{KEY_PREFIX}{key_id}_{secret}"


def list_keys(tenants_file: Path) -> list[KeyRecord]:
    """All key records, oldest first."""
    return sorted(load_keys(tenants_file).values(), key=lambda r: (r.created, r.key_id))


def revoke_key(tenants_file: Path, key_id: str, *, now: datetime | None = None) -> KeyRecord:
    """Mark a key revoked (idempotent: an already revoked key keeps its first revocation time)."""
    with _keys_lock(tenants_file):
        records = load_keys(tenants_file)
        record = records.get(key_id)
        if record is None:
            raise UnknownKey(key_id)
        if record.revoked is None:
            record = record.model_copy(update={"revoked": now or _utcnow()})
            records[key_id] = record
            _write_keys(tenants_file, records.values())
            log.info("api_key_revoked", key_id=key_id, tenant=record.tenant)
    return record


# ---------------------------------------------------------------- the live registry


_Signature = tuple[int, int, int] | None


def _signature(path: Path) -> _Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    # Inode too: an atomic rename can leave mtime and size unchanged.
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class TenantRegistry:
    """Tenants, grants and keys, re-read when their files change, no restart needed.

    Every lookup stats both files (at most once per `check_interval_s`); a changed file is
    re-parsed, and an invalid edit is logged and ignored so the last good config keeps serving.
    """

    def __init__(
        self,
        tenants_file: Path | None,
        *,
        check_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._tenants_file = tenants_file
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._last_check = float("-inf")
        self._tenants: dict[str, Tenant] = {}
        self._keys: dict[str, KeyRecord] = {}
        self._tenants_sig: _Signature = None
        self._keys_sig: _Signature = None
        # key id -> (stored hash, fast digest of the accepted bearer). PBKDF2 runs once per key and
        # process; later requests compare a keyed BLAKE2 digest. Tied to the stored hash, so a
        # rewritten record misses the cache; revocation and expiry are checked on every call.
        self._verified: dict[str, tuple[str, bytes]] = {}
        self._cache_key = secrets.token_bytes(32)
        if tenants_file is None:
            self._tenants = {DEFAULT_TENANT: Tenant(name=DEFAULT_TENANT, collections=("*",))}
        else:
            # At start-up an invalid or missing file is fatal: serving with no tenants (or, worse,
            # falling back to single-user mode) would hide a broken config.
            self._tenants_sig = _signature(tenants_file)
            self._tenants = load_tenants(tenants_file)
            self._keys_sig = _signature(keys_path(tenants_file))
            self._keys = load_keys(tenants_file)
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

    def authenticate(self, bearer: str) -> Principal | None:
        """Map a bearer key to its principal; None for anything unknown, revoked, expired or malformed."""
        parts = parse_bearer(bearer)
        if parts is None:
            return None
        key_id, secret = parts
        self._refresh()
        record = self._keys.get(key_id)
        if record is None or not record.is_active(self._now()) or record.tenant not in self._tenants:
            return None
        fast = hmac.digest(self._cache_key, bearer.encode("ascii"), "blake2b")
        cached = self._verified.get(key_id)
        if cached is not None and cached[0] == record.hash:
            ok = hmac.compare_digest(cached[1], fast)
        else:
            derived = _derive(secret, bytes.fromhex(record.salt), record.iterations)
            ok = hmac.compare_digest(derived, bytes.fromhex(record.hash))
            if ok:
                self._verified[key_id] = (record.hash, fast)
        return Principal(tenant=record.tenant, key_id=key_id, transport="http") if ok else None

    def reload(self) -> None:
        """Re-read both files now (e.g. on SIGHUP), regardless of the stat interval."""
        self._refresh(force=True)

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
                except TenantsFileError as exc:
                    log.error(
                        "tenants_reload_failed", path=str(path), error=str(exc), kept="last good config"
                    )
            keys_sig = _signature(keys_path(path))
            if force or keys_sig != self._keys_sig:
                self._keys_sig = keys_sig
                try:
                    self._keys = load_keys(path)
                    self._verified = {k: v for k, v in self._verified.items() if k in self._keys}
                    log.info("keys_reloaded", path=str(keys_path(path)), keys=len(self._keys))
                except TenantsFileError as exc:
                    log.error("keys_reload_failed", error=str(exc), kept="last good keys")
