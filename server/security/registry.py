"""The live tenant registry: tenants, grants and keys kept current, and bearer keys checked against them.

The registry re-reads the tenants and keys files when they change (no restart), maps a bearer
key to its `Principal`, and throttles failed authentications per client address and per key id.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
import structlog
from pydantic import BaseModel, ConfigDict

from server.security.keys import (
    KeySecretError,
    key_secret_path,
    keyed_hash,
    legacy_pbkdf2,
    load_or_create_secret,
    matches,
    parse_bearer,
)
from server.security.keys_file import (
    KeyRecord,
    keys_path,
    migrate_record,
    read_keys_file,
    retire_removed_tenants,
    utcnow,
)
from server.security.tenants import DEFAULT_TENANT, Tenant, TenantsFileError, UnknownTenant, load_tenants
from server.security.throttle import FailureThrottle

log = structlog.get_logger()


class Principal(BaseModel):
    """Who is calling: a tenant, and the key that proved it (None on stdio)."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    key_id: str | None = None
    transport: Literal["stdio", "http"]


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
        now: Callable[[], datetime] = utcnow,
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
                migrate_record(
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
