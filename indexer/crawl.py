"""Crawl a documentation website into `RawDocument`s, politely and safely, with cheap refresh.

What a crawl does, in order:

1. **Start URL.** Checked against the address policy (see *SSRF* below) and robots.txt, then
   fetched; redirects of the start URL are followed (each hop checked) and the final URL defines
   the *scope*: same scheme, host and port, and a path under the final URL's directory
   (``https://docs.example.com/en/stable/`` → everything under ``/en/stable/``). Any problem here
   raises `CrawlRefused` (address or robots policy) or `CrawlError` (unreachable, bad answer).
2. **Discovery.** Sitemaps (``Sitemap:`` lines of robots.txt on the same origin, plus
   ``sitemap.xml`` at the scope root; sitemap index files and gzip are understood) give seeds;
   links are followed from every fetched page as well, so pages a stale sitemap forgets are still
   found. Breadth first, bounded by ``max_depth`` (link hops from a seed) and ``max_pages`` (page
   fetches).
3. **Fetching.** A fixed pool of ``concurrency`` workers shares one pacer (``requests_per_second``,
   slowed further by robots ``Crawl-delay`` and by ``Retry-After`` answers). Each request has a
   deadline; 429/5xx answers and transport errors are retried with exponential backoff and jitter.
   Bodies are streamed and abandoned past ``max_page_bytes``. Only HTML, Markdown and plain text
   become documents.

URL rules (one page, one key):
- query strings and fragments are dropped, host lower-cased, default ports removed, ``.``/``..``
  resolved, percent-escapes normalised, credentials dropped;
- ``…/index.html`` is the same page as ``…/`` and is fetched as ``…/``;
- a document's key (`RawDocument.path`) is the URL path relative to the scope, still
  percent-encoded, with ``index.html`` appended for directory URLs (``/en/stable/`` → ``index.html``,
  ``/en/stable/topics/`` → ``topics/index.html``); `Scope.url_for` turns a key back into a URL;
- a page whose ``<link rel=canonical>`` names another URL inside the scope is not indexed itself;
  the canonical URL is fetched (and indexed) instead. Canonical URLs outside the scope are ignored.

Filters: ``include`` / ``exclude`` patterns match the absolute URL path (``/en/stable/releases/3.2.html``).
A pattern is a glob (`fnmatch`, where ``*`` also crosses ``/``) unless it starts with ``re:``, in which
case the rest is a regular expression searched in the path. Excluded pages are neither fetched nor
followed. When ``include`` is given, pages it does not match are still fetched to follow their
links (they count towards ``max_pages``) but never become documents.

Refresh (``previous`` = the validators a former crawl returned):
- pages answering 304, or 200 with an unchanged content hash, are listed in ``unchanged``; their
  outgoing links are kept in their validators so discovery through an unchanged page still works;
- 404/410, a redirect to another page, or a page now refused by policy (robots, filters, size, type,
  ``noindex``) → ``removed``;
- previous pages that discovery no longer reaches → ``removed`` when the crawl was complete, but
  kept as ``unchanged`` (and listed in ``report.unverified``) when anything failed or a limit cut the
  crawl short: an incomplete crawl must not delete content it merely failed to see. Previous pages
  that fail to fetch are kept the same way.

SSRF: unless ``allow_private`` is set, every host is resolved and *all* of its addresses must be
public (not private, loopback, link-local, multicast, reserved, unspecified or shared; embedded IPv4
in IPv4-mapped, 6to4, Teredo and NAT64 addresses is checked too) before the start URL, a sitemap or a
redirect target is requested. When `crawl` builds its own HTTP client the check is repeated at
connect time and the socket is opened to the very address that was checked, which closes the DNS
rebinding window between check and connect. A caller-supplied client keeps its own resolver and
connection logic, so only the pre-request check applies to it (a rebinding DNS server could still
swap the address in between); such a client also decides about proxies, which the built-in client
ignores for the same reason.
"""

from __future__ import annotations

import asyncio
import email.utils
import fnmatch
import html
import ipaddress
import random
import re
import socket
import time
import urllib.robotparser
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpcore
import httpx
import structlog
from pydantic import BaseModel, Field, field_validator
from selectolax.lexbor import LexborHTMLParser

from indexer.models import RawDocument

log = structlog.get_logger()

