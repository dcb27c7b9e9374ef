"""The crawl frontier: which discovered URLs are fetched, breadth first, each at most once.

Seeds come from sitemaps (``Sitemap:`` lines of robots.txt on the same origin, plus
``sitemap.xml`` at the scope root; index files are followed), links from every fetched page. A
URL is queued unless it is out of scope, already seen, deeper than ``max_depth``, a binary file,
excluded by pattern, disallowed by robots.txt, or beyond ``max_pages``; the last two bounds mark
the crawl truncated.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import structlog

from indexer.crawl.fetch import REDIRECT_STATUSES, Fetcher, redirect_target
from indexer.crawl.links import BINARY_EXTENSIONS, SITEMAP_MAX_BYTES, parse_sitemap
from indexer.crawl.links import extension as url_extension
from indexer.crawl.models import CrawlOptions
from indexer.crawl.outcomes import Outcomes, Visit
from indexer.crawl.robots import Robots
from indexer.crawl.urls import Scope, matches, normalise_url, origin_of

log = structlog.get_logger()

_MAX_SITEMAP_FILES = 50


class Frontier:
    """The queue of URLs to fetch, with their link depth, and every URL ever seen."""

    def __init__(self, scope: Scope, options: CrawlOptions, robots: Robots, outcomes: Outcomes) -> None:
        self.scope = scope
        self.options = options
        self.robots = robots
        self.outcomes = outcomes
        self.queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self.seen: set[str] = set()
        self.scheduled = 0

    async def seed_from_sitemaps(self, fetcher: Fetcher) -> None:
        """Queue the pages the sitemaps list, at depth 0."""
        for location in await self._sitemap_entries(fetcher):
            self.discover(location, depth=0)

    async def _sitemap_entries(self, fetcher: Fetcher) -> list[str]:
        robots = self.robots.cached(self.scope.origin)
        listed = (robots.site_maps() if robots else None) or []
        candidates = [*listed, self.scope.url + "sitemap.xml"]
        queue = [url for url in (normalise_url(c) for c in candidates) if url is not None]
        done: set[str] = set()
        entries: list[str] = []
        while queue and len(done) < _MAX_SITEMAP_FILES:
            url = queue.pop(0)
            if url in done or origin_of(url) != self.scope.origin:
                continue
            done.add(url)
            if robots is not None and not robots.can_fetch(self.options.user_agent, url):
                continue
            reply = await fetcher.request(url, {}, None, SITEMAP_MAX_BYTES)
            if reply.status in REDIRECT_STATUSES:
                target = redirect_target(reply)
                if target is not None:
                    queue.append(target)  # followed only on this origin, like any sitemap
                continue
            if reply.problem is None and 400 <= reply.status < 500:
                continue  # no sitemap here (some hosts answer 403 for a missing file)
            if reply.problem is not None or reply.body is None:
                # Discovery may be incomplete, so the crawl must not conclude pages were removed.
                self.outcomes.record(Visit(url, None, "failed", f"sitemap: {reply.problem or reply.status}"))
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

    def key(self, url: str) -> str | None:
        """The document key of an in-scope URL; None outside the scope."""
        return self.scope.key_for(url) if self.scope.contains(url) else None

    def discover(self, link: str, depth: int) -> None:
        """Queue `link` at `depth` unless one of the rules above says no."""
        url = normalise_url(link)
        if url is None or not self.scope.contains(url) or url in self.seen:
            return
        if depth > self.options.max_depth:
            self.outcomes.report.truncated = True
            return
        path = urlsplit(url).path
        key = self.scope.key_for(url)
        extension = url_extension(url)
        if extension in BINARY_EXTENSIONS:
            self.seen.add(url)
            self.outcomes.record(
                Visit(url, key, "skipped", f"not a document ({extension} link)", drops_page=True)
            )
            return
        if any(matches(path, pattern) for pattern in self.options.exclude):
            self.seen.add(url)
            self.outcomes.record(Visit(url, key, "skipped", "excluded by pattern", drops_page=True))
            return
        robots = self.robots.cached(self.scope.origin)
        if robots is not None and not robots.can_fetch(self.options.user_agent, url):
            self.seen.add(url)
            self.outcomes.record(Visit(url, key, "skipped", "disallowed by robots.txt", drops_page=True))
            return
        if self.scheduled >= self.options.max_pages:
            self.outcomes.report.truncated = True
            return
        self.seen.add(url)
        self.scheduled += 1
        self.queue.put_nowait((url, depth))
