"""The published generations the server answers from, switched without restart.

A `Snapshot` is one open generation (manifest + Tantivy reader + vector store); it never
changes. The `Catalog` maps collection → snapshot and swaps in a new map when a collection's
CURRENT pointer changes. A request takes the map once at its start (`catalog.view()`), so it
finishes on the generations it started with even if a new one is published meanwhile; the old
snapshot is closed by garbage collection once the last request holding it is done.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from indexer import generations as gens
from indexer.embedding.base import EmbeddingConfig
from indexer.errors import IndexerError
from indexer.lexical import LexicalIndex
from indexer.settings import IndexerSettings
from indexer.stores import open_vectors
from indexer.vectors import VectorStore

log = structlog.get_logger()


@dataclass(eq=False)
class Snapshot:
    collection: str
    generation: int
    manifest: gens.Manifest
    lexical: LexicalIndex
    vectors: VectorStore

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def versions(self) -> list[str]:
        return gens.manifest_versions(self.manifest)

    @property
    def indexed_at(self) -> str:
        return self.manifest.created_at.isoformat()

    def __del__(self) -> None:
        try:
            self.vectors.close()
        except Exception:  # noqa: S110 - closing during interpreter shutdown may fail; nothing to do
            pass


@dataclass(frozen=True)
class CatalogView:
    """The generations one request runs against."""

    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    # Collections whose published generation could not be served, with the reason (for errors).
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def generations(self) -> dict[str, int]:
        return {name: s.generation for name, s in self.snapshots.items()}


def open_snapshot(
    settings: IndexerSettings, name: str, model: str | EmbeddingConfig, dimension: int | None
) -> Snapshot:
    generation, manifest = gens.require_current(settings.collections_dir, name)
    gens.check_model(manifest, model, dimension)
    gen_dir = gens.generation_dir(settings.collections_dir, name, generation)
    lexical = LexicalIndex(gen_dir / "tantivy")
    vectors = open_vectors(settings, manifest, gen_dir)
    return Snapshot(name, generation, manifest, lexical, vectors)


class Catalog:
    """Thread-safe holder of the current `CatalogView`, refreshed at most every `interval` seconds."""

    def __init__(
        self,
        settings: IndexerSettings,
        model: str | EmbeddingConfig,
        dimension: int | None = None,
        interval: float = 1.0,
    ) -> None:
        """`model` is the embedding configuration generations must match (a bare name checks less)."""
        self._settings = settings
        self._model = model
        self._dimension = dimension
        self._interval = interval
        self._lock = threading.Lock()
        self._view = CatalogView()
        self._pointers: dict[str, tuple[int, int] | None] = {}
        self._checked = 0.0
        self.refresh(force=True)

    @property
    def collections_dir(self) -> Path:
        return self._settings.collections_dir

    def view(self) -> CatalogView:
        if time.monotonic() - self._checked >= self._interval:
            self.refresh()
        return self._view

    def _pointer_state(self, name: str) -> tuple[int, int] | None:
        try:
            stat = (self.collections_dir / name / "CURRENT").stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_ino)

    def refresh(self, *, force: bool = False) -> None:
        """Open newly published generations; drop dropped collections. Cheap when nothing changed."""
        with self._lock:
            self._checked = time.monotonic()
            names = gens.list_collections(self.collections_dir)
            states = {name: self._pointer_state(name) for name in names}
            if not force and states == self._pointers:
                return
            snapshots = dict(self._view.snapshots)
            unavailable = dict(self._view.unavailable)
            for gone in set(snapshots) | set(unavailable):
                if gone not in states:
                    snapshots.pop(gone, None)
                    unavailable.pop(gone, None)
            for name, state in states.items():
                if (
                    not force
                    and self._pointers.get(name) == state
                    and (name in snapshots or name in unavailable)
                ):
                    continue
                try:
                    generation = gens.current_generation(self.collections_dir, name)
                    current = snapshots.get(name)
                    if current is not None and current.generation == generation:
                        continue
                    snapshots[name] = open_snapshot(self._settings, name, self._model, self._dimension)
                    unavailable.pop(name, None)
                    log.info("generation_loaded", collection=name, generation=snapshots[name].generation)
                except IndexerError as error:
                    # Keep serving the last good generation of this collection, if any.
                    unavailable[name] = str(error)
                    log.error("generation_unavailable", collection=name, error=str(error))
            self._pointers = states
            self._view = CatalogView(snapshots, unavailable)
