"""robots.txt per origin (RFC 9309): read once per crawl, its ``Crawl-delay`` applied to the pacer."""

from __future__ import annotations

import urllib.robotparser

import structlog

from indexer.crawl.fetch import MAX_REDIRECTS, REDIRECT_STATUSES, Fetcher, redirect_target
from indexer.crawl.urls import origin_of

log = structlog.get_logger()

_ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 lets crawlers stop parsing after 500 KiB.
_MAX_CRAWL_DELAY_S = 60.0


class Robots:
    """The robots rules of every origin a crawl has asked about."""

    def __init__(self, fetcher: Fetcher, user_agent: str) -> None:
        self.fetcher = fetcher
        self.user_agent = user_agent
        self.rules: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.problems: dict[str, str] = {}  # origin → why its robots.txt could not be read

    def cached(self, origin: str) -> urllib.robotparser.RobotFileParser | None:
        """The rules of `origin` if they have been read (nothing is fetched)."""
        return self.rules.get(origin)

    async def for_url(self, url: str) -> urllib.robotparser.RobotFileParser:
        """The rules of `url`'s origin, read on first use; a ``Crawl-delay`` slows the pacer from then on."""
        origin = origin_of(url)
        if origin not in self.rules:
            robots = self.rules[origin] = await self._fetch(origin)
            # robotparser reads whole seconds only; a site asking for a delay gets it from now on.
            delay = robots.crawl_delay(self.user_agent)
            if delay:
                self.fetcher.pacer.slow_to(min(float(delay), _MAX_CRAWL_DELAY_S))
        return self.rules[origin]

    async def _fetch(self, origin: str) -> urllib.robotparser.RobotFileParser:
        """RFC 9309: 4xx → no rules; 5xx or unreachable → everything disallowed."""
        parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        url = origin + "/robots.txt"
        for _ in range(MAX_REDIRECTS + 1):
            reply = await self.fetcher.request(url, {}, None, _ROBOTS_MAX_BYTES, truncate=True)
            if reply.status in REDIRECT_STATUSES:
                target = redirect_target(reply)
                if target is None or origin_of(target) != origin:
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
            self.problems[origin] = problem
            parser.parse(["User-agent: *", "Disallow: /"])
            return parser
        parser.parse([])
        return parser
