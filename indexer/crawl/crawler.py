"""The crawl itself: `crawl` checks the start URL, then workers fetch the frontier and judge each reply.

Each reply is judged here: redirects (each hop checked against scope, address policy, robots.txt
and the exclude patterns), 304 and gone pages, canonical links, ``noindex``, the include and
exclude patterns, and content unchanged since the former crawl.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httpx
import structlog

from indexer.crawl.addresses import HostUnresolvableError, Resolver, build_client, system_resolve
from indexer.crawl.fetch import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    Fetcher,
    Reply,
    conditional_headers,
    redirect_target,
)
from indexer.crawl.frontier import Frontier
from indexer.crawl.links import DOCUMENT_TYPES, extract_links
from indexer.crawl.models import (
    CrawlError,
    CrawlOptions,
    CrawlRefused,
    CrawlReport,
    CrawlResult,
    PageStatus,
    Validators,
)
from indexer.crawl.outcomes import Outcomes, Visit
from indexer.crawl.pacing import parse_http_date
from indexer.crawl.robots import Robots
from indexer.crawl.urls import Scope, matches, normalise_url, origin_of
from indexer.models import RawDocument

log = structlog.get_logger()

_GONE_STATUSES = frozenset({404, 410})


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
        return await _crawl(options, previous or {}, client, resolve)
    async with build_client(options, resolve) as own_client:
        return await _crawl(options, previous or {}, own_client, resolve)


async def _crawl(
    options: CrawlOptions, previous: dict[str, Validators], client: httpx.AsyncClient, resolve: Resolver
) -> CrawlResult:
    started = time.monotonic()
    log.info("crawl.start", start_url=options.start_url, refresh=bool(previous))
    fetcher = Fetcher(options, client, resolve)
    robots = Robots(fetcher, options.user_agent)
    start_url, reply = await _resolve_start(options, fetcher, robots)
    scope = Scope.of(start_url)
    result = await _Crawler(options, previous, fetcher, robots, scope).run(start_url, reply, started)
    log.info(
        "crawl.done",
        scope=scope.url,
        documents=len(result.documents),
        unchanged=len(result.unchanged),
        removed=len(result.removed),
        failed=len(result.report.failed),
        partial=result.report.partial,
        truncated=result.report.truncated,
        seconds=round(result.report.seconds, 2),
    )
    return result


async def _resolve_start(options: CrawlOptions, fetcher: Fetcher, robots: Robots) -> tuple[str, Reply]:
    """The start URL after its redirects, and its reply; raise when it may not or cannot be crawled."""
    url = normalise_url(options.start_url)
    assert url is not None  # validated by CrawlOptions
    for _ in range(MAX_REDIRECTS + 1):
        refusal = await fetcher.address_refusal(url)
        if isinstance(refusal, HostUnresolvableError):
            raise CrawlError(f"cannot crawl from {url}: {refusal}; check the host name")
        if refusal is not None:
            raise CrawlRefused(
                f"refusing to crawl {url}: {refusal}; "
                "set allow_private (docgate-index --allow-private) only for a site you trust"
            )
        rules = await robots.for_url(url)
        unavailable = robots.problems.get(origin_of(url))
        if unavailable is not None:
            raise CrawlError(
                f"cannot crawl from {url}: {origin_of(url)}/robots.txt is unavailable ({unavailable}); "
                "robots rules say to crawl nothing until it answers"
            )
        if not rules.can_fetch(options.user_agent, url):
            raise CrawlRefused(
                f"robots.txt of {origin_of(url)} disallows {url} for {options.user_agent!r}; "
                "choose a start URL the site allows"
            )
        reply = await fetcher.request(url, {}, DOCUMENT_TYPES, options.max_page_bytes)
        if reply.status in REDIRECT_STATUSES:
            target = redirect_target(reply)
            if target is None:
                raise CrawlError(f"start URL {url} redirects to an unusable location; use the final URL")
            url = target
            continue
        if reply.problem is not None:
            raise CrawlError(f"cannot crawl from {url}: {reply.problem}")
        if reply.status != 200:
            raise CrawlError(f"start URL {url} answered HTTP {reply.status}; check the URL")
        return url, reply
    raise CrawlError(f"start URL redirects more than {MAX_REDIRECTS} times; use the final URL")


class _Crawler:
    """One crawl from its checked start URL: the workers, and what each reply means for its page."""

    def __init__(
        self,
        options: CrawlOptions,
        previous: dict[str, Validators],
        fetcher: Fetcher,
        robots: Robots,
        scope: Scope,
    ) -> None:
        self.options = options
        self.previous = previous
        self.fetcher = fetcher
        self.robots = robots
        self.scope = scope
        self.report = CrawlReport(start_url=options.start_url, scope=scope.url)
        self.outcomes = Outcomes(scope, previous, self.report)
        self.frontier = Frontier(scope, options, robots, self.outcomes)

    async def run(self, start_url: str, reply: Reply, started: float) -> CrawlResult:
        self.frontier.seen.add(start_url)
        self.frontier.scheduled = 1
        await self.frontier.seed_from_sitemaps(self.fetcher)
        self._handle_reply(start_url, self.scope.key_for(start_url), reply, depth=0)
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.concurrency)]
        try:
            await self.frontier.queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return self.outcomes.result(time.monotonic() - started)

    async def _worker(self) -> None:
        while True:
            url, depth = await self.frontier.queue.get()
            try:
                await self._visit(url, depth)
            except Exception as exc:  # one broken page must never end the crawl
                log.exception("crawl.page_error", url=url)
                self.outcomes.record(Visit(url, self.frontier.key(url), "failed", f"internal error: {exc}"))
            finally:
                self.frontier.queue.task_done()

    async def _visit(self, url: str, depth: int) -> None:
        requested, requested_key = url, self.scope.key_for(url)
        for _ in range(MAX_REDIRECTS + 1):
            key = self.scope.key_for(url)
            reply = await self.fetcher.request(
                url, conditional_headers(self.previous.get(key)), DOCUMENT_TYPES, self.options.max_page_bytes
            )
            if reply.status not in REDIRECT_STATUSES:
                if key != requested_key:
                    self.outcomes.record(
                        Visit(requested, requested_key, "skipped", f"redirects to {url}", drops_page=True)
                    )
                self._handle_reply(url, key, reply, depth)
                return
            target = redirect_target(reply)
            if target is None:
                self.outcomes.record(
                    Visit(requested, requested_key, "failed", "redirect without usable Location")
                )
                return
            refusal = await self._hop_refusal(target)
            if refusal is not None:
                self.outcomes.record(Visit(requested, requested_key, "skipped", refusal, drops_page=True))
                return
            if target in self.frontier.seen:
                # Already fetched or queued under its own URL: the redirecting URL adds nothing.
                self.outcomes.record(
                    Visit(requested, requested_key, "skipped", f"redirects to {target}", drops_page=True)
                )
                return
            self.frontier.seen.add(target)
            url = target
        self.outcomes.record(
            Visit(requested, requested_key, "failed", f"more than {MAX_REDIRECTS} redirects")
        )

    async def _hop_refusal(self, target: str) -> str | None:
        if not self.scope.contains(target):
            return f"redirect out of scope to {target}"
        refusal = await self.fetcher.address_refusal(target)
        if refusal is not None:
            return f"redirect to {target} refused: {refusal}"
        robots = self.robots.cached(self.scope.origin)
        if robots is not None and not robots.can_fetch(self.options.user_agent, target):
            return f"redirect to {target}, which robots.txt disallows"
        if any(matches(urlsplit(target).path, pattern) for pattern in self.options.exclude):
            return f"redirect to {target}, which is excluded by pattern"
        return None

    def _handle_reply(self, url: str, key: str, reply: Reply, depth: int) -> None:
        previous = self.previous.get(key)
        if reply.problem is not None:
            status: PageStatus = "skipped" if reply.problem_kind == "skip" else "failed"
            drops = reply.problem_kind == "skip"
            self.outcomes.record(Visit(url, key, status, reply.problem, drops_page=drops))
            return
        if reply.status == 304 and previous is not None:
            self.report.not_modified += 1
            self.outcomes.keep_unchanged(url, key, previous, reply.headers)
            for link_key in previous.links:
                self.frontier.discover(self.scope.url_for(link_key), depth + 1)
            return
        if reply.status in _GONE_STATUSES:
            reason = f"HTTP {reply.status}"
            if previous is not None:
                self.outcomes.record(Visit(url, key, "removed", reason, drops_page=True))
            else:
                self.outcomes.record(Visit(url, key, "skipped", f"{reason} (broken link)", drops_page=True))
            return
        if reply.status != 200 or reply.body is None:
            self.outcomes.record(Visit(url, key, "failed", f"HTTP {reply.status}"))
            return
        self._handle_page(url, key, reply, reply.body, depth)

    def _handle_page(self, url: str, key: str, reply: Reply, body: bytes, depth: int) -> None:
        self.report.pages_fetched += 1
        self.report.bytes += len(body)
        content_type = reply.content_type or "text/plain"
        page = extract_links(body, content_type, url)
        link_urls = [] if page.nofollow else [u for u in (normalise_url(link) for link in page.links) if u]
        in_scope = [u for u in link_urls if self.scope.contains(u)]
        for link in in_scope:
            self.frontier.discover(link, depth + 1)
        canonical = normalise_url(page.canonical) if page.canonical else None
        if canonical is not None and canonical != url and self.scope.contains(canonical):
            # The site says another URL is the real page: index that one (fetched on its own, so
            # the outcome does not depend on which copy a worker happens to finish first).
            self.outcomes.record(
                Visit(url, key, "skipped", f"canonical page is {canonical}", drops_page=True)
            )
            self.frontier.discover(canonical, depth)
            return
        if key in self.outcomes.claimed:
            self.outcomes.record(Visit(url, None, "skipped", f"duplicate of {self.scope.url_for(key)}"))
            return
        self.outcomes.claimed.add(key)
        if page.noindex:
            self.outcomes.record(
                Visit(url, key, "skipped", "page asks not to be indexed (noindex)", drops_page=True)
            )
            return
        if any(matches(urlsplit(url).path, p) for p in self.options.exclude):
            self.outcomes.record(Visit(url, key, "skipped", "excluded by pattern", drops_page=True))
            return
        if self.options.include and not any(matches(urlsplit(url).path, p) for p in self.options.include):
            self.outcomes.record(
                Visit(url, key, "skipped", "not matched by include patterns", drops_page=True)
            )
            return
        document = RawDocument(path=key, data=body, url=url, content_type=content_type, mtime=_mtime(reply))
        validators = Validators(
            etag=reply.headers.get("etag"),
            last_modified=reply.headers.get("last-modified"),
            content_hash=document.content_hash,
            links=sorted({self.scope.key_for(u) for u in in_scope}),
        )
        self.outcomes.validators[key] = validators
        previous = self.previous.get(key)
        if previous is not None and previous.content_hash == document.content_hash:
            self.outcomes.unchanged.add(key)
            self.outcomes.record(Visit(url, key, "not_modified", "same content", len(body)))
            return
        self.outcomes.documents[key] = document
        self.outcomes.record(Visit(url, key, "fetched", None, len(body)))


def _mtime(reply: Reply) -> float | None:
    when = parse_http_date(reply.headers.get("last-modified"))
    return when.timestamp() if when is not None else None
