"""Format detection and decoding: bytes → text, and which reader handles a file."""

from __future__ import annotations

import codecs
import re
from pathlib import PurePosixPath
from typing import Literal

from indexer.models import RawDocument

Format = Literal["markdown", "mdx", "rst", "html", "text"]

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(
    {".md", ".markdown", ".mdx", ".rst", ".txt", ".text", ".html", ".htm"}
)

_SUFFIX_FORMATS: dict[str, Format] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "mdx",
    ".rst": "rst",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
}

_MIME_FORMATS: dict[str, Format] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/mdx": "mdx",
    "text/x-rst": "rst",
    "text/prs.fallenstein.rst": "rst",
    "text/plain": "text",
}

_SNIFF_BYTES = 8192

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Labels that servers and generators emit as a default rather than a claim about the bytes: when
# the data is valid UTF-8 these are almost always wrong, so they never override UTF-8.
_WEAK_CHARSETS = frozenset({"ascii", "latin-1", "iso8859-1", "iso8859-15", "cp1252"})

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([^\s;\"']+)", re.IGNORECASE)


def _codec_name(label: str | None) -> str | None:
    """The Python codec for a charset label, or None when unknown or not a text encoding."""
    if not label:
        return None
    try:
        info = codecs.lookup(label.strip())
    except LookupError:
        return None
    # codecs.lookup also knows bytes-to-bytes codecs such as base64; those are not charsets.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _has_bom(data: bytes) -> bool:
    return any(data.startswith(bom) for bom, _ in _BOMS)


def decode_text(data: bytes, declared_charset: str | None = None) -> str:
    """Decode document bytes to text; never raises.

    Order: byte-order mark, declared charset (HTTP header), `<meta>`/XML charset, UTF-8, then
    cp1252 and finally latin-1 (which accepts any byte).
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    head = data[:4096]
    meta = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    labels = [declared_charset, meta.group(1).decode("ascii", "replace") if meta else None]
    utf8_ok: bool | None = None
    for label in labels:
        codec = _codec_name(label)
        if codec is None:
            continue
        if codec in _WEAK_CHARSETS:
            if utf8_ok is None:
                utf8_ok = _is_utf8(data)
            if utf8_ok:
                break
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    for codec in ("utf-8", "cp1252"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1", errors="replace")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def charset_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _CHARSET_PARAM.search(content_type)
    return match.group(1) if match else None


def _mime_of(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _looks_binary(data: bytes) -> bool:
    # UTF-16/32 text is full of NUL bytes but announces itself with a BOM.
    return not _has_bom(data) and b"\x00" in data[:_SNIFF_BYTES]


_RST_MARKERS = re.compile(r"^\.\. (?:[\w:-]+::|_[^:\n]+:)", re.MULTILINE)
_MD_MARKERS = re.compile(r"^(?:#{1,6} \S|```|~~~)", re.MULTILINE)


def _sniff(head: str) -> Format:
    start = head.lstrip().lower()
    if start.startswith(("<!doctype html", "<html")) or "<body" in start[:2048]:
        return "html"
    if _MD_MARKERS.search(head):
        return "markdown"
    if _RST_MARKERS.search(head):
        return "rst"
    return "text"


def detect_format(raw: RawDocument) -> Format | None:
    """Which reader handles this file: by suffix, then content type, then sniffing. None = skip.

    A file with a suffix we do not read (images, CSS, JS, fonts, archives, source code) and no
    announced document type is skipped, as is anything with NUL bytes (binary).
    """
    if _looks_binary(raw.data):
        return None
    suffix = PurePosixPath(raw.path.rstrip("/")).suffix.lower()
    fmt = _SUFFIX_FORMATS.get(suffix)
    if fmt is not None:
        # Sphinx projects (Django among them) write reStructuredText in .txt files.
        if fmt == "text" and _RST_MARKERS.search(decode_text(raw.data[:_SNIFF_BYTES])):
            return "rst"
        return fmt
    mime = _mime_of(raw.content_type)
    if mime in _MIME_FORMATS:
        return _MIME_FORMATS[mime]
    if suffix or mime:
        return None
    return _sniff(decode_text(raw.data[:_SNIFF_BYTES]))
