"""What a fetched body says: document types by MIME type and extension, links, sitemaps."""

from __future__ import annotations

import html
import re
import zlib
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx
from selectolax.lexbor import LexborHTMLParser

# MIME types that become documents; everything else is skipped with its type as the reason.
DOCUMENT_TYPES = frozenset(
    {"text/html", "application/xhtml+xml", "text/markdown", "text/x-markdown", "text/plain"}
)
_EXTENSION_TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".mdx": "text/markdown",
    ".txt": "text/plain",
}
# Links whose extension says "not a document" are skipped without a request: a docs site links
# its downloads and images by the hundred, and fetching them only to discard them is impolite.
BINARY_EXTENSIONS = frozenset(
    {
        *(".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".bmp", ".tif", ".tiff"),
        *(".pdf", ".epub", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx"),
        *(".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".tar", ".whl", ".egg", ".jar", ".iso"),
        *(".exe", ".dmg", ".msi", ".deb", ".rpm", ".apk"),
        *(".mp3", ".mp4", ".webm", ".ogg", ".wav", ".avi", ".mov"),
        *(".woff", ".woff2", ".ttf", ".otf", ".eot", ".css", ".js", ".mjs", ".map", ".json", ".xml"),
    }
)
SITEMAP_MAX_BYTES = 50 * 1024 * 1024  # the sitemap protocol's own limit for one file


def mime(headers: httpx.Headers) -> str | None:
    value = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return value or None


def guess_type(url: str) -> str | None:
    path = urlsplit(url).path.lower()
    if path.endswith("/"):
        return "text/html"
    dot = path.rfind(".")
    return _EXTENSION_TYPES.get(path[dot:]) if dot > path.rfind("/") else None


def extension(url: str) -> str:
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return path[dot:] if dot > path.rfind("/") else ""


# --------------------------------------------------------------------------- link extraction


@dataclass
class _PageLinks:
    links: list[str] = field(default_factory=list)
    canonical: str | None = None
    noindex: bool = False
    nofollow: bool = False


_MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)")


def extract_links(body: bytes, content_type: str, page_url: str) -> _PageLinks:
    if content_type in ("text/markdown", "text/x-markdown"):
        text = body.decode("utf-8", errors="replace")
        return _PageLinks(links=[match.group(1) for match in _MARKDOWN_LINK.finditer(text)])
    if content_type not in ("text/html", "application/xhtml+xml"):
        return _PageLinks()
    tree = LexborHTMLParser(body)
    found = _PageLinks()
    base = page_url
    base_node = tree.css_first("base[href]")
    if base_node is not None and base_node.attributes.get("href"):
        base = urljoin(page_url, str(base_node.attributes["href"]).strip())
    for meta in tree.css("meta[name]"):
        if str(meta.attributes.get("name") or "").lower() in ("robots", "docgate-crawler"):
            content = str(meta.attributes.get("content") or "").lower()
            directives = {directive.strip() for directive in content.split(",")}
            found.noindex = found.noindex or bool(directives & {"noindex", "none"})
            found.nofollow = found.nofollow or bool(directives & {"nofollow", "none"})
    for link in tree.css("link[rel][href]"):
        if "canonical" in str(link.attributes.get("rel") or "").lower().split():
            found.canonical = urljoin(base, str(link.attributes["href"]).strip())
            break
    for anchor in tree.css("a[href]"):
        if "nofollow" in str(anchor.attributes.get("rel") or "").lower().split():
            continue
        found.links.append(urljoin(base, str(anchor.attributes["href"]).strip()))
    return found


# --------------------------------------------------------------------------- sitemaps

_SITEMAP_LOC = re.compile(r"<(?:[\w.-]+:)?loc\s*>\s*(.*?)\s*</(?:[\w.-]+:)?loc\s*>", re.DOTALL)
_SITEMAP_INDEX = re.compile(r"<(?:[\w.-]+:)?sitemapindex[\s>]")


def parse_sitemap(data: bytes) -> tuple[list[str], bool]:
    """(locations, is_index). A regex, not an XML parser: sitemaps are flat lists of <loc>, and
    this way no entity expansion or external reference of a hostile file can ever run."""
    if data[:2] == b"\x1f\x8b":
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = decompressor.decompress(data, SITEMAP_MAX_BYTES)
        except zlib.error:
            return [], False
    text = data.decode("utf-8", errors="replace")
    locations = [html.unescape(match.group(1)) for match in _SITEMAP_LOC.finditer(text)]
    return locations, _SITEMAP_INDEX.search(text) is not None
