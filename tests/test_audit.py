"""The hash-chained audit log: what a record holds, tamper detection, and concurrent appends."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from server.security.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditLog,
    AuditLogCorruptError,
    args_digest,
    canonical_json,
)
from server.security.audit_keys import AuditKeys
from server.security.audit_verify import verify

REPO = Path(__file__).resolve().parents[1]
KEY_DIR = Path(tempfile.mkdtemp(prefix="docgate-audit-keys-"))
KEYS = AuditKeys.load_or_create(KEY_DIR)


def event(**overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "tenant": "acme",
        "key_id": "0123456789ab",
        "transport": "http",
        "tool": "search",
        "args_sha256": args_digest({"query": "how do I add a field", "k": 5}),
        "decision": "allow",
        "chunk_ids": ["0" * 32, "f" * 32],
        "generations": {"django": 3},
        "latency_ms": 12.5,
        "tokens_in": 9,
        "tokens_out": 420,
        "outcome": "ok",
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rehash(record: dict[str, Any]) -> bytes:
    """Re-encode a record as the writer would (holding the chain key), with a correct hash."""
    body = {k: v for k, v in record.items() if k != "hash"}
    body["hash"] = hmac.new(KEYS.chain_key, canonical_json(body), hashlib.sha256).hexdigest()
    return canonical_json(body) + b"\n"


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit" / "audit.jsonl"
    log = AuditLog(path, KEYS)
    for i in range(5):
        log.append_sync(event(request_id=f"req-{i + 1}"))
    log.checkpoint()  # as at shutdown
    return path


# ---------------------------------------------------------------- records


def test_fresh_log_verifies(log_path: Path) -> None:
    result = verify(log_path, KEYS)
    assert result.ok
    assert result.records == 5
    assert result.first_bad_line is None
    assert result.head_hash == json.loads(lines_of(log_path)[-1])["hash"]


def test_first_record_links_to_64_zeros_and_each_next_to_its_predecessor(log_path: Path) -> None:
    records = [json.loads(line) for line in lines_of(log_path)]
    assert records[0]["prev_hash"] == GENESIS_HASH == "0" * 64
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["hash"]


def test_record_hash_is_hmac_of_its_canonical_json_without_hash(log_path: Path) -> None:
    record = json.loads(lines_of(log_path)[0])
    claimed = record.pop("hash")
    encoded = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert claimed == hmac.new(KEYS.chain_key, encoded, hashlib.sha256).hexdigest()
    assert claimed != hashlib.sha256(encoded).hexdigest()


def test_record_holds_the_call_facts_and_a_utc_time(tmp_path: Path) -> None:
    moment = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    record = AuditLog(tmp_path / "a.jsonl", KEYS, now=lambda: moment).append_sync(event())
    assert record["time"] == "2025-03-01T12:30:00.000000Z"
    assert record["tenant"] == "acme"
    assert record["key_id"] == "0123456789ab"
    assert record["transport"] == "http"
    assert record["decision"] == "allow"
    assert record["generations"] == {"django": 3}
    assert record["chunk_ids"] == ["0" * 32, "f" * 32]
    assert (record["tokens_in"], record["tokens_out"]) == (9, 420)
    assert record["outcome"] == "ok"


def test_denial_is_recorded_with_reason_and_error_code(tmp_path: Path) -> None:
    denial = event(decision="deny", reason="rate_limited", outcome="denied", error_code="rate_limited")
    record = AuditLog(tmp_path / "a.jsonl", KEYS).append_sync(denial)
    assert (record["decision"], record["reason"], record["error_code"]) == (
        "deny",
        "rate_limited",
        "rate_limited",
    )


def test_query_text_never_reaches_the_log(tmp_path: Path) -> None:
    query = "why is jane.doe@corp.io locked out"
    path = tmp_path / "a.jsonl"
    AuditLog(path, KEYS).append_sync(event(args_sha256=args_digest({"query": query, "k": 3})))
    text = path.read_text(encoding="utf-8")
    assert "jane.doe" not in text
    assert "locked out" not in text


def test_argument_digest_ignores_key_order_and_keeps_unicode_as_utf8() -> None:
    assert args_digest({"a": 1, "b": "é"}) == args_digest({"b": "é", "a": 1})
    expected = hashlib.sha256('{"a":1,"b":"é"}'.encode()).hexdigest()
    assert args_digest({"a": 1, "b": "é"}) == expected


def test_free_text_cannot_be_smuggled_into_the_error_code() -> None:
    with pytest.raises(ValidationError):
        event(error_code="user jane@corp.io not found")


def test_async_append_writes_a_chained_record(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, KEYS)

    async def two() -> None:
        await log.append(event())
        await log.append(event(request_id="req-2"))

    anyio.run(two)
    assert verify(path, KEYS).records == 2


def test_empty_log_verifies_with_no_records(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"")
    result = verify(path, KEYS)
    assert result.ok
    assert result.records == 0
    assert result.head_hash == GENESIS_HASH


def test_verifying_a_missing_log_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "absent.jsonl", KEYS)


# ---------------------------------------------------------------- tampering


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant", "beta"),
        ("key_id", None),
        ("tool", "fetch_chunk"),
        ("decision", "deny"),
        ("chunk_ids", []),
        ("generations", {"django": 4}),
        ("latency_ms", 1.0),
        ("tokens_out", 0),
        ("time", "2020-01-01T00:00:00.000000Z"),
        ("seq", 9),
        ("prev_hash", "1" * 64),
        ("hash", "2" * 64),
    ],
)
def test_editing_any_field_of_a_middle_record_is_caught_on_that_line(
    log_path: Path, field: str, value: Any
) -> None:
    lines = lines_of(log_path)
    record = json.loads(lines[2])
    record[field] = value
    lines[2] = canonical_json(record) + b"\n"
    log_path.write_bytes(b"".join(lines))
    result = verify(log_path, KEYS)
    assert not result.ok
    assert result.first_bad_line == 3
    assert result.records == 2


def test_edit_with_a_recomputed_hash_breaks_the_link_to_the_next_line(log_path: Path) -> None:
    lines = lines_of(log_path)
    record = json.loads(lines[2])
    record["tenant"] = "beta"
    lines[2] = rehash(record)
    log_path.write_bytes(b"".join(lines))
    result = verify(log_path, KEYS)
    assert (result.ok, result.first_bad_line) == (False, 4)
    assert result.reason is not None
    assert "prev_hash" in result.reason


def test_re_encoding_a_record_is_caught(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[1] = json.dumps(json.loads(lines[1]), sort_keys=True).encode() + b"\n"  # adds spaces
    log_path.write_bytes(b"".join(lines))
    assert verify(log_path, KEYS).first_bad_line == 2


def test_deleting_a_middle_line_is_caught(log_path: Path) -> None:
    lines = lines_of(log_path)
    del lines[2]
    log_path.write_bytes(b"".join(lines))
    result = verify(log_path, KEYS)
    assert (result.ok, result.first_bad_line) == (False, 3)
    assert result.reason is not None
    assert "removed, inserted or reordered" in result.reason


def test_swapping_two_lines_is_caught_at_the_first(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[1], lines[2] = lines[2], lines[1]
    log_path.write_bytes(b"".join(lines))
    assert verify(log_path, KEYS).first_bad_line == 2


def test_inserting_a_copied_line_is_caught_on_the_inserted_line(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines.insert(2, lines[1])
    log_path.write_bytes(b"".join(lines))
    assert verify(log_path, KEYS).first_bad_line == 3


def test_inserting_a_well_forged_line_is_caught_on_the_line_after_it(log_path: Path) -> None:
    # A forger can make the inserted record itself consistent (seq 3, prev_hash of line 2, own
    # hash), but the original third record that follows no longer fits: seq and link both break.
    lines = lines_of(log_path)
    forged = json.loads(lines[2])
    forged["tool"] = "ask"
    lines.insert(2, rehash(forged))
    log_path.write_bytes(b"".join(lines))
    result = verify(log_path, KEYS)
    assert (result.ok, result.first_bad_line, result.records) == (False, 4, 3)


def test_truncated_last_line_is_caught(log_path: Path) -> None:
    data = log_path.read_bytes()
    log_path.write_bytes(data[:-25])
    result = verify(log_path, KEYS)
    assert (result.ok, result.first_bad_line) == (False, 5)
    assert result.reason is not None
    assert "truncated" in result.reason


def test_missing_newline_after_the_last_record_is_caught(log_path: Path) -> None:
    log_path.write_bytes(log_path.read_bytes()[:-1])
    assert verify(log_path, KEYS).first_bad_line == 5


def test_garbage_line_is_caught(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[3] = b"hello\n"
    log_path.write_bytes(b"".join(lines))
    assert verify(log_path, KEYS).first_bad_line == 4


def test_dropping_the_tail_is_caught_by_the_signed_checkpoint(log_path: Path) -> None:
    log_path.write_bytes(b"".join(lines_of(log_path)[:-1]))
    result = verify(log_path, KEYS)
    assert not result.ok
    assert result.reason is not None
    assert "cut from the end" in result.reason


def test_appending_after_a_truncated_line_is_refused(log_path: Path) -> None:
    log_path.write_bytes(log_path.read_bytes()[:-10])
    with pytest.raises(AuditLogCorruptError, match="audit verify"):
        AuditLog(log_path, KEYS).append_sync(event())


# ---------------------------------------------------------------- concurrency

_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from server.security.audit import AuditEvent, AuditLog, args_digest

    from server.security.audit_keys import AuditKeys

    log = AuditLog(Path(sys.argv[1]), AuditKeys.load_or_create(Path(sys.argv[4])))
    digest = args_digest({"child": sys.argv[2]})
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(int(sys.argv[3])):
        log.append_sync(AuditEvent(request_id=f"p{sys.argv[2]}-{i}", tenant="acme", transport="stdio",
                                   tool="search", args_sha256=digest, decision="allow", outcome="ok"))
    """
)


def test_concurrent_appends_from_threads_and_processes_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    per_child, threads = 25, 200
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(n), str(per_child), str(KEY_DIR)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    log = AuditLog(path, KEYS)
    with ThreadPoolExecutor(max_workers=16) as pool:
        for child in children:  # release the children as the threads start
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        list(pool.map(lambda i: log.append_sync(event(request_id=f"t-{i}")), range(threads)))
    for child in children:
        assert child.wait(timeout=60) == 0
        assert child.stdout is not None
        child.stdout.close()
        assert child.stdin is not None
        child.stdin.close()
    result = verify(path, KEYS)
    assert result.ok, result
    assert result.records == threads + 2 * per_child
    request_ids = {json.loads(line)["request_id"] for line in lines_of(path)}
    assert len(request_ids) == threads + 2 * per_child
