"""What happened to every URL of a crawl, and the `CrawlResult` it adds up to.

Refresh bookkeeping: a page the former crawl had is removed only when this crawl says it is gone
(policy, 404/410, moved) or, after a complete crawl, no longer linked; a page that failed or was
not reached keeps its former copy and is listed as unverified.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import structlog

from indexer.crawl.models import CrawlReport, CrawlResult, PageOutcome, PageStatus, Validators
from indexer.crawl.urls import Scope
from indexer.models import RawDocument

log = structlog.get_logger()


@dataclass
class Visit:
    """What happened to one discovered URL, for the report and the refresh bookkeeping."""

    url: str
    key: str | None
    status: PageStatus
    reason: str | None = None
    size: int = 0
    # True when the outcome means the page is no longer indexable (policy, gone, moved), so a
    # previously indexed copy is removed; failures leave it in place.
    drops_page: bool = False


class Outcomes:
    """Every visit of a crawl, the documents it kept, and what it found unchanged or removed."""

    def __init__(self, scope: Scope, previous: dict[str, Validators], report: CrawlReport) -> None:
        self.scope = scope
        self.previous = previous
        self.report = report
        self.documents: dict[str, RawDocument] = {}
        self.unchanged: set[str] = set()
        self.removed: dict[str, str] = {}
        self.validators: dict[str, Validators] = {}
        self.claimed: set[str] = set()
        self.visits: list[Visit] = []
        self.key_visits: dict[str, Visit] = {}

    def record(self, visit: Visit) -> None:
        self.visits.append(visit)
        if visit.key is not None:
            self.key_visits[visit.key] = visit
        if visit.status == "failed":
            log.warning("crawl.page", url=visit.url, status=visit.status, reason=visit.reason)
        elif visit.status in ("skipped", "removed"):
            log.info("crawl.page", url=visit.url, status=visit.status, reason=visit.reason)
        else:
            log.debug("crawl.page", url=visit.url, status=visit.status, bytes=visit.size)

    def keep_unchanged(self, url: str, key: str, previous: Validators, headers: httpx.Headers) -> None:
        """A page the server answered 304 for: kept as the former crawl had it."""
        self.claimed.add(key)
        self.unchanged.add(key)
        # A 304 may carry fresher validators; keep the old ones where it does not.
        self.validators[key] = previous.model_copy(
            update={
                "etag": headers.get("etag") or previous.etag,
                "last_modified": headers.get("last-modified") or previous.last_modified,
            }
        )
        self.record(Visit(url, key, "not_modified"))

    def result(self, seconds: float) -> CrawlResult:
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
