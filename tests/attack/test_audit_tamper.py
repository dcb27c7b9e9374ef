"""Attack 2: an audit log that was cut, emptied, edited or re-chained must not verify."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from typer.testing import CliRunner

from server.cli.admin import audit_app
from server.security.audit import canonical_json, checkpoints_path_for
from server.security.audit_keys import VerifyKeys
from server.security.checkpoints import Checkpoint, checkpoint_ok
from tests.attack.conftest import deployed
from tests.mcp_harness import call, http_session

CALLS = 12
EVERY = 5

Lines = list[bytes]


def _sha_rechain(records: list[dict[str, Any]]) -> Lines:
    """What a forger without the chain key can do: renumber and re-chain with plain SHA-256."""
    prev = "0" * 64
    out: Lines = []
    for seq, record in enumerate(records, start=1):
        body = {k: v for k, v in record.items() if k != "hash"} | {"seq": seq, "prev_hash": prev}
        body["hash"] = prev = hashlib.sha256(canonical_json(body)).hexdigest()
        out.append(canonical_json(body) + b"\n")
    return out


def _parsed(lines: Lines) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def edit(lines: Lines) -> Lines:
    return [*lines[:2], lines[2].replace(b'"tenant":"acme"', b'"tenant":"beta"'), *lines[3:]]


def delete(lines: Lines) -> Lines:
    return lines[:2] + lines[3:]


def reorder(lines: Lines) -> Lines:
    return [*lines[:2], lines[3], lines[2], *lines[4:]]


def duplicate(lines: Lines) -> Lines:
    return [*lines[:3], lines[2], *lines[3:]]


def append_naive(lines: Lines) -> Lines:
    forged = json.loads(lines[-1]) | {"seq": len(lines) + 1, "tool": "search"}
    return [*lines, canonical_json(forged) + b"\n"]


def append_rehashed(lines: Lines) -> Lines:
    last = json.loads(lines[-1])
    body = {k: v for k, v in last.items() if k != "hash"} | {"seq": len(lines) + 1, "prev_hash": last["hash"]}
    body["hash"] = hashlib.sha256(canonical_json(body)).hexdigest()
    return [*lines, canonical_json(body) + b"\n"]


def rechain_all(lines: Lines) -> Lines:
    records = _parsed(lines)
    records[2]["tenant"] = "beta"
    return _sha_rechain(records)


def truncate_tail(lines: Lines) -> Lines:
    return lines[:-3]


def empty(lines: Lines) -> Lines:
    return []


def partial_last_line(lines: Lines) -> Lines:
    return [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]


def crlf(lines: Lines) -> Lines:
    return [*lines[:1], lines[1].replace(b"\n", b"\r\n"), *lines[2:]]


def whitespace(lines: Lines) -> Lines:
    return [*lines[:1], lines[1].replace(b'","', b'", "', 1), *lines[2:]]


def blank_line(lines: Lines) -> Lines:
    return [*lines[:4], b"\n", *lines[4:]]


def delete_renumber_rechain(lines: Lines) -> Lines:
    records = _parsed(lines)
    del records[2]
    return _sha_rechain(records)


TAMPERS: list[Callable[[Lines], Lines]] = [
    edit,
    delete,
    reorder,
    duplicate,
    append_naive,
    append_rehashed,
    rechain_all,
    truncate_tail,
    empty,
    partial_last_line,
    crlf,
    whitespace,
    blank_line,
    delete_renumber_rechain,
]


class _Sink(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def finished(
    tmp_path_factory: pytest.TempPathFactory, lumen_data_dir: Path, model_dir: Path
) -> Iterator[dict[str, Any]]:
    """A real server's audit log after CALLS calls and a clean shutdown, plus what its sink got."""
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    _Sink.received.clear()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    root = tmp_path_factory.mktemp("tamper")
    env = {
        "DOCGATE_AUDIT__CHECKPOINT_EVERY": str(EVERY),
        "DOCGATE_AUDIT__SINK_URL": f"http://127.0.0.1:{sink.server_address[1]}/checkpoints",
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCGATE_EMBEDDING__MODEL_DIR", str(model_dir))
        with deployed(root, lumen_data_dir, **env) as dep:

            async def calls() -> None:
                async with http_session(dep.url, dep.keys["acme"]) as session:
                    for _ in range(CALLS):
                        await call(session, "list_collections")

            anyio.run(calls)
    sink.shutdown()
    sink.server_close()
    yield {"audit": dep.audit, "key_dir": dep.key_dir, "sink": list(_Sink.received), "root": root}


def verify_cli(log: Path, key_dir: Path, *extra: str) -> Any:
    return CliRunner().invoke(audit_app, ["verify", str(log), "--key-dir", str(key_dir), *extra])


def copy_of(finished: dict[str, Any], target: Path) -> Path:
    log = target / "audit.jsonl"
    shutil.copy(finished["audit"], log)
    shutil.copy(checkpoints_path_for(finished["audit"]), checkpoints_path_for(log))
    return log


def test_untouched_log_verifies_up_to_the_shutdown_checkpoint(finished: dict[str, Any]) -> None:
    result = verify_cli(finished["audit"], finished["key_dir"])
    assert result.exit_code == 0, result.output
    records = len(finished["audit"].read_bytes().splitlines())
    assert records >= CALLS
    # Signed at start-up, every EVERY records and at shutdown: the last one covers the whole log.
    assert f"latest covering record {records}" in result.stdout


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.__name__ for t in TAMPERS])
def test_tampered_log_is_detected(
    finished: dict[str, Any], tmp_path: Path, tamper: Callable[[Lines], Lines]
) -> None:
    log = copy_of(finished, tmp_path)
    log.write_bytes(b"".join(tamper(log.read_bytes().splitlines(keepends=True))))
    result = verify_cli(log, finished["key_dir"])
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1  # one line, naming the problem


