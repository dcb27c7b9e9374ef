"""Build or update one collection: sources → parse → chunk → embed → new generation → publish.

`build` parses and embeds everything. `update` compares each document's content hash with the
published manifest: unchanged documents keep their chunks and vectors (copied from the old
generation, never re-embedded), changed ones are re-parsed and only chunks whose text changed
are embedded again, and documents gone from the source disappear. An update that finds no
change publishes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt
import structlog
from pydantic import BaseModel, Field

from indexer import generations as gens
from indexer.chunking import chunk_document
from indexer.embedding import Embedder, shared_embedder
from indexer.errors import CorruptGeneration, SourceError
from indexer.lexical import LexicalIndex, write_index
from indexer.models import Chunk, RawDocument
from indexer.parsing import PARSER_VERSION, parse_document
from indexer.settings import IndexerSettings
from indexer.sources import walk_folder
from indexer.vectors import (
    EdgeVectors,
    QdrantVectors,
    VectorStore,
    qdrant_client_for,
    qdrant_collection_name,
    switch_alias,
)

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
    collection: str
    source: Path
    version: str = "latest"
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    incremental: bool = False


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


def chunking_fingerprint(settings: IndexerSettings) -> dict[str, int]:
    return settings.chunking.model_dump()


def open_vectors(settings: IndexerSettings, manifest: gens.Manifest, gen_dir: Path) -> VectorStore:
    if manifest.vector_backend.kind == "qdrant":
        if settings.vectors.url is None:
            raise CorruptGeneration(
                f"collection {manifest.collection!r} lives on a Qdrant server; set vectors.url to reach it"
            )
        name = manifest.vector_backend.qdrant_collection or qdrant_collection_name(
            manifest.collection, manifest.generation
        )
        return QdrantVectors.open(qdrant_client_for(settings.vectors), name, manifest.embedding_dimension)
    return EdgeVectors.open(gen_dir / "vectors", manifest.embedding_dimension)


def _create_vectors(
    settings: IndexerSettings, collection: str, generation: int, gen_dir: Path, dimension: int
) -> tuple[VectorStore, gens.VectorBackend]:
    if settings.vectors.url is not None:
        name = qdrant_collection_name(collection, generation)
        store = QdrantVectors.create(qdrant_client_for(settings.vectors), name, dimension, settings.vectors)
        return store, gens.VectorBackend(kind="qdrant", qdrant_collection=name)
    return EdgeVectors.create(gen_dir / "vectors", dimension, settings.vectors), gens.VectorBackend(
        kind="edge"
    )


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
    """Build (or with `request.incremental`, update) a collection and publish it atomically."""
    progress = progress or _Silent()
    started = time.perf_counter()
    name = gens.validate_collection_name(request.collection)
    collections_dir = settings.collections_dir
    source_docs = documents or (lambda: walk_folder(request.source, request.include, request.exclude))
    if documents is None and not request.source.exists():
        raise SourceError(f"source path {request.source} does not exist")
    embedder = embedder or shared_embedder(settings.embedding, settings.models_dir)

    with gens.build_lock(collections_dir, name):
        # Numbered before leftovers are removed, so a generation number is never used twice.
        generation = gens.next_generation(collections_dir, name)
        gens.collect_garbage(collections_dir, name)
        previous = _Previous(settings, name)
        try:
            return _build_locked(
                settings, request, name, generation, previous, embedder, progress, source_docs, started
            )
        finally:
            previous.close()


def _build_locked(
    settings: IndexerSettings,
    request: BuildRequest,
    name: str,
    generation: int,
    previous: _Previous,
    embedder: Embedder,
    progress: Progress,
    source_docs: Callable[[], Iterable[RawDocument]],
    started: float,
) -> BuildSummary:
    collections_dir = settings.collections_dir
    reuse = request.incremental and previous.compatible(settings, embedder)
    if request.incremental and previous.manifest is not None and not reuse:
        log.info(
            "update_falls_back_to_full_build", collection=name, reason="model, chunking or parser changed"
        )
    old_docs = previous.manifest.documents if (reuse and previous.manifest) else {}
    version_changed = previous.manifest is not None and previous.manifest.version != request.version

    progress.stage("reading documents", None)
    raws = list(source_docs())
    progress.stage("parsing documents", len(raws))
    chunks: list[Chunk] = []
    records: dict[str, gens.DocumentRecord] = {}
    parsed = reused_docs = skipped = 0
    for raw in raws:
        digest = raw.content_hash
        old = old_docs.get(raw.path)
        if old is not None and old.content_hash == digest and previous.lexical is not None:
            kept = previous.lexical.document_chunks(raw.path)
            if len(kept) == old.chunks:
                if version_changed:
                    kept = [c.model_copy(update={"version": request.version}) for c in kept]
                chunks.extend(kept)
                records[raw.path] = old
                reused_docs += 1
                progress.advance()
                continue
        document = parse_document(raw)
        progress.advance()
        if document is None:
            skipped += 1
            continue
        document_chunks = chunk_document(
            document.model_copy(update={"content_hash": digest}),
            collection=name,
            version=request.version,
            settings=settings.chunking,
            count_tokens=embedder.count_tokens,
        )
        if not document_chunks:
            skipped += 1
            continue
        parsed += 1
        chunks.extend(document_chunks)
        records[raw.path] = gens.DocumentRecord(
            content_hash=digest, chunks=len(document_chunks), title=document.title, url=document.url
        )

    if not records:
        raise SourceError(
            f"no documentation found under {request.source} "
            f"({len(raws)} files seen, {skipped} skipped as unsupported or empty); "
            "supported: .md .mdx .rst .html .htm .txt"
        )
    removed = sorted(set(old_docs) - set(records))
    if (
        request.incremental
        and reuse
        and previous.generation is not None
        and parsed == 0
        and not removed
        and not version_changed
        and set(records) == set(old_docs)
    ):
        log.info("update_found_no_changes", collection=name, generation=previous.generation)
        return _summary(
            request,
            name,
            "unchanged",
            previous.generation,
            previous.generation,
            records,
            chunks,
            0,
            0,
            removed,
            started,
            0.0,
            0,
            skipped,
            reused_docs,
        )

    _check_unique_ids(chunks)
    gen_dir = gens.generation_dir(collections_dir, name, generation)
    gen_dir.mkdir(parents=True)
    log.info("generation_build_started", collection=name, generation=generation, chunks=len(chunks))

    store, backend = _create_vectors(settings, name, generation, gen_dir, embedder.dimension)
    try:
        embedded, reused_vectors, embed_seconds = _write_vectors(
            chunks, store, previous if reuse else None, embedder, progress
        )
        store.finish()
    finally:
        store.close()
    progress.stage("writing BM25 index", None)
    write_index(gen_dir / "tantivy", chunks)

    manifest = gens.Manifest(
        collection=name,
        version=request.version,
        generation=generation,
        embedding_model=embedder.model_id,
        embedding_dimension=embedder.dimension,
        chunking=chunking_fingerprint(settings),
        parser_version=PARSER_VERSION,
        chunk_count=len(chunks),
        document_count=len(records),
        documents=records,
        source=str(request.source),
        vector_backend=backend,
        created_at=gens.now(),
        build_seconds=round(time.perf_counter() - started, 3),
    )
    gens.fsync_tree(gen_dir)
    gens.write_manifest(gen_dir, manifest)
    if backend.kind == "qdrant" and backend.qdrant_collection:
        switch_alias(qdrant_client_for(settings.vectors), name, backend.qdrant_collection)
    gens.publish(collections_dir, name, generation)
    gens.collect_garbage(collections_dir, name)
    return _summary(
        request,
        name,
        "published",
        generation,
        previous.generation,
        records,
        chunks,
        embedded,
        reused_vectors,
        removed,
        started,
        embed_seconds,
        parsed,
        skipped,
        reused_docs,
    )


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
    request: BuildRequest,
    name: str,
    status: Literal["published", "unchanged"],
    generation: int,
    previous_generation: int | None,
    records: dict[str, gens.DocumentRecord],
    chunks: Sequence[Chunk],
    embedded: int,
    reused_vectors: int,
    removed: Sequence[str],
    started: float,
    embed_seconds: float,
    parsed: int,
    skipped: int,
    reused_docs: int,
) -> BuildSummary:
    seconds = time.perf_counter() - started
    return BuildSummary(
        collection=name,
        status=status,
        generation=generation,
        previous_generation=previous_generation,
        version=request.version,
        documents=len(records),
        chunks=len(chunks),
        documents_parsed=parsed,
        documents_reused=reused_docs,
        documents_removed=len(removed),
        documents_skipped=skipped,
        chunks_embedded=embedded,
        chunks_reused=reused_vectors,
        seconds=round(seconds, 3),
        embed_seconds=round(embed_seconds, 3),
        chunks_per_second=round(len(chunks) / seconds, 2) if seconds > 0 else 0.0,
        embeddings_per_second=round(embedded / embed_seconds, 2) if embed_seconds > 0 else 0.0,
    )
