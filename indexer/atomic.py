"""Durable file replacement: a reader sees the old file or the new one, never a torn or empty one.

The recipe: write a temp file in the same directory (a rename is atomic only within one file
system), fsync it, rename it over the target, fsync the directory (so the rename itself survives a
crash). Every file docgate replaces in place goes through `write_atomic`: manifests, CURRENT
pointers, the keys file, the token-usage checkpoint.

Files created once and never replaced (secrets and keys made on first start) go through
`create_once`: written whole under a temp name, then hard-linked into place, which fails if the
name exists. A process racing another never reads a created-but-empty file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    """`data` written and fsynced to a new, uniquely named temp file beside `path` (never shared
    by concurrent writers); removed again if writing fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably; the file gets permission bits `mode`.

    If anything fails, the temp file is removed and the previous file is left untouched.
    """
    tmp = _write_temp(path, data, mode)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_once(path: Path, data: bytes, *, mode: int = 0o600) -> tuple[bytes, bool]:
    """Create `path` holding `data` unless it exists; (what `path` holds, whether we created it).

    When another process creates it first, its content is returned and ours is discarded.
    """
    tmp = _write_temp(path, data, mode)
    try:
        try:
            os.link(tmp, path)  # atomic create-if-absent, of a file already complete
        except FileExistsError:
            return path.read_bytes(), False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return data, True
