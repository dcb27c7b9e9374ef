"""Where a chunk or page lives: its section label, its live URL, and whether it holds code.

A chunk that merged several small sections carries one `ChunkPart` per section; a hit is labelled
with the part its snippet comes from, so its heading path and `#anchor` point at the text shown.

Live URLs: a crawled page's chunks carry the page URL. A folder built with `--base-url` links to
`base_url` + the page's web path: source suffixes (`.md`, `.mdx`, `.markdown`, `.rst`, `.txt`) are
dropped because sites publish those pages without them, an `index` page is its folder, and `.html`
paths are kept as they are (Sphinx and other HTML builds serve those files). Without either, the
page has no `url` and `source` stays the path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from indexer.chunking import CHUNK_LABELS_VERSION
from indexer.models import Chunk, ChunkPart
from server.errors import IndexUnavailable
from server.retrieval.catalog import Snapshot

SOURCE_SUFFIXES = (".markdown", ".mdx", ".md", ".rst", ".txt")
_ELLIPSIS = " …"


def web_path(path: str) -> str:
    """A source path as its site serves it: `guides/setup.md` → `guides/setup`, `a/index.md` → `a/`."""
    for suffix in SOURCE_SUFFIXES:
        if path.lower().endswith(suffix):
            path = path[: -len(suffix)]
            if path == "index" or path.endswith("/index"):
                path = path[: -len("index")]
            break
    return path


def page_url(chunk_url: str | None, base_url: str | None, path: str) -> str | None:
    """The live URL of a page without anchor, or None when the index does not know it."""
    if chunk_url:
        return chunk_url.split("#", 1)[0]
    if base_url:
        return base_url + web_path(path)
    return None


def with_anchor(base: str, anchor: str | None) -> str:
    return f"{base}#{anchor}" if anchor else base


def shown_part(chunk: Chunk, snippet: str | None) -> ChunkPart:
    """The section part the snippet was cut from (the chunk's first part when it cannot tell)."""
    parts = chunk.labels()
    if len(parts) == 1 or not snippet:
        return parts[0]
    plain = snippet.replace("**", "").removesuffix(_ELLIPSIS).strip()
    # The longest run of the snippet found verbatim in the text locates it; snippets may be cut mid-word.
    for probe in (plain, plain[: len(plain) // 2], plain[-len(plain) // 2 :]):
        probe = probe.strip()
        if len(probe) >= 12:
            offset = chunk.text.find(probe)
            if offset >= 0:
                return chunk.part_at(offset)
    return parts[0]


def labels(chunk: Chunk, base_url: str | None, part: ChunkPart | None = None) -> dict[str, Any]:
    """The label fields of a hit or fetched chunk: heading path, source, live URL and code."""
    part = part or chunk.labels()[0]
    live = page_url(chunk.url, base_url, chunk.path)
    return {
        "heading_path": part.heading_path,
        "source": with_anchor(chunk.url or chunk.path, part.anchor),
        "url": with_anchor(live, part.anchor) if live else None,
        "has_code": chunk.has_code,
        "code_languages": [language for language in chunk.code_languages if language],
    }


def require_code_labels(snapshots: Iterable[Snapshot]) -> None:
    """A code-only search needs generations whose chunks record their code blocks."""
    for snapshot in snapshots:
        if snapshot.manifest.chunking.get("labels", 1) < CHUNK_LABELS_VERSION:
            raise IndexUnavailable(
                f"collection {snapshot.collection!r} was indexed before code labels existed, so it cannot "
                f"be searched for code only; refresh it with `docgate-index update --collection "
                f"{snapshot.collection} ...` (unchanged text keeps its vectors)"
            )