def test_deleting_the_checkpoints_file_is_detected(finished: dict[str, Any], tmp_path: Path) -> None:
    log = copy_of(finished, tmp_path)
    checkpoints_path_for(log).unlink()
    result = verify_cli(log, finished["key_dir"])
    assert result.exit_code == 1
    assert "no signed checkpoint" in result.stderr


def test_forged_checkpoint_is_detected(finished: dict[str, Any], tmp_path: Path) -> None:
    log = copy_of(finished, tmp_path)
    path = checkpoints_path_for(log)
    last = json.loads(path.read_bytes().splitlines()[-1])
    last["seq"] -= 1  # claim the log was shorter, to cover for a cut tail
    path.write_bytes(path.read_bytes() + json.dumps(last).encode() + b"\n")
    result = verify_cli(log, finished["key_dir"])
    assert result.exit_code == 1
    assert "bad signature" in result.stderr


def test_sink_receives_every_checkpoint_signed(finished: dict[str, Any]) -> None:
    keys = VerifyKeys.load(finished["key_dir"])
    received = [Checkpoint.model_validate_json(body) for body in finished["sink"]]
    local = [
        Checkpoint.model_validate_json(line)
        for line in checkpoints_path_for(finished["audit"]).read_bytes().splitlines()
    ]
    assert received == local
    assert len(received) >= 2 + CALLS // EVERY  # start-up, every EVERY records, shutdown
    assert all(checkpoint_ok(keys, c) for c in received)


def test_log_rolled_back_with_its_local_checkpoints_is_caught_by_the_sink_copy(
    finished: dict[str, Any], tmp_path: Path
) -> None:
    log = copy_of(finished, tmp_path)
    # The attacker cuts the log back to an earlier checkpoint and drops the later local checkpoints.
    path = checkpoints_path_for(log)
    kept = [line for line in path.read_bytes().splitlines(keepends=True) if json.loads(line)["seq"] <= EVERY]
    path.write_bytes(b"".join(kept))
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:EVERY]))
    assert verify_cli(log, finished["key_dir"]).exit_code == 0  # locally consistent: undetectable alone
    sink_copy = tmp_path / "sink.jsonl"
    sink_copy.write_bytes(b"".join(body + b"\n" for body in finished["sink"]))
    result = verify_cli(log, finished["key_dir"], "--checkpoints", str(sink_copy))
    assert result.exit_code == 1
    assert "cut from the end" in result.stderr
