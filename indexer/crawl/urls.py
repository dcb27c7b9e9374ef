"""URL normalisation (one page, one key) and the crawl scope."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of an http(s) URL (see the `indexer.crawl` docstring), or None when unusable."""
    try:
        parts = urlsplit(urljoin(base, url.strip()) if base else url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = _normalise_escapes(_remove_dot_segments(parts.path or "/"))
    if path.endswith("/index.html"):
        path = path[: -len("index.html")]
    return urlunsplit((scheme, netloc, path, "", ""))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, so ``/a/./b/../c`` and ``/a/c`` are the same page."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    result = "/" + "/".join(output)
    if path.endswith(("/.", "/..")) and not result.endswith("/"):
        result += "/"
    return result


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = _UNRESERVED | frozenset("/!$&'()*+,;=:@")
_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")


def _normalise_escapes(path: str) -> str:
    """Decode escaped unreserved characters, upper-case other escapes, escape everything unsafe."""
    out: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "%" and _HEX_PAIR.fullmatch(path, i + 1, i + 3):
            decoded = chr(int(path[i + 1 : i + 3], 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + path[i + 1 : i + 3].upper())
            i += 3
            continue
        if char in _PATH_SAFE:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
        i += 1
    return "".join(out)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, as written."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Scope:
    """Same scheme, host and port as the start page, and a path under its directory."""

    origin: str  # scheme://host[:port]
    prefix: str  # path ending in "/"

    @classmethod
    def of(cls, url: str) -> Scope:
        parts = urlsplit(url)
        directory = parts.path[: parts.path.rfind("/") + 1] or "/"
        return cls(origin=f"{parts.scheme}://{parts.netloc}", prefix=directory)

    @property
    def url(self) -> str:
        return self.origin + self.prefix

    def contains(self, url: str) -> bool:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}" == self.origin and parts.path.startswith(self.prefix)

    def key_for(self, url: str) -> str:
        relative = urlsplit(url).path[len(self.prefix) :]
        return relative + "index.html" if relative == "" or relative.endswith("/") else relative

    def url_for(self, key: str) -> str:
        """The page URL a document key stands for (the inverse of `key_for`)."""
        if key == "index.html" or key.endswith("/index.html"):
            key = key[: -len("index.html")]
        return self.url + key


def matches(path: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], path) is not None
    return fnmatch.fnmatchcase(path, pattern)
