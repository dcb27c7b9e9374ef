"""The tenants file: who may read which collections, and how much each tenant may use.

The tenants file is TOML, edited by hand by operators::

    [tenants.acme]
    collections = ["django*", "internal-handbook"]   # names or fnmatch globs
    requests_per_minute = 120
    daily_token_budget = 200000

A tenant may also carry ``id = "..."``, the identity its keys are bound to (see
`server.security.keys_file`). An unknown setting fails loudly: a typo such as
``request_per_minute`` in a security config must never silently mean "unlimited".

Without a tenants file the server runs in single-user mode: one ``default`` tenant that may read
every collection, with no rate limit or budget.
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_TENANT = "default"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TENANT_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class TenantsError(Exception):
    """Base of the errors of the tenants and keys files."""


class TenantsFileError(TenantsError):
    """The tenants file or keys file is missing, unreadable or invalid."""


class UnknownTenant(TenantsError, LookupError):
    """No tenant of that name is configured."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown tenant {name!r}: add a [tenants.{name}] table to the tenants file")
        self.name = name


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
            raise TenantsFileError(f"{tenants_file}: invalid [tenants.{name}]: {first_error(exc)}") from exc
    return tenants


def first_error(exc: Exception) -> str:
    """The first problem of a validation error as ``field: message`` (any other error as it reads)."""
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "value"
        return f"{where}: {err['msg']}"
    return str(exc)
