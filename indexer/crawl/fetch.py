"""One HTTP exchange of a crawl: the address check, pacing, retries and body limits; never a redirect.

`Fetcher.request` GETs one URL through the shared pacer, retries 429/5xx answers and transport
errors with backoff (a ``Retry-After`` defers the whole site), streams the body and abandons it
past the size limit, and turns everything into a `Reply`: a status with maybe a body, or a problem.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx
import structlog

from indexer.crawl.addresses import AddressRefusedError, Resolver, check_host
from indexer.crawl.links import guess_type, mime
from indexer.crawl.models import CrawlOptions, Validators
from indexer.crawl.pacing import Pacer, backoff, parse_retry_after
from indexer.crawl.urls import DEFAULT_PORTS, normalise_url

log = structlog.get_logger()

_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
_ACCEPT = "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.8,*/*;q=0.1"


@dataclass
class Reply:
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


async def _read_prefix(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data.extend(chunk[: limit - len(data)])
        if len(data) >= limit:
            break
    return bytes(data)


class Fetcher:
    """GETs for one crawl: one client, one pacer, and each host's address checked once."""

    def __init__(self, options: CrawlOptions, client: httpx.AsyncClient, resolve: Resolver) -> None:
        self.options = options
        self.client = client
        self.resolve = resolve
        self.pacer = Pacer(options.requests_per_second)
        self.checked_hosts: dict[tuple[str, int], AddressRefusedError | None] = {}

    async def address_refusal(self, url: str) -> AddressRefusedError | None:
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

    async def request(
        self,
        url: str,
        headers: dict[str, str],
        accept_types: frozenset[str] | None,
        max_bytes: int,
        *,
        truncate: bool = False,
    ) -> Reply:
        """GET ``url``, retrying 429/5xx answers and transport errors; never follows redirects.

        ``accept_types`` None accepts any type (robots.txt, sitemaps); ``truncate`` keeps the first
        ``max_bytes`` instead of giving up on a larger body.
        """
        options = self.options
        last = Reply(url, problem="not attempted")
        for attempt in range(options.retries + 1):
            await self.pacer.wait()
            try:
                async with asyncio.timeout(options.timeout_s):
                    last = await self._exchange(url, headers, accept_types, max_bytes, truncate)
            except TimeoutError:
                last = Reply(url, problem=f"timed out after {options.timeout_s:g}s")
            except httpx.HTTPError as exc:
                last = Reply(url, problem=f"{type(exc).__name__}: {exc}".rstrip(": "))
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
            return Reply(
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
    ) -> Reply:
        request = self.client.build_request(
            "GET",
            url,
            headers={"User-Agent": self.options.user_agent, "Accept": _ACCEPT, **headers},
            timeout=self.options.timeout_s,
        )
        response = await self.client.send(request, stream=True, follow_redirects=False)
        try:
            reply = Reply(url, response.status_code, response.headers)
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


def redirect_target(reply: Reply) -> str | None:
    """Where a redirect answer points, normalised; None without a usable Location."""
    location = reply.headers.get("location")
    return normalise_url(location, base=reply.url) if location else None


def conditional_headers(previous: Validators | None) -> dict[str, str]:
    if previous is None:
        return {}
    headers: dict[str, str] = {}
    if previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    return headers
