"""The website crawler against a real HTTP server on 127.0.0.1 serving tests/fixtures/site/."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import hashlib
import http.server
import itertools
import mimetypes
import shutil
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.crawl import (
    CrawlError,
    CrawlOptions,
    CrawlRefused,
    CrawlResult,
    Scope,
    Validators,
    crawl,
    is_public_address,
    normalise_url,
    parse_retry_after,
    system_resolve,
)

FIXTURE_SITE = Path(__file__).parent / "fixtures" / "site"
CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
PUBLIC_ADDRESS = "93.184.215.14"

DEFAULT_DOCS = {
    "index.html",
    "getting-started.html",
    "guide/index.html",
    "guide/configuration.html",
    "guide/scheduling.md",
    "reference/cli.html",
    "release-notes.txt",
    "downloads.html",
    "faq.html",
}


# --------------------------------------------------------------------------- the test site


@dataclass
class SiteState:
    """Behaviours the tests switch on; the handler reads them on every request."""

    root: Path
    sitemap_mode: str = "none"  # none | plain | index
    send_validators: bool = True
    robots_status: int | None = None
    delay_s: float = 0.0
    fail_plan: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    hang: dict[str, float] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)
    generated: dict[str, tuple[str, bytes, bool]] = field(default_factory=dict)  # type, body, with length
    requests: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]


class SiteHandler(http.server.BaseHTTPRequestHandler):
    server: SiteServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.requests.append((self.path, dict(self.headers.items()), time.monotonic()))
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if state.delay_s:
                time.sleep(state.delay_s)
            self._answer(state)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _answer(self, state: SiteState) -> None:
        path = self.path.split("?", 1)[0]
        origin = f"http://{self.headers['Host']}"
        plan = state.fail_plan.get(path)
        if plan:
            status, headers = plan.pop(0)
            self._send(status, b"try again later", "text/plain", headers)
            return
        if path in state.hang:
            state.release.wait(state.hang[path])
            self._send(200, b"<html><body>late</body></html>", "text/html")
            return
        if path in state.deleted:
            self._send(404, b"gone", "text/plain")
            return
        if path in state.redirects:
            self._send(302, b"", "text/plain", {"Location": state.redirects[path].format(origin=origin)})
            return
        if path in state.generated:
            content_type, body, with_length = state.generated[path]
            self._send(200, body, content_type, with_length=with_length)
            return
        if path == "/robots.txt" and state.robots_status is not None:
            self._send(state.robots_status, b"", "text/plain")
            return
        if path == "/docs/sitemap.xml":
            name = {"plain": "sitemap.xml", "index": "sitemap-index.xml"}.get(state.sitemap_mode)
            if name is None:
                self._send(404, b"no sitemap", "text/plain")
            else:
                body = (state.root / "docs" / name).read_text().replace("{origin}", origin).encode()
                self._send(200, body, "application/xml")
            return
        if path == "/docs/sitemap-pages.xml.gz" and state.sitemap_mode == "index":
            text = (state.root / "docs" / "sitemap-pages.xml").read_text().replace("{origin}", origin)
            self._send(200, gzip.compress(text.encode()), "application/gzip")
            return
        self._static(state, path, origin)

    def _static(self, state: SiteState, path: str, origin: str) -> None:
        target = (state.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(state.root.resolve()):
            self._send(404, b"not found", "text/plain")
            return
        if target.is_dir():
            if not path.endswith("/"):
                self._send(301, b"", "text/plain", {"Location": path + "/"})
                return
            target = target / "index.html"
        if not target.is_file():
            self._send(404, b"not found", "text/plain")
            return
        body = target.read_bytes()
        if target.name == "robots.txt":
            body = body.replace(b"{origin}", origin.encode())
        headers: dict[str, str] = {}
        if state.send_validators:
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            last_modified = email.utils.formatdate(int(target.stat().st_mtime), usegmt=True)
            headers = {"ETag": etag, "Last-Modified": last_modified}
            if self.headers.get("If-None-Match") == etag:
                self._send(304, b"", None, headers)
                return
        content_type = {".md": "text/markdown", ".txt": "text/plain"}.get(target.suffix)
        content_type = content_type or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        self._send(200, body, content_type, headers)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
        *,
        with_length: bool = True,
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if with_length and status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if status != 304:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the crawler hung up on purpose (oversized body)


class SiteServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: SiteState) -> None:
        super().__init__(("127.0.0.1", 0), SiteHandler)
        self.state = state


@dataclass
class Site:
    origin: str
    state: SiteState
    port: int

    @property
    def root(self) -> Path:
        return self.state.root


def _serve(root: Path) -> Iterator[Site]:
    state = SiteState(root=root)
    server = SiteServer(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield Site(origin=f"http://127.0.0.1:{port}", state=state, port=port)
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "site"
    shutil.copytree(FIXTURE_SITE, root)
    state_site = _serve(root)
    served = next(state_site)
    big = b"<html><body>" + b"<p>lorem</p>" * 20_000 + b"</body></html>"
    served.state.generated.update(
        {
            "/docs/files/manual": ("application/pdf", b"%PDF-1.4 not really", True),
            "/docs/files/diagram": ("image/png", b"\x89PNG\r\n\x1a\n", True),
            "/docs/files/handbook.html": ("text/html", big, True),
            "/docs/files/handbook-stream.html": ("text/html", big, False),
        }
    )
    served.state.redirects.update(
        {
            "/docs/moved.html": "guide/",
            "/docs/old-faq.html": "faq.html",
            "/docs/community.html": "{origin}/blog/launch.html",
        }
    )
    yield served
    next(state_site, None)


def options(site: Site, **overrides: Any) -> CrawlOptions:
    settings: dict[str, Any] = {
        "start_url": site.origin + "/docs/",
        "allow_private": True,
        "requests_per_second": 500.0,
        "timeout_s": 2.0,
        "retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retry_after_s": 2.0,
        "max_page_bytes": 100_000,
    }
    settings.update(overrides)
    return CrawlOptions(**settings)


def run(opts: CrawlOptions, previous: dict[str, Validators] | None = None, **kwargs: Any) -> CrawlResult:
    return asyncio.run(crawl(opts, previous, **kwargs))


def keys(result: CrawlResult) -> set[str]:
    return {document.path for document in result.documents}


def reasons(result: CrawlResult) -> dict[str, str]:
    outcomes = [*result.report.skipped, *result.report.failed]
    return {outcome.url.split("/docs/", 1)[-1]: outcome.reason or "" for outcome in outcomes}


# --------------------------------------------------------------------------- discovery and scope


def test_crawl_collects_every_linked_page_inside_the_scope(site: Site) -> None:
    result = run(options(site))

    assert keys(result) == DEFAULT_DOCS
    assert not result.report.partial
    assert result.report.scope == site.origin + "/docs/"
    by_key = {document.path: document for document in result.documents}
    assert by_key["index.html"].url == site.origin + "/docs/"
    assert by_key["guide/index.html"].url == site.origin + "/docs/guide/"
    assert by_key["guide/scheduling.md"].content_type == "text/markdown"
    assert by_key["release-notes.txt"].content_type == "text/plain"
    assert by_key["reference/cli.html"].content_type == "text/html"
    assert b"kettlebrook next" in by_key["reference/cli.html"].data
    assert all(
        document.url and document.url.startswith(site.origin + "/docs/") for document in result.documents
    )
    assert set(result.validators) == DEFAULT_DOCS


def test_crawl_never_leaves_the_scope_or_sends_query_strings(site: Site) -> None:
    run(options(site))

    paths = site.state.paths()
    assert not any("?" in path for path in paths)
    assert not any(path.startswith("/blog/") for path in paths)
    assert paths.count("/docs/getting-started.html") == 1
    # index.html and the directory URL are one page, fetched once as the directory.
    assert paths.count("/docs/") == 1
    assert "/docs/index.html" not in paths


def test_crawl_identifies_itself_on_every_request(site: Site) -> None:
    run(options(site, user_agent="docgate-crawler/9.9 (+https://example.invalid/bot)"))

    agents = {headers.get("User-Agent") for _, headers, _ in site.state.requests}
    assert agents == {"docgate-crawler/9.9 (+https://example.invalid/bot)"}


def test_robots_disallowed_pages_are_skipped_without_a_request(site: Site) -> None:
    result = run(options(site))

    assert "/docs/private/roadmap.html" not in site.state.paths()
    assert "robots.txt" in reasons(result)["private/roadmap.html"]


def test_canonical_link_folds_the_printable_copy_into_the_page(site: Site) -> None:
    result = run(options(site))

    assert "print/getting-started.html" not in keys(result)
    assert "getting-started.html" in keys(result)
    assert "getting-started.html" in reasons(result)["print/getting-started.html"]


def test_redirects_inside_scope_are_followed_and_outside_are_skipped(site: Site) -> None:
    result = run(options(site))

    assert "faq.html" in keys(result)
    assert "redirects to" in reasons(result)["old-faq.html"]
    assert "redirect out of scope" in reasons(result)["community.html"]
    assert "/blog/launch.html" not in site.state.paths()


def test_non_document_content_is_skipped_with_its_type(site: Site) -> None:
    result = run(options(site))
    why = reasons(result)

    assert "application/pdf" in why["files/manual"]
    assert "image/png" in why["files/diagram"]
    assert ".png" in why["files/logo.png"]
    assert "/docs/files/logo.png" not in site.state.paths()
    assert not result.report.partial


def test_oversized_pages_are_skipped_whether_announced_or_streamed(site: Site) -> None:
    result = run(options(site, max_page_bytes=50_000))
    why = reasons(result)

    assert "too large" in why["files/handbook.html"]
    assert "too large" in why["files/handbook-stream.html"]
    assert not result.report.partial


def test_sitemap_adds_pages_no_link_reaches(site: Site) -> None:
    site.state.sitemap_mode = "plain"

    result = run(options(site))

    assert keys(result) == DEFAULT_DOCS | {"orphan.html"}
    assert not any("?" in path for path in site.state.paths())


def test_sitemap_index_with_gzip_child_is_followed(site: Site) -> None:
    site.state.sitemap_mode = "index"

    result = run(options(site))

    assert "orphan.html" in keys(result)
    assert "/docs/sitemap-pages.xml.gz" in site.state.paths()


def test_unreadable_sitemap_marks_the_crawl_partial_but_links_are_still_followed(site: Site) -> None:
    site.state.sitemap_mode = "plain"
    site.state.fail_plan["/docs/sitemap.xml"] = [(500, {})] * 10

    result = run(options(site, retries=1))

    assert keys(result) == DEFAULT_DOCS
    assert result.report.partial
    assert "sitemap" in reasons(result)["sitemap.xml"]


def test_pages_asking_not_to_be_indexed_are_skipped_but_followed(site: Site) -> None:
    guide = site.root / "docs" / "guide" / "index.html"
    guide.write_text(guide.read_text().replace("<head>", '<head><meta name="robots" content="noindex">'))
    index = site.root / "docs" / "index.html"
    index.write_text(index.read_text().replace('<li><a href="reference/cli.html">', '<li><a href="guide/">'))

    result = run(options(site))

    assert "guide/index.html" not in keys(result)
    assert "noindex" in reasons(result)["guide/"]
    assert "reference/cli.html" in keys(result)  # reached only through the noindex guide page


def test_robots_crawl_delay_slows_the_crawl_down(site: Site) -> None:
    robots = site.root / "robots.txt"
    robots.write_text(
        robots.read_text().replace("Disallow: /docs/private/", "Disallow: /docs/private/\nCrawl-delay: 1")
    )

    run(options(site, max_pages=1))

    starts = sorted(at for _, _, at in site.state.requests)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(starts) == 3  # robots.txt, the start page, sitemap.xml
    assert min(gaps) >= 0.95


def test_max_pages_bounds_fetches_and_marks_the_crawl_truncated(site: Site) -> None:
    result = run(options(site, max_pages=3))

    page_requests = [path for path in site.state.paths() if path != "/robots.txt" and "sitemap" not in path]
    assert len(page_requests) <= 3
    assert len(result.documents) <= 3
    assert result.report.truncated


def test_max_depth_zero_fetches_only_the_start_page(site: Site) -> None:
    result = run(options(site, max_depth=0))

    assert keys(result) == {"index.html"}
    assert result.report.truncated


def test_exclude_patterns_stop_fetching_and_include_patterns_limit_documents(site: Site) -> None:
    result = run(options(site, exclude=["/docs/reference/*"], include=["re:^/docs/guide/"]))

    assert "/docs/reference/cli.html" not in site.state.paths()
    assert keys(result) == {"guide/index.html", "guide/configuration.html", "guide/scheduling.md"}
    # Pages outside `include` were still read for their links.
    assert "/docs/" in site.state.paths()


# --------------------------------------------------------------------------- politeness and failures


def test_rate_limited_page_is_retried_after_the_servers_delay(site: Site) -> None:
    site.state.fail_plan["/docs/guide/configuration.html"] = [(429, {"Retry-After": "1"})]

    result = run(options(site))

    assert "guide/configuration.html" in keys(result)
    times = [at for path, _, at in site.state.requests if path == "/docs/guide/configuration.html"]
    assert len(times) == 2
    assert times[1] - times[0] >= 0.9
    assert not result.report.partial


def test_server_error_is_retried_with_backoff(site: Site) -> None:
    site.state.fail_plan["/docs/reference/cli.html"] = [(500, {}), (503, {})]

    result = run(options(site))

    assert "reference/cli.html" in keys(result)
    assert site.state.paths().count("/docs/reference/cli.html") == 3


def test_persistent_server_error_fails_the_page_and_marks_the_crawl_partial(site: Site) -> None:
    site.state.fail_plan["/docs/reference/cli.html"] = [(500, {})] * 10

    result = run(options(site, retries=1))

    assert "reference/cli.html" not in keys(result)
    assert result.report.partial
    assert "HTTP 500" in reasons(result)["reference/cli.html"]
    assert keys(result) == DEFAULT_DOCS - {"reference/cli.html"}


def test_hanging_page_times_out_without_stalling_the_crawl(site: Site) -> None:
    site.state.hang["/docs/release-notes.txt"] = 5.0
    started = time.monotonic()

    result = run(options(site, timeout_s=0.3, retries=0))

    assert time.monotonic() - started < 3
    assert "timed out" in reasons(result)["release-notes.txt"]
    assert result.report.partial


def test_requests_respect_the_concurrency_limit(site: Site) -> None:
    site.state.delay_s = 0.05

    run(options(site, concurrency=2))

    assert site.state.max_in_flight == 2


def test_requests_are_paced_to_the_requests_per_second_limit(site: Site) -> None:
    run(options(site, requests_per_second=20.0, max_pages=5))

    starts = sorted(at for _, _, at in site.state.requests)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(starts) >= 5
    assert min(gaps) >= 0.04


def test_retry_after_accepts_seconds_and_http_dates_and_is_capped() -> None:
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)

    assert parse_retry_after("7", cap=60) == 7
    assert parse_retry_after("3600", cap=60) == 60
    assert 25 <= (parse_retry_after(soon, cap=60) or 0) <= 31
    assert parse_retry_after("not a date", cap=60) is None
    assert parse_retry_after(None, cap=60) is None


# --------------------------------------------------------------------------- refresh


def test_refresh_with_validators_asks_conditionally_and_reuses_everything(site: Site) -> None:
    first = run(options(site))
    site.state.requests.clear()

    second = run(options(site), first.validators)

    assert second.documents == []
    assert set(second.unchanged) == DEFAULT_DOCS
    assert second.removed == []
    assert second.report.not_modified == len(DEFAULT_DOCS) - 1  # the start page is always read in full
    conditional = [path for path, headers, _ in site.state.requests if "If-None-Match" in headers]
    assert "/docs/guide/configuration.html" in conditional
    assert set(second.validators) == DEFAULT_DOCS


def test_refresh_reports_changed_deleted_and_unlinked_pages(site: Site) -> None:
    first = run(options(site))
    configuration = site.root / "docs" / "guide" / "configuration.html"
    configuration.write_text(configuration.read_text().replace("Keys", "Settings"))
    site.state.deleted.add("/docs/release-notes.txt")
    index = site.root / "docs" / "index.html"
    index.write_text(index.read_text().replace('<li><a href="downloads.html">Downloads</a></li>', ""))

    second = run(options(site), first.validators)

    assert keys(second) == {"guide/configuration.html", "index.html"}
    assert b"Settings" in next(d.data for d in second.documents if d.path == "guide/configuration.html")
    assert set(second.removed) == {"release-notes.txt", "downloads.html"}
    assert set(second.unchanged) == DEFAULT_DOCS - {"guide/configuration.html", "index.html"} - set(
        second.removed
    )
    reasons_removed = {outcome.path: outcome.reason for outcome in second.report.removed}
    assert reasons_removed["release-notes.txt"] == "HTTP 404"
    assert reasons_removed["downloads.html"] == "no longer linked from the site"
    assert not second.report.partial


def test_refresh_without_server_validators_compares_content_hashes(site: Site) -> None:
    site.state.send_validators = False
    first = run(options(site))

    second = run(options(site), first.validators)

    assert second.documents == []
    assert set(second.unchanged) == DEFAULT_DOCS
    assert second.report.not_modified == 0


def test_refresh_keeps_pages_it_could_not_check(site: Site) -> None:
    first = run(options(site))
    site.state.fail_plan["/docs/guide/"] = [(503, {})] * 10

    second = run(options(site, retries=0), first.validators)

    assert second.report.partial
    # The guide failed, so pages only it links to may be unseen: nothing may be removed.
    assert second.removed == []
    assert "guide/index.html" in second.unchanged
    assert "guide/index.html" in second.report.unverified
    assert second.validators["guide/index.html"] == first.validators["guide/index.html"]


# --------------------------------------------------------------------------- unusable start URLs


def test_start_url_disallowed_by_robots_is_refused(site: Site) -> None:
    with pytest.raises(CrawlRefused, match=r"robots\.txt"):
        run(options(site, start_url=site.origin + "/docs/private/roadmap.html"))


def test_unavailable_robots_txt_stops_the_crawl(site: Site) -> None:
    site.state.robots_status = 503

    with pytest.raises(CrawlError, match=r"robots\.txt is unavailable"):
        run(options(site, retries=0))


def test_missing_start_page_raises_an_actionable_error(site: Site) -> None:
    with pytest.raises(CrawlError, match="HTTP 404"):
        run(options(site, start_url=site.origin + "/nothing-here/"))


def test_unreachable_start_url_raises_an_actionable_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    opts = CrawlOptions(start_url=f"http://127.0.0.1:{port}/docs/", allow_private=True, retries=0)

    with pytest.raises(CrawlError, match="cannot crawl from"):
        run(opts)


def test_start_redirect_defines_the_scope(site: Site) -> None:
    site.state.redirects["/start"] = "{origin}/docs/guide/"

    result = run(options(site, start_url=site.origin + "/start"))

    assert result.report.scope == site.origin + "/docs/guide/"
    assert keys(result) == {"index.html", "configuration.html", "scheduling.md"}


# --------------------------------------------------------------------------- address policy (SSRF)


@pytest.mark.parametrize(
    "start_url",
    [
        "http://127.0.0.1:9/docs/",
        "http://localhost:9/docs/",
        "http://[::1]:9/docs/",
        "http://10.1.2.3/docs/",
        "http://192.168.0.10/docs/",
        "http://169.254.169.254/latest/",
        "http://[::ffff:127.0.0.1]/docs/",
        "http://[fe80::1]/docs/",
        "http://0.0.0.0/docs/",
        "http://224.0.0.1/docs/",
        "http://100.64.0.1/docs/",
    ],
)
def test_private_start_urls_are_refused_before_any_request(start_url: str) -> None:
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    async def attempt() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
            await crawl(CrawlOptions(start_url=start_url), client=client)

    with pytest.raises(CrawlRefused, match="non-public address"):
        asyncio.run(attempt())
    assert requests == []


def test_private_start_url_is_refused_with_the_built_in_client_too(site: Site) -> None:
    with pytest.raises(CrawlRefused, match="allow_private"):
        run(CrawlOptions(start_url=site.origin + "/docs/"))
    with pytest.raises(CrawlRefused):
        run(CrawlOptions(start_url=f"http://localhost:{site.port}/docs/"))
    assert site.state.requests == []


async def _public_name_resolver(host: str, port: int) -> list[str]:
    if host == "docs.example.test":
        return [PUBLIC_ADDRESS]
    return await system_resolve(host, port)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:8080/docs/",
        "http://localhost/docs/",
        "http://[::ffff:10.0.0.1]/docs/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_redirect_to_a_private_address_is_refused(target: str) -> None:
    hosts: list[str] = []

    def public_site(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.path == "/robots.txt":
            return httpx.Response(404)
        return httpx.Response(302, headers={"Location": target})

    async def attempt() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(public_site)) as client:
            await crawl(
                CrawlOptions(start_url="https://docs.example.test/docs/", retries=0),
                client=client,
                resolver=_public_name_resolver,
            )

    with pytest.raises(CrawlRefused, match="non-public address"):
        asyncio.run(attempt())
    assert set(hosts) == {"docs.example.test"}


def test_connection_goes_to_the_checked_address(site: Site) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "docs.example.test" else await system_resolve(host, port)

    result = run(options(site, start_url=f"http://docs.example.test:{site.port}/docs/"), resolver=resolver)

    assert keys(result) == DEFAULT_DOCS
    assert {headers["Host"] for _, headers, _ in site.state.requests} == {f"docs.example.test:{site.port}"}


def test_dns_rebinding_after_the_check_is_refused_at_connect_time(site: Site) -> None:
    answers = iter([[PUBLIC_ADDRESS]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])

    opts = CrawlOptions(start_url=f"http://rebind.test:{site.port}/docs/", retries=0, timeout_s=2)

    with pytest.raises(CrawlError, match=r"non-public address 127\.0\.0\.1"):
        run(opts, resolver=rebinding)
    assert site.state.requests == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("169.254.1.1", False),
        ("100.64.0.1", False),
        ("224.0.0.251", False),
        ("240.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under test, not a bind
        ("::", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),
        ("64:ff9b::a00:1", False),
        ("not an address", False),
    ],
)
def test_address_policy_classifies_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


# --------------------------------------------------------------------------- URL rules


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Docs.Example.COM:80/a/b.html", "http://docs.example.com/a/b.html"),
        ("https://docs.example.com:443/", "https://docs.example.com/"),
        ("https://docs.example.com:8443/x", "https://docs.example.com:8443/x"),
        ("https://docs.example.com/a/./b/../c.html?q=1#frag", "https://docs.example.com/a/c.html"),
        ("https://docs.example.com/guide/index.html", "https://docs.example.com/guide/"),
        ("https://docs.example.com", "https://docs.example.com/"),
        ("https://user:secret@docs.example.com/a", "https://docs.example.com/a"),
        ("https://docs.example.com/%7euser/a%2fb c", "https://docs.example.com/~user/a%2Fb%20c"),
        ("mailto:someone@example.com", None),
        ("javascript:void(0)", None),
        ("ftp://docs.example.com/a", None),
    ],
)
def test_urls_are_normalised_to_one_form_per_page(url: str, expected: str | None) -> None:
    assert normalise_url(url) == expected


def test_document_keys_round_trip_to_urls() -> None:
    scope = Scope.of("https://docs.example.com/en/stable/")

    assert scope.key_for("https://docs.example.com/en/stable/") == "index.html"
    assert scope.key_for("https://docs.example.com/en/stable/topics/") == "topics/index.html"
    assert scope.key_for("https://docs.example.com/en/stable/topics/db.html") == "topics/db.html"
    for key in ("index.html", "topics/index.html", "topics/db.html"):
        assert scope.key_for(scope.url_for(key)) == key
    assert not scope.contains("https://docs.example.com/en/latest/")
    assert not scope.contains("http://docs.example.com/en/stable/")


def test_invalid_options_are_rejected_with_a_reason() -> None:
    with pytest.raises(ValueError, match="not an absolute http"):
        CrawlOptions(start_url="docs.example.com/guide")
    with pytest.raises(ValueError, match="regular expression"):
        CrawlOptions(start_url="https://docs.example.com/", exclude=["re:("])


# --------------------------------------------------------------------------- a real documentation site


@pytest.mark.corpus
def test_crawl_of_the_django_documentation_stays_in_scope(tmp_path: Path) -> None:
    archive = CORPORA / "django-3.2-docs-html.tar.gz"
    if not archive.is_file():
        pytest.skip(f"corpus not available: {archive} is missing")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    served = _serve(tmp_path)
    site = next(served)
    try:
        result = run(
            options(site, start_url=site.origin + "/django-docs-3.2/", max_pages=60, max_page_bytes=5_000_000)
        )
    finally:
        next(served, None)

    scope = site.origin + "/django-docs-3.2/"
    assert 40 <= len(result.documents) <= 60
    assert result.report.truncated
    assert not result.report.partial
    for document in result.documents:
        assert document.url is not None and document.url.startswith(scope)
        assert document.content_type == "text/html"
        assert not document.path.startswith("/")
        assert b"<html" in document.data[:2000].lower()
    assert all(path.startswith("/django-docs-3.2/") or path == "/robots.txt" for path in site.state.paths())
