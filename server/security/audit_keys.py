"""The audit log's keys, kept apart from the log itself.

* ``chain.key``: 32 random bytes (hex). Each record's hash is HMAC-SHA-256 under it, so a writer
  without the key cannot forge, re-hash or re-chain records.
* ``signing.key``: an Ed25519 private key (hex seed), signs checkpoints (sequence number, head hash,
  time). ``signing.pub`` is its public half: verifying signatures needs only that.

Both secret files are created 0600 by the first server start (`load_or_create`). Keep a copy of
``chain.key`` and ``signing.pub`` where whoever audits the log can read them and whoever can write
the log cannot change them (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from indexer.atomic import create_once

CHAIN_KEY_FILE = "chain.key"
SIGNING_KEY_FILE = "signing.key"
PUBLIC_KEY_FILE = "signing.pub"


class AuditKeyError(Exception):
    """An audit key is missing, unreadable or malformed."""


def _read_hex(path: Path, size: int) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise AuditKeyError(f"audit key {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditKeyError(f"cannot read audit key {path}: {exc}") from exc
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise AuditKeyError(f"audit key {path} is not hex") from None
    if len(value) != size:
        raise AuditKeyError(f"audit key {path} must hold {size} bytes, found {len(value)}")
    return value


def _create_hex(path: Path, value: bytes, mode: int) -> bool:
    """Write `value` as hex to a new file; False when the file already exists (kept as it is)."""
    return create_once(path, value.hex().encode("ascii") + b"\n", mode=mode)[1]


def public_key_id(public: Ed25519PublicKey) -> str:
    """A short name for a signing key, recorded in each checkpoint."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class VerifyKeys:
    """What checking a log needs: the chain key and the public signing key."""

    chain_key: bytes
    public_key: Ed25519PublicKey

    @classmethod
    def load(cls, key_dir: Path, *, public_key_file: Path | None = None) -> VerifyKeys:
        chain = _read_hex(key_dir / CHAIN_KEY_FILE, 32)
        public = Ed25519PublicKey.from_public_bytes(
            _read_hex(public_key_file or key_dir / PUBLIC_KEY_FILE, 32)
        )
        return cls(chain_key=chain, public_key=public)

    def signature_ok(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class AuditKeys(VerifyKeys):
    """The writer's keys: the verifier's plus the private signing key."""

    signing_key: Ed25519PrivateKey

    @classmethod
    def load_or_create(cls, key_dir: Path) -> AuditKeys:
        """Read the keys from `key_dir`, creating any that are missing (secret files 0600)."""
        _create_hex(key_dir / CHAIN_KEY_FILE, secrets.token_bytes(32), 0o600)
        seed_path = key_dir / SIGNING_KEY_FILE
        if not seed_path.exists():
            _create_hex(seed_path, secrets.token_bytes(32), 0o600)
        signing = Ed25519PrivateKey.from_private_bytes(_read_hex(seed_path, 32))
        public_raw = signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        pub_path = key_dir / PUBLIC_KEY_FILE
        if not _create_hex(pub_path, public_raw, 0o644) and _read_hex(pub_path, 32) != public_raw:
            raise AuditKeyError(f"{pub_path} does not belong to {seed_path}; restore the pair from backup")
        return cls(
            chain_key=_read_hex(key_dir / CHAIN_KEY_FILE, 32),
            public_key=signing.public_key(),
            signing_key=signing,
        )

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message)
