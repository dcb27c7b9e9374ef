"""Websites as collection sources: build from a URL, cheap refresh, address policy and partial crawls.

A real HTTP server on 127.0.0.1 serves tests/fixtures/site/ (the one from test_crawl.py), with the
real parser, chunker, embedder, Tantivy and qdrant-edge behind it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from indexer import generations as gens
from indexer.build import BuildRequest, BuildSummary, build_collection
from indexer.crawl import CrawlOptions
from indexer.embedding import Embedder
from indexer.lexical import LexicalIndex
from indexer.status import verify_collection
from server.settings import ServerSettings
from tests.conftest import DJANGO_TARBALL, needs_corpus, strip_manifest_dates
from tests.test_crawl import DEFAULT_DOCS, FIXTURE_SITE, Site, _serve

COLLECTION = "kettlebrook"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "site"
    shutil.copytree(FIXTURE_SITE, root)
    served = _serve(root)
    running = next(served)
    # The same moved pages as in test_crawl.py: the FAQ is only reachable through a redirect.
    running.state.redirects.update(
        {
            "/docs/moved.html": "guide/",
            "/docs/old-faq.html": "faq.html",
            "/docs/community.html": "{origin}/blog/",
        }
    )
    yield running
    next(served, None)


def crawl_options(start_url: str, **overrides: Any) -> CrawlOptions:
    """Fast and strict enough for a test server: no pacing to speak of, short timeouts and backoff."""
    fields: dict[str, Any] = {
        "start_url": start_url,
        "allow_private": True,
        "requests_per_second": 500.0,
        "timeout_s": 2.0,
        "retries": 1,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    fields.update(overrides)
    return CrawlOptions.model_validate(fields)


def build_site(
    settings: ServerSettings, site: Site, embedder: Embedder, *, incremental: bool = False
) -> BuildSummary:
    request = BuildRequest(
        collection=COLLECTION,
        site=crawl_options(site.origin + "/docs/"),
        version="2.0",
        incremental=incremental,
    )
    return build_collection(settings, request, embedder=embedder)


def published(settings: ServerSettings) -> tuple[gens.Manifest, LexicalIndex]:
    generation, manifest = gens.require_current(settings.collections_dir, COLLECTION)
    gen_dir = gens.generation_dir(settings.collections_dir, COLLECTION, generation)
    return manifest, LexicalIndex(gen_dir / "tantivy")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=False,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- build and refresh


def test_build_from_a_url_indexes_every_page_with_its_url(
    settings: ServerSettings, site: Site, embedder: Embedder
) -> None:
    summary = build_site(settings, site, embedder)

    assert summary.status == "published" and summary.source_kind == "site"
    assert summary.crawl is not None and not summary.partial
    assert summary.crawl.pages_fetched >= len(DEFAULT_DOCS)
    manifest, lexical = published(settings)
    assert manifest.source_kind == "site"
    assert manifest.source == site.origin + "/docs/"
    assert set(manifest.documents) == DEFAULT_DOCS
    configuration = manifest.documents["guide/configuration.html"]
    assert configuration.url == site.origin + "/docs/guide/configuration.html"
    assert configuration.etag and configuration.last_modified
    assert "guide/scheduling.md" in configuration.links  # keys of linked pages, for 304 answers
    sources = {chunk.source for chunk in lexical.document_chunks("reference/cli.html")}
    assert site.origin + "/docs/reference/cli.html#run" in sources
    assert all(chunk.url and chunk.url.startswith(site.origin + "/docs/") for chunk in lexical.iter_chunks())
    assert verify_collection(settings, COLLECTION).ok


def test_refresh_of_an_unchanged_site_embeds_nothing_and_publishes_nothing(
    settings: ServerSettings, site: Site, embedder: Embedder
) -> None:
    first = build_site(settings, site, embedder)
    site.state.requests.clear()
    before = embedder.texts_embedded

    refreshed = build_site(settings, site, embedder, incremental=True)

    assert refreshed.status == "unchanged"
    assert refreshed.generation == first.generation
    assert embedder.texts_embedded == before
    assert refreshed.documents_parsed == 0 and refreshed.documents_reused == len(DEFAULT_DOCS)
    assert refreshed.crawl is not None
    assert refreshed.crawl.not_modified == len(DEFAULT_DOCS) - 1  # the start page is always read in full
    conditional = [path for path, headers, _ in site.state.requests if "If-None-Match" in headers]
    assert "/docs/guide/configuration.html" in conditional


def test_refresh_embeds_only_the_changed_page_and_drops_the_deleted_one(
    settings: ServerSettings, site: Site, embedder: Embedder
) -> None:
    build_site(settings, site, embedder)
    configuration = site.root / "docs" / "guide" / "configuration.html"
    configuration.write_text(configuration.read_text().replace("brook.toml", "kettle.toml"))
    site.state.deleted.add("/docs/release-notes.txt")
    before = embedder.texts_embedded

    summary = build_site(settings, site, embedder, incremental=True)

    assert summary.status == "published"
    assert summary.documents_parsed == 1
    assert summary.documents_removed == 1
    assert summary.documents_reused == len(DEFAULT_DOCS) - 2
    manifest, lexical = published(settings)
    assert set(manifest.documents) == DEFAULT_DOCS - {"release-notes.txt"}
    assert lexical.document_chunks("release-notes.txt") == []
    changed_chunks = lexical.document_chunks("guide/configuration.html")
    assert any("kettle.toml" in chunk.text for chunk in changed_chunks)
    # Only what changed went through the model: at most the changed page's chunks.
    assert 0 < summary.chunks_embedded <= len(changed_chunks)
    assert embedder.texts_embedded - before == summary.chunks_embedded
    assert summary.crawl is not None
    assert {outcome.path for outcome in summary.crawl.removed} == {"release-notes.txt"}
    assert verify_collection(settings, COLLECTION).ok


# --------------------------------------------------------------------------- page dates

OLD = datetime(2021, 1, 1, 12, tzinfo=UTC)
EDITED = datetime(2022, 2, 2, 12, tzinfo=UTC)


def _date_files(root: Path) -> None:
    """Every served file dated OLD, the configuration page EDITED: what Last-Modified will say."""
    for file in root.rglob("*"):
        os.utime(file, (OLD.timestamp(), OLD.timestamp()))
    configuration = root / "docs" / "guide" / "configuration.html"
    os.utime(configuration, (EDITED.timestamp(), EDITED.timestamp()))


def test_pages_are_dated_by_last_modified_and_keep_it_through_refreshes(
    settings: ServerSettings, site: Site, embedder: Embedder
) -> None:
    _date_files(site.root)
    build_site(settings, site, embedder)
    manifest, _ = published(settings)
    assert manifest.documents["guide/configuration.html"].modified == EDITED
    assert manifest.documents["faq.html"].modified == OLD
    assert manifest.version_dates == {"2.0": EDITED.date()}

    assert build_site(settings, site, embedder, incremental=True).status == "unchanged"
    assert published(settings)[0].version_dates == {"2.0": EDITED.date()}

    # An index from before page dates: a refresh dates its kept pages by their recorded Last-Modified.
    strip_manifest_dates(settings, COLLECTION)
    assert build_site(settings, site, embedder, incremental=True).status == "published"
    manifest, _ = published(settings)
    assert manifest.documents["guide/configuration.html"].modified == EDITED
    assert manifest.version_dates == {"2.0": EDITED.date()}


def test_a_page_without_last_modified_is_dated_by_its_fetch(
    settings: ServerSettings, site: Site, embedder: Embedder
) -> None:
    _date_files(site.root)
    site.state.send_validators = False
    before = gens.now().replace(microsecond=0)
    build_site(settings, site, embedder)
    after = gens.now()
    manifest, _ = published(settings)
    modified = {record.modified for record in manifest.documents.values()}
    assert all(when is not None and before <= when <= after for when in modified)


# --------------------------------------------------------------------------- the command line


def test_cli_refuses_a_private_address_unless_allowed(isolated_env: Path, site: Site) -> None:
    url = site.origin + "/docs/"

    refused = run_cli("build", "--collection", COLLECTION, "--url", url, "--json")

    assert refused.returncode == 8
    lines = error_lines(refused)
    assert len(lines) == 1 and "non-public address 127.0.0.1" in lines[0] and "--allow-private" in lines[0]
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    assert gens.current_generation(isolated_env / "collections", COLLECTION) is None

    allowed = run_cli("build", "--collection", COLLECTION, "--url", url, "--allow-private", "--json")

    assert allowed.returncode == 0, allowed.stderr[-2000:]
    summary = json.loads(allowed.stdout)
    assert summary["status"] == "published" and summary["partial"] is False
    assert summary["documents"] == len(DEFAULT_DOCS)
    assert summary["crawl"]["pages_fetched"] >= len(DEFAULT_DOCS)
    assert gens.current_generation(isolated_env / "collections", COLLECTION) == 1


def test_cli_publishes_a_partial_crawl_with_a_distinct_exit_code(isolated_env: Path, site: Site) -> None:
    site.state.fail_plan["/docs/reference/cli.html"] = [(500, {})] * 50

    result = run_cli(
        "build", "--collection", COLLECTION, "--url", site.origin + "/docs/", "--allow-private", "--json"
    )

    assert result.returncode == 9
    summary = json.loads(result.stdout)
    assert summary["status"] == "published" and summary["partial"] is True
    failed = summary["crawl"]["failed"]
    assert [outcome["url"] for outcome in failed] == [site.origin + "/docs/reference/cli.html"]
    assert "HTTP 500" in failed[0]["reason"]
    assert summary["documents"] == len(DEFAULT_DOCS) - 1
    lines = error_lines(result)
    assert len(lines) == 1 and "crawl incomplete" in lines[0] and "reference/cli.html" in lines[0]
    assert gens.current_generation(isolated_env / "collections", COLLECTION) == 1


def test_cli_needs_exactly_one_source(isolated_env: Path) -> None:
    neither = run_cli("build", "--collection", COLLECTION)
    both = run_cli("build", "--collection", COLLECTION, "--source", ".", "--url", "https://example.org/")
    limit_without_url = run_cli("build", "--collection", COLLECTION, "--source", ".", "--max-pages", "3")

    for result in (neither, both, limit_without_url):
        assert result.returncode == 2
        assert len(error_lines(result)) == 1
    assert "exactly one source" in error_lines(both)[0]
    assert "--max-pages apply to --url only" in error_lines(limit_without_url)[0]


# --------------------------------------------------------------------------- a real documentation site


def _django_slice(target: Path, folder: str) -> Path:
    """Unpack only one folder of the Django HTML docs: a slice of a real site, not the whole corpus."""
    prefix = f"django-docs-3.2/{folder}/"
    with tarfile.open(DJANGO_TARBALL) as archive:
        members = [member for member in archive.getmembers() if member.name.startswith(prefix)]
        archive.extractall(target, members=members, filter="data")
    return target


@pytest.mark.corpus
@needs_corpus(DJANGO_TARBALL)
def test_django_slice_builds_from_its_url_and_refreshes_for_free(
    settings: ServerSettings, tmp_path: Path, embedder: Embedder
) -> None:
    served = _serve(_django_slice(tmp_path / "django", "howto/deployment/wsgi"))
    django = next(served)
    try:
        scope = django.origin + "/django-docs-3.2/howto/deployment/wsgi/"
        request = BuildRequest(
            collection="django", site=crawl_options(scope, max_pages=30), version="3.2", incremental=True
        )
        built = build_collection(settings, request, embedder=embedder)
        before = embedder.texts_embedded
        refreshed = build_collection(settings, request, embedder=embedder)
    finally:
        next(served, None)

    assert built.status == "published" and not built.partial
    assert built.documents == 5
    generation, _ = gens.require_current(settings.collections_dir, "django")
    lexical = LexicalIndex(gens.generation_dir(settings.collections_dir, "django", generation) / "tantivy")
    chunks = list(lexical.iter_chunks())
    assert all(chunk.source.startswith(scope) for chunk in chunks)
    assert any(chunk.source.startswith(scope + "modwsgi.html#") for chunk in chunks)
    assert verify_collection(settings, "django").ok
    assert refreshed.status == "unchanged" and embedder.texts_embedded == before
