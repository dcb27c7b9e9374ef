"""Keyed, hash-chained, append-only JSONL audit log, anchored by signed checkpoints (its verifier:
`server.security.audit_verify`).

One line per request: every tool call, and every other request that reached the HTTP server
(repeated unauthenticated ones from one address are folded into one record per interval, with a
`count`; `server.security.audit_tally`). Each record carries `seq` (its 1-based line
number), `prev_hash` (the previous record's `hash`; 64 zeros for the first) and `hash`, the
HMAC-SHA-256 under the chain key (`server.security.audit_keys`, kept outside the log) of the
record's canonical JSON without `hash`. Editing, removing, inserting or reordering lines breaks
the chain at a line `verify` can name, and without the key nobody can re-hash or re-chain them.

Every `checkpoint_every` records, every `checkpoint_interval_s` and at shutdown the writer signs a
checkpoint (seq, head hash, time; Ed25519) into ``<log>.checkpoints.jsonl`` and optionally posts it
to an external sink. `verify` requires the log to reach the latest checkpoint with the signed
hash there, so cutting the tail, emptying the log or swapping it for another is caught too.

Records hold no secrets and no raw user text: tool arguments appear only as a SHA-256 digest
(`args_digest`), so a query is never written down.

Appends are safe across threads and processes: each takes an exclusive `flock` on the log,
reads the last record from the file tail (another process may have appended since), writes one
line with a single `os.write` on an O_APPEND descriptor, fsyncs, and unlocks.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import structlog
from pydantic import BaseModel, ConfigDict, Field

from indexer.atomic import fsync_dir
from server.security.audit_keys import AuditKeys
from server.security.checkpoints import (
    Checkpoint,
    HttpSink,
    append_checkpoint,
    make_checkpoint,
)
from server.settings import ServerSettings

log = structlog.get_logger()

GENESIS_HASH = "0" * 64
_TAIL_BLOCK = 8192


class AuditError(Exception):
    """The audit log cannot be appended to."""


class AuditLogCorruptError(AuditError):
    """The log's last record is damaged, so a new record cannot be chained to it."""


