"""`docgate keys ...` and `docgate audit verify` as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from server.cli.admin import audit_app, keys_app
from server.security.audit import AuditEvent, AuditLog, args_digest
from server.security.audit_keys import AuditKeys
from server.security.keys_file import keys_path
from server.security.registry import TenantRegistry
from server.settings import ServerSettings

TENANTS = '[tenants.acme]\ncollections = ["django*"]\n'


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.delenv("DOCGATE_TENANTS_FILE", raising=False)
    monkeypatch.delenv("DOCGATE_AUDIT_LOG", raising=False)
    # The docgate entry point sends logs to stderr; unconfigured structlog would print to stdout.
    with capture_logs():
        yield CliRunner()


@pytest.fixture
def tenants_file(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS, encoding="utf-8")
    return path


def test_keys_add_prints_a_working_key_once(runner: CliRunner, tenants_file: Path) -> None:
    result = runner.invoke(keys_app, ["add", "--tenant", "acme", "--tenants-file", str(tenants_file)])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("dg_")
    assert "cannot be shown again" in result.stderr
    principal = TenantRegistry(tenants_file).authenticate(key)
    assert principal is not None
    assert principal.tenant == "acme"


def test_keys_add_json_gives_key_id_and_key(runner: CliRunner, tenants_file: Path) -> None:
    result = runner.invoke(
        keys_app,
        ["add", "--tenant", "acme", "--expires", "2999-01-01", "--json"],
        env={"DOCGATE_TENANTS_FILE": str(tenants_file)},
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"key_id", "key"}
    assert payload["key"].startswith(f"dg_{payload['key_id']}_")


def test_keys_add_for_unknown_tenant_exits_2_with_one_line(runner: CliRunner, tenants_file: Path) -> None:
    result = runner.invoke(keys_app, ["add", "--tenant", "ghost", "--tenants-file", str(tenants_file)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "unknown tenant 'ghost'" in result.stderr
    assert not keys_path(tenants_file).exists()


@pytest.mark.parametrize("expires", ["tomorrow", "2000-01-01"])
def test_keys_add_with_bad_expiry_exits_2(runner: CliRunner, tenants_file: Path, expires: str) -> None:
    args = ["add", "--tenant", "acme", "--expires", expires, "--tenants-file", str(tenants_file)]
    result = runner.invoke(keys_app, args)
    assert result.exit_code == 2
    assert "error:" in result.stderr


def test_keys_commands_need_a_tenants_file(runner: CliRunner) -> None:
    result = runner.invoke(keys_app, ["list"])
    assert result.exit_code == 2
    assert "--tenants-file" in result.output


def test_keys_list_never_shows_keys_or_hashes(runner: CliRunner, tenants_file: Path) -> None:
    added = runner.invoke(
        keys_app, ["add", "--tenant", "acme", "--json", "--tenants-file", str(tenants_file)]
    )
    payload = json.loads(added.stdout)
    stored = json.loads(keys_path(tenants_file).read_text(encoding="utf-8"))["keys"][0]

    table = runner.invoke(keys_app, ["list", "--tenants-file", str(tenants_file)])
    as_json = runner.invoke(keys_app, ["list", "--json", "--tenants-file", str(tenants_file)])
    for result in (table, as_json):
        assert result.exit_code == 0, result.output
        assert payload["key_id"] in result.stdout
        for secret in (payload["key"], stored["hash"]):
            assert secret not in result.output
    rows = json.loads(as_json.stdout)
    assert rows[0]["tenant"] == "acme"
    assert rows[0]["status"] == "active"
    assert "hash" not in rows[0]
    assert "salt" not in rows[0]


def test_keys_revoke_marks_the_key_revoked(runner: CliRunner, tenants_file: Path) -> None:
    added = runner.invoke(
        keys_app, ["add", "--tenant", "acme", "--json", "--tenants-file", str(tenants_file)]
    )
    payload = json.loads(added.stdout)
    result = runner.invoke(keys_app, ["revoke", payload["key_id"], "--tenants-file", str(tenants_file)])
    assert result.exit_code == 0, result.output
    assert f"revoked {payload['key_id']}" in result.stdout
    assert TenantRegistry(tenants_file).authenticate(payload["key"]) is None
    rows = json.loads(runner.invoke(keys_app, ["list", "--json", "--tenants-file", str(tenants_file)]).stdout)
    assert rows[0]["status"] == "revoked"


def test_keys_revoke_of_unknown_key_exits_2(runner: CliRunner, tenants_file: Path) -> None:
    result = runner.invoke(keys_app, ["revoke", "abcdefabcdef", "--tenants-file", str(tenants_file)])
    assert result.exit_code == 2
    assert "unknown key id" in result.stderr


def _write_log(path: Path, count: int, key_dir: Path | None = None) -> None:
    log = AuditLog(path, AuditKeys.load_or_create(key_dir or path.parent / "keys"))
    for i in range(count):
        log.append_sync(
            AuditEvent(
                request_id=f"r{i}",
                tenant="acme",
                transport="stdio",
                tool="search",
                args_sha256=args_digest({"i": i}),
                decision="allow",
                outcome="ok",
            )
        )
    log.checkpoint()


def test_audit_verify_reports_ok_and_the_record_count(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    result = runner.invoke(audit_app, ["verify", str(path), "--key-dir", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 3 records")
    assert "1 signed checkpoints, the latest covering record 3" in result.stdout


def test_audit_verify_reads_the_log_path_from_the_environment(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 2)
    result = runner.invoke(
        audit_app, ["verify", "--key-dir", str(tmp_path / "keys")], env={"DOCGATE_AUDIT_LOG": str(path)}
    )
    assert result.exit_code == 0, result.output
    assert "ok: 2 records" in result.stdout


def test_audit_verify_names_the_first_bad_line(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"tenant":"acme"', b'"tenant":"beta"')
    path.write_bytes(b"".join(lines))
    result = runner.invoke(
        audit_app, ["verify", "--audit-log", str(path), "--key-dir", str(tmp_path / "keys")]
    )
    assert result.exit_code == 1
    assert "line 2" in result.stderr
    assert "edited" in result.stderr


def test_audit_verify_of_a_missing_log_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    _write_log(tmp_path / "other.jsonl", 1)
    result = runner.invoke(
        audit_app, ["verify", str(tmp_path / "none.jsonl"), "--key-dir", str(tmp_path / "keys")]
    )
    assert result.exit_code == 2
    assert "no audit log at" in result.stderr


def test_audit_verify_without_a_path_checks_the_configured_log(runner: CliRunner, isolated_env: Path) -> None:
    settings = ServerSettings.load(None)
    _write_log(settings.audit_path, 2, settings.audit_key_dir)
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 0, result.output
    assert "ok: 2 records" in result.stdout


def test_audit_verify_without_keys_says_where_to_find_them(runner: CliRunner, tmp_path: Path) -> None:
    _write_log(tmp_path / "audit.jsonl", 1)
    result = runner.invoke(audit_app, ["verify", str(tmp_path / "audit.jsonl")])
    assert result.exit_code == 2
    assert "--key-dir" in result.stderr
