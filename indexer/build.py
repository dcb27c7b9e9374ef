"""Build or update one collection: source → parse → chunk → embed → new generation → publish.

A source is a folder (`indexer.sources.walk_folder`) or a website (`indexer.crawl.crawl`).
`build` parses and embeds everything. `update` reuses what has not changed since the published
generation:

- folder: each document's content hash is compared with the manifest; unchanged documents keep
  their chunks and vectors (copied from the old generation, never re-embedded);
- site: the manifest's validators (ETag, Last-Modified, content hash, links) go back to the
  crawler, which asks conditionally; pages it reports unchanged keep their chunks and vectors
  without being fetched in full, parsed or embedded again.

Changed documents are re-parsed and only chunks whose text changed are embedded again; documents
gone from the source disappear. An update that finds no change publishes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt
import structlog
from pydantic import BaseModel, Field, field_validator, model_validator

from indexer import generations as gens
from indexer.chunking import CHUNK_LABELS_VERSION, chunk_document
from indexer.crawl import CrawlError, CrawlOptions, CrawlReport, CrawlResult, Validators, crawl
from indexer.embedding import Embedder, shared_embedder
from indexer.errors import CorruptGeneration, CrawlFailed, SourceError
from indexer.lexical import LexicalIndex, write_index
from indexer.models import Chunk, Document, RawDocument
from indexer.parsing import PARSER_VERSION, parse_document
from indexer.settings import IndexerSettings
from indexer.sources import walk_folder
from indexer.stores import create_vectors, open_vectors
from indexer.vectors import VectorStore, qdrant_client_for, switch_alias

log = structlog.get_logger()

EMBED_BATCH = 256


class Progress(Protocol):
    """What a build reports while it runs (the CLI draws it; tests and `--json` ignore it)."""

    def stage(self, name: str, total: int | None) -> None: ...
    def advance(self, amount: int = 1) -> None: ...


class _Silent:
    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass


class BuildRequest(BaseModel):
    """One build: exactly one of `source` (a folder or file) and `site` (a website to crawl)."""

    collection: str
    source: Path | None = None
    site: CrawlOptions | None = Field(default=None, description="Start URL, filters and limits of a crawl.")
    version: str = "latest"
    version_from_path: str | None = Field(
        default=None,
        description="Regex whose first group, matched against a document path, is that document's version "
        "label (e.g. '^specification/([^/]+)/'); documents that do not match get `version`.",
    )
    include: list[str] = Field(default_factory=list, description="Folder globs; a site has its own.")
    exclude: list[str] = Field(default_factory=list, description="Folder globs; a site has its own.")
    incremental: bool = False
    base_url: str | None = Field(
        default=None,
        description="Public URL of a folder's root on the web; pages link to base_url + their path.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_base(cls, url: str | None) -> str | None:
        if url is not None:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"--base-url {url!r} must be an http:// or https:// URL")
            url = url if url.endswith("/") else url + "/"
        return url

    @model_validator(mode="after")
    def _exactly_one_source(self) -> BuildRequest:
        if (self.source is None) == (self.site is None):
            raise ValueError("give exactly one source: a folder path or a site URL")
        return self

    @field_validator("version_from_path")
    @classmethod
    def _one_group(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise ValueError(f"--version-from-path {pattern!r} is not a valid regex: {error}") from error
            if compiled.groups < 1:
                raise ValueError(
                    f"--version-from-path {pattern!r} needs a capture group for the version label"
                )
        return pattern

    def version_for(self, path: str) -> str:
        """The version label of one document: from its path when configured, else `version`."""
        if self.version_from_path is not None:
            match = re.search(self.version_from_path, path)
            if match and match.group(1):
                return match.group(1)
        return self.version

    @property
    def source_kind(self) -> Literal["folder", "site"]:
        return "site" if self.site is not None else "folder"

    @property
    def source_label(self) -> str:
        """What the manifest records as the source: the folder path or the start URL."""
        return self.site.start_url if self.site is not None else str(self.source)


class BuildSummary(BaseModel):
    collection: str
    status: Literal["published", "unchanged"]
    generation: int
    previous_generation: int | None
    version: str
    documents: int
    chunks: int
    documents_parsed: int
    documents_reused: int
    documents_removed: int
    documents_skipped: int
    chunks_embedded: int
    chunks_reused: int
    seconds: float
    embed_seconds: float
    chunks_per_second: float
    embeddings_per_second: float
    source_kind: Literal["folder", "site"] = "folder"
    crawl: CrawlReport | None = Field(default=None, description="What the crawl did (site sources only).")
    partial: bool = Field(
        default=False, description="The crawl failed on some pages: what stays published is incomplete."
    )


def chunking_fingerprint(settings: IndexerSettings) -> dict[str, int]:
    # `labels`: what chunks record besides their text (2: per-section parts, overlap, code); an
    # index from before re-chunks its documents on update, reusing every vector whose text is unchanged.
    return {**settings.chunking.model_dump(), "labels": CHUNK_LABELS_VERSION}


class _Previous:
    """The published generation an update reuses from (chunks by document, vectors by text hash)."""

    def __init__(self, settings: IndexerSettings, collection: str) -> None:
        self.generation = gens.current_generation(settings.collections_dir, collection)
        self.manifest: gens.Manifest | None = None
        self.lexical: LexicalIndex | None = None
        self.vectors: VectorStore | None = None
        if self.generation is None:
            return
        gen_dir = gens.generation_dir(settings.collections_dir, collection, self.generation)
        self.manifest = gens.read_manifest(gen_dir)
        self.lexical = LexicalIndex(gen_dir / "tantivy")
        self.vectors = open_vectors(settings, self.manifest, gen_dir)

    def compatible(self, settings: IndexerSettings, embedder: Embedder) -> bool:
        """Reuse is only sound when chunks and vectors would come out the same."""
        m = self.manifest
        return (
            m is not None
            and m.embedding_model == embedder.model_id
            and m.embedding_dimension == embedder.dimension
            and m.chunking == chunking_fingerprint(settings)
            and m.parser_version == PARSER_VERSION
        )

    def close(self) -> None:
        if self.vectors is not None:
            self.vectors.close()


def build_collection(
    settings: IndexerSettings,
    request: BuildRequest,
    *,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    documents: Callable[[], Iterable[RawDocument]] | None = None,
) -> BuildSummary:
    """Build (or with `request.incremental`, update) a collection and publish it atomically.

    `documents` replaces the folder walk of a folder request. A site request runs its crawl with
    `asyncio.run`, so it must not be called from inside a running event loop.
    """
    progress = progress or _Silent()
    started = time.perf_counter()
    name = gens.validate_collection_name(request.collection)
    collections_dir = settings.collections_dir
    gather = (
        _site_gatherer(request.site) if request.site is not None else _folder_gatherer(request, documents)
    )
    embedder = embedder or shared_embedder(settings.embedding, settings.models_dir)

    with gens.build_lock(collections_dir, name):
        # Numbered before leftovers are removed, so a generation number is never used twice.
        generation = gens.next_generation(collections_dir, name)
        gens.collect_garbage(collections_dir, name)
        previous = _Previous(settings, name)
        try:
            run = _Run.start(settings, request, name, generation, previous, embedder, progress, started)
            return _build_locked(run, gather)
        finally:
            previous.close()


@dataclass
class _Run:
    """Everything one locked build needs to know, passed around instead of a dozen arguments."""

    settings: IndexerSettings
    request: BuildRequest
    name: str
    generation: int
    previous: _Previous
    embedder: Embedder
    progress: Progress
    started: float
    reuse: bool
    old_docs: dict[str, gens.DocumentRecord]
    version_changed: bool

    @classmethod
    def start(
        cls,
        settings: IndexerSettings,
        request: BuildRequest,
        name: str,
        generation: int,
        previous: _Previous,
        embedder: Embedder,
        progress: Progress,
        started: float,
    ) -> _Run:
        reuse = request.incremental and previous.compatible(settings, embedder)
        if request.incremental and previous.manifest is not None and not reuse:
            log.info(
                "update_falls_back_to_full_build", collection=name, reason="model, chunking or parser changed"
            )
        manifest = previous.manifest
        return cls(
            settings=settings,
            request=request,
            name=name,
            generation=generation,
            previous=previous,
            embedder=embedder,
            progress=progress,
            started=started,
            reuse=reuse,
            old_docs=_reusable_records(request, manifest) if reuse else {},
            # A new --base-url changes no chunk but must still be published.
            version_changed=manifest is not None
            and (manifest.version, manifest.version_from_path, manifest.base_url)
            != (request.version, request.version_from_path, request.base_url),
        )


def _reusable_records(
    request: BuildRequest, manifest: gens.Manifest | None
) -> dict[str, gens.DocumentRecord]:
    """The previous documents an update may keep: only from the same kind of source, and for a
    site only from the same start URL (document keys are relative to it, and chunks carry URLs)."""
    if manifest is None or manifest.source_kind != request.source_kind:
        return {}
    if request.site is not None and manifest.source != request.source_label:
        return {}
    return manifest.documents


@dataclass
class _Gathered:
    """The chunks and manifest records a build will publish, with counts for the summary."""

    chunks: list[Chunk] = field(default_factory=list)
    records: dict[str, gens.DocumentRecord] = field(default_factory=dict)
    parsed: int = 0
    reused: int = 0
    skipped: int = 0
    removed: list[str] = field(default_factory=list)
    crawl: CrawlReport | None = None

    def keep(self, key: str, record: gens.DocumentRecord, chunks: list[Chunk]) -> None:
        self.chunks.extend(chunks)
        self.records[key] = record
        self.reused += 1


Gatherer = Callable[[_Run], _Gathered]


def _build_locked(run: _Run, gather: Gatherer) -> BuildSummary:
    got = gather(run)
    got.removed = sorted(set(run.old_docs) - set(got.records))
    previous_generation = run.previous.generation
    if previous_generation is not None and _nothing_changed(run, got):
        log.info("update_found_no_changes", collection=run.name, generation=previous_generation)
        return _summary(run, got, "unchanged", previous_generation, 0, 0, 0.0)
    return _publish(run, got)


def _nothing_changed(run: _Run, got: _Gathered) -> bool:
    return (
        run.request.incremental
        and run.reuse
        and got.parsed == 0
        and not got.removed
        and not run.version_changed
        and set(got.records) == set(run.old_docs)
    )


# --------------------------------------------------------------------------- documents


def _kept_chunks(run: _Run, key: str, record: gens.DocumentRecord) -> list[Chunk] | None:
    """The previous generation's chunks of one document, or None when they cannot be trusted."""
    if run.previous.lexical is None:
        return None
    kept = run.previous.lexical.document_chunks(key)
    if len(kept) != record.chunks:
        return None
    if run.version_changed:
        label = run.request.version_for(key)
        kept = [c.model_copy(update={"version": label}) for c in kept]
    return kept


