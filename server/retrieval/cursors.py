"""Opaque, signed pagination cursors.

A cursor carries the offset of the next page and a digest of everything that shaped the result
list (tenant, query, filters, generations). It is HMAC-signed with a per-data-dir secret, so a
client can neither forge an offset nor replay another tenant's cursor, and a cursor issued
before a new generation was published is refused instead of silently paging a different list.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path

from indexer.atomic import create_once
from server.errors import InvalidCursor

CURSOR_MAX_CHARS = 512


def load_secret(path: Path) -> bytes:
    """The signing secret, created once (0600) on first use; a racing process gets the same one."""
    if path.is_file():
        return path.read_bytes()
    return create_once(path, secrets.token_bytes(32))[0]


def digest(*parts: object) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def encode(secret: bytes, offset: int, context: str) -> str:
    body = json.dumps({"o": offset, "c": context}, separators=(",", ":")).encode()
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")


def decode(secret: bytes, cursor: str, context: str) -> int:
    """The offset inside a cursor issued for exactly this context; InvalidCursor otherwise."""
    problem = "unknown or expired cursor; repeat the search without `cursor` to start from the first page"
    if not isinstance(cursor, str) or not cursor or len(cursor) > CURSOR_MAX_CHARS:
        raise InvalidCursor(problem)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError) as error:
        raise InvalidCursor(problem) from error
    body, mac = raw[:-16], raw[-16:]
    if len(raw) <= 16 or not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()[:16]):
        raise InvalidCursor(problem)
    try:
        data = json.loads(body)
    except ValueError as error:
        raise InvalidCursor(problem) from error
    if not isinstance(data, dict) or data.get("c") != context:
        raise InvalidCursor(
            "this cursor belongs to a different search, or the index was updated since; "
            "repeat the search without `cursor`"
        )
    offset = data.get("o")
    if type(offset) is not int or offset < 0:
        raise InvalidCursor(problem)
    return offset
