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

The package, one job a module (this docstring describes the whole):
- `indexer.crawl.models`: `CrawlOptions`, `Validators`, `PageOutcome`, `CrawlReport`, `CrawlResult`
  and the errors;
- `indexer.crawl.urls`: URL normalisation (`normalise_url`), origins and `Scope`;
- `indexer.crawl.addresses`: the address policy (`is_public_address`, `check_host`), the DNS-pinning
  transport and the HTTP client `crawl` builds;
- `indexer.crawl.pacing`: the request pacer, ``Retry-After`` and backoff;
- `indexer.crawl.links`: document types, link extraction and sitemap parsing;
- `indexer.crawl.fetch`: one HTTP exchange (address check, pacing, retries, body limits);
- `indexer.crawl.robots`: robots.txt per origin and its ``Crawl-delay``;
- `indexer.crawl.frontier`: discovery: sitemap seeds, which links are queued, the bounds;
- `indexer.crawl.outcomes`: what happened to every URL, refresh bookkeeping, the `CrawlResult`;
- `indexer.crawl.crawler`: `crawl`: the start URL, the workers and what each reply means.
"""

from __future__ import annotations

from indexer.crawl.addresses import (
    AddressRefusedError,
    HostUnresolvableError,
    Resolver,
    check_host,
    is_public_address,
    system_resolve,
)
from indexer.crawl.crawler import crawl
from indexer.crawl.links import DOCUMENT_TYPES
from indexer.crawl.models import (
    DEFAULT_USER_AGENT,
    CrawlError,
    CrawlOptions,
    CrawlRefused,
    CrawlReport,
    CrawlResult,
    PageOutcome,
    PageStatus,
    Validators,
)
from indexer.crawl.pacing import parse_http_date, parse_retry_after
from indexer.crawl.urls import Scope, normalise_url

__all__ = [
    "DEFAULT_USER_AGENT",
    "DOCUMENT_TYPES",
    "AddressRefusedError",
    "CrawlError",
    "CrawlOptions",
    "CrawlRefused",
    "CrawlReport",
    "CrawlResult",
    "HostUnresolvableError",
    "PageOutcome",
    "PageStatus",
    "Resolver",
    "Scope",
    "Validators",
    "check_host",
    "crawl",
    "is_public_address",
    "normalise_url",
    "parse_http_date",
    "parse_retry_after",
    "system_resolve",
]