def _parse_and_chunk(run: _Run, raw: RawDocument) -> tuple[Document, list[Chunk]] | None:
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


def _add_parsed(run: _Run, raw: RawDocument, got: _Gathered, validators: Validators | None = None) -> None:
    parsed = _parse_and_chunk(run, raw)
    if parsed is None:
        got.skipped += 1
        return
    document, chunks = parsed
    got.parsed += 1
    got.chunks.extend(chunks)
    record = gens.DocumentRecord(
        content_hash=raw.content_hash, chunks=len(chunks), title=document.title, url=document.url
    )
    got.records[raw.path] = _with_validators(record, validators)


# --------------------------------------------------------------------------- folder sources


def _folder_gatherer(
    request: BuildRequest, documents: Callable[[], Iterable[RawDocument]] | None
) -> Gatherer:
    if documents is None:
        root = request.source
        if root is None or not root.exists():
            raise SourceError(f"source path {root} does not exist")
        documents = functools.partial(walk_folder, root, request.include, request.exclude)
    source_docs = documents

    def gather(run: _Run) -> _Gathered:
        run.progress.stage("reading documents", None)
        return _gather_files(run, list(source_docs()))

    return gather


def _gather_files(run: _Run, raws: list[RawDocument]) -> _Gathered:
    run.progress.stage("parsing documents", len(raws))
    got = _Gathered()
    for raw in raws:
        old = run.old_docs.get(raw.path)
        kept = _kept_chunks(run, raw.path, old) if old and old.content_hash == raw.content_hash else None
        if old is not None and kept is not None:
            got.keep(raw.path, old, kept)
        else:
            _add_parsed(run, raw, got)
        run.progress.advance()
    if not got.records:
        raise SourceError(
            f"no documentation found under {run.request.source} "
            f"({len(raws)} files seen, {got.skipped} skipped as unsupported or empty); "
            "supported: .md .mdx .rst .html .htm .txt"
        )
    return got


