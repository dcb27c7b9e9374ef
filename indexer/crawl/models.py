"""What a crawl takes and gives back: options, validators, outcomes, report, result and errors."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from indexer.crawl.urls import normalise_url
from indexer.models import RawDocument

DEFAULT_USER_AGENT = "docgate-crawler/0.1 (+https://github.com/docgate/docgate)"


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
