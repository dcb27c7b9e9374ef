"""Raw bytes → `Document`: a title and sections of atomic blocks, for Markdown, MDX, rST, HTML and text.

`parse_document()` is the one entry point. Each format has a reader module (`markdown`, `html`,
`rst`, `text`) that walks its syntax tree and feeds an `Outline` (`outline`), which turns a stream
of headings and blocks into sections keyed by heading path. Blocks are what the chunker packs:
paragraphs, whole lists, tables as `a | b` rows and fenced code blocks; a code block is never split
across blocks. `detect` decodes the bytes and picks the reader; `document` dispatches to it.
"""

from __future__ import annotations

from indexer.parsing.detect import SUPPORTED_SUFFIXES, Format, decode_text, detect_format
from indexer.parsing.document import PARSER_VERSION, parse_document

__all__ = [
    "PARSER_VERSION",
    "SUPPORTED_SUFFIXES",
    "Format",
    "decode_text",
    "detect_format",
    "parse_document",
]