# --------------------------------------------------------------------------- site sources


def _validators_of(record: gens.DocumentRecord) -> Validators:
    return Validators(
        etag=record.etag,
        last_modified=record.last_modified,
        content_hash=record.content_hash,
        links=record.links,
    )


def _with_validators(record: gens.DocumentRecord, validators: Validators | None) -> gens.DocumentRecord:
    if validators is None:
        return record
    return record.model_copy(
        update={"etag": validators.etag, "last_modified": validators.last_modified, "links": validators.links}
    )


def _site_gatherer(options: CrawlOptions) -> Gatherer:
    def gather(run: _Run) -> _Gathered:
        return _gather_site(run, options)

    return gather


def _gather_site(run: _Run, options: CrawlOptions) -> _Gathered:
    # Only pages whose old chunks are really there are offered for conditional refresh: a page
    # the crawler calls unchanged is never downloaded, so nothing else could rebuild it.
    reusable = _reusable_pages(run)
    run.progress.stage("crawling site", None)
    result = _run_crawl(options, {key: _validators_of(record) for key, (record, _) in reusable.items()})
    run.progress.stage("parsing pages", len(result.unchanged) + len(result.documents))
    got = _Gathered(crawl=result.report)
    for key in result.unchanged:
        if key in reusable:
            record, chunks = reusable[key]
            got.keep(key, _with_validators(record, result.validators.get(key)), chunks)
        else:
            log.warning("crawl_kept_unknown_page", collection=run.name, path=key)
        run.progress.advance()
    for raw in result.documents:
        _add_parsed(run, raw, got, result.validators.get(raw.path))
        run.progress.advance()
    if not got.records:
        raise CrawlFailed(_empty_crawl_message(options.start_url, result))
    return got


