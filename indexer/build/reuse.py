"""Reuse unchanged: the published generation an update keeps chunks and vectors from.

Reuse is sound only when the model, chunking and parser are the ones that made the previous
generation (`Previous.compatible`), and only from the same kind of source (`reusable_records`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from indexer import generations as gens
from indexer.build.request import BuildRequest, chunking_fingerprint
from indexer.crawl import Validators, parse_http_date
from indexer.embedding import Embedder
from indexer.errors import FormatMismatch
from indexer.lexical import LexicalIndex
from indexer.models import Chunk
from indexer.parsing import PARSER_VERSION
from indexer.settings import IndexerSettings
from indexer.stores import open_vectors
from indexer.vectors import VectorStore

if TYPE_CHECKING:
    from indexer.build.run import Run

log = structlog.get_logger()


class Previous:
    """The published generation an update reuses from (chunks by document, vectors by text hash)."""

    def __init__(self, settings: IndexerSettings, collection: str) -> None:
        self.generation = gens.current_generation(settings.collections_dir, collection)
        self.manifest: gens.Manifest | None = None
        self.lexical: LexicalIndex | None = None
        self.vectors: VectorStore | None = None
        if self.generation is None:
            return
        gen_dir = gens.generation_dir(settings.collections_dir, collection, self.generation)
        try:
            self.manifest = gens.read_manifest(gen_dir)
        except FormatMismatch as error:
            # Nothing of an older format is reused: the build starts from the sources alone.
            log.warning("previous_generation_not_reusable", collection=collection, reason=str(error))
            return
        self.lexical = LexicalIndex(gen_dir / "tantivy")
        self.vectors = open_vectors(settings, self.manifest, gen_dir)

    def compatible(self, settings: IndexerSettings, embedder: Embedder) -> bool:
        """Reuse is only sound when chunks and vectors would come out the same."""
        m = self.manifest
        return (
            m is not None
            and gens.manifest_embedding(m) == embedder.config
            and m.chunking == chunking_fingerprint(settings)
            and m.parser_version == PARSER_VERSION
        )

    def close(self) -> None:
        if self.vectors is not None:
            self.vectors.close()


def reusable_records(request: BuildRequest, manifest: gens.Manifest | None) -> dict[str, gens.DocumentRecord]:
    """The previous documents an update may keep: only from the same kind of source, and for a
    site only from the same start URL (document keys are relative to it, and chunks carry URLs)."""
    if manifest is None or manifest.source_kind != request.source_kind:
        return {}
    if request.site is not None and manifest.source != request.source_label:
        return {}
    return manifest.documents


def kept_chunks(run: Run, key: str, record: gens.DocumentRecord) -> list[Chunk] | None:
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


def reusable_pages(run: Run) -> dict[str, tuple[gens.DocumentRecord, list[Chunk]]]:
    reusable: dict[str, tuple[gens.DocumentRecord, list[Chunk]]] = {}
    for key, record in run.old_docs.items():
        kept = kept_chunks(run, key, record)
        if kept is not None:
            reusable[key] = (record, kept)
    return reusable


def validators_of(record: gens.DocumentRecord) -> Validators:
    return Validators(
        etag=record.etag,
        last_modified=record.last_modified,
        content_hash=record.content_hash,
        links=record.links,
    )


def with_validators(record: gens.DocumentRecord, validators: Validators | None) -> gens.DocumentRecord:
    if validators is None:
        return record
    return record.model_copy(
        update={"etag": validators.etag, "last_modified": validators.last_modified, "links": validators.links}
    )


def with_modified(record: gens.DocumentRecord, modified: datetime) -> gens.DocumentRecord:
    """A reused document keeps its recorded date: its content is unchanged, so its last change is too.

    Only a record from a manifest written before dates were recorded takes `modified`.
    """
    if record.modified is not None:
        return record
    return record.model_copy(update={"modified": modified})


def page_modified(record: gens.DocumentRecord, previous_build: datetime) -> datetime:
    """The date for a reused page that has none: its Last-Modified, else when the previous
    generation was built (the content it still has was fetched by then)."""
    return parse_http_date(record.last_modified) or previous_build
