"""Verifying an audit log: every record's keyed hash, seq and prev_hash, every checkpoint's
signature, and that the log reaches the latest signed checkpoint (`server.security.audit` writes
them). Needs the chain key and the public signing key only, never the private one."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from pydantic import BaseModel, Field

from server.security.audit import GENESIS_HASH, canonical_json, checkpoints_path_for
from server.security.audit_keys import VerifyKeys
from server.security.checkpoints import Checkpoint, checkpoint_ok, read_checkpoints


class VerifyResult(BaseModel):
    ok: bool
    records: int = Field(description="Records that verified before the first bad line (all of them when ok).")
    first_bad_line: int | None = None
    reason: str | None = None
    head_hash: str = Field(default=GENESIS_HASH, description="Hash of the last good record.")
    checkpoints: int = Field(default=0, description="Signed checkpoints that verified.")
    anchored: int = Field(default=0, description="Records covered by the latest signed checkpoint.")


def verify(
    path: Path,
    keys: VerifyKeys,
    *,
    checkpoints_path: Path | None = None,
    extra_checkpoints: list[Path] | None = None,
) -> VerifyResult:
    """Check every line's keyed hash, seq and prev_hash, every checkpoint's signature, and that
    the log reaches the latest checkpoint with the hash it signed.

    `extra_checkpoints`: copies kept elsewhere (an external sink's), checked the same way; they
    catch a log rolled back together with its local checkpoints file.
    Raises FileNotFoundError when there is no log at `path`.
    """
    chain = _verify_chain(path, keys.chain_key)
    if not chain.result.ok:
        return chain.result
    result = chain.result
    files = [checkpoints_path or checkpoints_path_for(path), *(extra_checkpoints or [])]
    signed: list[Checkpoint] = []
    for file in files:
        found, problem = read_checkpoints(file)
        if problem is not None:
            return result.model_copy(update={"ok": False, "reason": problem})
        for checkpoint in found:
            if not checkpoint_ok(keys, checkpoint):
                return result.model_copy(
                    update={
                        "ok": False,
                        "reason": f"checkpoint for record {checkpoint.seq} in {file}: bad signature",
                    }
                )
        signed += found
    if not signed:
        if result.records == 0 and not any(f.exists() for f in files):
            return result  # a log nothing has been written to yet
        return result.model_copy(
            update={
                "ok": False,
                "reason": "no signed checkpoint anchors this log: the checkpoints file is missing",
            }
        )
    for checkpoint in signed:
        if checkpoint.seq > result.records:
            return result.model_copy(
                update={
                    "ok": False,
                    "first_bad_line": result.records + 1,
                    "reason": f"the log ends at record {result.records} but a signed checkpoint covers "
                    f"{checkpoint.seq}: records were cut from the end (or the log was emptied or replaced)",
                }
            )
        expected = chain.hashes[checkpoint.seq - 1] if checkpoint.seq else GENESIS_HASH
        if expected != checkpoint.head_hash:
            return result.model_copy(
                update={
                    "ok": False,
                    "first_bad_line": checkpoint.seq or None,
                    "reason": f"record {checkpoint.seq} differs from the one its signed checkpoint names: "
                    "the log was replaced or rewritten",
                }
            )
    return result.model_copy(update={"checkpoints": len(signed), "anchored": max(c.seq for c in signed)})


class _Chain(BaseModel):
    result: VerifyResult
    hashes: list[str]


def _verify_chain(path: Path, chain_key: bytes) -> _Chain:
    prev_hash = GENESIS_HASH
    hashes: list[str] = []

    def bad(line_no: int, reason: str) -> _Chain:
        return _Chain(
            result=VerifyResult(
                ok=False, records=len(hashes), first_bad_line=line_no, reason=reason, head_hash=prev_hash
            ),
            hashes=hashes,
        )

    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                return bad(line_no, "truncated line: no newline at the end (interrupted or cut write)")
            try:
                record = json.loads(raw)
            except ValueError:
                return bad(line_no, "not a JSON record")
            if not isinstance(record, dict):
                return bad(line_no, "not a JSON object")
            claimed = record.pop("hash", None)
            if not isinstance(claimed, str):
                return bad(line_no, "record has no hash")
            try:
                body = canonical_json(record)
            except ValueError:
                return bad(line_no, "record holds values outside canonical JSON")
            expected = hmac.new(chain_key, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, claimed):
                return bad(line_no, "hash mismatch: the record was edited or written without the chain key")
            if raw[:-1] != canonical_json({**record, "hash": claimed}):
                return bad(line_no, "record is not in canonical form: the line was re-encoded or edited")
            seq = record.get("seq")
            if type(seq) is not int or seq != line_no:
                return bad(
                    line_no, f"seq is {seq!r} on line {line_no}: a record was removed, inserted or reordered"
                )
            if record.get("prev_hash") != prev_hash:
                return bad(
                    line_no, "prev_hash does not match the previous record's hash: the chain is broken"
                )
            prev_hash = claimed
            hashes.append(claimed)
    return _Chain(result=VerifyResult(ok=True, records=len(hashes), head_hash=prev_hash), hashes=hashes)