def _reusable_pages(run: _Run) -> dict[str, tuple[gens.DocumentRecord, list[Chunk]]]:
    reusable: dict[str, tuple[gens.DocumentRecord, list[Chunk]]] = {}
    for key, record in run.old_docs.items():
        kept = _kept_chunks(run, key, record)
        if kept is not None:
            reusable[key] = (record, kept)
    return reusable


def _run_crawl(options: CrawlOptions, previous: dict[str, Validators]) -> CrawlResult:
    try:
        return asyncio.run(crawl(options, previous or None))
    except CrawlError as error:
        raise CrawlFailed(str(error)) from error


def _empty_crawl_message(start_url: str, result: CrawlResult) -> str:
    report = result.report
    problems = [*report.failed, *report.skipped]
    first = f"; first problem: {problems[0].url}: {problems[0].reason}" if problems else ""
    return (
        f"no documentation found at {start_url} ({report.pages_fetched} pages fetched, "
        f"{len(report.skipped)} skipped, {len(report.failed)} failed{first}); nothing was published"
    )


# --------------------------------------------------------------------------- publishing


def _publish(run: _Run, got: _Gathered) -> BuildSummary:
    settings, name, generation = run.settings, run.name, run.generation
    collections_dir = settings.collections_dir
    _check_unique_ids(got.chunks)
    gen_dir = gens.generation_dir(collections_dir, name, generation)
    gen_dir.mkdir(parents=True)
    log.info("generation_build_started", collection=name, generation=generation, chunks=len(got.chunks))

    store, backend = create_vectors(settings, name, generation, gen_dir, run.embedder.dimension)
    try:
        embedded, reused_vectors, embed_seconds = _write_vectors(
            got.chunks, store, run.previous if run.reuse else None, run.embedder, run.progress
        )
        store.finish()
    finally:
        store.close()
    run.progress.stage("writing BM25 index", None)
    write_index(gen_dir / "tantivy", got.chunks)

    manifest = gens.Manifest(
        collection=name,
        version=run.request.version,
        version_from_path=run.request.version_from_path,
        versions=sorted({c.version for c in got.chunks}),
        base_url=run.request.base_url,
        generation=generation,
        embedding_model=run.embedder.model_id,
        embedding_dimension=run.embedder.dimension,
        chunking=chunking_fingerprint(settings),
        parser_version=PARSER_VERSION,
        chunk_count=len(got.chunks),
        document_count=len(got.records),
        documents=got.records,
        source=run.request.source_label,
        source_kind=run.request.source_kind,
        vector_backend=backend,
        created_at=gens.now(),
        build_seconds=round(time.perf_counter() - run.started, 3),
    )
    gens.fsync_tree(gen_dir)
    gens.write_manifest(gen_dir, manifest)
    if backend.kind == "qdrant" and backend.qdrant_collection:
        switch_alias(qdrant_client_for(settings.vectors), name, backend.qdrant_collection)
    gens.publish(collections_dir, name, generation)
    gens.collect_garbage(collections_dir, name)
    return _summary(run, got, "published", generation, embedded, reused_vectors, embed_seconds)


