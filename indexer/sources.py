"""Walk a documentation folder into `RawDocument`s (crawled websites: `indexer.crawl`)."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel

from indexer.errors import SourceError
from indexer.models import RawDocument

# Never documentation, and often huge: skip without reading.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", "_static", "_images"}
)
MAX_FILE_BYTES = 20 * 1024 * 1024


class SkippedFile(BaseModel):
    """A file the build saw but did not index, and why (reported, never dropped silently)."""

    path: str
    reason: str


def _too_large(size: int) -> str:
    return f"{size} bytes, over the {MAX_FILE_BYTES // (1024 * 1024)} MiB limit per file"


def _matches(path: str, patterns: Sequence[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def walk_folder(
    root: Path,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skipped: list[SkippedFile] | None = None,
) -> Iterator[RawDocument]:
    """Every regular file under `root` passing the globs, in a stable order, with source-relative paths.

    `include`/`exclude` are globs matched against the relative POSIX path and the file name
    (`faq/*`, `*.html`, `**/internal/*`). Symlinks are not followed, so a link cannot pull files
    from outside the source into the index. Files over MAX_FILE_BYTES are not read: each is
    appended to `skipped` with the reason; a single oversized file given as the source is an error.
    """
    if not root.exists():
        raise SourceError(f"source path {root} does not exist")
    if root.is_file():
        size = root.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SourceError(f"source file {root} is {_too_large(size)}; split it or leave it out")
        yield _read(root, root.name)
        return
    if not root.is_dir():
        raise SourceError(f"source path {root} is not a file or directory")
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            full = Path(directory) / filename
            if full.is_symlink() or not full.is_file():
                continue
            relative = full.relative_to(root).as_posix()
            if include and not _matches(relative, include):
                continue
            if exclude and _matches(relative, exclude):
                continue
            size = full.stat().st_size
            if size > MAX_FILE_BYTES:
                if skipped is not None:
                    skipped.append(SkippedFile(path=relative, reason=_too_large(size)))
                continue
            yield _read(full, relative)


def _read(full: Path, relative: str) -> RawDocument:
    try:
        data = full.read_bytes()
    except OSError as error:
        raise SourceError(f"cannot read {full}: {error.strerror}") from error
    return RawDocument(path=relative, data=data, mtime=full.stat().st_mtime)
