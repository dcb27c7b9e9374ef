"""`parse_document()`: detect the format, decode the bytes and hand the text to that format's reader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

import structlog

from indexer.models import Document, RawDocument, Section
from indexer.parsing.detect import Format, charset_of, decode_text, detect_format
from indexer.parsing.html import read_html
from indexer.parsing.markdown import read_markdown, read_mdx
from indexer.parsing.rst import read_rst
from indexer.parsing.text import read_text

log = structlog.get_logger(__name__)

# Bump when parsing output changes: `update` then re-parses every document instead of reusing chunks.
PARSER_VERSION = "1"


def parse_document(raw: RawDocument) -> Document | None:
    """Parse one raw file or page; None when it is not documentation."""
    fmt = detect_format(raw)
    if fmt is None:
        log.debug("parse.skipped", path=raw.path, content_type=raw.content_type)
        return None
    text = decode_text(raw.data, charset_of(raw.content_type))
    stem = _stem(raw.path)
    title, sections = _READERS[fmt](text, stem)
    return Document(path=raw.path, title=title, sections=sections, url=raw.url, content_hash=raw.content_hash)


def _stem(path: str) -> str:
    name = PurePosixPath(path.rstrip("/")).stem
    return name or path or "untitled"


_READERS: dict[Format, Callable[[str, str], tuple[str, list[Section]]]] = {
    "markdown": read_markdown,
    "mdx": read_mdx,
    "rst": read_rst,
    "html": read_html,
    "text": read_text,
}