DEFAULT_USER_AGENT = "docgate-crawler/0.1 (+https://github.com/docgate/docgate)"

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
_BINARY_EXTENSIONS = frozenset(
    {
        *(".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".bmp", ".tif", ".tiff"),
        *(".pdf", ".epub", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx"),
        *(".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".tar", ".whl", ".egg", ".jar", ".iso"),
        *(".exe", ".dmg", ".msi", ".deb", ".rpm", ".apk"),
        *(".mp3", ".mp4", ".webm", ".ogg", ".wav", ".avi", ".mov"),
        *(".woff", ".woff2", ".ttf", ".otf", ".eot", ".css", ".js", ".mjs", ".map", ".json", ".xml"),
    }
)
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_GONE_STATUSES = frozenset({404, 410})
_MAX_REDIRECTS = 5
_ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 lets crawlers stop parsing after 500 KiB.
_SITEMAP_MAX_BYTES = 50 * 1024 * 1024  # the sitemap protocol's own limit for one file
_MAX_SITEMAP_FILES = 50
_MAX_CRAWL_DELAY_S = 60.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ACCEPT = "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.8,*/*;q=0.1"

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name to IP address strings; the seam for tests and custom DNS."""


class CrawlError(Exception):
    """The crawl cannot start: the start URL is unreachable or answers with something unusable."""


class CrawlRefused(CrawlError):
    """Policy forbids the crawl: a non-public address without ``allow_private``, or robots.txt."""


class CrawlOptions(BaseModel):
    """What to crawl and how gently. Defaults suit a public documentation site."""

    start_url: str
    include: list[str] = Field(default_factory=list, description="Globs (or 're:' regexes) on the URL path.")
    exclude: list[str] = Field(default_factory=list, description="Globs (or 're:' regexes) on the URL path.")
    max_pages: int = Field(default=5000, ge=1, description="Upper bound on page fetches.")
    max_depth: int = Field(default=20, ge=0, description="Link hops from the start URL or a sitemap entry.")
    concurrency: int = Field(default=4, ge=1, le=64)
    requests_per_second: float = Field(default=8.0, gt=0)
    timeout_s: float = Field(default=15.0, gt=0, description="Deadline for one request, body included.")
    max_page_bytes: int = Field(default=5_000_000, ge=1)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_base_s: float = Field(default=0.5, ge=0, description="First retry waits about this long.")
    backoff_max_s: float = Field(default=30.0, ge=0)
    max_retry_after_s: float = Field(default=60.0, ge=0, description="Cap on a server's Retry-After.")
    allow_private: bool = False
    user_agent: str = DEFAULT_USER_AGENT

    @field_validator("start_url")
    @classmethod
    def _start_url_is_http(cls, value: str) -> str:
        if normalise_url(value) is None:
            raise ValueError(f"start URL {value!r} is not an absolute http(s) URL")
        return value.strip()

    @field_validator("include", "exclude")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from exc
        return patterns


class Validators(BaseModel):
    """What a refresh needs to know about one page: HTTP validators, content hash and links."""

    etag: str | None = None
    last_modified: str | None = None
    content_hash: str
    links: list[str] = Field(
        default_factory=list, description="Keys of in-scope pages this page links to (for 304 answers)."
    )


PageStatus = Literal["fetched", "not_modified", "skipped", "failed", "removed"]


class PageOutcome(BaseModel):
    url: str
    status: PageStatus
    reason: str | None = None
    path: str | None = None
    bytes: int = 0


class CrawlReport(BaseModel):
    start_url: str
    scope: str = Field(description="URL prefix every crawled page starts with.")
    pages_fetched: int = Field(default=0, description="Page bodies downloaded (200 answers).")
    not_modified: int = Field(default=0, description="304 answers.")
    documents: int = 0
    unchanged: int = 0
    skipped: list[PageOutcome] = Field(default_factory=list)
    failed: list[PageOutcome] = Field(default_factory=list)
    removed: list[PageOutcome] = Field(default_factory=list)
    unverified: list[str] = Field(
        default_factory=list,
        description="Previous pages kept as unchanged because the crawl could not check them.",
    )
    bytes: int = 0
    seconds: float = 0.0
    truncated: bool = Field(default=False, description="max_pages or max_depth left pages undiscovered.")
    partial: bool = Field(default=False, description="Something failed; the result is incomplete.")


class CrawlResult(BaseModel):
    documents: list[RawDocument] = Field(description="New or changed pages.")
    unchanged: list[str] = Field(description="Keys whose previous content still stands.")
    removed: list[str] = Field(description="Keys of previous pages that are gone.")
    validators: dict[str, Validators] = Field(description="Key → validators to keep for the next refresh.")
    report: CrawlReport


async def crawl(
    options: CrawlOptions,
    previous: dict[str, Validators] | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    resolver: Resolver | None = None,
) -> CrawlResult:
    """Crawl ``options.start_url``; with ``previous`` validators, refresh cheaply.

    Raises `CrawlRefused` / `CrawlError` only for an unusable start URL; single pages that fail
    are reported in ``result.report`` (``partial`` is then true).
    """
    resolve = resolver or system_resolve
    if client is not None:
        return await _Crawler(options, previous or {}, client, resolve).run()
    async with _build_client(options, resolve) as own_client:
        return await _Crawler(options, previous or {}, own_client, resolve).run()


# --------------------------------------------------------------------------- URLs and scope


def normalise_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of an http(s) URL (see module docstring), or None when unusable."""
    try:
        parts = urlsplit(urljoin(base, url.strip()) if base else url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
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


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], path) is not None
    return fnmatch.fnmatchcase(path, pattern)


# --------------------------------------------------------------------------- address policy


def is_public_address(address: str) -> bool:
    """True when an IP address is globally routable unicast, including any IPv4 it embeds."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public_address(str(ip.ipv4_mapped))  # ::ffff:a.b.c.d is a.b.c.d on the wire
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        return False
    if not ip.is_global or ip.is_private:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return all(is_public_address(str(inner)) for inner in embedded)
    return True


async def system_resolve(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for ``host`` (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


class AddressRefusedError(Exception):
    """A host resolves to an address the policy forbids."""


class HostUnresolvableError(AddressRefusedError):
    """A host does not resolve, so its addresses cannot be checked (and it cannot be reached)."""


async def check_host(host: str, port: int, resolve: Resolver) -> list[str]:
    """Resolve ``host`` and return its addresses; raise `AddressRefusedError` unless all are public."""
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise HostUnresolvableError(f"cannot resolve host {host!r}: {exc}") from exc
    if not addresses:
        raise HostUnresolvableError(f"host {host!r} resolves to no address")
    refused = [address for address in addresses if not is_public_address(address)]
    if refused:
        raise AddressRefusedError(
            f"host {host!r} resolves to non-public address {refused[0]} "
            "(private, loopback, link-local, multicast or reserved)"
        )
    return addresses


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects to the checked address in one step (no rebinding window).

    With ``check`` off (``allow_private``) it still resolves through ``resolve``, so a custom
    resolver decides where every connection goes either way."""

    def __init__(self, resolve: Resolver, *, check: bool) -> None:
        self._resolve = resolve
        self._check = check
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            if self._check:
                addresses = await check_host(host, port, self._resolve)
            else:
                addresses = await self._resolve(host, port)
        except (AddressRefusedError, OSError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        error: Exception = httpcore.ConnectError(f"cannot connect to {host}:{port}")
        for address in addresses:
            try:
                # TLS still verifies and sends SNI for the original host name: httpcore takes
                # those from the request's origin, not from the address connected to.
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not crawled")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request mapping, error mapping) over a connection pool whose
    network backend is `_PinnedBackend`. httpx offers no public hook for the backend, so the
    pool it built is swapped for an equivalent one; the pool type is pinned with httpx itself."""

    def __init__(self, resolve: Resolver, limits: httpx.Limits, *, check: bool) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),  # honours SSL_CERT_FILE / SSL_CERT_DIR
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(resolve, check=check),
        )


def _build_client(options: CrawlOptions, resolve: Resolver) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=options.concurrency + 2, max_keepalive_connections=options.concurrency
    )
    transport = _PinnedTransport(resolve, limits, check=not options.allow_private)
    # trust_env=False: environment proxies would connect on our behalf to addresses we never checked.
    return httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": options.user_agent},
        timeout=options.timeout_s,
    )


# --------------------------------------------------------------------------- pacing and retries


class _Pacer:
    """Spaces request starts at least ``interval`` apart across all workers; can be pushed back."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)

    def slow_to(self, interval: float) -> None:
        """Widen the spacing, counting from the last request already made."""
        if interval > self.interval:
            self._next += interval - self.interval
            self.interval = interval

    def defer(self, seconds: float) -> None:
        # A 429/503 with Retry-After speaks for the whole site, not just for one URL.
        self._next = max(self._next, time.monotonic() + seconds)


def parse_retry_after(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), cap)


def _backoff(options: CrawlOptions, attempt: int) -> float:
    # Exponential with "equal jitter": never below half the step, so retries stay spaced out.
    step = min(options.backoff_max_s, options.backoff_base_s * 2.0**attempt)
    return step / 2 + random.uniform(0, step / 2)


# --------------------------------------------------------------------------- one HTTP exchange


@dataclass
class _Reply:
    """The outcome of one URL (no redirects followed): a status with maybe a body, or a problem."""

    url: str
    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: bytes | None = None
    content_type: str | None = None
    problem: str | None = None
    # "skip": policy says no (size, type); "fail": the server or network let us down.
    problem_kind: Literal["skip", "fail"] = "fail"


def _mime(headers: httpx.Headers) -> str | None:
    value = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return value or None


def _guess_type(url: str) -> str | None:
    path = urlsplit(url).path.lower()
    if path.endswith("/"):
        return "text/html"
    dot = path.rfind(".")
    return _EXTENSION_TYPES.get(path[dot:]) if dot > path.rfind("/") else None


def _extension(url: str) -> str:
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return path[dot:] if dot > path.rfind("/") else ""


async def _read_limited(response: httpx.Response, limit: int) -> bytes | None:
    """The decoded body, or None once it grows past ``limit`` (gzip bombs included)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- link extraction


@dataclass
class _PageLinks:
    links: list[str] = field(default_factory=list)
    canonical: str | None = None
    noindex: bool = False
    nofollow: bool = False


_MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)")


def _extract_links(body: bytes, content_type: str, page_url: str) -> _PageLinks:
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


def _parse_sitemap(data: bytes) -> tuple[list[str], bool]:
    """(locations, is_index). A regex, not an XML parser: sitemaps are flat lists of <loc>, and
    this way no entity expansion or external reference of a hostile file can ever run."""
    if data[:2] == b"\x1f\x8b":
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = decompressor.decompress(data, _SITEMAP_MAX_BYTES)
        except zlib.error:
            return [], False
    text = data.decode("utf-8", errors="replace")
    locations = [html.unescape(match.group(1)) for match in _SITEMAP_LOC.finditer(text)]
    return locations, _SITEMAP_INDEX.search(text) is not None


# --------------------------------------------------------------------------- the crawl


@dataclass
class _Visit:
    """What happened to one discovered URL, for the report and the refresh bookkeeping."""

    url: str
    key: str | None
    status: PageStatus
    reason: str | None = None
    size: int = 0
    # True when the outcome means the page is no longer indexable (policy, gone, moved), so a
    # previously indexed copy is removed; failures leave it in place.
    drops_page: bool = False


class _Crawler:
    def __init__(
        self,
        options: CrawlOptions,
        previous: dict[str, Validators],
        client: httpx.AsyncClient,
        resolve: Resolver,
    ) -> None:
        self.options = options
        self.previous = previous
        self.client = client
        self.resolve = resolve
        self.pacer = _Pacer(options.requests_per_second)
        self.robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.robots_problems: dict[str, str] = {}  # origin → why its robots.txt could not be read
        self.checked_hosts: dict[tuple[str, int], AddressRefusedError | None] = {}
        self.scope = Scope.of(normalise_url(options.start_url) or options.start_url)
        self.queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self.seen: set[str] = set()
        self.scheduled = 0
        self.documents: dict[str, RawDocument] = {}
        self.unchanged: set[str] = set()
        self.removed: dict[str, str] = {}
        self.validators: dict[str, Validators] = {}
        self.claimed: set[str] = set()
        self.visits: list[_Visit] = []
        self.key_visits: dict[str, _Visit] = {}
        self.report = CrawlReport(start_url=options.start_url, scope=self.scope.url)

    # ----- top level

    async def run(self) -> CrawlResult:
        started = time.monotonic()
        log.info("crawl.start", start_url=self.options.start_url, refresh=bool(self.previous))
        start_url, reply = await self._resolve_start()
        self.scope = Scope.of(start_url)
        self.report.scope = self.scope.url
        self.seen.add(start_url)
        self.scheduled = 1
        for location in await self._sitemap_entries():
            self._discover(location, depth=0)
        self._handle_reply(start_url, self.scope.key_for(start_url), reply, depth=0)
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.concurrency)]
        try:
            await self.queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        result = self._result(time.monotonic() - started)
        log.info(
            "crawl.done",
            scope=self.scope.url,
            documents=len(result.documents),
            unchanged=len(result.unchanged),
            removed=len(result.removed),
            failed=len(result.report.failed),
            partial=result.report.partial,
            truncated=result.report.truncated,
            seconds=round(result.report.seconds, 2),
        )
        return result

    async def _worker(self) -> None:
        while True:
            url, depth = await self.queue.get()
            try:
                await self._visit(url, depth)
            except Exception as exc:  # one broken page must never end the crawl
                log.exception("crawl.page_error", url=url)
                self._record(_Visit(url, self._key(url), "failed", f"internal error: {exc}"))
            finally:
                self.queue.task_done()

    # ----- start URL

    async def _resolve_start(self) -> tuple[str, _Reply]:
        url = normalise_url(self.options.start_url)
        assert url is not None  # validated by CrawlOptions
        for _ in range(_MAX_REDIRECTS + 1):
            refusal = await self._address_refusal(url)
            if isinstance(refusal, HostUnresolvableError):
                raise CrawlError(f"cannot crawl from {url}: {refusal}; check the host name")
            if refusal is not None:
                raise CrawlRefused(
                    f"refusing to crawl {url}: {refusal}; "
                    "set allow_private (docgate-index --allow-private) only for a site you trust"
                )
            robots = await self._robots_for(url)
            unavailable = self.robots_problems.get(_origin(url))
            if unavailable is not None:
                raise CrawlError(
                    f"cannot crawl from {url}: {_origin(url)}/robots.txt is unavailable ({unavailable}); "
                    "robots rules say to crawl nothing until it answers"
                )
            if not robots.can_fetch(self.options.user_agent, url):
                raise CrawlRefused(
                    f"robots.txt of {_origin(url)} disallows {url} for {self.options.user_agent!r}; "
                    "choose a start URL the site allows"
                )
            reply = await self._request(url, {}, DOCUMENT_TYPES, self.options.max_page_bytes)
            if reply.status in _REDIRECT_STATUSES:
                target = self._redirect_target(reply)
                if target is None:
                    raise CrawlError(f"start URL {url} redirects to an unusable location; use the final URL")
                url = target
                continue
            if reply.problem is not None:
                raise CrawlError(f"cannot crawl from {url}: {reply.problem}")
            if reply.status != 200:
                raise CrawlError(f"start URL {url} answered HTTP {reply.status}; check the URL")
            return url, reply
        raise CrawlError(f"start URL redirects more than {_MAX_REDIRECTS} times; use the final URL")

    def _redirect_target(self, reply: _Reply) -> str | None:
        location = reply.headers.get("location")
        return normalise_url(location, base=reply.url) if location else None

    # ----- robots.txt

    async def _robots_for(self, url: str) -> urllib.robotparser.RobotFileParser:
        origin = _origin(url)
        if origin not in self.robots:
            robots = self.robots[origin] = await self._fetch_robots(origin)
            # robotparser reads whole seconds only; a site asking for a delay gets it from now on.
            delay = robots.crawl_delay(self.options.user_agent)
            if delay:
                self.pacer.slow_to(min(float(delay), _MAX_CRAWL_DELAY_S))
        return self.robots[origin]

    async def _fetch_robots(self, origin: str) -> urllib.robotparser.RobotFileParser:
        """RFC 9309: 4xx → no rules; 5xx or unreachable → everything disallowed."""
        parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        url = origin + "/robots.txt"
        for _ in range(_MAX_REDIRECTS + 1):
            reply = await self._request(url, {}, None, _ROBOTS_MAX_BYTES, truncate=True)
            if reply.status in _REDIRECT_STATUSES:
                target = self._redirect_target(reply)
                if target is None or _origin(target) != origin:
                    break  # rules elsewhere do not govern this origin: treat as no rules
                url = target
                continue
            if reply.status == 200 and reply.body is not None:
                parser.parse(reply.body.decode("utf-8", errors="replace").splitlines())
                return parser
            if reply.problem is None and 400 <= reply.status < 500 and reply.status != 429:
                break
            problem = reply.problem or f"HTTP {reply.status}"
            log.warning("crawl.robots_unavailable", origin=origin, problem=problem)
            self.robots_problems[origin] = problem
            parser.parse(["User-agent: *", "Disallow: /"])
            return parser
        parser.parse([])
        return parser

    # ----- sitemaps

    async def _sitemap_entries(self) -> list[str]:
        robots = self.robots.get(self.scope.origin)
        listed = (robots.site_maps() if robots else None) or []
        candidates = [*listed, self.scope.url + "sitemap.xml"]
        queue = [url for url in (normalise_url(c) for c in candidates) if url is not None]
        done: set[str] = set()
        entries: list[str] = []
        while queue and len(done) < _MAX_SITEMAP_FILES:
            url = queue.pop(0)
            if url in done or _origin(url) != self.scope.origin:
                continue
            done.add(url)
            if robots is not None and not robots.can_fetch(self.options.user_agent, url):
                continue
            reply = await self._request(url, {}, None, _SITEMAP_MAX_BYTES)
            if reply.status in _REDIRECT_STATUSES:
                target = self._redirect_target(reply)
                if target is not None:
                    queue.append(target)  # followed only on this origin, like any sitemap
                continue
            if reply.problem is None and 400 <= reply.status < 500:
                continue  # no sitemap here (some hosts answer 403 for a missing file)
            if reply.problem is not None or reply.body is None:
                # Discovery may be incomplete, so the crawl must not conclude pages were removed.
                self._record(_Visit(url, None, "failed", f"sitemap: {reply.problem or reply.status}"))
                continue
            locations, is_index = _parse_sitemap(reply.body)
            log.debug("crawl.sitemap", url=url, entries=len(locations), index=is_index)
            for location in locations:
                if is_index:
                    child = normalise_url(location)
                    if child is not None:
                        queue.append(child)
                else:
                    entries.append(location)
        return entries

    # ----- discovery

    def _key(self, url: str) -> str | None:
        return self.scope.key_for(url) if self.scope.contains(url) else None

    def _discover(self, link: str, depth: int) -> None:
        url = normalise_url(link)
        if url is None or not self.scope.contains(url) or url in self.seen:
            return
        if depth > self.options.max_depth:
            self.report.truncated = True
            return
        path = urlsplit(url).path
        key = self.scope.key_for(url)
        extension = _extension(url)
        if extension in _BINARY_EXTENSIONS:
            self.seen.add(url)
            self._record(_Visit(url, key, "skipped", f"not a document ({extension} link)", drops_page=True))
            return
        if any(_matches(path, pattern) for pattern in self.options.exclude):
            self.seen.add(url)
            self._record(_Visit(url, key, "skipped", "excluded by pattern", drops_page=True))
            return
        robots = self.robots.get(self.scope.origin)
        if robots is not None and not robots.can_fetch(self.options.user_agent, url):
            self.seen.add(url)
            self._record(_Visit(url, key, "skipped", "disallowed by robots.txt", drops_page=True))
            return
        if self.scheduled >= self.options.max_pages:
            self.report.truncated = True
            return
        self.seen.add(url)
        self.scheduled += 1
        self.queue.put_nowait((url, depth))

    # ----- one page

    async def _visit(self, url: str, depth: int) -> None:
        requested, requested_key = url, self.scope.key_for(url)
        for _ in range(_MAX_REDIRECTS + 1):
            key = self.scope.key_for(url)
            reply = await self._request(
                url, _conditional_headers(self.previous.get(key)), DOCUMENT_TYPES, self.options.max_page_bytes
            )
            if reply.status not in _REDIRECT_STATUSES:
                if key != requested_key:
                    self._record(
                        _Visit(requested, requested_key, "skipped", f"redirects to {url}", drops_page=True)
                    )
                self._handle_reply(url, key, reply, depth)
                return
            target = self._redirect_target(reply)
            if target is None:
                self._record(_Visit(requested, requested_key, "failed", "redirect without usable Location"))
                return
            refusal = await self._hop_refusal(target)
            if refusal is not None:
                self._record(_Visit(requested, requested_key, "skipped", refusal, drops_page=True))
                return
            if target in self.seen:
                # Already fetched or queued under its own URL: the redirecting URL adds nothing.
                self._record(
                    _Visit(requested, requested_key, "skipped", f"redirects to {target}", drops_page=True)
                )
                return
            self.seen.add(target)
            url = target
        self._record(_Visit(requested, requested_key, "failed", f"more than {_MAX_REDIRECTS} redirects"))

    async def _hop_refusal(self, target: str) -> str | None:
        if not self.scope.contains(target):
            return f"redirect out of scope to {target}"
        refusal = await self._address_refusal(target)
        if refusal is not None:
            return f"redirect to {target} refused: {refusal}"
        robots = self.robots.get(self.scope.origin)
        if robots is not None and not robots.can_fetch(self.options.user_agent, target):
            return f"redirect to {target}, which robots.txt disallows"
        if any(_matches(urlsplit(target).path, pattern) for pattern in self.options.exclude):
            return f"redirect to {target}, which is excluded by pattern"
        return None

    def _handle_reply(self, url: str, key: str, reply: _Reply, depth: int) -> None:
        previous = self.previous.get(key)
        if reply.problem is not None:
            status: PageStatus = "skipped" if reply.problem_kind == "skip" else "failed"
            drops = reply.problem_kind == "skip"
            self._record(_Visit(url, key, status, reply.problem, drops_page=drops))
            return
        if reply.status == 304 and previous is not None:
            self.report.not_modified += 1
            self._keep_unchanged(url, key, previous, reply.headers)
            for link_key in previous.links:
                self._discover(self.scope.url_for(link_key), depth + 1)
            return
        if reply.status in _GONE_STATUSES:
            reason = f"HTTP {reply.status}"
            if previous is not None:
                self._record(_Visit(url, key, "removed", reason, drops_page=True))
            else:
                self._record(_Visit(url, key, "skipped", f"{reason} (broken link)", drops_page=True))
            return
        if reply.status != 200 or reply.body is None:
            self._record(_Visit(url, key, "failed", f"HTTP {reply.status}"))
            return
        self._handle_page(url, key, reply, reply.body, depth)

    def _handle_page(self, url: str, key: str, reply: _Reply, body: bytes, depth: int) -> None:
        self.report.pages_fetched += 1
        self.report.bytes += len(body)
        content_type = reply.content_type or "text/plain"
        page = _extract_links(body, content_type, url)
        link_urls = [] if page.nofollow else [u for u in (normalise_url(link) for link in page.links) if u]
        in_scope = [u for u in link_urls if self.scope.contains(u)]
        for link in in_scope:
            self._discover(link, depth + 1)
        canonical = normalise_url(page.canonical) if page.canonical else None
        if canonical is not None and canonical != url and self.scope.contains(canonical):
            # The site says another URL is the real page: index that one (fetched on its own, so
            # the outcome does not depend on which copy a worker happens to finish first).
            self._record(_Visit(url, key, "skipped", f"canonical page is {canonical}", drops_page=True))
            self._discover(canonical, depth)
            return
        if key in self.claimed:
            self._record(_Visit(url, None, "skipped", f"duplicate of {self.scope.url_for(key)}"))
            return
        self.claimed.add(key)
        if page.noindex:
            self._record(
                _Visit(url, key, "skipped", "page asks not to be indexed (noindex)", drops_page=True)
            )
            return
        if any(_matches(urlsplit(url).path, p) for p in self.options.exclude):
            self._record(_Visit(url, key, "skipped", "excluded by pattern", drops_page=True))
            return
        if self.options.include and not any(_matches(urlsplit(url).path, p) for p in self.options.include):
            self._record(_Visit(url, key, "skipped", "not matched by include patterns", drops_page=True))
            return
        document = RawDocument(path=key, data=body, url=url, content_type=content_type, mtime=_mtime(reply))
        validators = Validators(
            etag=reply.headers.get("etag"),
            last_modified=reply.headers.get("last-modified"),
            content_hash=document.content_hash,
            links=sorted({self.scope.key_for(u) for u in in_scope}),
        )
        self.validators[key] = validators
        previous = self.previous.get(key)
        if previous is not None and previous.content_hash == document.content_hash:
            self.unchanged.add(key)
            self._record(_Visit(url, key, "not_modified", "same content", len(body)))
            return
        self.documents[key] = document
        self._record(_Visit(url, key, "fetched", None, len(body)))

    def _keep_unchanged(self, url: str, key: str, previous: Validators, headers: httpx.Headers) -> None:
        self.claimed.add(key)
        self.unchanged.add(key)
        # A 304 may carry fresher validators; keep the old ones where it does not.
        self.validators[key] = previous.model_copy(
            update={
                "etag": headers.get("etag") or previous.etag,
                "last_modified": headers.get("last-modified") or previous.last_modified,
            }
        )
        self._record(_Visit(url, key, "not_modified"))

    def _record(self, visit: _Visit) -> None:
        self.visits.append(visit)
        if visit.key is not None:
            self.key_visits[visit.key] = visit
        if visit.status == "failed":
            log.warning("crawl.page", url=visit.url, status=visit.status, reason=visit.reason)
        elif visit.status in ("skipped", "removed"):
            log.info("crawl.page", url=visit.url, status=visit.status, reason=visit.reason)
        else:
            log.debug("crawl.page", url=visit.url, status=visit.status, bytes=visit.size)

    # ----- HTTP

    async def _address_refusal(self, url: str) -> AddressRefusedError | None:
        """None when the host of ``url`` may be contacted, else why it may not."""
        if self.options.allow_private:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
        if (host, port) not in self.checked_hosts:
            try:
                await check_host(host, port, self.resolve)
                self.checked_hosts[(host, port)] = None
            except AddressRefusedError as exc:
                self.checked_hosts[(host, port)] = exc
        return self.checked_hosts[(host, port)]

    async def _request(
        self,
        url: str,
        headers: dict[str, str],
        accept_types: frozenset[str] | None,
        max_bytes: int,
        *,
        truncate: bool = False,
    ) -> _Reply:
        """GET ``url``, retrying 429/5xx answers and transport errors; never follows redirects.

        ``accept_types`` None accepts any type (robots.txt, sitemaps); ``truncate`` keeps the first
        ``max_bytes`` instead of giving up on a larger body.
        """
        options = self.options
        last = _Reply(url, problem="not attempted")
        for attempt in range(options.retries + 1):
            await self.pacer.wait()
            try:
                async with asyncio.timeout(options.timeout_s):
                    last = await self._exchange(url, headers, accept_types, max_bytes, truncate)
            except TimeoutError:
                last = _Reply(url, problem=f"timed out after {options.timeout_s:g}s")
            except httpx.HTTPError as exc:
                last = _Reply(url, problem=f"{type(exc).__name__}: {exc}".rstrip(": "))
            retryable = last.problem is not None and last.problem_kind == "fail"
            wait = _backoff(options, attempt)
            if last.status in _RETRYABLE_STATUSES:
                retryable = True
                retry_after = parse_retry_after(last.headers.get("retry-after"), options.max_retry_after_s)
                if retry_after is not None:
                    wait = retry_after
                    self.pacer.defer(retry_after)
            if not retryable or attempt == options.retries:
                break
            log.info(
                "crawl.retry",
                url=url,
                attempt=attempt + 1,
                status=last.status,
                problem=last.problem,
                wait=wait,
            )
            await asyncio.sleep(wait)
        if last.status in _RETRYABLE_STATUSES:
            suffix = " (rate limited)" if last.status == 429 else ""
            return _Reply(
                url,
                last.status,
                last.headers,
                problem=f"HTTP {last.status}{suffix} after {attempt + 1} attempts",
            )
        if last.problem is not None and last.problem_kind == "fail" and attempt:
            last.problem = f"{last.problem} (after {attempt + 1} attempts)"
        return last

    async def _exchange(
        self,
        url: str,
        headers: dict[str, str],
        accept_types: frozenset[str] | None,
        max_bytes: int,
        truncate: bool,
    ) -> _Reply:
        request = self.client.build_request(
            "GET",
            url,
            headers={"User-Agent": self.options.user_agent, "Accept": _ACCEPT, **headers},
            timeout=self.options.timeout_s,
        )
        response = await self.client.send(request, stream=True, follow_redirects=False)
        try:
            reply = _Reply(url, response.status_code, response.headers)
            if response.status_code != 200:
                return reply
            content_type = _mime(response.headers) or _guess_type(url)
            reply.content_type = content_type
            if accept_types is not None and content_type not in accept_types:
                reply.problem, reply.problem_kind = (
                    f"content type {content_type or 'unknown'} is not a document",
                    "skip",
                )
                return reply
            declared = response.headers.get("content-length", "")
            if not truncate and declared.isdigit() and int(declared) > max_bytes:
                reply.problem = f"too large ({int(declared)} bytes > {max_bytes})"
                reply.problem_kind = "skip"
                return reply
            if truncate:
                reply.body = await _read_prefix(response, max_bytes)
                return reply
            body = await _read_limited(response, max_bytes)
            if body is None:
                reply.problem, reply.problem_kind = f"too large (more than {max_bytes} bytes)", "skip"
            reply.body = body
            return reply
        finally:
            await response.aclose()

    # ----- result

    def _result(self, seconds: float) -> CrawlResult:
        report = self.report
        for visit in self.visits:
            outcome = PageOutcome(
                url=visit.url, status=visit.status, reason=visit.reason, path=visit.key, bytes=visit.size
            )
            if visit.status == "failed":
                report.failed.append(outcome)
            elif visit.status == "skipped":
                report.skipped.append(outcome)
        report.partial = bool(report.failed)
        complete = not report.partial and not report.truncated
        for key, old in self.previous.items():
            if key in self.documents or key in self.unchanged or key in self.removed:
                continue
            last = self.key_visits.get(key)
            if last is not None and last.drops_page:
                self.removed[key] = last.reason or last.status
            elif last is None and complete:
                self.removed[key] = "no longer linked from the site"
            else:
                # Failed, or simply not reached by an incomplete crawl: keep what we had.
                self.unchanged.add(key)
                self.validators[key] = old
                report.unverified.append(key)
        for key, reason in sorted(self.removed.items()):
            report.removed.append(
                PageOutcome(url=self.scope.url_for(key), status="removed", reason=reason, path=key)
            )
        documents = sorted(self.documents.values(), key=lambda document: document.path)
        report.documents = len(documents)
        report.unchanged = len(self.unchanged)
        report.unverified.sort()
        report.seconds = seconds
        validators = {
            key: value
            for key, value in self.validators.items()
            if key in self.documents or key in self.unchanged
        }
        return CrawlResult(
            documents=documents,
            unchanged=sorted(self.unchanged),
            removed=sorted(self.removed),
            validators=dict(sorted(validators.items())),
            report=report,
        )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _conditional_headers(previous: Validators | None) -> dict[str, str]:
    if previous is None:
        return {}
    headers: dict[str, str] = {}
    if previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    return headers


def _mtime(reply: _Reply) -> float | None:
    value = reply.headers.get("last-modified")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


async def _read_prefix(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data.extend(chunk[: limit - len(data)])
        if len(data) >= limit:
            break
    return bytes(data)
