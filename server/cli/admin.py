"""Operator commands: `docgate keys ...` and `docgate audit ...`.

Two Typer apps for the main CLI to mount (`app.add_typer(keys_app, name="keys")`). Exit codes:
0 success, 1 a check failed (audit verify found damage), 2 bad input or configuration.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from server.security.audit_keys import AuditKeyError, VerifyKeys
from server.security.audit_verify import verify
from server.security.keys import KeySecretError
from server.security.keys_file import UnknownKey, add_key, list_keys, revoke_key
from server.security.tenants import TenantsFileError, UnknownTenant
from server.settings import ServerSettings

keys_app = typer.Typer(help="Create, list and revoke API keys for tenants.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the audit log.", no_args_is_help=True)

TenantsFile = Annotated[
    Path,
    typer.Option(
        "--tenants-file",
        envvar="DOCGATE_TENANTS_FILE",
        help="Tenants TOML file; keys are kept beside it in <stem>.keys.json.",
        dir_okay=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
KeySecretFile = Annotated[
    Path | None,
    typer.Option(
        "--key-secret-file",
        envvar="DOCGATE_AUTH__KEY_SECRET_FILE",
        help="Server secret the key hashes are keyed with (default: <tenants stem>.keys.secret).",
        dir_okay=False,
    ),
]


@keys_app.callback()
def _keys() -> None:
    """Create, list and revoke API keys for tenants."""


@audit_app.callback()
def _audit() -> None:
    """Check the audit log."""


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _parse_expiry(value: str) -> datetime:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        _fail(f"--expires must be a date as YYYY-MM-DD, got {value!r}")
    # The key stops working at the start of that day, UTC; the exact moment is printed back.
    return datetime.combine(day, time.min, tzinfo=UTC)


@keys_app.command("add")
def keys_add(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key belongs to.")],
    tenants_file: TenantsFile,
    expires: Annotated[
        str | None, typer.Option("--expires", help="YYYY-MM-DD; the key stops working at 00:00 UTC that day.")
    ] = None,
    as_json: AsJson = False,
    key_secret_file: KeySecretFile = None,
) -> None:
    """Create a key for a tenant and print it once: only its keyed hash is stored."""
    expiry = _parse_expiry(expires) if expires else None
    try:
        record, key = add_key(tenants_file, tenant, expiry, secret_file=key_secret_file)
    except UnknownTenant:
        _fail(f"unknown tenant {tenant!r} in {tenants_file}; add a [tenants.{tenant}] table first")
    except (TenantsFileError, KeySecretError, ValueError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"key_id": record.key_id, "key": key}))
        return
    typer.echo(key)
    until = f", expires {record.expires.isoformat()}" if record.expires else ""
    typer.echo(
        f"key id {record.key_id} for tenant {record.tenant}{until}. "
        "Store the key now: it cannot be shown again.",
        err=True,
    )


@keys_app.command("list")
def keys_list(tenants_file: TenantsFile, as_json: AsJson = False) -> None:
    """List keys with their status; never prints keys or hashes."""
    try:
        records = list_keys(tenants_file)
    except (TenantsFileError, OSError) as exc:
        _fail(str(exc))
    now = datetime.now(UTC)
    rows = [record.describe(now) for record in records]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no keys", err=True)
        return
    columns = ("key_id", "tenant", "status", "created", "expires", "revoked")
    table = [columns, *[tuple(str(row[c] or "-") for c in columns) for row in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id, as shown by `keys list`.")],
    tenants_file: TenantsFile,
) -> None:
    """Revoke a key; it stops working within a second, without a restart."""
    try:
        record = revoke_key(tenants_file, key_id)
    except UnknownKey:
        _fail(f"unknown key id {key_id!r}; `docgate keys list` shows the existing ones")
    except (TenantsFileError, OSError) as exc:
        _fail(str(exc))
    when = record.revoked.isoformat() if record.revoked else "now"
    typer.echo(f"revoked {record.key_id} (tenant {record.tenant}) at {when}")


@audit_app.command("verify")
def audit_verify(
    file: Annotated[
        Path | None, typer.Argument(help="Audit log to check (default: the configured log).")
    ] = None,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            "--audit-log", envvar="DOCGATE_AUDIT_LOG", help="Audit log file (JSONL).", dir_okay=False
        ),
    ] = None,
    key_dir: Annotated[
        Path | None,
        typer.Option("--key-dir", help="Directory with chain.key and signing.pub (default: configured)."),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="Checkpoint signing public key (hex), if kept apart.")
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option("--checkpoints", help="More checkpoint files to check against (e.g. the sink's copy)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
) -> None:
    """Check the keyed chain, the checkpoint signatures and that the log reaches the latest
    checkpoint; exit 1 naming the first problem."""
    try:
        settings = ServerSettings.load(config)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc).splitlines()[0])
    path = file or audit_log or settings.audit_path
    try:
        keys = VerifyKeys.load(key_dir or settings.audit_key_dir, public_key_file=public_key)
    except AuditKeyError as exc:
        _fail(f"{exc}; pass --key-dir (and --public-key) where the audit keys are kept")
    try:
        result = verify(path, keys, extra_checkpoints=checkpoints or [])
    except FileNotFoundError:
        _fail(f"no audit log at {path}")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc}")
    if result.ok:
        typer.echo(
            f"ok: {result.records} records (head {result.head_hash}); {result.checkpoints} signed "
            f"checkpoints, the latest covering record {result.anchored}"
        )
        return
    where = f"line {result.first_bad_line}: " if result.first_bad_line else ""
    _fail(f"{path}: {where}{result.reason} ({result.records} records verified before it)", code=1)
