"""Signed checkpoints that anchor the audit chain, and where they go.

A checkpoint says "the log held `seq` records and the last one's hash was `head_hash` at `time`",
signed with Ed25519. They are appended to a file beside the log (``audit.checkpoints.jsonl``) and,
when configured, posted to an external HTTP endpoint that the log's writer cannot rewrite.

A keyed chain alone catches edits, forged and re-chained records; the checkpoints add what it
cannot: a log cut short, emptied or replaced is shorter than (or differs from) what was signed.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.security.audit_keys import AuditKeys, VerifyKeys, public_key_id

log = structlog.get_logger()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Checkpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=0)
    head_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    time: str
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    signature: str

    def signed_part(self) -> bytes:
        return _canonical(
            {"seq": self.seq, "head_hash": self.head_hash, "time": self.time, "key_id": self.key_id}
        )


def make_checkpoint(keys: AuditKeys, seq: int, head_hash: str, moment: datetime) -> Checkpoint:
    unsigned = Checkpoint(
        seq=seq,
        head_hash=head_hash,
        time=moment.isoformat(timespec="microseconds"),
        key_id=public_key_id(keys.public_key),
        signature="",
    )
    signature = base64.b64encode(keys.sign(unsigned.signed_part())).decode("ascii")
    return unsigned.model_copy(update={"signature": signature})


def checkpoint_ok(keys: VerifyKeys, checkpoint: Checkpoint) -> bool:
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except ValueError:
        return False
    return keys.signature_ok(checkpoint.signed_part(), signature)


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """One line, one write on an O_APPEND descriptor, fsynced (the caller holds the log's lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = checkpoint.model_dump_json().encode("utf-8") + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoints(path: Path) -> tuple[list[Checkpoint], str | None]:
    """Every checkpoint in the file, and the first problem found (a line that is not one)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], None
    found: list[Checkpoint] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            found.append(Checkpoint.model_validate_json(line))
        except ValidationError:
            return found, f"checkpoints file {path}: line {number} is not a checkpoint"
    return found, None


class HttpSink:
    """Posts each checkpoint as JSON to an endpoint; a failure is logged, never fatal to a call."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send(self, checkpoint: Checkpoint) -> None:
        try:
            response = self._client.post(
                self.url,
                content=checkpoint.model_dump_json().encode("utf-8"),
                headers={"content-type": "application/json"},
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("audit_sink_failed", url=self.url, seq=checkpoint.seq, error=type(exc).__name__)

    def close(self) -> None:
        self._client.close()
