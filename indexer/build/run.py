"""The state of one locked build, shared by its stages: `Run` (inputs) and `Gathered` (outputs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from indexer import generations as gens
from indexer.build.request import BuildRequest, Progress
from indexer.build.reuse import Previous, reusable_records
from indexer.crawl import CrawlReport
from indexer.embedding import Embedder
from indexer.models import Chunk
from indexer.settings import IndexerSettings
from indexer.sources import SkippedFile

log = structlog.get_logger()


@dataclass
class Run:
    """Everything one locked build needs to know, passed around instead of a dozen arguments."""

    settings: IndexerSettings
    request: BuildRequest
    name: str
    generation: int
    previous: Previous
    embedder: Embedder
    progress: Progress
    started: float
    reuse: bool
    old_docs: dict[str, gens.DocumentRecord]
    version_changed: bool
    # The embedder's metered usage when this build began (a shared embedder keeps counting).
    tokens_at_start: int = 0
    cost_at_start: float = 0.0

    @classmethod
    def start(
        cls,
        settings: IndexerSettings,
        request: BuildRequest,
        name: str,
        generation: int,
        previous: Previous,
        embedder: Embedder,
        progress: Progress,
        started: float,
    ) -> Run:
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
            old_docs=reusable_records(request, manifest) if reuse else {},
            # A new --base-url changes no chunk but must still be published.
            version_changed=manifest is not None
            and (manifest.version, manifest.version_from_path, manifest.base_url)
            != (request.version, request.version_from_path, request.base_url),
            tokens_at_start=embedder.tokens_billed,
            cost_at_start=embedder.cost_usd,
        )


@dataclass
class Gathered:
    """The chunks and manifest records a build will publish, with counts for the summary."""

    chunks: list[Chunk] = field(default_factory=list)
    records: dict[str, gens.DocumentRecord] = field(default_factory=dict)
    parsed: int = 0
    reused: int = 0
    skipped: int = 0
    skipped_files: list[SkippedFile] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    crawl: CrawlReport | None = None

    def keep(self, key: str, record: gens.DocumentRecord, chunks: list[Chunk]) -> None:
        self.chunks.extend(chunks)
        self.records[key] = record
        self.reused += 1


Gatherer = Callable[[Run], Gathered]