def canonical_json(value: Any) -> bytes:
    """The one byte form that gets hashed: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def args_digest(arguments: Mapping[str, Any]) -> str:
    """SHA-256 of a tool call's arguments: lets an auditor match a call without storing its text.

    Total over anything a client can send: JSON parsers accept `NaN`, `Infinity` and `1e999` (inf),
    which strict JSON cannot write, so non-finite floats are hashed as their names ("nan", "inf",
    "-inf"), strings UTF-8 cannot hold escaped, and anything else unserialisable as its repr; the
    call is still audited, never failed."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        if isinstance(value, Mapping):
            return {str(k): finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        if value is None or isinstance(value, str | int | float):
            return value
        return repr(value)

    value = finite(dict(arguments))
    try:
        encoded = canonical_json(value)
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") is valid JSON but not UTF-8: escape it
        encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return hashlib.sha256(encoded).hexdigest()


class AuditEvent(BaseModel):
    """What the caller reports about one tool call or denial; `AuditLog` adds time and chain fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    tenant: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=64)
    transport: Literal["stdio", "http"]
    tool: str = Field(min_length=1, max_length=64)
    args_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    decision: Literal["allow", "deny"]
    # Short machine-readable codes ("rate_limited", "collection_not_granted"), never user text.
    reason: str | None = Field(default=None, max_length=200)
    chunk_ids: list[str] = Field(default_factory=list)
    generations: dict[str, int] = Field(default_factory=dict, description="collection -> generation served")
    latency_ms: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    outcome: Literal["ok", "error", "denied"]
    error_code: str | None = Field(default=None, pattern=r"^[a-z0-9_.-]{1,64}$")
    # The peer address of an HTTP request (None over stdio); "*" for the addresses past the tally's
    # bound. What an operator needs to block a source, and what refusals are aggregated by.
    client: str | None = Field(default=None, max_length=64)
    # How many requests this record stands for: above 1 only for repeated refusals of one address
    # aggregated over an interval (the first of them has a record of its own).
    count: int = Field(default=1, ge=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _record_hash(chain_key: bytes, record: Mapping[str, Any]) -> str:
    return hmac.new(chain_key, canonical_json(record), hashlib.sha256).hexdigest()


def checkpoints_path_for(log_path: Path) -> Path:
    """``audit.jsonl`` → ``audit.checkpoints.jsonl`` beside it."""
    return log_path.with_name(f"{log_path.stem}.checkpoints.jsonl")


def _last_line(fd: int, size: int) -> bytes:
    """The final line (with its newline) of a non-empty file, read backwards from the end."""
    pos = size
    buf = b""
    while pos > 0:
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        cut = buf.rfind(b"\n", 0, len(buf) - 1)
        if cut >= 0:
            return buf[cut + 1 :]
    return buf


def _chain_tail(fd: int, size: int, path: Path) -> tuple[int, str]:
    """(seq, hash) of the last record, or (0, genesis) for an empty log."""
    if size == 0:
        return 0, GENESIS_HASH
    line = _last_line(fd, size)
    hint = f"run `docgate audit verify {path}` and move the damaged log aside"
    if not line.endswith(b"\n"):
        raise AuditLogCorruptError(f"audit log {path} ends with a partial line; {hint}")
    try:
        record = json.loads(line)
        seq, digest = record["seq"], record["hash"]
    except (ValueError, TypeError, KeyError) as exc:
        raise AuditLogCorruptError(f"audit log {path}: last line is not an audit record; {hint}") from exc
    if type(seq) is not int or not isinstance(digest, str):
        raise AuditLogCorruptError(f"audit log {path}: last record has no valid seq/hash; {hint}")
    return seq, digest


class AuditLog:
    """Appends chained records to one JSONL file and anchors them with signed checkpoints."""

    def __init__(
        self,
        path: Path,
        keys: AuditKeys,
        *,
        checkpoints_path: Path | None = None,
        checkpoint_every: int = 100,
        checkpoint_interval_s: float = 300.0,
        sink: HttpSink | None = None,
        now: Callable[[], datetime] = _utcnow,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.keys = keys
        self.checkpoints_path = checkpoints_path or checkpoints_path_for(path)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.sink = sink
        self._now = now
        self._clock = clock
        self._last_checkpoint_at = clock()
        self._last_checkpoint_seq = -1
        # flock already serialises threads (each append opens its own file description); the
        # in-process lock just spares threads a trip through the kernel's lock queue.
        self._lock = threading.Lock()

    def _open_locked(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def append_sync(self, event: AuditEvent) -> dict[str, Any]:
        """Write one record and return it (with seq, time, prev_hash and hash). Blocks on fsync."""
        with self._lock:
            fd = self._open_locked()
            try:
                size = os.fstat(fd).st_size
                seq, prev_hash = _chain_tail(fd, size, self.path)
                record: dict[str, Any] = {
                    "seq": seq + 1,
                    "time": _iso(self._now()),
                    **event.model_dump(mode="json"),
                    "prev_hash": prev_hash,
                }
                record["hash"] = _record_hash(self.keys.chain_key, record)
                line = canonical_json(record) + b"\n"
                # One write on an O_APPEND descriptor under the lock: the line lands whole at the end.
                written = os.write(fd, line)
                if written != len(line):
                    raise AuditError(f"short write to audit log {self.path} ({written} of {len(line)} bytes)")
                os.fsync(fd)
                if size == 0:
                    fsync_dir(self.path.parent)  # make the new file's directory entry durable
                due = record["seq"] % self.checkpoint_every == 0 or (
                    self._clock() - self._last_checkpoint_at >= self.checkpoint_interval_s
                )
                if due:
                    self._checkpoint_locked(record["seq"], record["hash"])
            finally:
                os.close(fd)  # also releases the flock
        return record

    async def append(self, event: AuditEvent) -> dict[str, Any]:
        """`append_sync` on a worker thread, so the event loop never waits on fsync."""
        return await anyio.to_thread.run_sync(self.append_sync, event)

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (at start-up and shutdown); None when it is already signed."""
        with self._lock:
            fd = self._open_locked()
            try:
                seq, head = _chain_tail(fd, os.fstat(fd).st_size, self.path)
                if seq == self._last_checkpoint_seq:
                    return None
                return self._checkpoint_locked(seq, head)
            finally:
                os.close(fd)

    def _checkpoint_locked(self, seq: int, head_hash: str) -> Checkpoint:
        checkpoint = make_checkpoint(self.keys, seq, head_hash, self._now())
        append_checkpoint(self.checkpoints_path, checkpoint)
        self._last_checkpoint_seq = seq
        self._last_checkpoint_at = self._clock()
        if self.sink is not None:
            self.sink.send(checkpoint)
        return checkpoint

    def close(self) -> None:
        """Checkpoint the head and release the sink (the server calls this at shutdown)."""
        try:
            self.checkpoint()
        finally:
            if self.sink is not None:
                self.sink.close()


def open_audit_log(settings: ServerSettings) -> AuditLog:
    """The server's audit log, its keys (created on first start) and an opening checkpoint."""
    audit = settings.audit
    sink = HttpSink(audit.sink_url) if audit.sink_url else None
    log_ = AuditLog(
        settings.audit_path,
        AuditKeys.load_or_create(settings.audit_key_dir),
        checkpoint_every=audit.checkpoint_every,
        checkpoint_interval_s=audit.checkpoint_interval_s,
        sink=sink,
    )
    try:
        # Anchors a fresh log at once, so a log whose checkpoints file went missing is noticed.
        log_.checkpoint()
    except AuditLogCorruptError as exc:
        log.error("audit_checkpoint_failed", error=str(exc))
    return log_
