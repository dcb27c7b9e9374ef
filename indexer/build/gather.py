"""Gather: read a folder or crawl a site, parse and chunk what changed, keep what did not."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import structlog

from indexer import generations as gens
from indexer.build.request import BuildRequest
from indexer.build.reuse import (
    kept_chunks,
    page_modified,
    reusable_pages,
    validators_of,
    with_modified,
    with_validators,
)
from indexer.build.run import Gathered, Gatherer, Run
from indexer.chunking import chunk_document
from indexer.crawl import CrawlError, CrawlOptions, CrawlResult, Validators, crawl
from indexer.errors import CrawlFailed, SourceError
from indexer.models import Chunk, Document, RawDocument
from indexer.parsing import parse_document
from indexer.sources import SkippedFile, walk_folder

log = structlog.get_logger()


def parse_and_chunk(run: Run, raw: RawDocument) -> tuple[Document, list[Chunk]] | None:
    document = parse_document(raw)
    if document is None:
        return None
    # The page URL travels with every chunk, so `Chunk.source` reads `URL#anchor` for sites.
    document = document.model_copy(update={"content_hash": raw.content_hash, "url": document.url or raw.url})
    chunks = chunk_document(
        document,
        collection=run.name,
        version=run.request.version_for(raw.path),
        settings=run.settings.chunking,
        count_tokens=run.embedder.count_tokens,
    )
    return (document, chunks) if chunks else None


def modified_of(raw: RawDocument, read_at: datetime) -> datetime:
    """When a document last changed: its file's mtime or its page's Last-Modified, else `read_at`.

    Never the build time when the source knows better: a folder unpacked from a tarball keeps the
    docs' own mtimes, so a version's date reflects its documentation, not when it was indexed.
    """
    if raw.mtime is None:
        return read_at
    return datetime.fromtimestamp(raw.mtime, UTC).replace(microsecond=0)


def add_parsed(
    run: Run, raw: RawDocument, got: Gathered, read_at: datetime, validators: Validators | None = None
) -> None:
    parsed = parse_and_chunk(run, raw)
    if parsed is None:
        got.skipped += 1
        got.skipped_files.append(SkippedFile(path=raw.path, reason="unsupported format or no text"))
        return
    document, chunks = parsed
    got.parsed += 1
    got.chunks.extend(chunks)
    record = gens.DocumentRecord(
        content_hash=raw.content_hash,
        chunks=len(chunks),
        title=document.title,
        url=document.url,
        modified=modified_of(raw, read_at),
    )
    got.records[raw.path] = with_validators(record, validators)


def folder_gatherer(request: BuildRequest, documents: Callable[[], Iterable[RawDocument]] | None) -> Gatherer:
    too_large: list[SkippedFile] = []
    if documents is None:
        root = request.source
        if root is None or not root.exists():
            raise SourceError(f"source path {root} does not exist")
        documents = functools.partial(walk_folder, root, request.include, request.exclude, too_large)
    source_docs = documents

    def gather(run: Run) -> Gathered:
        run.progress.stage("reading documents", None)
        too_large.clear()
        raws = list(source_docs())
        return gather_files(run, raws, too_large)

    return gather


def gather_files(run: Run, raws: list[RawDocument], too_large: list[SkippedFile] | None = None) -> Gathered:
    run.progress.stage("parsing documents", len(raws))
    got = Gathered()
    got.skipped_files.extend(too_large or [])
    got.skipped += len(too_large or [])
    read_at = gens.now().replace(microsecond=0)
    for raw in raws:
        old = run.old_docs.get(raw.path)
        kept = kept_chunks(run, raw.path, old) if old and old.content_hash == raw.content_hash else None
        if old is not None and kept is not None:
            # Same content: the recorded date stands even when the file was only touched.
            got.keep(raw.path, with_modified(old, modified_of(raw, read_at)), kept)
        else:
            add_parsed(run, raw, got, read_at)
        run.progress.advance()
    if not got.records:
        raise SourceError(
            f"no documentation found under {run.request.source} "
            f"({len(raws)} files seen, {got.skipped} skipped as unsupported or empty); "
            "supported: .md .mdx .rst .html .htm .txt"
        )
    return got


def site_gatherer(options: CrawlOptions) -> Gatherer:
    def gather(run: Run) -> Gathered:
        return gather_site(run, options)

    return gather


def gather_site(run: Run, options: CrawlOptions) -> Gathered:
    # Only pages whose old chunks are really there are offered for conditional refresh: a page
    # the crawler calls unchanged is never downloaded, so nothing else could rebuild it.
    reusable = reusable_pages(run)
    run.progress.stage("crawling site", None)
    result = run_crawl(options, {key: validators_of(record) for key, (record, _) in reusable.items()})
    # A page without Last-Modified is dated by its fetch: at the latest, when the crawl ended.
    fetched_at = gens.now().replace(microsecond=0)
    previous_build = run.previous.manifest.created_at if run.previous.manifest is not None else fetched_at
    run.progress.stage("parsing pages", len(result.unchanged) + len(result.documents))
    got = Gathered(crawl=result.report)
    for key in result.unchanged:
        if key in reusable:
            record, chunks = reusable[key]
            record = with_validators(record, result.validators.get(key))
            got.keep(key, with_modified(record, page_modified(record, previous_build)), chunks)
        else:
            log.warning("crawl_kept_unknown_page", collection=run.name, path=key)
        run.progress.advance()
    for raw in result.documents:
        add_parsed(run, raw, got, fetched_at, result.validators.get(raw.path))
        run.progress.advance()
    if not got.records:
        raise CrawlFailed(empty_crawl_message(options.start_url, result))
    return got


def run_crawl(options: CrawlOptions, previous: dict[str, Validators]) -> CrawlResult:
    try:
        return asyncio.run(crawl(options, previous or None))
    except CrawlError as error:
        raise CrawlFailed(str(error)) from error


def empty_crawl_message(start_url: str, result: CrawlResult) -> str:
    report = result.report
    problems = [*report.failed, *report.skipped]
    first = f"; first problem: {problems[0].url}: {problems[0].reason}" if problems else ""
    return (
        f"no documentation found at {start_url} ({report.pages_fetched} pages fetched, "
        f"{len(report.skipped)} skipped, {len(report.failed)} failed{first}); nothing was published"
    )