def _check_unique_ids(chunks: Sequence[Chunk]) -> None:
    seen: set[str] = set()
    for chunk in chunks:
        if chunk.chunk_id in seen:
            raise CorruptGeneration(f"duplicate chunk id {chunk.chunk_id} for {chunk.path}; this is a bug")
        seen.add(chunk.chunk_id)


def _write_vectors(
    chunks: Sequence[Chunk],
    store: VectorStore,
    previous: _Previous | None,
    embedder: Embedder,
    progress: Progress,
) -> tuple[int, int, float]:
    """Copy reusable vectors from the previous generation (same text hash), embed the rest."""
    reused_vectors: dict[str, npt.NDArray[np.float32]] = {}
    if previous is not None and previous.lexical is not None and previous.vectors is not None:
        old_by_hash: dict[str, str] = {}
        wanted = {c.text_hash for c in chunks}
        for old in previous.lexical.iter_chunks():
            if old.text_hash in wanted:
                old_by_hash.setdefault(old.text_hash, old.chunk_id)
        old_vectors = previous.vectors.get_vectors(list(old_by_hash.values()))
        for digest, old_id in old_by_hash.items():
            if old_id in old_vectors:
                reused_vectors[digest] = old_vectors[old_id]

    # `text_hash` covers the embedded text (title + heading path + body), so a reused vector is
    # exactly the one the model would produce again.
    to_embed = [c for c in chunks if c.text_hash not in reused_vectors]
    progress.stage("embedding chunks", len(chunks))
    reused_count = len(chunks) - len(to_embed)
    if reused_count:
        reused_chunks = [c for c in chunks if c.text_hash in reused_vectors]
        for start in range(0, len(reused_chunks), EMBED_BATCH):
            batch = reused_chunks[start : start + EMBED_BATCH]
            store.upsert(batch, np.stack([reused_vectors[c.text_hash] for c in batch]))
        progress.advance(reused_count)
    embed_seconds = 0.0
    for start in range(0, len(to_embed), EMBED_BATCH):
        batch = to_embed[start : start + EMBED_BATCH]
        t0 = time.perf_counter()
        vectors = embedder.embed([c.embedding_text() for c in batch])
        embed_seconds += time.perf_counter() - t0
        store.upsert(batch, vectors)
        progress.advance(len(batch))
    return len(to_embed), reused_count, embed_seconds


def _summary(
    run: _Run,
    got: _Gathered,
    status: Literal["published", "unchanged"],
    generation: int,
    embedded: int,
    reused_vectors: int,
    embed_seconds: float,
) -> BuildSummary:
    seconds = time.perf_counter() - run.started
    chunks = len(got.chunks)
    return BuildSummary(
        collection=run.name,
        status=status,
        generation=generation,
        previous_generation=run.previous.generation,
        version=run.request.version,
        documents=len(got.records),
        chunks=chunks,
        documents_parsed=got.parsed,
        documents_reused=got.reused,
        documents_removed=len(got.removed),
        documents_skipped=got.skipped,
        chunks_embedded=embedded,
        chunks_reused=reused_vectors,
        seconds=round(seconds, 3),
        embed_seconds=round(embed_seconds, 3),
        chunks_per_second=round(chunks / seconds, 2) if seconds > 0 else 0.0,
        embeddings_per_second=round(embedded / embed_seconds, 2) if embed_seconds > 0 else 0.0,
        source_kind=run.request.source_kind,
        crawl=got.crawl,
        partial=got.crawl is not None and got.crawl.partial,
    )
