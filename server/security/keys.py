"""API keys: their format, a keyed fast hash with a server secret, and the legacy PBKDF2 form it replaces.

A key looks like ``dg_<key id>_<secret>``: the key id finds the record in O(1), and the secret
(256 random bits) is checked with one constant-time comparison of keyed hashes.

Keys carry 256 random bits, so a slow password KDF protects nothing that the key's own entropy
does not already protect; what it does add is a lever for denial of service (each wrong guess
costs the server ~60 ms of CPU). A key is therefore stored as HMAC-SHA-256 under a server secret
kept in its own file (``keys.secret``, created 0600), never in the tenants file or the keys file:
a leaked keys file alone cannot even be used to test guesses offline.

Records written before this change hold a salted PBKDF2 hash. They keep working: the first
successful check derives the old hash once (off the event loop, see `TenantRegistry`) and
rewrites the record in the new form.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path

from indexer.atomic import create_once

SECRET_BYTES = 32
KEY_PREFIX = "dg_"
# Longest bearer string worth looking at; anything longer is rejected before any hashing.
MAX_BEARER_LENGTH = 256
KEY_ID_BYTES = 6  # 12 hex characters
KEY_SECRET_BYTES = 32  # 43 url-safe base64 characters
_BEARER_RE = re.compile(r"dg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", re.ASCII)
# A fixed stand-in so an unknown key id costs the same HMAC and comparison as a known one.
_DUMMY_HASH = bytes(32)


class KeySecretError(Exception):
    """The server secret for API keys cannot be read or created."""


def key_secret_path(tenants_file: Path) -> Path:
    """Default place of the key secret: ``tenants.toml`` → ``tenants.keys.secret`` beside it."""
    return tenants_file.with_name(f"{tenants_file.stem}.keys.secret")


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret, creating it (0600, atomically) when absent; raise KeySecretError otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        try:
            # Created whole or not at all: a process racing this one reads the finished file.
            data = create_once(path, secrets.token_hex(SECRET_BYTES).encode("ascii") + b"\n")[0]
        except OSError as exc:
            raise KeySecretError(f"cannot create key secret {path}: {exc}") from exc
    except OSError as exc:
        raise KeySecretError(f"cannot read key secret {path}: {exc}") from exc
    text = data.strip()
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise KeySecretError(f"key secret {path} is not hex; restore it from backup") from None
    if len(secret) < 16:
        raise KeySecretError(f"key secret {path} is shorter than 128 bits; restore it from backup")
    return secret


def keyed_hash(server_secret: bytes, key_id: str, secret: str) -> bytes:
    """HMAC-SHA-256 of one key; the key id is bound in so a hash cannot be moved to another id."""
    return hmac.digest(server_secret, f"{key_id}:{secret}".encode("ascii"), "sha256")


def matches(server_secret: bytes, key_id: str, secret: str, stored: bytes | None) -> bool:
    """Constant-time check; `stored=None` (unknown key id) does the same work and fails."""
    digest = keyed_hash(server_secret, key_id, secret)
    ok = hmac.compare_digest(digest, stored if stored is not None else _DUMMY_HASH)
    return ok and stored is not None


def legacy_pbkdf2(secret: str, salt: bytes, iterations: int) -> bytes:
    """The old stored form. Slow by design: call it only off the event loop."""
    return hashlib.pbkdf2_hmac("sha256", secret.encode("ascii"), salt, iterations)


def parse_bearer(bearer: object) -> tuple[str, str] | None:
    """Split ``dg_<key id>_<secret>`` into its parts; None for anything else."""
    if not isinstance(bearer, str) or len(bearer) > MAX_BEARER_LENGTH:
        return None
    match = _BEARER_RE.fullmatch(bearer)
    return (match.group(1), match.group(2)) if match else None
