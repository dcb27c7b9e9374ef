"""The build in order: lock → number the generation → gather → nothing changed? → embed and publish."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import structlog

from indexer import generations as gens
from indexer.build.gather import folder_gatherer, site_gatherer
from indexer.build.publish import publish, summary
from indexer.build.request import BuildRequest, BuildSummary, Progress, Silent
from indexer.build.reuse import Previous
from indexer.build.run import Gathered, Gatherer, Run
from indexer.embedding import Embedder, shared_embedder
from indexer.models import RawDocument
from indexer.settings import IndexerSettings

log = structlog.get_logger()


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
    progress = progress or Silent()
    started = time.perf_counter()
    name = gens.validate_collection_name(request.collection)
    collections_dir = settings.collections_dir
    gather = site_gatherer(request.site) if request.site is not None else folder_gatherer(request, documents)
    embedder = embedder or shared_embedder(settings.embedding, settings.models_dir)

    with gens.build_lock(collections_dir, name):
        # Numbered before leftovers are removed, so a generation number is never used twice.
        generation = gens.next_generation(collections_dir, name)
        gens.collect_garbage(collections_dir, name)
        previous = Previous(settings, name)
        try:
            run = Run.start(settings, request, name, generation, previous, embedder, progress, started)
            return build_locked(run, gather)
        finally:
            previous.close()


def build_locked(run: Run, gather: Gatherer) -> BuildSummary:
    got = gather(run)
    got.removed = sorted(set(run.old_docs) - set(got.records))
    previous_generation = run.previous.generation
    if previous_generation is not None and nothing_changed(run, got):
        log.info("update_found_no_changes", collection=run.name, generation=previous_generation)
        return summary(run, got, "unchanged", previous_generation, 0, 0, 0.0)
    return publish(run, got)


def nothing_changed(run: Run, got: Gathered) -> bool:
    return (
        run.request.incremental
        and run.reuse
        and got.parsed == 0
        and not got.removed
        and not run.version_changed
        and set(got.records) == set(run.old_docs)
        and not dates_learned(run, got)
    )


def dates_learned(run: Run, got: Gathered) -> bool:
    """True when a kept document gained the date an older manifest lacked: worth publishing once,
    so the versions of an index built before dates were recorded get theirs on the next update."""
    return any(run.old_docs[key].modified is None for key in got.records if key in run.old_docs)
