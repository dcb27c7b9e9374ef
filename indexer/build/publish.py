"""Publish: write the BM25 index and manifest, fsync the generation, switch CURRENT (and the alias)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Literal

import structlog

from indexer import generations as gens
from indexer.build.embed import write_vectors
from indexer.build.request import BuildSummary, chunking_fingerprint
from indexer.build.run import Gathered, Run
from indexer.errors import CorruptGeneration
from indexer.lexical import write_index
from indexer.models import Chunk
from indexer.parsing import PARSER_VERSION
from indexer.stores import create_vectors
from indexer.vectors import qdrant_client_for, switch_alias

log = structlog.get_logger()


def publish(run: Run, got: Gathered) -> BuildSummary:
    settings, name, generation = run.settings, run.name, run.generation
    collections_dir = settings.collections_dir
    check_unique_ids(got.chunks)
    gen_dir = gens.generation_dir(collections_dir, name, generation)
    gen_dir.mkdir(parents=True)
    log.info("generation_build_started", collection=name, generation=generation, chunks=len(got.chunks))

    store, backend = create_vectors(settings, name, generation, gen_dir, run.embedder.dimension)
    try:
        embedded, reused_vectors, embed_seconds = write_vectors(
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
        version_dates=version_dates(got.records, run.request.version_for),
        base_url=run.request.base_url,
        generation=generation,
        embedding_model=run.embedder.model_id,
        embedding_dimension=run.embedder.dimension,
        embedding_backend=run.embedder.config.backend,
        embedding_mode=run.embedder.config.mode,
        embedding_query_prefix=run.embedder.query_prefix,
        embedding_passage_prefix=run.embedder.passage_prefix,
        chunking=chunking_fingerprint(settings),
        parser_version=PARSER_VERSION,
        chunk_count=len(got.chunks),
        document_count=len(got.records),
        documents=got.records,
        source=run.request.source_label,
        source_kind=run.request.source_kind,
        include=run.request.include,
        exclude=run.request.exclude,
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
    return summary(run, got, "published", generation, embedded, reused_vectors, embed_seconds)


def version_dates(
    records: Mapping[str, gens.DocumentRecord], label_of: Callable[[str], str]
) -> dict[str, date]:
    """Per version label, the day (UTC) its most recently modified document last changed.

    A label's date moves only when one of its own documents changes, so an update that edits one
    version's pages leaves every other version's date alone.
    """
    newest: dict[str, date] = {}
    for key, record in records.items():
        if record.modified is None:
            continue
        label, day = label_of(key), record.modified.date()
        if label not in newest or day > newest[label]:
            newest[label] = day
    return dict(sorted(newest.items()))


def check_unique_ids(chunks: Sequence[Chunk]) -> None:
    seen: set[str] = set()
    for chunk in chunks:
        if chunk.chunk_id in seen:
            raise CorruptGeneration(f"duplicate chunk id {chunk.chunk_id} for {chunk.path}; this is a bug")
        seen.add(chunk.chunk_id)


def summary(
    run: Run,
    got: Gathered,
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
        skipped_files=got.skipped_files,
        chunks_embedded=embedded,
        chunks_reused=reused_vectors,
        seconds=round(seconds, 3),
        embed_seconds=round(embed_seconds, 3),
        chunks_per_second=round(chunks / seconds, 2) if seconds > 0 else 0.0,
        embeddings_per_second=round(embedded / embed_seconds, 2) if embed_seconds > 0 else 0.0,
        embedding_backend=run.embedder.config.backend,
        embedding_tokens=run.embedder.tokens_billed - run.tokens_at_start,
        embedding_cost_usd=round(run.embedder.cost_usd - run.cost_at_start, 6),
        source_kind=run.request.source_kind,
        crawl=got.crawl,
        partial=got.crawl is not None and got.crawl.partial,
    )
