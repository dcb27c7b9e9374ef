"""The crawler itself: start URL, robots.txt, discovery, fetching, refresh bookkeeping; `crawl`."""

from __future__ import annotations

import asyncio
import time
import urllib.robotparser
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx
import structlog

from indexer.crawl.addresses import (
    AddressRefusedError,
    HostUnresolvableError,
    Resolver,
    build_client,
    check_host,
    system_resolve,
)
from indexer.crawl.links import (
    BINARY_EXTENSIONS,
    DOCUMENT_TYPES,
    SITEMAP_MAX_BYTES,
    extract_links,
    guess_type,
    mime,
    parse_sitemap,
)
from indexer.crawl.links import extension as url_extension
from indexer.crawl.models import (
    CrawlError,
    CrawlOptions,
    CrawlRefused,
    CrawlReport,
    CrawlResult,
    PageOutcome,
    PageStatus,
    Validators,
)
from indexer.crawl.pacing import Pacer, backoff, parse_http_date, parse_retry_after
from indexer.crawl.urls import DEFAULT_PORTS, Scope, matches, normalise_url
from indexer.models import RawDocument

log = structlog.get_logger()

_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_GONE_STATUSES = frozenset({404, 410})
_MAX_REDIRECTS = 5
_ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 lets crawlers stop parsing after 500 KiB.
_MAX_SITEMAP_FILES = 50
_MAX_CRAWL_DELAY_S = 60.0
_ACCEPT = "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.8,*/*;q=0.1"


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
    async with build_client(options, resolve) as own_client:
        return await _Crawler(options, previous or {}, own_client, resolve).run()


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
        self.pacer = Pacer(options.requests_per_second)
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
            reply = await self._request(url, {}, None, SITEMAP_MAX_BYTES)
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
            locations, is_index = parse_sitemap(reply.body)
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
        extension = url_extension(url)
        if extension in BINARY_EXTENSIONS:
            self.seen.add(url)
            self._record(_Visit(url, key, "skipped", f"not a document ({extension} link)", drops_page=True))
            return
        if any(matches(path, pattern) for pattern in self.options.exclude):
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
        if any(matches(urlsplit(target).path, pattern) for pattern in self.options.exclude):
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
        page = extract_links(body, content_type, url)
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
        if any(matches(urlsplit(url).path, p) for p in self.options.exclude):
            self._record(_Visit(url, key, "skipped", "excluded by pattern", drops_page=True))
            return
        if self.options.include and not any(matches(urlsplit(url).path, p) for p in self.options.include):
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
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
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
            wait = backoff(options, attempt)
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
            content_type = mime(response.headers) or guess_type(url)
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
    when = parse_http_date(reply.headers.get("last-modified"))
    return when.timestamp() if when is not None else None


async def _read_prefix(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data.extend(chunk[: limit - len(data)])
        if len(data) >= limit:
            break
    return bytes(data)
